"""Read `perf script -F tid,cpu,time,event,trace` of sched_waking and
sched_switch from stdin (sched_waking, not sched_wakeup: a wake-up of a task on
an idle CPU is finished on that CPU, in its idle task, so only sched_waking
names the thread that woke it); print who woke whom, and which wake-ups ended the
CPUs' idle periods (how many, how much idle time before them, median length).
argv: SERVER_PID LOAD_PID SECONDS. Diagnosis only (2026-12-03-sched-idle.sh)."""

import os
import re
import statistics
import sys
from collections import defaultdict

server_pid, load_pid, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])


def threads(pid):
    try:
        return {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    except OSError:
        return set()


server, load = threads(server_pid), threads(load_pid)


def party(tid):
    if tid == 0:
        return "idle/irq"
    if tid in server:
        return "server"
    if tid in load:
        return "client"
    return "other"


line_re = re.compile(r"^\s*(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$")
wakes = defaultdict(int)
idle_since = {}  # cpu -> time it went idle
last_wake = {}  # (cpu, wakee tid) -> waker's party, since the cpu went idle
ended = defaultdict(list)  # (waker party, wakee party) -> idle lengths in s
total_idle = 0.0
for line in sys.stdin:
    m = line_re.match(line)
    if not m:
        continue
    tid, cpu, t, event, trace = int(m[1]), int(m[2]), float(m[3]), m[4], m[5]
    fields = dict(re.findall(r"(\w+)=(\S+)", trace))
    if event == "sched_waking":
        wakee, target = int(fields["pid"]), int(fields["target_cpu"])
        wakes[(party(tid), party(wakee))] += 1
        last_wake[(target, wakee)] = party(tid)
    elif event == "sched_switch":
        prev, nxt = int(fields["prev_pid"]), int(fields["next_pid"])
        if nxt == 0:
            idle_since[cpu] = t
        elif prev == 0 and cpu in idle_since:
            length = t - idle_since.pop(cpu)
            total_idle += length
            waker = last_wake.get((cpu, nxt), "no wake seen")
            ended[(waker, party(nxt))].append(length)
            for key in [k for k in last_wake if k[0] == cpu]:
                del last_wake[key]

print(f"traced {seconds:g} s; server threads {len(server)}, load threads {len(load)}")
print()
print("| waker | wakee | wake-ups/s |")
print("|---|---|---|")
for (waker, wakee), n in sorted(wakes.items(), key=lambda kv: -kv[1]):
    if n / seconds >= 1:
        print(f"| {waker} | {wakee} | {n / seconds:,.0f} |")
print()
print(f"CPU idle in all: {total_idle / seconds * 1000:.0f} ms per s (of {os.cpu_count()} CPUs)")
print()
print("| idle ended by: waker | wakee | periods/s | idle ms per s | median µs |")
print("|---|---|---|---|---|")
for (waker, wakee), lengths in sorted(ended.items(), key=lambda kv: -sum(kv[1])):
    if len(lengths) / seconds >= 1:
        print(
            f"| {waker} | {wakee} | {len(lengths) / seconds:,.0f} | "
            f"{sum(lengths) / seconds * 1000:.0f} | {statistics.median(lengths) * 1e6:.0f} |"
        )
