# Interleaved timing of commands that drift together (builds on one machine): every round
# runs each command once, in rotating order, after an optional prepare command; medians and
# ratios to the first command. Block-wise runs (hyperfine's) drifted +-15% here between
# blocks, even for fully cached builds; interleaving puts the drift on every command alike.
#
# Run: python3 benches/interleave.py '{"runs": 40, "prepare": "SHELL CMD",
#        "cmds": {"old": "CMD ...", "new": "CMD ..."}}'
# Issue 14's table (small case; old = the binary of 3b4a925, each its own store with the
# peers' busybox base imported as lbbase/busybox:latest):
#   cmds old/new/newhost = "$LB --root STORE build -q [--no-cache] [--network host] -t x CTX/small",
#   prepare for edit = "date +%s%N > CTX/small/edit.txt".
# Interleaved timing: each round runs every command once (after the prepare), in rotating order.
import subprocess, sys, time, statistics, shlex, json
cfg = json.loads(sys.argv[1])
cmds = cfg["cmds"]; prep = cfg.get("prepare"); runs = cfg.get("runs", 30); warm = cfg.get("warmup", 2)
times = {n: [] for n in cmds}
names = list(cmds)
for r in range(warm + runs):
    order = names[r % len(names):] + names[:r % len(names)]
    for n in order:
        if prep: subprocess.run(prep, shell=True)
        t = time.perf_counter()
        p = subprocess.run(shlex.split(cmds[n]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t
        if p.returncode != 0: print(n, "FAILED", p.stderr.decode()[-300:]); sys.exit(1)
        if r >= warm: times[n].append(dt * 1000)
base = statistics.median(times[names[0]])
for n in names:
    m = statistics.median(times[n])
    print(f"{n:12} median {m:7.2f} ms  mean {statistics.mean(times[n]):7.2f}  /{names[0]} {m/base:.3f}")
