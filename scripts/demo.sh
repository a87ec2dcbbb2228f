#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root), builds lb and runs its main job: build an image
# from a Dockerfile and run it, with no daemon. The base image is made locally from
# Debian's busybox-static (no registry is reachable here); the store is $LB_ROOT
# (default /var/lib/lb).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
cargo build --release --locked
lb=./target/release/lb

base=$(mktemp)
trap 'rm -f "$base"' EXIT
bash testdata/make-busybox-rootfs.sh "$base"
"$lb" import "$base" busybox
"$lb" build -t lb-demo testdata/build/basic
"$lb" run --rm lb-demo
"$lb" images
