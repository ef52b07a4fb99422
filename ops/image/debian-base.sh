#!/bin/sh
# Makes a minimal Debian root file system as a tarball, once, and prints its path: the base of
# the agent's image (no registry to pull one from) and the fresh root the .deb test installs
# into. debootstrap fetches from the Debian mirror this host's apt uses (or $DEBIAN_MIRROR);
# the tarball is cached under target/, so later runs take no time.
set -eu
cd "$(dirname "$0")/../.."
suite=${DEBIAN_SUITE:-bookworm}
cache="${CARGO_TARGET_DIR:-target}/packaging"
tarball="$cache/debian-$suite-minbase.tar"
if [ -f "$tarball" ]; then
    echo "$tarball"
    exit 0
fi

# The first mirror apt has for the suite, from one-line or deb822 sources.
mirror_of_apt() {
    sed 's/\[[^]]*\]//' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk -v suite="$suite" '/^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) { print uri; exit } }'
}
mirror=${DEBIAN_MIRROR:-$(mirror_of_apt | head -n 1)}
[ -n "$mirror" ] || { echo "no apt source for $suite: set DEBIAN_MIRROR" >&2; exit 1; }
command -v debootstrap > /dev/null || { echo "debootstrap is missing (cargo xtask setup installs it)" >&2; exit 1; }

rootfs="$cache/rootfs.tmp"
rm -rf "$rootfs"
mkdir -p "$cache"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >&2
# The downloaded packages and indexes are not part of the system.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
rm -rf "$rootfs"
echo "$tarball"
