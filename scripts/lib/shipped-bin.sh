#!/usr/bin/env bash
# Shared by the benchmark scripts (sourced, not run).

# shipped_bin ROOT OVERRIDE: set BIN to the cmx-kms binary to measure and
# BIN_KIND to what it is, and SHIPPED to 1 when it is the glibc 2.28 build of
# scripts/build-release (what the packages hold; built when the zig toolchain
# of scripts/testbed/install-rpm-tools.sh is installed), else 0. OVERRIDE, if
# not empty, is a binary given with --bin (then BIN_GIVEN is 1).
shipped_bin() {
    local root=$1 override=$2
    local tb="${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}"
    SHIPPED=0 BIN_GIVEN=0
    if [ -x "$tb/venv-zig/bin/cargo-zigbuild" ]; then
        SHIPPED=1
        BIN=$root/target/x86_64-unknown-linux-gnu/release/cmx-kms
        BIN_KIND="glibc 2.28 build (as shipped)"
    else
        BIN=$root/target/release/cmx-kms
        BIN_KIND="host build (zig toolchain not installed)"
    fi
    if [ -n "$override" ]; then
        BIN_GIVEN=1
        BIN=$(realpath "$override")
        if ldd "$BIN" 2>&1 | grep 'libc\.so' >/dev/null; then
            BIN_KIND="given binary, dynamic, glibc $(ldd --version 2>&1 | sed -n 1p | grep -o '[0-9.]*$') here"
        else
            BIN_KIND="given binary, static"
        fi
    fi
}

# build_for_bench ROOT: build the load generator (cmx-kms-bench) and the
# cmx-kms binary shipped_bin chose (not one given with --bin). Call it as a
# plain command or in an `if` body, not after `||`: there `set -e` would not
# stop at a failed build.
build_for_bench() {
    local root=$1
    echo "== cargo build --release (cmx-kms-bench; cmx-kms: $BIN_KIND)"
    cargo build --release --locked -p cmx-kms-bench
    [ "$BIN_GIVEN" = 0 ] || return 0
    if [ "$SHIPPED" = 1 ]; then
        "$root/scripts/build-release" >/dev/null
    else
        cargo build --release --locked -p cmx-kms
    fi
}
