"""Diagnosis, not a benchmark: where the CPUs went in each load round of a
scheduler trace of `scripts/bench` (2026-12-04-sched-rounds.sh records it;
docs/design/performance.md, "The closed loop in a scheduler trace").

Reads `perf script -F comm,pid,tid,cpu,time,event,trace` of sched_switch,
sched_waking and sched_wakeup(_new) on stdin. A round is the life of one load
generator process (cmx-kms-bench, longer than 3 s); the rounds are printed in
the order they ran, which is the order scripts/bench prints their rows in.
Per round:
  - for the load generator, the server (tokio workers, cmx-kms, nginx) and the
    build (rustc and its helpers): the CPUs each class ran on and the CPUs'
    worth of time its threads were runnable but waiting for a CPU; the idle
    CPUs; wake-ups and preemptions per second;
  - every wake-up of a load generator or server thread, classed by who woke
    it, whether its previous CPU and the other CPU were idle at that moment
    (2 CPUs assumed), and where it was put (its previous CPU, the waker's),
    with how long it then waited to run: rows under 3 % of their class left
    out.
usage: perf script -i DATA -F comm,pid,tid,cpu,time,event,trace | python3 THIS
"""

import re
import sys
from collections import Counter, defaultdict

SWITCH = re.compile(
    r"^\s*(.*?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch: "
    r"prev_comm=.*? prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> "
    r"next_comm=.*? next_pid=(\d+) next_prio=\d+"
)
WAKE = re.compile(
    r"^\s*(.*?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:sched_(waking|wakeup|wakeup_new): "
    r"comm=(.*?) pid=(\d+) prio=\d+ target_cpu=(\d+)"
)
BUILD = ("rustc", "rust-lld", "cargo", "cc", "ld", "build-script", "memfd:", "opt ", "LLVM")


def parse(lines):
    events, comm, pid_of = [], {}, {}
    for line in lines:
        m = SWITCH.match(line)
        if m:
            t, cpu = float(m[5]), int(m[4])
            events.append(("switch", t, cpu, int(m[6]), m[7], int(m[8])))
            comm[int(m[3])], pid_of[int(m[3])] = m[1].strip(), int(m[2])
            continue
        m = WAKE.match(line)
        if m:
            kind = "waking" if m[6] == "waking" else "wakeup"
            events.append((kind, float(m[5]), int(m[4]), int(m[8]), int(m[3]), int(m[9])))
            comm[int(m[3])], pid_of[int(m[3])] = m[1].strip(), int(m[2])
            comm.setdefault(int(m[8]), m[7])
    return events, comm, pid_of


class Classes:
    def __init__(self, comm, pid_of):
        self.comm, self.pid_of = comm, pid_of
        self.load_pids = {pid_of.get(t, t) for t, c in comm.items() if c.startswith("cmx-kms-bench")}

    def of(self, tid):
        if tid == 0:
            return "idle"
        if self.pid_of.get(tid, tid) in self.load_pids:
            return "load"
        c = self.comm.get(tid, "")
        if c.startswith(("tokio-rt-worker", "cmx-kms", "nginx", "audit-")):
            return "server"
        if c.startswith(BUILD) or "cgu" in c:
            return "build"
        return "other"


def rounds(events, classes):
    span = {}
    for e in events:
        if e[0] != "switch":
            continue
        for tid in (e[3], e[5]):
            p = classes.pid_of.get(tid, tid)
            if p in classes.load_pids:
                a, b = span.get(p, (e[1], e[1]))
                span[p] = (min(a, e[1]), max(b, e[1]))
    return sorted((a, b, p) for p, (a, b) in span.items() if b - a > 3)


def overlap(windows, t0, t1):
    for a, b, p in windows:
        lo, hi = max(a, t0), min(b, t1)
        if hi > lo:
            yield p, hi - lo


def within(windows, t):
    return next((p for a, b, p in windows if a <= t <= b), None)


