#!/usr/bin/env bash
# Run: bash benches/build_cache_vs_buildkit.sh
#
# "A CI rebuild on a fresh machine", for the remote build cache issue: an empty store (lb) and a
# fresh dockerd data root (docker 20.10's BuildKit) each rebuild a case from a cache in a registry
# on loopback and export it again: import + build + export (+ the image pushed, as CI does), side
# by side, interleaved (benches/interleave.py), medians. Target lb/BuildKit <= 0.5.
#   lb:     lb --root EMPTY build --cache-from REG/cache/lb-CASE
#             --cache-to type=registry,ref=REG/cache/lb-CASE,mode=max -t REG/lb/CASE --push CTX
#   docker: docker build --cache-from REG/bk/CASE --build-arg BUILDKIT_INLINE_CACHE=1
#             -t REG/bk/CASE CTX && docker push REG/bk/CASE   (its inline cache: what 20.10 exports
#             without buildx)
# Both pull the base (the peers' busybox tar, pushed to REG/lbbase/busybox:latest) as part of the
# run: a fresh machine has none. Cases: the peers' multistage and bigfiles (their FROM rewritten
# to REG's base), steps20 (20 layer steps, made here). Seeding (untimed): each tool builds each
# case once and exports. Also timed: "export": a fully cached steps20 build in the seeded lb store
# exporting to the registry that has every blob (the whole command; target < 0.3 s).
#
# Needs root, /usr/bin/docker and dockerd (apt: docker.io), docker-registry, jq, python3 and
# ../shared/peers. Its own dockerd (LAB_DOCKER, default docker-cachebench; its data root is wiped
# before every docker run) and registry (PORT, default 5055), both stopped at exit; its temp dir
# under /var/tmp is removed (KEEP=1 keeps it). lb is target/release/lb (LB_BIN=PATH for another).
# Knobs: RUNS (3), CASES ("multistage bigfiles steps20"), OUT (/tmp/lb-bench/build_cache_vs_buildkit:
# logs, JSON, medians.tsv, summary.md).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS:-$here/../shared/peers}
runs=${RUNS:-3}
cases=${CASES:-multistage bigfiles steps20}
out=${OUT:-/tmp/lb-bench/build_cache_vs_buildkit}
D=/usr/bin/docker

