#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds lb and runs its main job on the example project.
# Today lb parses Dockerfiles (building and running arrive with the builder and runtime).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
cargo build --release --locked
./target/release/lb parse -f testdata/dockerfiles/example/Dockerfile
./target/release/lb parse -f testdata/dockerfiles/example/Dockerfile --format json
