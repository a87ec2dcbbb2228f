#!/usr/bin/env bash
# lb push / lb pull against skopeo and podman, side by side in one run, on a loopback registry
# (Debian's docker-registry), with an image of 5 layers x 40 MB of random data (gzip layers, as
# registries hold them):
#   push: into an emptied registry, `lb push` vs `skopeo copy oci:DIR docker://...` (DIR: the same
#         image as an OCI layout, gzip layers). lb's layers were compressed once before (an
#         earlier push), as they are for every push after the first.
#   pull: into stores emptied of the image, `lb pull` (layers unpacked into snapshots, runnable)
#         vs `podman pull` (unpacked into containers-storage).
# hyperfine -N, RUNS (default 5) runs after a warmup; the registry or the image is reset in
# --prepare (not timed). Needs root, docker-registry, skopeo, podman, hyperfine
# (../shared/peers/install-peers.sh installs them). Prints medians and lb/peer ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-5}
port=${PORT:-5077}
out=${OUT:-/tmp/lb-bench/registry_vs_peers}
skip() { echo "registry_vs_peers: skipped: $*" >&2; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
for t in /usr/bin/docker-registry skopeo podman hyperfine jq; do
  command -v "$t" >/dev/null || skip "missing $t (../shared/peers/install-peers.sh)"
done
lb=${LB_BIN:-$here/target/release/lb}
[ -x "$lb" ] || (cd "$here" && cargo build --release -p lb)

tmp=$(mktemp -d /var/tmp/lb-registry-bench.XXXXXX)
regpid=
stop_registry() { [ -n "$regpid" ] && kill "$regpid" 2>/dev/null && wait "$regpid" 2>/dev/null; regpid=; }
cleanup() { set +e; stop_registry; pkill -f "docker-registry serve $tmp/registry.yml"; podman rmi -f "127.0.0.1:$port/bench/layers5:1" >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT

cat >"$tmp/registry.yml" <<EOF
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $tmp/registry }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$port }
EOF
start_registry() {
  stop_registry
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is taken (PORT=...)" >&2; exit 1; fi
  /usr/bin/docker-registry serve "$tmp/registry.yml" >>"$tmp/registry.log" 2>&1 &
  regpid=$!
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0; sleep 0.05; done
  echo "registry did not start" >&2; exit 1
}
# Used by hyperfine --prepare: an empty registry.
cat >"$tmp/empty-registry.sh" <<EOF
#!/usr/bin/env bash
pkill -f "docker-registry serve $tmp/registry.yml" ; sleep 0.1
rm -rf "$tmp/registry"
/usr/bin/docker-registry serve "$tmp/registry.yml" >>"$tmp/registry.log" 2>&1 &
for _ in \$(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && exit 0; sleep 0.05; done
exit 1
EOF
chmod +x "$tmp/empty-registry.sh"

# The image: busybox + 5 RUNs of 40 MB of random data, built by lb, pushed once (gzip made and
# remembered), copied by skopeo to an OCI layout for skopeo's side.
store=$tmp/store
base=$tmp/busybox.tar
bash "$here/testdata/make-busybox-rootfs.sh" "$base" >/dev/null
"$lb" --root "$store" import "$base" busybox >/dev/null
mkdir -p "$tmp/ctx"
{
  echo "FROM busybox"
  for i in 1 2 3 4 5; do echo "RUN dd if=/dev/urandom of=/layer$i bs=1M count=40 2>/dev/null"; done
} >"$tmp/ctx/Dockerfile"
img=127.0.0.1:$port/bench/layers5:1
"$lb" --root "$store" build -q -t "$img" "$tmp/ctx" >/dev/null
start_registry
"$lb" --root "$store" push -q "$img" >/dev/null
skopeo copy -q --src-tls-verify=false "docker://$img" "oci:$tmp/oci:layers5"
du -sh "$tmp/registry" | sed 's/^/registry holds: /'

mkdir -p "$out"; : >"$out/medians.tsv"
{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# lb: $lb, $(cd "$here" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "# skopeo $(skopeo --version | awk '{print $3}'), podman $(podman --version | awk '{print $3}')"
} | tee "$out/medians.tsv"
hf() { # NAME PREPARE CMD
  hyperfine -N --style none --warmup 1 --runs "$runs" --prepare "$2" --export-json "$out/$1.json" "$3" \
    >"$out/$1.log" 2>&1 || { echo "$1 failed: see $out/$1.log" >&2; tail -5 "$out/$1.log" >&2; exit 1; }
  printf '%s\t%.3f\n' "$1" "$(jq -r '.results[0].median' "$out/$1.json")" | tee -a "$out/medians.tsv"
}
hf skopeo-push "$tmp/empty-registry.sh" "skopeo copy -q --dest-tls-verify=false oci:$tmp/oci:layers5 docker://$img"
hf lb-push "$tmp/empty-registry.sh" "$lb --root $store push -q $img"
# The registry now holds the image for the pulls.
pullstore=$tmp/pullstore
hf podman-pull "podman rmi -f $img" "podman pull -q --tls-verify=false $img"
hf lb-pull "sh -c '$lb --root $pullstore rmi $img >/dev/null 2>&1; $lb --root $pullstore prune >/dev/null'" \
  "$lb --root $pullstore pull -q $img"
"$lb" --root "$pullstore" run --rm "$img" ls /layer5 >/dev/null && echo "pulled image runs"

python3 - "$out/medians.tsv" <<'PY' | tee "$out/summary.md"
import sys
m = {}
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    k, v = line.split()
    m[k] = float(v)
print("| operation | peer | peer s | lb s | lb/peer | target |")
print("|---|---|---|---|---|---|")
for op, peer in (("push", "skopeo"), ("pull", "podman")):
    p, l = m[f"{peer}-{op}"], m[f"lb-{op}"]
    print(f"| {op} | {peer} | {p:.3f} | {l:.3f} | {l/p:.2f} | 0.7 |")
PY
