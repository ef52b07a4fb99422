#!/bin/sh
# Builds the agent's container image with podman and prints its name (default
# localhost/netdiag-agent:VERSION; a name as first argument instead), with no registry: the
# Debian base is made here (debian-base.sh) and imported once as
# localhost/netdiag-debian-base:bookworm.
#
#   sudo env PATH="$PATH" ops/image/build.sh && sudo podman push localhost/netdiag-agent:0.1.0 REGISTRY/netdiag-agent:0.1.0
# As root: rootful podman, whose store is where a container that loads BPF programs runs from.
set -eu
cd "$(dirname "$0")/../.."
command -v podman > /dev/null || { echo "podman is missing (cargo xtask setup installs it)" >&2; exit 1; }
target=x86_64-unknown-linux-musl
target_dir=${CARGO_TARGET_DIR:-target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
image=${1:-localhost/netdiag-agent:$version}
base=localhost/netdiag-debian-base:bookworm

if ! podman image exists "$base"; then
    podman import --quiet "$(ops/image/debian-base.sh)" "$base" >&2
fi
# The same build as `cargo xtask vmtest`'s guests and ops/deb/build.sh.
cargo build --release -p netdiag --bin netdiag --target "$target" >&2
# Only what the image needs as build context, not the repository's target/.
context="$target_dir/packaging/image-context"
rm -rf "$context"
mkdir -p "$context"
cp "$target_dir/$target/release/netdiag" ops/netdiag-agent.toml ops/image/Containerfile "$context/"
podman build --quiet --build-arg "BASE=$base" --file "$context/Containerfile" --tag "$image" "$context" >&2
echo "$image"
