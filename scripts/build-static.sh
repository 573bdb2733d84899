#!/usr/bin/env bash
# Builds the static x86_64-unknown-linux-musl binary that bake pipelines copy into images,
# checks that it is static, and runs the helper and real-client tests against it.
# Needs the musl target (rustup target add x86_64-unknown-linux-musl) and musl-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$target" || {
    echo "build-static: the $target target is not installed (rustup target add $target)" >&2
    exit 1
}
command -v musl-gcc >/dev/null || { echo "build-static: musl-gcc is missing (apt-get install musl-tools)" >&2; exit 1; }
cargo build --release --locked --target "$target"
binary="target/$target/release/docker-credential-slothbox"
if ldd "$binary" 2>&1 | grep -q '=>'; then
    echo "build-static: $binary is dynamically linked" >&2
    exit 1
fi
echo "$binary: static, $(stat -c %s "$binary") bytes, $("$binary" version)"
SLOTHBOX_TEST_BINARY="$PWD/$binary" cargo test --locked --test integration -- get:: clients:: store:: install_sh
