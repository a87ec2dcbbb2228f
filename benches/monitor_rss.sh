#!/usr/bin/env bash
# The resident memory of detached containers' monitors (issue 19: under 3 MiB, healthchecks
# included): three containers run by the release binary (idle; a healthcheck every second;
# a line of output every 0.1 s), each monitor's VmRSS sampled every 0.1 s for SECONDS after
# a settling second; the median and the maximum per monitor, in KiB.
# Run as root: bash benches/monitor_rss.sh   (SECONDS=10 by default; LB=PATH for a binary)
set -euo pipefail
cd "$(dirname "$0")/.."
LB=${LB:-target/release/lb}
[ -x "$LB" ] || cargo build --release
SECS=${SECONDS_TO_SAMPLE:-10}
store=$(mktemp -d /var/tmp/lb-rss.XXXXXX)
trap '"$LB" --root "$store" rm -f rss-idle rss-health rss-logs >/dev/null 2>&1 || true; rm -rf "$store"' EXIT
tar=/tmp/lb-peers/busybox-rootfs.tar
[ -f "$tar" ] || bash ../shared/peers/make-base.sh >/dev/null
[ -f "$tar" ] || { echo "no busybox rootfs at $tar (../shared/peers/make-base.sh makes it)" >&2; exit 1; }
"$LB" --root "$store" import "$tar" bb >/dev/null
"$LB" --root "$store" run -d --name rss-idle --network none bb sleep 600 >/dev/null
"$LB" --root "$store" run -d --name rss-health --network none --health-cmd true --health-interval 1s bb sleep 600 >/dev/null
"$LB" --root "$store" run -d --name rss-logs --network none bb sh -c 'while true; do echo a line of output; sleep 0.1; done' >/dev/null
sleep 2
printf '| monitor | median KiB | max KiB |\n|---|---|---|\n'
for name in rss-idle rss-health rss-logs; do
  pid=$("$LB" --root "$store" inspect -f '{{.State.Pid}}' "$name")
  mon=$(awk '{print $4}' "/proc/$pid/stat")
  samples=()
  for _ in $(seq 1 $((SECS * 10))); do
    samples+=("$(awk '/VmRSS/{print $2}' "/proc/$mon/status")")
    sleep 0.1
  done
  sorted=$(printf '%s\n' "${samples[@]}" | sort -n)
  median=$(echo "$sorted" | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  max=$(echo "$sorted" | tail -1)
  printf '| %s | %s | %s |\n' "$name" "$median" "$max"
done
