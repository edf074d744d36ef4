#!/usr/bin/env bash
# Shared by the benchmark scripts (sourced, not run).

# free_port [ADDRESS...]: print a TCP port below the kernel's ephemeral range
# that nothing listens on at any ADDRESS (default 127.0.0.1) and that is not
# in $USED. Called as $(free_port): the caller adds each port it takes to
# USED itself.
free_port() {
    local p i ip busy
    [ $# -gt 0 ] || set -- 127.0.0.1
    for i in $(seq 1 50); do
        p=$((20000 + RANDOM % 12000))
        case " ${USED:-} " in *" $p "*) continue ;; esac
        busy=0
        for ip in "$@"; do
            if (exec 3<>"/dev/tcp/$ip/$p") 2>/dev/null; then busy=1; fi
        done
        if [ "$busy" = 0 ]; then echo "$p"; return 0; fi
    done
    echo "scripts/$(basename "$0"): no free port found" >&2
    return 1
}
