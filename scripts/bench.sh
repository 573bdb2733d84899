#!/usr/bin/env bash
# Builds the release binary and runs the benchmark harness (bench/bench.py) against the
# tests' AWS fixture on 127.0.0.1; prints the tables and writes bench/RESULTS.md.
# Extra arguments go to the harness (--runs, --boxes, --pulls, --rate, --binary).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-deps.sh
need=()
command -v docker-credential-ecr-login >/dev/null || need+=(amazon-ecr-credential-helper)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "bench: install ${need[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --locked
exec python3 bench/bench.py "$@"
