#!/usr/bin/env bash
# Shared by the benchmark scripts (sourced, not run).

# dev_node BIN DIR PORT WORK: make a `cmx-kms dev` node in DIR listening on
# 127.0.0.1:PORT, have the load generator ($BENCH) create one customer → user
# → workspace key chain (WORK/decrypt-request.json is the request that
# decrypts it), stop the node, and set up its kms.properties for load runs:
# no per-device rate limit, no metrics listener. While the node runs its
# process id is in DEV_PID, for the caller's cleanup.
dev_node() {
    local bin=$1 dir=$2 port=$3 work=$4
    CMX_KMS_METRICS_PORT=0 CMX_KMS_LOG=warn "$bin" dev --dir "$dir" --port "$port" >"$work/dev.log" 2>&1 &
    DEV_PID=$!
    if ! "$BENCH" wait --addr "127.0.0.1:$port" ||
        ! "$BENCH" chain --dir "$dir" --addr "127.0.0.1:$port" --out "$work" >&2; then
        echo "scripts/$(basename "$0"): the dev node did not come up (its output: $work/dev.log)" >&2
        return 1
    fi
    kill -TERM "$DEV_PID"
    wait "$DEV_PID" || true
    DEV_PID=""
    node_property "$dir" kms.limits.device.rate=0
    node_property "$dir" kms.metrics.port=0
}

# node_property DIR KEY=VALUE: set one property in DIR/kms.properties, in
# place of any line that set it (a key may be set only once), keeping the
# file's mode. The benchmarks' own settings and their --property use it.
node_property() {
    local dir=$1 key=${2%%=*}
    if [ "$key" = "$2" ] || [ -z "$key" ]; then
        echo "scripts/$(basename "$0"): --property wants KEY=VALUE, not '$2'" >&2
        return 64
    fi
    grep -v "^${key//./\\.}=" "$dir/kms.properties" >"$dir/kms.properties.new" || true
    printf '%s\n' "$2" >>"$dir/kms.properties.new"
    cat "$dir/kms.properties.new" >"$dir/kms.properties" # keeps the file's mode
    rm -f "$dir/kms.properties.new"
}
