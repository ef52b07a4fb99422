#!/bin/sh
# Builds the netdiag .deb and prints its path: the static (musl) release binary, so the package
# depends on nothing and installs on any Debian or Ubuntu release of this architecture, with
# the systemd unit, the default config, man page and completions.
#
#   ops/deb/build.sh && sudo dpkg -i target/debian/netdiag_*_amd64.deb
set -eu
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-musl
target_dir=${CARGO_TARGET_DIR:-target}
# The same build as `cargo xtask vmtest`'s guests, so either reuses the other's.
cargo build --release -p netdiag --bin netdiag --target "$target"
bin="$target_dir/$target/release/netdiag"
# netdiag/Cargo.toml's assets name these under target/release/deb/ (cargo-deb maps it here).
gen="$target_dir/$target/release/deb"
mkdir -p "$gen"
"$bin" completions man | gzip -9n > "$gen/netdiag.1.gz"
"$bin" completions bash > "$gen/netdiag.bash"
"$bin" completions zsh > "$gen/_netdiag"
"$bin" completions fish > "$gen/netdiag.fish"
# One unit for both installs: the manual one puts the binary in /usr/local/bin, the package in /usr/bin.
sed 's#/usr/local/bin/netdiag#/usr/bin/netdiag#g' ops/netdiag-agent.service > "$gen/netdiag-agent.service"
cargo deb -p netdiag --no-build --target "$target" --output "$target_dir/debian/" | tail -n 1
