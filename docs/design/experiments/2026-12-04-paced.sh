#!/usr/bin/env bash
# Diagnosis (docs/design/performance.md, "Paced latency and the worker count"):
# paced rounds against two nodes of one cmx-kms binary, A as it starts by
# default and B with one environment variable set (for a build with
# 2026-12-04-paced-toggles.patch: DIAG_EAGER, tokio's eager driver hand-off, or
# DIAG_NO_YIELD, the audit record never yielding), and nginx with its log off,
# the rounds alternating A and B, nginx after each pair. Per round: the load
# generator's line (p50, p99, the server's CPU per request) and how many times
# the server's threads were put on a CPU per request (schedstat's third field,
# summed over the threads, over warm-up and measured window).
#
# usage: 2026-12-04-paced.sh WORK BIN [RATE] [ROUNDS] [B_ENV]
#   WORK   a work folder kept by `scripts/bench --keep` (its node, nginx
#          configuration and decrypt request are used; nothing else)
#   BIN    the cmx-kms binary for both nodes
#   RATE   requests/s in all (10000); ROUNDS pairs (4); B_ENV (DIAG_EAGER)
# Needs the load generator built (target/release/cmx-kms-bench) and nginx.
set -uo pipefail
cd "$(dirname "$0")/../../.."
W=$1 BIN=$2 RATE=${3:-10000} ROUNDS=${4:-4} B_ENV=${5:-DIAG_EAGER}
BENCH=$PWD/target/release/cmx-kms-bench NODE=$W/node
slices() {
    local s=0 f v p
    for p in "$@"; do
        for f in /proc/"$p"/task/*/schedstat; do
            v=$(cut -d' ' -f3 "$f" 2>/dev/null) && s=$((s + ${v:-0}))
        done
    done
    echo "$s"
}
KP=$(sed -n 's/^kms.server.port=//p' "$NODE/kms.properties")
sed -e "s/^kms.server.port=.*/kms.server.port=$((KP + 7))/" \
    -e "s|^kms.audit.file=.*|kms.audit.file=$W/audit-b.log|" \
    "$NODE/kms.properties" >"$NODE/kms-b.properties"
CMX_KMS_LOG=warn "$BIN" serve -c "$NODE/kms.properties" 2>"$W/node-a.log" &
KA=$!
env "$B_ENV=1" CMX_KMS_LOG=warn "$BIN" serve -c "$NODE/kms-b.properties" 2>"$W/node-b.log" &
KB=$!
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
"$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" 2>"$W/nginx-diag.log" &
NGM=$!
trap 'kill $KA $KB $NGM 2>/dev/null' EXIT
NGP=$(grep -o "listen 127.0.0.1:[0-9]*" "$W/nginx/nginx.conf" | head -1 | cut -d: -f2)
for p in "$KP" $((KP + 7)) "$NGP"; do "$BENCH" wait --addr "127.0.0.1:$p"; done
sleep 1
NGW=$(pgrep -P "$NGM" | tr '\n' ' ')
one() { # LABEL PORT PID...
    local label=$1 port=$2 before after out p args=()
    shift 2
    for p in "$@"; do args+=(--server-pid "$p"); done
    before=$(slices "$@")
    out=$("$BENCH" load --label "$label" --addr "127.0.0.1:$port" --ca "$NODE/ca.crt" \
        --cert "$NODE/cmxDevice.crt" --key "$NODE/cmxDevice.key" --body "$W/decrypt-request.json" \
        --connections 64 --rate "$RATE" --warmup-s 1 --duration-s 8 "${args[@]}" \
        --out "$W/results-diag.jsonl" | grep "req/s")
    after=$(slices "$@")
    echo "$out  on a CPU per request $(echo "scale=3; ($after - $before) / ($RATE * 9)" | bc)"
}
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        one "A" "$KP" "$KA"
        one "B $B_ENV" $((KP + 7)) "$KB"
    else
        one "B $B_ENV" $((KP + 7)) "$KB"
        one "A" "$KP" "$KA"
    fi
    # shellcheck disable=SC2086 # the workers' pids, one word each
    one "nginx" "$NGP" "$NGM" $NGW
done
