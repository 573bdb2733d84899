#!/usr/bin/env bash
# Installs docker-credential-slothbox, and on request wires docker, skopeo, podman and
# buildah to it. Idempotent: running it again changes nothing that is already right.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: install.sh [--prefix DIR] [--binary PATH] [--configure] [--system] [--uninstall]

  --prefix DIR    install into DIR/bin (default: $PREFIX, else /usr/local)
  --binary PATH   install this prebuilt binary instead of building one with cargo; for bake
                  pipelines that build once (for example a static x86_64-unknown-linux-musl
                  build) and copy it into every image, with no Rust toolchain on the box
  --configure     run `docker-credential-slothbox configure` for the installing user: every
                  registry of the credentials file goes to slothbox under credHelpers
  --system        also install the system-wide credentials skeleton
                  /etc/slothbox/credentials.json (never overwriting one) and configure root
  --uninstall     undo: remove our credHelpers entries (for this user, and root with
                  --system), the skeleton if it is still empty, and the binary
  -h, --help      this text
USAGE
}

prefix="${PREFIX:-/usr/local}"
binary=""
configure=false
system=false
uninstall=false
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --binary=*) binary="${1#--binary=}"; shift ;;
        --configure) configure=true; shift ;;
        --system) system=true; shift ;;
        --uninstall) uninstall=true; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
done

here="$(cd "$(dirname "$0")" && pwd)"
target="$prefix/bin/docker-credential-slothbox"
skeleton=/etc/slothbox/credentials.json
skeleton_text='{"credentials": []}'

as_root() {
    # Root's own docker config, whatever HOME the installer runs with.
    HOME=/root DOCKER_CONFIG=/root/.docker "$@"
}

if $uninstall; then
    if [ -x "$target" ]; then
        "$target" configure --undo || true
        if $system && [ "$(id -u)" -eq 0 ]; then as_root "$target" configure --undo || true; fi
    fi
    if $system && [ -f "$skeleton" ] && [ "$(cat "$skeleton")" = "$skeleton_text" ]; then
        rm -f "$skeleton"
        rmdir /etc/slothbox 2>/dev/null || true
    fi
    rm -f "$target"
    echo "removed $target"
    exit 0
fi

if [ -z "$binary" ]; then
    command -v cargo >/dev/null || {
        echo "install.sh: cargo is not installed; install Rust, or pass --binary PATH with a prebuilt binary" >&2
        exit 1
    }
    (cd "$here" && cargo build --release --locked)
    binary="$here/target/release/docker-credential-slothbox"
fi
[ -f "$binary" ] || { echo "install.sh: no binary at $binary" >&2; exit 1; }
"$binary" version >/dev/null 2>&1 || { echo "install.sh: $binary does not run on this machine" >&2; exit 1; }

install -d "$prefix/bin"
# install(1) writes a new file and renames it, so a running helper is never half-replaced.
install -m 0755 "$binary" "$target"
echo "installed $target ($("$target" version))"

if $system; then
    if [ ! -e "$skeleton" ]; then
        install -d -m 0755 /etc/slothbox
        printf '%s\n' "$skeleton_text" > "$skeleton.tmp.$$"
        chmod 0644 "$skeleton.tmp.$$"
        mv "$skeleton.tmp.$$" "$skeleton"
        echo "installed the skeleton $skeleton; add your registries to it"
    else
        echo "kept the existing $skeleton"
    fi
fi

# configure needs registries to map; with none yet (a fresh skeleton) there is nothing to do.
run_configure() {
    if "$target" list 2>/dev/null | grep -q '":'; then
        "$@" "$target" configure
    else
        echo "no registries in the credentials file yet; run \`docker-credential-slothbox configure\` after adding them"
    fi
}
if $configure; then run_configure env; fi
if $system && [ "$(id -u)" -eq 0 ]; then run_configure as_root; fi