def account(events, classes, windows):
    """Running, waiting and idle time per round and class; wake-up placement."""
    time = defaultdict(Counter)  # round -> (class, running|waiting) -> s
    count = defaultdict(Counter)  # round -> (class, wake|preempted) -> n
    place = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))  # round -> key -> [n, wait s]
    state, on_cpu, ran_on = {}, {}, {}
    waking = {}  # wakee -> (round, t, waker's CPU, its previous CPU, CPUs idle, waker's class)
    placed = {}  # wakee -> (round, key, t): put on a CPU, not yet running
    for e in events:
        if e[0] == "switch":
            _, t, cpu, prev, prev_state, nxt = e
            if cpu in on_cpu:
                t0, tid = on_cpu[cpu]
                for p, d in overlap(windows, t0, t):
                    time[p][(classes.of(tid), "running" if tid else "idle")] += d
            on_cpu[cpu] = (t, nxt)
            ran_on[prev] = ran_on[nxt] = cpu
            if prev and prev_state.startswith("R"):
                state[prev] = t
                if (p := within(windows, t)) is not None:
                    count[p][(classes.of(prev), "preempted")] += 1
            else:
                state.pop(prev, None)
            if nxt in state:
                for p, d in overlap(windows, state.pop(nxt), t):
                    time[p][(classes.of(nxt), "waiting")] += d
            waking.pop(nxt, None)
            if nxt in placed:
                p, key, t0 = placed.pop(nxt)
                place[p][key][0] += 1
                place[p][key][1] += t - t0
        elif e[0] == "waking":
            _, t, cpu, wakee, waker, _target = e
            p = within(windows, t)
            if p is None or classes.of(wakee) not in ("load", "server") or wakee not in ran_on:
                continue
            prev_cpu = ran_on[wakee]
            idle = {c: on_cpu.get(c, (0, 0))[1] == 0 for c in (0, 1)}
            placed.pop(wakee, None)
            waking[wakee] = (p, t, cpu, prev_cpu, idle, classes.of(waker))
        else:
            _, t, cpu, wakee, _waker, target = e
            if wakee not in state:
                state[wakee] = t
                if (p := within(windows, t)) is not None:
                    count[p][(classes.of(wakee), "wake")] += 1
            if wakee in waking:
                p, t0, waker_cpu, prev_cpu, idle, waker_class = waking.pop(wakee)
                where = ("previous CPU" if target == prev_cpu else "other CPU") + (
                    " = waker's" if target == waker_cpu else ""
                )
                key = (
                    classes.of(wakee),
                    waker_class,
                    "idle" if idle.get(prev_cpu) else "busy",
                    "idle" if idle.get(1 - prev_cpu) else "busy",
                    where,
                )
                placed[wakee] = (p, key, t0)
    return time, count, place


def report(windows, time, count, place):
    for n, (a, b, p) in enumerate(windows, 1):
        d = b - a
        tm, ct = time[p], count[p]
        parts = [
            f"{c} ran {tm[(c, 'running')] / d:.2f} waited {tm[(c, 'waiting')] / d:.2f} "
            f"(wakes/s {ct[(c, 'wake')] / d:.0f}, preempted/s {ct[(c, 'preempted')] / d:.0f})"
            for c in ("load", "server", "build")
        ]
        print(f"round {n} (load generator {p}, {d:.1f} s): idle {tm[('idle', 'idle')] / d:.2f} CPUs")
        for part in parts:
            print(f"    {part}")
        total = Counter()
        for key, (k, _) in place[p].items():
            total[key[0]] += k
        print("    wake-ups: wakee, waker, its previous CPU, the other CPU, put on: count, mean wait, CPUs waited")
        for key, (k, w) in sorted(place[p].items(), key=lambda kv: (kv[0][0], -kv[1][0])):
            if k < 0.03 * total[key[0]]:
                continue
            print(
                f"      {key[0]:6} by {key[1]:6} prev {key[2]:4} other {key[3]:4} -> {key[4]:22}"
                f" {k:6d} ({100 * k / total[key[0]]:3.0f} %) {1e6 * w / k:6.0f} us  {w / d:.3f}"
            )


def main():
    events, comm, pid_of = parse(sys.stdin)
    classes = Classes(comm, pid_of)
    windows = rounds(events, classes)
    report(windows, *account(events, classes, windows))


if __name__ == "__main__":
    main()
