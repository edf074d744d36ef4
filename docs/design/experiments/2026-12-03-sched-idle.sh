#!/usr/bin/env bash
# Diagnosis, not a benchmark: who wakes whom while a cmx-kms node is under the
# decrypt hot-path load, and what ends the CPUs' idle periods
# (docs/design/performance.md, "The runtime's LIFO slot"). For each binary
# given, in turn: a dev node with one key chain, the closed-loop load of
# scripts/bench-pair (64 keep-alive connections), and, in the middle of the
# load, `perf record` of the scheduler's waking and switch tracepoints on
# all CPUs for SECONDS; then 2026-12-03-sched-idle.py reads the trace.
# usage: docs/design/experiments/2026-12-03-sched-idle.sh SECONDS BIN...
# Needs root (tracepoints), perf, and target/release/cmx-kms-bench
# (cargo build --release -p cmx-kms-bench).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
SECONDS_TRACED=$1
shift
BENCH=$ROOT/target/release/cmx-kms-bench
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cmx-kms-sched.XXXXXX")
SERVE_PID="" LOAD_PID="" DEV_PID=""
cleanup() {
    set +e
    for p in "$SERVE_PID" "$LOAD_PID" "$DEV_PID"; do
        [ -n "$p" ] && kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
. "$ROOT/scripts/lib/free-port.sh"
. "$ROOT/scripts/lib/dev-node.sh"

for bin in "$@"; do
    bin=$(realpath "$bin")
    port=$(free_port)
    rm -rf "$WORK/node"
    dev_node "$bin" "$WORK/node" "$port" "$WORK"
    CMX_KMS_LOG=warn "$bin" serve -c "$WORK/node/kms.properties" >"$WORK/serve.log" 2>&1 &
    SERVE_PID=$!
    "$BENCH" wait --addr "127.0.0.1:$port"
    "$BENCH" load --label traced --addr "127.0.0.1:$port" --ca "$WORK/node/ca.crt" \
        --cert "$WORK/node/cmxDevice.crt" --key "$WORK/node/cmxDevice.key" \
        --body "$WORK/decrypt-request.json" --connections 64 \
        --warmup-s 1 --duration-s "$((SECONDS_TRACED + 3))" --out "$WORK/load.jsonl" >/dev/null &
    LOAD_PID=$!
    sleep 2
    perf record -q -a -e sched:sched_waking -e sched:sched_switch -o "$WORK/perf.data" \
        -- sleep "$SECONDS_TRACED" 2>/dev/null
    echo "## $bin"
    perf script -i "$WORK/perf.data" -F tid,cpu,time,event,trace 2>/dev/null |
        python3 "$HERE/2026-12-03-sched-idle.py" "$SERVE_PID" "$LOAD_PID" "$SECONDS_TRACED"
    wait "$LOAD_PID"
    LOAD_PID=""
    kill -TERM "$SERVE_PID"
    wait "$SERVE_PID" || true
    SERVE_PID=""
done
