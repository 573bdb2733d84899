#!/usr/bin/env bash
# The project's one test command: installs what the tests need, checks formatting and
# lints, then runs every test (unit, the binary against moto, the real clients).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
