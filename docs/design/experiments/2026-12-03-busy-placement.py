"""Diagnosis, not a benchmark: on which CPU the threads of a hot-path run are
runnable while other work (a build) competes for the CPUs
(docs/design/performance.md, "On a busy host: where the requests/s go").

Run it beside `scripts/bench` or `scripts/bench-series` for SECONDS. Every
10 ms it reads, for each thread of cmx-kms, nginx, the load generator
(cmx-kms-bench) and rustc, the state and the CPU it last ran on
(/proc/PID/task/TID/stat, fields 3 and 39); a thread in state R is running or
waiting for that CPU. It prints one line per second: which server was loaded
(the one with more runnable samples), then CLASS@CPU=N, N being the mean
number of that class's threads runnable on that CPU, and at the end, per
server, the mean share of the server's and load generator's runnable samples
that fell on the busier of two CPUs (1.0: all of them crowded on one CPU).

usage: python3 2026-12-03-busy-placement.py SECONDS
"""

import os
import sys
import time
from collections import Counter

CLASSES = ("cmx", "nginx", "client", "build")


def classify(comm):
    if comm.startswith("cmx-kms-bench"):
        return "client"
    if comm.startswith("cmx-kms"):
        return "cmx"
    if comm.startswith("nginx"):
        return "nginx"
    if comm == "rustc":
        return "build"
    return None


def threads():
    """(class, stat path) of every thread of the classified processes."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                cls = classify(f.read().strip())
            if cls is not None:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    found.append((cls, f"/proc/{pid}/task/{tid}/stat"))
        except OSError:
            continue
    return found


def runnable_on(path):
    """The CPU the thread last ran on if it is runnable now, else None."""
    try:
        with open(path) as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[36] if fields[0] == "R" else None


def main():
    seconds = float(sys.argv[1])
    start = time.monotonic()
    listed, current = start, threads()
    second, counts, samples, per_second = 0, Counter(), 0, []
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if now - listed > 0.5:
            listed, current = now, threads()
        if int(now - start) != second:
            per_second.append((samples, counts))
            second, counts, samples = int(now - start), Counter(), 0
        for cls, path in current:
            cpu = runnable_on(path)
            if cpu is not None:
                counts[(cls, cpu)] += 1
        samples += 1
        time.sleep(0.01)

    crowding = {"cmx": [], "nginx": []}
    for i, (n, c) in enumerate(per_second):
        n = n or 1
        cpus = sorted({cpu for (_, cpu) in c})
        server = "cmx" if sum(c[("cmx", x)] for x in cpus) > sum(c[("nginx", x)] for x in cpus) else "nginx"
        cells = " ".join(
            f"{cls}@{x}={c[(cls, x)] / n:.2f}" for cls in CLASSES for x in cpus if c[(cls, x)]
        )
        print(f"{i:4d} {server:6s} {cells}")
        per_cpu = [(c[(server, x)] + c[("client", x)]) / n for x in cpus]
        if sum(per_cpu) > 1:
            crowding[server].append(max(per_cpu) / sum(per_cpu))
    for server, shares in crowding.items():
        if shares:
            crowded = sum(1 for s in shares if s > 0.9)
            print(
                f"{server}: {len(shares)} s loaded; share of its and the load generator's runnable "
                f"samples on the busier CPU: mean {sum(shares) / len(shares):.2f}, above 0.9 in {crowded} s"
            )


if __name__ == "__main__":
    main()
