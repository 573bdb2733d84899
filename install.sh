#!/usr/bin/env bash
# Builds docker-credential-slothbox and installs it into $PREFIX/bin (default /usr/local).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: install.sh [--prefix DIR] [--help]

Builds docker-credential-slothbox with `cargo build --release --locked` and installs it
as DIR/bin/docker-credential-slothbox (DIR defaults to $PREFIX, else /usr/local).
Running it again replaces the binary in place; nothing else is touched.
USAGE
}

prefix="${PREFIX:-/usr/local}"
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
done

cd "$(dirname "$0")"
command -v cargo >/dev/null || { echo "install.sh: cargo is not installed; install Rust first" >&2; exit 1; }
cargo build --release --locked
install -d "$prefix/bin"
# install(1) writes a new file and renames it, so a running helper is never half-replaced.
install -m 0755 target/release/docker-credential-slothbox "$prefix/bin/docker-credential-slothbox"
echo "installed $prefix/bin/docker-credential-slothbox ($("$prefix/bin/docker-credential-slothbox" version))"
