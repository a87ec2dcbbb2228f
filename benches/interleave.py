# Interleaved timing of commands that drift together (builds on one machine): every round
# runs each command once, in rotating order, after an optional prepare command; medians and
# ratios to the first command. Block-wise runs (hyperfine's) drifted +-15% here between
# blocks, even for fully cached builds; interleaving puts the drift on every command alike.
#
# Run: python3 benches/interleave.py '{"runs": 40, "prepare": "SHELL CMD",
#        "cmds": {"old": "CMD ...", "new": "CMD ..."}}'
# Optional keys: "warmup" (rounds not counted, default 2), "json_out" (a file that gets
# {"results": [{"command", "median", "mean", "min", "max", "times"}]} in seconds, the shape of
# hyperfine's --export-json), "shell": true (run the commands through `sh -c`).
# A command failing stops the run with its stderr's tail and exit status 1.
# Issue 14's table (small case; old = the binary of 3b4a925, each its own store with the
# peers' busybox base imported as lbbase/busybox:latest):
#   cmds old/new/newhost = "$LB --root STORE build -q [--no-cache] [--network host] -t x CTX/small",
#   prepare for edit = "date +%s%N > CTX/small/edit.txt".
import json
import shlex
import statistics
import subprocess
import sys
import time

cfg = json.loads(sys.argv[1])
cmds = cfg["cmds"]
prep = cfg.get("prepare")
runs = cfg.get("runs", 30)
warm = cfg.get("warmup", 2)
shell = cfg.get("shell", False)
times = {n: [] for n in cmds}
names = list(cmds)
for r in range(warm + runs):
    order = names[r % len(names):] + names[:r % len(names)]
    for n in order:
        if prep:
            subprocess.run(prep, shell=True, check=True)
        argv = ["sh", "-c", cmds[n]] if shell else shlex.split(cmds[n])
        t = time.perf_counter()
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            print(n, "FAILED", p.stderr.decode()[-300:])
            sys.exit(1)
        if r >= warm:
            times[n].append(dt * 1000)
base = statistics.median(times[names[0]])
for n in names:
    m = statistics.median(times[n])
    print(f"{n:12} median {m:7.2f} ms  mean {statistics.mean(times[n]):7.2f}  "
          f"min {min(times[n]):7.2f}  max {max(times[n]):7.2f}  /{names[0]} {m/base:.3f}")
if cfg.get("json_out"):
    results = [{
        "command": n,
        "median": statistics.median(times[n]) / 1000,
        "mean": statistics.mean(times[n]) / 1000,
        "stddev": (statistics.stdev(times[n]) if len(times[n]) > 1 else 0.0) / 1000,
        "min": min(times[n]) / 1000,
        "max": max(times[n]) / 1000,
        "times": [t / 1000 for t in times[n]],
    } for n in names]
    with open(cfg["json_out"], "w") as f:
        json.dump({"results": results}, f, indent=1)
