#!/usr/bin/env bash
# Run: bash benches/build_vs_buildkit.sh
#
# `lb build` against docker build with BuildKit (dockerd 20.10), side by side in one run, for the
# builder issue's acceptance line: lb/BuildKit median ratios cold <= 0.5, fully cached <= 0.3, one
# COPY'd file edited <= 0.5, multistage <= 0.85, bigfiles <= 0.7. Read here as: multistage's cold and
# edit builds (both rerun a `sleep 1` stage, so 0.5 is out of reach there) <= 0.85, bigfiles' cold
# build <= 0.7; every other row by its mode.
# Cases: ../shared/peers/dockerfiles/{small,multistage,bigfiles} and ctx10k (made here: FROM the
# busybox base, `COPY . /ctx/`, `RUN find /ctx | wc -l`, 10,000 files of ~100 bytes in 40 dirs).
# Multi-stage cases (benches/build_cases/, cold only; the builder issue's target lb/BuildKit <= 0.7
# on the real-world ones): overlap (a final stage's `sleep 1` beside the `sleep 1` of the stage it
# copies from later: ~1 s when steps, not stages, are scheduled), aptstages (apt-get install in
# two stages), compile (gcc from apt, a static binary copied into a busybox stage), pipsecret (pip
# through the HTTPS proxy, its CA as a build secret). All but overlap need the Debian base
# (../shared/peers/make-base.sh debian, made if missing: a few minutes) and apt/PyPI through the
# machine's proxy. Knob: REAL_CASES ("overlap aptstages compile pipsecret"; "" for none).
# Modes, as ../shared/peers/bench-peers.sh: cold (--no-cache), cached (unchanged rebuild), edit
# (one COPY'd file is rewritten with new content before each run: small/edit.txt,
# multistage/a.txt, bigfiles/stamp.txt, ctx10k/edit.txt). Timed interleaved (benches/interleave.py:
# every round runs each tool once, in rotating order; 1 warm-up round, RUNS counted), because
# block-wise timing drifted +-15% between blocks here. Both get `-q` and the same base tar
# (../shared/peers/make-base.sh's busybox-rootfs.tar) as lbbase/busybox:latest. docker gets
# `--network host` (the lab dockerd has no bridge); lb its default, each RUN in a network
# namespace of its own on the bridge (LB_NETWORK=host for the old comparison). LB_HOST_TOO=1 also
# times lb with `--network host` in the same run (rows lbhost-*, and lb/lbhost in the summary).
# LB_OLD=PATH also times another lb binary (an earlier commit's, for before/after tables) in the
# same rounds, on a store of its own (rows lbold-*, and lb/lbold in the summary).
#
# Needs root, /usr/bin/docker (Debian's 20.10 CLI; apt: docker.io), hyperfine, jq, python3 and
# ../shared/peers (install-peers.sh installs the tools). Skips with a message otherwise.
# dockerd: LAB_DOCKER (default docker-lab) on unix:///run/$LAB_DOCKER.sock; started with
# ../shared/peers/start-dockerd.sh if not up, and then stopped at exit. lb is target/release/lb
# (LB_BIN=PATH for another), its store a fresh temp dir under /var/tmp (the contexts are there too,
# the same file system as docker's /var/lib), removed at exit. At exit the bench's docker tags
# are removed and docker's build cache pruned (KEEP=1 keeps everything).
# Knobs: RUNS (5), CASES ("small multistage bigfiles ctx10k"), OUT (/tmp/lb-bench/build_vs_buildkit:
# hyperfine JSON + logs, medians.tsv, summary.md).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS:-$here/../shared/peers}
runs=${RUNS:-5}
cases=${CASES:-small multistage bigfiles ctx10k}
real_cases=${REAL_CASES-overlap aptstages compile pipsecret}
out=${OUT:-/tmp/lb-bench/build_vs_buildkit}
D=/usr/bin/docker

