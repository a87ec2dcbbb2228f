#!/usr/bin/env bash
# Container networking, measured in one run:
#   start: `lb run --rm busybox true` with --network bridge against --network none (hyperfine).
#   throughput: a 100 MB download from busybox httpd in a bridge container, straight to the
#   container's address, through a published port at the bridge's own address (DNAT), and at
#   127.0.0.1 (lb's relay).
# Traffic stays on this machine (loopback and lb's bridge). Needs root, hyperfine, curl.
# RUNS (default 20 for start, 5 for downloads). Prints medians and the ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-20}
skip() { echo "network: skipped: $*" >&2; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
for t in hyperfine curl jq; do command -v "$t" >/dev/null || skip "missing $t"; done
lb=${LB_BIN:-$here/target/release/lb}
[ -x "$lb" ] || (cd "$here" && cargo build --release -p lb)
tmp=$(mktemp -d /var/tmp/lb-network-bench.XXXXXX)
store=$tmp/store
cleanup() { set +e; "$lb" --root "$store" rm -f netbench >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT
bash "$here/testdata/make-busybox-rootfs.sh" "$tmp/busybox.tar" >/dev/null
"$lb" --root "$store" import "$tmp/busybox.tar" busybox >/dev/null
out=${OUT:-/tmp/lb-bench/network}; mkdir -p "$out"
echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg); lb $(cd "$here" && git rev-parse --short HEAD)"

hyperfine -N --style none --warmup 3 --runs "$runs" --export-json "$out/start.json" \
  "$lb --root $store run --rm --network none busybox true" \
  "$lb --root $store run --rm --network bridge busybox true" >/dev/null
none=$(jq -r '.results[0].median' "$out/start.json"); bridge=$(jq -r '.results[1].median' "$out/start.json")
printf 'start none   %.1f ms\nstart bridge %.1f ms (%.2fx)\n' "$(bc -l <<<"$none*1000")" \
  "$(bc -l <<<"$bridge*1000")" "$(bc -l <<<"$bridge/$none")"

mkdir -p "$tmp/www"; head -c 100M /dev/urandom >"$tmp/www/big"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$lb" --root "$store" run -d --name netbench -p "$port:80" -v "$tmp/www:/www:ro" busybox \
  httpd -f -p 80 -h /www >/dev/null
ip=$("$lb" --root "$store" exec netbench sh -c "ip -4 -o addr show eth0" | awk '{print $4}' | cut -d/ -f1)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/big" && break; sleep 0.1; done
gw=$(ip -4 -o addr show lb0 | awk '{print $4}' | cut -d/ -f1)
hyperfine -N --style none --warmup 1 --runs "${DL_RUNS:-5}" --export-json "$out/download.json" \
  "curl -s -o /dev/null http://$ip/big" \
  "curl -s -o /dev/null http://$gw:$port/big" \
  "curl -s -o /dev/null http://127.0.0.1:$port/big" >/dev/null
direct=$(jq -r '.results[0].median' "$out/download.json")
dnat=$(jq -r '.results[1].median' "$out/download.json")
relay=$(jq -r '.results[2].median' "$out/download.json")
printf 'download direct              %.3f s (%.0f MB/s)\n' "$direct" "$(bc -l <<<"104.8576/$direct")"
printf 'download -p at %-13s %.3f s (%.0f MB/s, %.2fx the time; DNAT)\n' "$gw" "$dnat" \
  "$(bc -l <<<"104.8576/$dnat")" "$(bc -l <<<"$dnat/$direct")"
printf 'download -p at 127.0.0.1     %.3f s (%.0f MB/s, %.2fx the time; relay)\n' "$relay" \
  "$(bc -l <<<"104.8576/$relay")" "$(bc -l <<<"$relay/$direct")"
