#!/usr/bin/env bash
# Installs what lb's build and tests need on a fresh Debian 12 machine (run as root).
# Idempotent: a second run installs nothing new.
set -euo pipefail

need_apt=()
# skopeo and umoci: interop tests read lb's store with them; busybox-static: the test base image;
# procps (pgrep) and bsdutils (script, a terminal for the -t tests): used by the CLI tests;
# docker.io: dockerd 20.10 with BuildKit, the reference tests/differential.rs builds against;
# docker-registry (the CNCF distribution server) and apache2-utils (htpasswd): the registry
# tests run their own registries on loopback; openssl signs their Bearer tokens; iptables:
# NAT for the bridge network, iproute2: the network tests look at links with `ip`;
# e2fsprogs (mkfs.ext4) and util-linux (fallocate, mount): tests/disk_full.rs fills a small
# loop-mounted file system.
for pkg in build-essential pkg-config ca-certificates git skopeo umoci busybox-static procps bsdutils \
           docker.io docker-registry apache2-utils openssl iptables iproute2 e2fsprogs util-linux; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup, stable >= 1.85)" >&2
  exit 1
fi
