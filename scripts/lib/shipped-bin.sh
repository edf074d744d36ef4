#!/usr/bin/env bash
# Shared by the benchmark scripts, scripts/build-release and scripts/pgo-train
# (sourced, not run).

. "$(dirname "${BASH_SOURCE[0]}")/glibc.sh"

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
        BIN_KIND="glibc 2.28 build, profile-guided (as shipped; profile $(pgo_trained "$root"))"
    else
        BIN=$root/target/release/cmx-kms
        BIN_KIND="host build, not profile-guided (zig toolchain not installed)"
    fi
    if [ -n "$override" ]; then
        BIN_GIVEN=1
        BIN=$(realpath "$override")
        if ldd "$BIN" 2>&1 | grep 'libc\.so' >/dev/null; then
            # The newest glibc symbol version it needs tells the glibc 2.28
            # build from a host build.
            local needs
            needs=$(glibc_versions "$BIN" 2>/dev/null | glibc_newest)
            BIN_KIND="given binary, dynamic, newest glibc symbol version ${needs:-unknown}, glibc $(ldd --version 2>&1 | sed -n 1p | grep -o '[0-9.]*$') here"
        else
            BIN_KIND="given binary, static"
        fi
    fi
}

# pgo_commit ROOT: the commit the shipped build's profile was trained at
# (packaging/pgo/TRAINED, written by scripts/pgo-train); empty without one.
pgo_commit() {
    sed -n 's/^commit: \([0-9a-f]*\).*/\1/p' "$1/packaging/pgo/TRAINED" 2>/dev/null || true
}

# pgo_trained ROOT: that commit, short, and the training's date, for a record.
pgo_trained() {
    local commit
    commit=$(pgo_commit "$1")
    if [ -n "$commit" ]; then
        echo "trained at ${commit:0:9} on $(sed -n 's/^date: //p' "$1/packaging/pgo/TRAINED")"
    else
        echo "missing"
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

# What the cmx-kms code is built from (relative to the workspace root): its
# tests and test data are not, so editing them leaves the binary current.
CODE_SOURCES=(kms/src kms/Cargo.toml Cargo.toml Cargo.lock .cargo/config.toml)
# What the shipped binary is built from: the code and the profile of
# scripts/pgo-train.
BIN_SOURCES=("${CODE_SOURCES[@]}" packaging/pgo)

# refuse_stale_record ROOT RECORD: set STALE to a file of BIN_SOURCES changed
# since BIN was built (empty when none is, or when BIN was given with --bin),
# and, when RECORD is 1, stop there: a binary left by an earlier build
# (--no-build) must not have its figures recorded under the current commit.
refuse_stale_record() {
    local root=$1 record=$2
    STALE=""
    if [ -x "$BIN" ] && [ "$BIN_GIVEN" = 0 ]; then
        STALE=$(cd "$root" && find "${BIN_SOURCES[@]}" -type f -newer "$BIN" 2>/dev/null | sed -n 1p)
    fi
    if [ -n "$STALE" ] && [ "$record" = 1 ]; then
        echo "scripts/$(basename "$0"): $BIN is older than its sources ($STALE changed since it was built): build it (run without --no-build) or name a binary with --bin; nothing recorded" >&2
        exit 1
    fi
}

# bin_origin ROOT: what BIN was built from, for a record: the commit when
# this run built it or no source changed since (refuse_stale_record), else
# the binary's own date beside the commit.
bin_origin() {
    local root=$1 head dirty=""
    head=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
    git -C "$root" diff --quiet HEAD -- "${BIN_SOURCES[@]}" 2>/dev/null || dirty=" with uncommitted changes"
    if [ "$BIN_GIVEN" = 1 ]; then
        echo "a given binary of $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'), the tree at $head$dirty"
    elif [ -n "${STALE:-}" ]; then
        echo "a binary of $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'), older than the tree at $head$dirty"
    else
        echo "$head$dirty"
    fi
}
