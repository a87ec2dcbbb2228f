#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every check and test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Unit, integration, conformance, property and CLI tests (doc examples are not tests here).
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
