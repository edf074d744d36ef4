#!/usr/bin/env bash
# Diagnosis, not a benchmark: a scheduler trace of scripts/bench's hot-path
# rounds (docs/design/performance.md, "The closed loop in a scheduler trace").
# Runs scripts/bench with ROUNDS short rounds per server (4 s measured, the
# other parts of the benchmark skipped) under `perf record` of the switch and
# wake-up tracepoints on all CPUs, then reads the trace with
# 2026-12-04-sched-rounds.py. Tracing costs both servers alike; the rounds'
# requests/s are not the benchmark's figures. Writes OUT.bench (scripts/bench's
# output), OUT.data (the trace) and OUT.rounds (the reading).
# usage: docs/design/experiments/2026-12-04-sched-rounds.sh OUT [ROUNDS] [scripts/bench options]
# Needs root (tracepoints), perf, and release builds of cmx-kms and
# cmx-kms-bench (scripts/bench --no-build uses them).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
OUT=$(realpath -m "$1")
ROUNDS=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
cd "$ROOT"
perf record -q -a -e sched:sched_switch -e sched:sched_waking -e sched:sched_wakeup \
    -e sched:sched_wakeup_new -o "$OUT.data" -- \
    scripts/bench --no-build --rounds "$ROUNDS" --duration 4 --warmup 1 --paced-rate 0 \
    --handshake-clients 0 --idle 0 --idle-large 0 --starts 1 "$@" >"$OUT.bench" 2>&1
grep 'req/s' "$OUT.bench"
perf script -i "$OUT.data" -F comm,pid,tid,cpu,time,event,trace 2>/dev/null |
    python3 "$HERE/2026-12-04-sched-rounds.py" >"$OUT.rounds"
cat "$OUT.rounds"