skip() { echo "build_vs_buildkit: skipped: $*" >&2; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "needs root (lb build and dockerd)"
missing=()
[ -x "$D" ] || missing+=("$D (apt: docker.io)")
[ -x /usr/sbin/dockerd ] || missing+=("/usr/sbin/dockerd (apt: docker.io)")
for t in hyperfine jq python3; do command -v "$t" >/dev/null || missing+=("$t"); done
[ -d "$peers/dockerfiles" ] || missing+=("$peers (the peers' scripts and dockerfiles)")
[ ${#missing[@]} -eq 0 ] || skip "missing: ${missing[*]} (../shared/peers/install-peers.sh)"

export LAB_DOCKER=${LAB_DOCKER:-docker-lab}
export DOCKER_HOST=unix:///run/$LAB_DOCKER.sock DOCKER_BUILDKIT=1
lb=${LB_BIN:-$here/target/release/lb}
if [ ! -x "$lb" ]; then
  echo "build_vs_buildkit: building $lb" >&2
  (cd "$here" && cargo build --release -p lb)
fi

tmp=$(mktemp -d /var/tmp/lb-build-vs-buildkit.XXXXXX)
started_dockerd=0
cleanup() {
  local rc=$?
  set +e
  if [ "${KEEP:-0}" != 1 ]; then
    if $D version >/dev/null 2>&1; then
      $D images --format '{{.Repository}}:{{.Tag}}' | grep '^lbbench-' | xargs -r $D rmi -f >/dev/null
      $D builder prune -af >/dev/null
    fi
    rm -rf "$tmp"
  else
    echo "kept: $tmp (lb store, contexts)" >&2
  fi
  [ $started_dockerd = 1 ] && "$peers/stop-dockerd.sh" >/dev/null
  exit $rc
}
trap cleanup EXIT
trap "exit 130" INT TERM

if ! $D version >/dev/null 2>&1; then
  "$peers/start-dockerd.sh"; started_dockerd=1
fi
base=${OUT_PEERS:-/tmp/lb-peers}/busybox-rootfs.tar
[ -f "$base" ] || OUT=$(dirname "$base") "$peers/make-base.sh" >/dev/null
envpath="ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The same tar and config (as ../shared/peers/load-bases.sh) in both: docker's is re-imported so the
# two bases are the same bytes.
$D import --change "$envpath" --change 'CMD ["sh"]' "$base" lbbase/busybox:latest >/dev/null
store=$tmp/store
"$lb" --root "$store" import -c "$envpath" -c 'CMD ["sh"]' "$base" lbbase/busybox:latest >/dev/null
lbold=${LB_OLD:-}
if [ -n "$lbold" ]; then
  "$lbold" --root "$tmp/store-old" import -c "$envpath" -c 'CMD ["sh"]' "$base" \
    lbbase/busybox:latest >/dev/null
fi

if [ -n "$(echo "$real_cases" | tr ' ' '\n' | grep -v '^overlap$' | grep .)" ]; then
  debian=${OUT_PEERS:-/tmp/lb-peers}/debian-rootfs.tar
  [ -f "$debian" ] || OUT=$(dirname "$debian") "$peers/make-base.sh" debian >/dev/null
  $D import --change "$envpath" "$debian" lbbase/debian:bookworm >/dev/null
  "$lb" --root "$store" import -c "$envpath" "$debian" lbbase/debian:bookworm >/dev/null
  [ -z "$lbold" ] || "$lbold" --root "$tmp/store-old" import -c "$envpath" "$debian" \
    lbbase/debian:bookworm >/dev/null
fi
# pipsecret's build secret: the system trust store, which holds the proxy's CA.
secret="--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt"

# Contexts: the peers' cases, ctx10k and the real-world cases.
ctx=$tmp/ctx
cp -r "$peers/dockerfiles" "$ctx"
cp -r "$here/benches/build_cases/." "$ctx/"
mkdir -p "$ctx/ctx10k"
printf 'FROM lbbase/busybox:latest\nCOPY . /ctx/\nRUN find /ctx | wc -l\n' >"$ctx/ctx10k/Dockerfile"
python3 - "$ctx/ctx10k" <<'PY'
import os, sys
root = sys.argv[1]
n = 0
for d in range(40):
    p = os.path.join(root, f"d{d:02}")
    os.makedirs(p, exist_ok=True)
    for i in range(250 if d else 248):   # 9,998 + Dockerfile + edit.txt = 10,000 files
        with open(os.path.join(p, f"f{i:03}.txt"), "w") as f:
            f.write((f"{d:02}/{i:03} " * 20)[:99] + "\n")
        n += 1
with open(os.path.join(root, "edit.txt"), "w") as f:
    f.write("edit\n")
PY
declare -A edit=([small]=edit.txt [multistage]=a.txt [bigfiles]=stamp.txt [ctx10k]=edit.txt)

mkdir -p "$out"; rm -f "$out"/*.json "$out"/*.log "$out/medians.tsv"
{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# lb: $lb ($(date -r "$lb" '+built %F %T')), $(cd "$here" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
  [ -z "$lbold" ] || echo "# lbold: $lbold ($(date -r "$lbold" '+built %F %T'))"
  echo "# docker: $($D version -f '{{.Server.Version}}')"
} >"$out/medians.tsv"
cat "$out/medians.tsv"
awk '$1 > 0.5 {print "warning: load average " $1 " before the bench: other work will add noise" > "/dev/stderr"}' /proc/loadavg

build_cmd() { # TOOL CASE EXTRA-FLAGS
  case $1 in
  docker) echo "$D build -q --network host $3 -t lbbench-$2 $ctx/$2" ;;
  lb)     echo "$lb --root $store build -q --network ${LB_NETWORK:-default} $3 -t lbbench-$2 $ctx/$2" ;;
  lbhost) echo "$lb --root $store build -q --network host $3 -t lbbench-$2 $ctx/$2" ;;
  lbold)  echo "$lbold --root $tmp/store-old build -q $3 -t lbbench-$2 $ctx/$2" ;;
  esac
}
tools="docker lb"
[ "${LB_HOST_TOO:-0}" = 1 ] && tools="$tools lbhost"
[ -n "$lbold" ] && tools="$tools lbold"
timed() { # CASE MODE FLAGS PREPARE: every tool, interleaved; a medians.tsv row each
  local t=$1 mode=$2 name=$1-$2 cmds='{}' cfg
  for tool in $tools; do
    cmds=$(jq -c --arg k "$tool" --arg v "$(build_cmd $tool "$t" "$3")" '. + {($k): $v}' <<<"$cmds")
  done
  cfg=$(jq -n --argjson runs "$runs" --arg prep "$4" --arg json "$out/$name.json" --argjson cmds "$cmds" \
    '{runs: $runs, warmup: 1, prepare: $prep, json_out: $json, cmds: $cmds}')
  if python3 "$here/benches/interleave.py" "$cfg" >"$out/$name.log" 2>&1; then
    jq -r --arg n "$name" '.results[] | "\(.command)-\($n)\t\(.median * 1000 | round / 1000)"' \
      "$out/$name.json" | tee -a "$out/medians.tsv"
  else
    for tool in $tools; do printf '%s\tFAIL\n' "$tool-$name" | tee -a "$out/medians.tsv"; done
    sed 's/^/  /' "$out/$name.log" >&2
  fi
}

for t in $cases; do
  timed "$t" cold --no-cache ""
  timed "$t" cached "" ""
  timed "$t" edit "" "date +%s%N > $ctx/$t/${edit[$t]}"
done
for t in $real_cases; do
  timed "$t" cold "--no-cache $secret" ""
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/medians.tsv"

python3 - "$out/medians.tsv" "$cases" "$real_cases" <<'PY' | tee "$out/summary.md"
import sys
m = {}
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    k, v = line.split()
    m[k] = v
# the acceptance line: multistage (cold, edit: both rerun a `sleep 1` stage) and bigfiles (cold) have
# their own bounds
target = {"cold": 0.5, "cached": 0.3, "edit": 0.5}
special = {("multistage", "cold"): 0.85, ("multistage", "edit"): 0.85, ("bigfiles", "cold"): 0.7}
print("| case | mode | BuildKit s | lb s | lb/BuildKit | target | ok |")
print("|---|---|---|---|---|---|---|")
for t in sys.argv[2].split():
    for c in ["cold", "cached", "edit"]:
        d, l = m.get(f"docker-{t}-{c}", "-"), m.get(f"lb-{t}-{c}", "-")
        tg = special.get((t, c), target[c])
        try:
            r = float(l) / float(d)
            rs, ok = f"{r:.2f}", ("yes" if r <= tg else "NO")
        except ValueError:
            rs, ok = "-", "-"
        print(f"| {t} | {c} | {d} | {l} | {rs} | {tg} | {ok} |")
for t in sys.argv[3].split():
    d, l = m.get(f"docker-{t}-cold", "-"), m.get(f"lb-{t}-cold", "-")
    # overlap's own bound: its two `sleep 1`s overlap (about 1 s, not 2), in seconds.
    tg = "lb < 1.8 s" if t == "overlap" else 0.7
    try:
        r = float(l) / float(d)
        good = float(l) < 1.8 if t == "overlap" else r <= 0.7
        rs, ok = f"{r:.2f}", ("yes" if good else "NO")
    except ValueError:
        rs, ok = "-", "-"
    print(f"| {t} | cold | {d} | {l} | {rs} | {tg} | {ok} |")
if any(k.startswith("lbold-") for k in m):
    print()
    print("| case | mode | lbold/BuildKit | lb/BuildKit | lb/lbold |")
    print("|---|---|---|---|---|")
    rows = [(t, c) for t in sys.argv[2].split() for c in ["cold", "cached", "edit"]]
    rows += [(t, "cold") for t in sys.argv[3].split()]
    for t, c in rows:
        d, o, l = (m.get(f"{x}-{t}-{c}", "-") for x in ("docker", "lbold", "lb"))
        try:
            row = f"{float(o) / float(d):.2f} | {float(l) / float(d):.2f} | {float(l) / float(o):.3f}"
        except ValueError:
            row = "- | - | -"
        print(f"| {t} | {c} | {row} |")
if any(k.startswith("lbhost-") for k in m):
    print()
    print("| case | mode | lb --network host s | lb (RUN isolated) s | isolated/host |")
    print("|---|---|---|---|---|")
    for t in sys.argv[2].split():
        for c in ["cold", "cached", "edit"]:
            h, l = m.get(f"lbhost-{t}-{c}", "-"), m.get(f"lb-{t}-{c}", "-")
            try:
                r = f"{float(l) / float(h):.2f}"
            except ValueError:
                r = "-"
            print(f"| {t} | {c} | {h} | {l} | {r} |")
PY
