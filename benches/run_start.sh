#!/usr/bin/env bash
# Container start latency, side by side in one run: `lb run --rm --network none bb true` against raw
# `runc run` and crun on an OCI bundle of the same busybox root file system, running `true`
# (issue 4: lb's median at most 1.0x runc's). Also lb's peak RSS (/usr/bin/time -v).
# `--network none`: the bundle's spec gives an empty network namespace, as none does; the
# bridge (lb run's default) is timed by benches/network.sh.
#
# Run: bash benches/run_start.sh
#
# Needs root, runc, crun, jq, python3, /usr/bin/time (apt: time) and busybox-static
# (../shared/peers/install-peers.sh installs the peers). Skips with a message otherwise.
# RUNS=N (default 50) timed runs each; OUT=DIR (default /tmp/lb-bench/run_start) keeps the
# timings as JSON; BUNDLE=DIR times runc/crun on that bundle (e.g. /tmp/lab-bundle from
# ../shared/peers/load-bases.sh) instead of one made here from the same rootfs tar as lb's.
# crun 1.8 refuses this machine's hybrid cgroup layout, so it runs through
# ../shared/peers/crun-hybrid.sh (bash + `unshare -m` + sh + umount, then crun); that
# wrapper's own cost is timed as well (`unshare ... sh -c true`, and the whole chain with
# `true` for crun) and subtracted in a second ratio. lb is target/release/lb (LB_BIN=PATH for
# another), built with `cargo build --release -p lb` if missing. LB_OLD=PATH times another lb
# binary too (an earlier commit's, for before/after tables), on a store of its own.
# Timed interleaved (benches/interleave.py: each round runs every command once, in rotating
# order; 5 warm-up rounds), as block-wise runs drifted between blocks here.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-50}
out=${OUT:-/tmp/lb-bench/run_start}

