#!/usr/bin/env bash
# Diagnosis (docs/design/performance.md, "Paced p99: the build or the host"):
# paced rounds against two nodes of two cmx-kms binaries side by side, A and B,
# with the same keys (one `dev` folder, made by B, copied for A's twin), the
# rounds alternating which node goes first. One load generator line per round
# (p50, p99, the server's CPU per request).
#
# usage: 2026-12-04-paced-builds.sh BIN_A BIN_B [ROUNDS] [RATE]
#   BIN_A, BIN_B  the two cmx-kms binaries (e.g. an earlier shipped build made
#                 by scripts/build-release in a worktree of its commit)
#   ROUNDS        rounds per node (10); RATE requests/s in all (10000)
# Needs the load generator built (target/release/cmx-kms-bench).
set -euo pipefail
cd "$(dirname "$0")/../../.."
A=$(readlink -f "$1") B=$(readlink -f "$2") ROUNDS=${3:-10} RATE=${4:-10000}
BENCH=$PWD/target/release/cmx-kms-bench
. scripts/lib/free-port.sh
. scripts/lib/dev-node.sh
WORK=$(mktemp -d /tmp/paced-builds.XXXX)
USED=""
PA=$(free_port)
USED="$PA"
PB=$(free_port)
mkdir -p "$WORK/A"
dev_node "$B" "$WORK/A" "$PA" "$WORK"
cp -a "$WORK/A" "$WORK/B"
node_property "$WORK/B" "kms.server.port=$PB"
node_property "$WORK/B" "kms.audit.file=$WORK/B/audit.log"
pids=()
(cd "$WORK/A" && CMX_KMS_LOG=warn exec "$A" serve -c "$WORK/A/kms.properties" >"$WORK/A.log" 2>&1) &
pids+=($!)
(cd "$WORK/B" && CMX_KMS_LOG=warn exec "$B" serve -c "$WORK/B/kms.properties" >"$WORK/B.log" 2>&1) &
pids+=($!)
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$WORK"' EXIT
"$BENCH" wait --addr "127.0.0.1:$PA"
"$BENCH" wait --addr "127.0.0.1:$PB"
round() { # label port pid
    "$BENCH" load --label "$1" --addr "127.0.0.1:$2" --ca "$WORK/A/ca.crt" \
        --cert "$WORK/A/cmxDevice.crt" --key "$WORK/A/cmxDevice.key" \
        --body "$WORK/decrypt-request.json" --connections 64 --rate "$RATE" \
        --warmup-s 2 --duration-s 10 --server-pid "$3" --out "$WORK/res.jsonl" |
        { grep "req/s" || true; }
}
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        round A "$PA" "${pids[0]}"
        round B "$PB" "${pids[1]}"
    else
        round B "$PB" "${pids[1]}"
        round A "$PA" "${pids[0]}"
    fi
done
