#!/usr/bin/env python3
"""Two (or more) builds of the connector compared on one envelope, run by turns.

This machine's speed drifts by tens of percent from one minute to the next (a shared
host), so medians taken one build after the other compare the minutes, not the
builds. Here the builds run alternately (A B, B A, A B, ...) and each run of a build is
set against the run of the first build beside it: the median of those ratios is the
figure to quote, with each build's median wall time, CPU time and peak RSS.

Usage: scripts/ab-runs.py ENVELOPE RUNS BINARY [BINARY ...]
  e.g. scripts/ab-runs.py /tmp/org30/envelope-replay.json 10 /tmp/before target/release/msgraph-connector
Each run is `BINARY $AB_ARGS run ACTION < ENVELOPE` (ACTION: $AB_ACTION, default
evaluate_ip_presence; AB_ARGS: options before `run`, e.g. `--state-dir DIR`) under GNU
/usr/bin/time, stdout discarded. Start-up, e.g.:
  AB_ACTION=get_presence AB_ARGS="--state-dir /tmp/st" scripts/ab-runs.py envelope.json 300 /tmp/before target/release/msgraph-connector
"""
import os
import statistics
import subprocess
import sys
import time


def one(binary, action, envelope):
    args = os.environ.get("AB_ARGS", "").split()
    with open(envelope, "rb") as stdin:
        started = time.perf_counter()
        p = subprocess.run(
            ["/usr/bin/time", "-f", "%U %S %M", binary, *args, "run", action],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wall = time.perf_counter() - started
    if p.returncode != 0:
        sys.exit(f"{binary} exited with {p.returncode}: {p.stderr.strip()[-500:]}")
    user, system, rss = p.stderr.strip().splitlines()[-1].split()
    return wall, float(user) + float(system), int(rss) / 1024


def seconds(s):
    return f"{s:.3f} s" if s >= 0.1 else f"{s * 1000:.2f} ms"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    envelope, runs, binaries = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    action = os.environ.get("AB_ACTION", "evaluate_ip_presence")
    results = {b: [] for b in binaries}
    for i in range(runs):
        for b in binaries if i % 2 == 0 else binaries[::-1]:
            results[b].append(one(b, action, envelope))
    med = statistics.median
    for b in binaries:
        r = results[b]
        print(
            f"{b}: wall median {seconds(med(x[0] for x in r))} (min {seconds(min(x[0] for x in r))}),"
            f" cpu median {med(x[1] for x in r):.2f} s, peak RSS median {med(x[2] for x in r):.1f} MiB"
        )
    base = results[binaries[0]]
    for b in binaries[1:]:
        ratio = med(results[b][i][0] / base[i][0] for i in range(runs))
        print(f"{b} / {binaries[0]}: median wall ratio {ratio:.3f} over {runs} pairs")


if __name__ == "__main__":
    main()