skip() { echo "build_cache_vs_buildkit: skipped: $*" >&2; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "needs root (lb build and dockerd)"
missing=()
[ -x "$D" ] || missing+=("$D (apt: docker.io)")
[ -x /usr/sbin/dockerd ] || missing+=("/usr/sbin/dockerd (apt: docker.io)")
[ -x /usr/bin/docker-registry ] || missing+=("/usr/bin/docker-registry (apt: docker-registry)")
for t in jq python3 curl; do command -v "$t" >/dev/null || missing+=("$t"); done
[ -d "$peers/dockerfiles" ] || missing+=("$peers (the peers' scripts and dockerfiles)")
[ ${#missing[@]} -eq 0 ] || skip "missing: ${missing[*]} (../shared/peers/install-peers.sh)"

export LAB_DOCKER=${LAB_DOCKER:-docker-cachebench}
export DOCKER_HOST=unix:///run/$LAB_DOCKER.sock DOCKER_BUILDKIT=1
port=${PORT:-5055}
reg=127.0.0.1:$port
lb=${LB_BIN:-$here/target/release/lb}
if [ ! -x "$lb" ]; then
  echo "build_cache_vs_buildkit: building $lb" >&2
  (cd "$here" && cargo build --release -p lb)
fi
tmp=$(mktemp -d /var/tmp/lb-cache-bench.XXXXXX)

cleanup() {
  local rc=$?
  set +e
  "$peers/stop-dockerd.sh" >/dev/null 2>&1
  rm -rf "/var/lib/$LAB_DOCKER"
  "$peers/stop-registry.sh" "$port" >/dev/null 2>&1
  rm -rf "/tmp/lab-registry-$port"
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$tmp"; else echo "kept: $tmp" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap "exit 130" INT TERM

# A dockerd with nothing: no image, no build cache (a fresh CI runner).
fresh_docker() {
  "$peers/stop-dockerd.sh" >/dev/null 2>&1 || true
  rm -rf "/var/lib/$LAB_DOCKER"
  "$peers/start-dockerd.sh" >/dev/null
}

rm -rf "/tmp/lab-registry-$port"
"$peers/start-registry.sh" "$port" >/dev/null
base=${OUT_PEERS:-/tmp/lb-peers}/busybox-rootfs.tar
[ -f "$base" ] || OUT=$(dirname "$base") "$peers/make-base.sh" >/dev/null
envpath="ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
seed=$tmp/seed
"$lb" --root "$seed" import -c "$envpath" -c 'CMD ["sh"]' "$base" "$reg/lbbase/busybox:latest" >/dev/null
"$lb" --root "$seed" push -q "$reg/lbbase/busybox:latest" >/dev/null

ctx=$tmp/ctx
mkdir -p "$ctx"
for c in multistage bigfiles; do
  cp -r "$peers/dockerfiles/$c" "$ctx/$c"
  sed -i "s|^FROM lbbase/busybox:latest|FROM $reg/lbbase/busybox:latest|" "$ctx/$c/Dockerfile"
done
mkdir -p "$ctx/steps20"
{
  echo "FROM $reg/lbbase/busybox:latest"
  for i in $(seq 1 20); do echo "RUN echo step $i > /step$i && date +%s%N >> /step$i"; done
} >"$ctx/steps20/Dockerfile"

lb_cmd() { # CASE STORE
  echo "$lb --root $2 build -q --cache-from $reg/cache/lb-$1 --cache-to type=registry,ref=$reg/cache/lb-$1,mode=max -t $reg/lb/$1 --push $ctx/$1"
}
docker_cmd() { # CASE
  echo "$D build -q --network host --cache-from $reg/bk/$1 --build-arg BUILDKIT_INLINE_CACHE=1 -t $reg/bk/$1 $ctx/$1 && $D push $reg/bk/$1"
}

mkdir -p "$out"; rm -f "$out"/*.json "$out"/*.log "$out/medians.tsv"
{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# lb: $lb ($(date -r "$lb" '+built %F %T')), $(cd "$here" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
} >"$out/medians.tsv"

echo "seeding the caches" >&2
fresh_docker
echo "# docker: $($D version -f '{{.Server.Version}}')" >>"$out/medians.tsv"
for c in $cases; do
  sh -c "$(lb_cmd "$c" "$seed")" >/dev/null
  sh -c "$(docker_cmd "$c")" >/dev/null
done
cat "$out/medians.tsv"

fresh=$tmp/fresh
for c in $cases; do
  # Before every run of either tool: an empty lb store, a dockerd with nothing, up and
  # settled (a runner's daemon is idle when its job starts: its own start-up work, seconds
  # of it, is not the build's).
  prep="rm -rf $fresh; $peers/stop-dockerd.sh >/dev/null 2>&1; rm -rf /var/lib/$LAB_DOCKER; $peers/start-dockerd.sh >/dev/null; sync; sleep 2"
  cfg=$(jq -n --argjson runs "$runs" --arg prep "$prep" --arg json "$out/$c.json" \
    --arg lb "$(lb_cmd "$c" "$fresh")" --arg docker "$(docker_cmd "$c")" \
    '{runs: $runs, warmup: 1, prepare: $prep, json_out: $json, shell: true, cmds: {docker: $docker, lb: $lb}}')
  if python3 "$here/benches/interleave.py" "$cfg" >"$out/$c.log" 2>&1; then
    jq -r --arg n "$c" '.results[] | "\(.command)-\($n)\t\(.median * 1000 | round / 1000)"' \
      "$out/$c.json" | tee -a "$out/medians.tsv"
  else
    printf 'docker-%s\tFAIL\nlb-%s\tFAIL\n' "$c" "$c" | tee -a "$out/medians.tsv"
    sed 's/^/  /' "$out/$c.log" >&2
  fi
done

# The export alone: steps20 fully cached in the seeded store, every blob in the registry.
cfg=$(jq -n --argjson runs "$((runs * 3))" --arg json "$out/export.json" \
  --arg lb "$lb --root $seed build -q --cache-to type=registry,ref=$reg/cache/lb-steps20,mode=max $ctx/steps20" \
  '{runs: $runs, warmup: 1, json_out: $json, cmds: {lb: $lb}}')
python3 "$here/benches/interleave.py" "$cfg" >"$out/export.log" 2>&1 &&
  jq -r '.results[] | "\(.command)-export\t\(.median * 1000 | round / 1000)"' "$out/export.json" |
  tee -a "$out/medians.tsv"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/medians.tsv"

python3 - "$out/medians.tsv" "$cases" <<'PY' | tee "$out/summary.md"
import sys
m = {}
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    k, v = line.split()
    m[k] = v
print("| case (fresh machine: import + build + export + push) | BuildKit s | lb s | lb/BuildKit | target | ok |")
print("|---|---|---|---|---|---|")
for c in sys.argv[2].split():
    d, l = m.get(f"docker-{c}", "-"), m.get(f"lb-{c}", "-")
    try:
        r = float(l) / float(d)
        rs, ok = f"{r:.2f}", ("yes" if r <= 0.5 else "NO")
    except ValueError:
        rs, ok = "-", "-"
    print(f"| {c} | {d} | {l} | {rs} | 0.5 | {ok} |")
e = m.get("lb-export", "-")
try:
    ok = "yes" if float(e) < 0.3 else "NO"
except ValueError:
    ok = "-"
print(f"| export: steps20 fully cached, registry has every blob (whole command) | - | {e} | - | < 0.3 s | {ok} |")
PY
