#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every check and test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
