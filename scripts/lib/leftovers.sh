#!/usr/bin/env bash
# Shared by scripts/test and scripts/test-busy (sourced, not run): no process
# a test starts (cmx-kms, PyKMIP, OpenBao, ...) may outlive the tests, and no
# temporary file either.
#
# Each run puts a mark in the environment of the `cargo test` it starts
# (inherited by every process a test spawns; not a CMX_KMS_* name, which the
# server reads as configuration), so this run's leftovers are found exactly
# and processes of other runs on the same machine are left alone.

# new_run_mark: print a fresh NAME=VALUE mark for `env "$mark" cargo test ...`.
new_run_mark() {
    echo "TEST_RUN_MARK_CMXKMS=$$-$(date +%s%N)"
}

# leftovers MARK: print "PID COMMAND LINE" for each process whose environment
# carries MARK.
leftovers() {
    local mark=$1 e pid
    for e in /proc/[0-9]*/environ; do
        pid=${e#/proc/}
        pid=${pid%/environ}
        if { tr '\0' '\n' <"$e"; } 2>/dev/null | grep -xF "$mark" >/dev/null; then
            echo "$pid $({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)"
        fi
    done
}

# reap_leftovers MARK: give this run's processes 10 s to exit; list those
# still running on stderr, kill them and return 1. Returns 0 when none is left.
reap_leftovers() {
    local mark=$1 left=""
    for _ in $(seq 1 20); do
        left="$(leftovers "$mark")"
        [ -z "$left" ] && return 0
        sleep 0.5
    done
    echo "these processes outlived the tests (killed now):" >&2
    printf '%s\n' "$left" >&2
    printf '%s\n' "$left" | awk '{print $1}' | xargs -r kill -9 || true
    return 1
}

# new_run_tmpdir: make a fresh folder for the tests' TMPDIR and print its
# path. Every temporary file or folder a test (or a peer it starts) makes
# without naming another place goes there, so whatever is still in it when
# the tests and their processes have ended is a leftover. Short, under /tmp:
# Unix socket paths inside it must stay under 108 bytes. Open to every user,
# sticky, as /tmp is: some tests run the node as `nobody`.
new_run_tmpdir() {
    local dir
    dir=$(mktemp -d /tmp/cmxt.XXXXXX)
    chmod 1777 "$dir"
    echo "$dir"
}

# reap_leftover_files DIR: after reap_leftovers. Lists on stderr what the
# tests left in DIR (up to 20 paths) and returns 1; removes DIR either way.
# Returns 0 when DIR was empty.
reap_leftover_files() {
    local dir=$1 left
    left="$(find "$dir" -mindepth 1 -maxdepth 2 | awk 'NR <= 20')"
    rm -rf -- "$dir"
    [ -z "$left" ] && return 0
    echo "these temporary files outlived the tests (removed now):" >&2
    printf '%s\n' "$left" >&2
    return 1
}
