#!/usr/bin/env bash
# Installs what the tests drive for real: moto (the AWS emulator), skopeo, Debian's
# docker-registry, htpasswd, and the docker CLI. Idempotent: installs only what is missing.
set -euo pipefail

need_apt=()
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
# Debian ships the docker CLI only inside docker.io (which also brings an engine we never start).
command -v docker >/dev/null || need_apt+=(docker.io)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)

if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${need_apt[*]}; install them (apt-get install ${need_apt[*]}) or run as root" >&2
        exit 1
    fi
    echo "setup: apt-get install ${need_apt[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

requirements="$(dirname "$0")/../tests/requirements.txt"
wanted_moto="$(sed -n 's/^moto\[server\]==//p' "$requirements")"
if [ "$(python3 -c 'import moto.server, werkzeug, moto; print(moto.__version__)' 2>/dev/null)" != "$wanted_moto" ]; then
    echo "setup: pip install -r tests/requirements.txt (moto $wanted_moto)" >&2
    # A Debian-managed python refuses plain pip installs; this machine is a test box.
    python3 -m pip install -q -r "$requirements" 2>/dev/null \
        || python3 -m pip install -q --break-system-packages -r "$requirements"
fi

for tool in skopeo docker-registry htpasswd docker python3; do
    command -v "$tool" >/dev/null || { echo "setup: $tool is still missing" >&2; exit 1; }
done