skip() { echo "run_start: skipped: $*" >&2; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "needs root (containers)"
missing=()
for t in runc crun jq python3 unshare; do command -v "$t" >/dev/null || missing+=("$t"); done
[ -x /usr/bin/time ] || missing+=("/usr/bin/time (apt: time)")
[ -x /bin/busybox ] || missing+=("/bin/busybox (apt: busybox-static)")
[ ${#missing[@]} -eq 0 ] || skip "missing: ${missing[*]} (../shared/peers/install-peers.sh)"

lb=${LB_BIN:-$here/target/release/lb}
if [ ! -x "$lb" ]; then
  echo "run_start: building $lb" >&2
  (cd "$here" && cargo build --release -p lb)
fi
echo "lb: $lb ($(date -r "$lb" '+built %F %T'))"

tmp=$(mktemp -d /tmp/lb-run-start.XXXXXX)
cleanup() {
  runc delete -f lbbench-runc >/dev/null 2>&1 || true
  crun delete -f lbbench-crun >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
export LB_ROOT=$tmp/store
mkdir -p "$out"

# (a) the busybox image in a fresh store, as tests/run_cli.rs makes it.
bash "$here/testdata/make-busybox-rootfs.sh" "$tmp/bb.tar"
"$lb" --root "$LB_ROOT" import "$tmp/bb.tar" bb >/dev/null
# (b) once, untimed: unpacks the snapshot.
"$lb" --root "$LB_ROOT" run --rm --network none bb true
lbold=${LB_OLD:-}
if [ -n "$lbold" ]; then
  "$lbold" --root "$tmp/store-old" import "$tmp/bb.tar" bb >/dev/null
  "$lbold" --root "$tmp/store-old" run --rm --network none bb true
fi

# The OCI bundle: the same tar, runc's default spec (pid, net, ipc, uts, mount namespaces,
# 3 capabilities, no seccomp) with `true`, no terminal and a writable root (as umoci's and
# docker's; lb mounts an overlay). No seccomp here, while lb installs docker's profile.
bundle=${BUNDLE:-}
if [ -z "$bundle" ]; then
  bundle=$tmp/bundle
  mkdir -p "$bundle/rootfs"
  tar -xf "$tmp/bb.tar" -C "$bundle/rootfs"
  runc spec --bundle "$bundle"
  python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["true"]; c["process"]["terminal"] = False; c["root"]["readonly"] = False
json.dump(c, open(p, "w"), indent=1)
PY
fi

# runc and crun delete a container that ran in the foreground when it exits, so one id is
# reused for every run (checked below: a leftover would make the next run fail).
runc delete -f lbbench-runc >/dev/null 2>&1 || true
crun_hybrid=${CRUN_HYBRID:-$here/../shared/peers/crun-hybrid.sh}
wrapped=1
if crun run --bundle "$bundle" lbbench-crun >/dev/null 2>&1; then
  crun_cmd="crun run --bundle $bundle lbbench-crun"; wrapped=0
elif [ -x "$crun_hybrid" ]; then
  crun_cmd="$crun_hybrid run --bundle $bundle lbbench-crun"
else
  crun_cmd="unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun \"\$@\"' crun run --bundle $bundle lbbench-crun"
fi
# What the wrapper costs without crun: the plain unshare+sh, and the wrapper's whole chain.
unshare_sh="unshare -m --propagation private sh -c true"
wrapper_chain="bash -c \"exec unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec true'\""
runc_cmd="runc run --bundle $bundle lbbench-runc"
for c in "$runc_cmd" "$runc_cmd" "$crun_cmd" "$crun_cmd" "$wrapper_chain"; do
  bash -c "$c" || { echo "run_start: '$c' failed" >&2; exit 1; }
done

# (c) side by side, interleaved, no shell in between.
json=$out/run_start.json
cmds=$(jq -n --arg lb "$lb --root $LB_ROOT run --rm --network none bb true" --arg runc "$runc_cmd" \
  --arg crun "$crun_cmd" --arg unshare "$unshare_sh" --arg chain "$wrapper_chain" \
  '{lb: $lb, runc: $runc, crun: $crun, "unshare-sh": $unshare, "wrapper-chain": $chain}')
if [ -n "$lbold" ]; then
  cmds=$(jq --arg old "$lbold --root $tmp/store-old run --rm --network none bb true" \
    '. + {lbold: $old}' <<<"$cmds")
fi
python3 "$here/benches/interleave.py" "$(jq -n --argjson runs "$runs" --arg json "$json" \
  --argjson cmds "$cmds" '{runs: $runs, warmup: 5, json_out: $json, cmds: $cmds}')"

# (e) lb's peak RSS: ru_maxrss of lb and what it waits for (its forked helpers, `true`).
rss=()
for _ in 1 2 3 4 5; do
  rss+=("$(/usr/bin/time -v "$lb" --root "$LB_ROOT" run --rm --network none bb true 2>&1 >/dev/null |
    awk -F': ' '/Maximum resident set size/ {print $2}')")
done

# (d) medians and ratios.
python3 - "$json" "$wrapped" "${rss[@]}" <<'PY'
import json, sys
wrapped = sys.argv[2] == "1"
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
med = {k: r["median"] * 1000 for k, r in res.items()}
for k in [k for k in ("lb", "lbold", "runc", "crun", "unshare-sh", "wrapper-chain") if k in res]:
    r = res[k]
    print(f"{k:18} median {med[k]:7.2f} ms  mean {r['mean']*1000:7.2f} ± {r['stddev']*1000:5.2f}  "
          f"min {r['min']*1000:7.2f}  max {r['max']*1000:7.2f}")
print(f"lb/runc {med['lb']/med['runc']:.2f}x   lb/crun {med['lb']/med['crun']:.2f}x")
if "lbold" in med:
    print(f"lbold/runc {med['lbold']/med['runc']:.2f}x   lbold/crun {med['lbold']/med['crun']:.2f}x"
          f"   lb/lbold {med['lb']/med['lbold']:.3f}")
if wrapped:
    bare = med["crun"] - med["wrapper-chain"]
    print(f"crun ran through the wrapper; less the wrapper's chain, crun ~{bare:.2f} ms: "
          f"lb/crun-without-wrapper {med['lb']/bare:.2f}x")
kb = sorted(int(x) for x in sys.argv[3:])
print(f"lb peak RSS (max resident set size, 5 runs): max {kb[-1]} KiB, median {kb[len(kb)//2]} KiB")
PY
echo "timings (JSON): $json"
