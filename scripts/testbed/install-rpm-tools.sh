#!/usr/bin/env bash
# Install what the installer and packaging tests need, idempotently:
#   - Debian packages rpm (rpm, rpmbuild, rpmsign, rpm2cpio), rpmlint, cpio,
#     debootstrap, binutils (readelf), file, systemd (for systemd-analyze; PID 1 stays
#     whatever it is), createrepo-c (repository metadata), dnf (the tests list
#     that repository with a real client), gnupg (signing);
#   - zig and cargo-zigbuild, pinned, in a Python venv under the testbed cache
#     dir (scripts/build-release links the shipped binaries against glibc 2.28
#     with them; prebuilt wheels, about a minute, once);
#   - cargo-generate-rpm (only if absent: compiling it takes about 10 minutes;
#     a binary already in ~/.cargo/bin is reused);
#   - a Debian 11 (bullseye) "minbase" root (bash, useradd, getent, glibc 2.31)
#     made once with debootstrap and kept as a tarball under the testbed cache
#     dir, into which the tests install our RPM with the real rpm, scriptlets
#     running, and start the server in it: the shipped binaries run on a glibc
#     older than the build machine's (RHEL 8 has 2.28; no older Debian is in
#     the archive).
# A second run does nothing.
set -euo pipefail

TB="${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}"
ROOT_TAR="$TB/rpm/debroot-minbase-bullseye.tar"
mkdir -p "$TB/rpm"

need_apt=()
command -v rpm >/dev/null 2>&1 || need_apt+=(rpm)
command -v rpmbuild >/dev/null 2>&1 || need_apt+=(rpm)
command -v rpmsign >/dev/null 2>&1 || need_apt+=(rpm)
command -v cpio >/dev/null 2>&1 || need_apt+=(cpio)
command -v createrepo_c >/dev/null 2>&1 || need_apt+=(createrepo-c)
command -v dnf >/dev/null 2>&1 || need_apt+=(dnf)
command -v gpg >/dev/null 2>&1 || need_apt+=(gnupg)
command -v gpg-agent >/dev/null 2>&1 || need_apt+=(gpg-agent)
command -v rpmlint >/dev/null 2>&1 || need_apt+=(rpmlint)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v readelf >/dev/null 2>&1 || need_apt+=(binutils)
command -v file >/dev/null 2>&1 || need_apt+=(file)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)   # unit checks (verify, security)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
    apt-get install -y -qq "${need_apt[@]}"
fi

# The versions scripts/build-release was checked with (docs/design/packaging.md).
ZIG_VENV="$TB/venv-zig"
ZIG_PINS=(ziglang==0.17.1 cargo-zigbuild==0.24.1)
if ! "$ZIG_VENV/bin/python" -m pip freeze 2>/dev/null | sort | tr '\n' ' ' |
    grep -F "cargo-zigbuild==0.24.1 ziglang==0.17.1" >/dev/null; then
    echo "== zig and cargo-zigbuild into $ZIG_VENV (about a minute, once)"
    rm -rf "$ZIG_VENV"
    python3 -m venv "$ZIG_VENV"
    "$ZIG_VENV/bin/python" -m pip install -q --disable-pip-version-check "${ZIG_PINS[@]}"
fi

if ! command -v cargo-generate-rpm >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-generate-rpm" ]; then
    echo "== cargo install cargo-generate-rpm (about 10 minutes, once)"
    cargo install --locked cargo-generate-rpm --version 0.21.1
fi

# debian_mirror: the archive debootstrap uses.
. "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"

if [ ! -s "$ROOT_TAR" ]; then
    mirror="${DEBIAN_MIRROR:-$(debian_mirror)}"
    if [ -z "$mirror" ]; then
        echo "no Debian bookworm archive found in /etc/apt sources; set DEBIAN_MIRROR" >&2
        exit 1
    fi
    work="$TB/rpm/debroot.build"
    rm -rf "$work"
    echo "== debootstrap --variant=minbase bullseye (about 90 s, once)"
    debootstrap --variant=minbase bullseye "$work" "$mirror" >"$TB/rpm/debootstrap.log" 2>&1 || {
        tail -n 30 "$TB/rpm/debootstrap.log" >&2
        exit 1
    }
    # Drop the package caches; keep what a scriptlet needs (sh, useradd, getent).
    rm -rf "$work/var/cache/apt/archives/"*.deb "$work/var/lib/apt/lists/"*
    tar -C "$work" -cf "$ROOT_TAR.tmp" .
    mv "$ROOT_TAR.tmp" "$ROOT_TAR"
    rm -rf "$work"
fi
echo "rpm tools ready: $(rpm --version), zig $("$ZIG_VENV/bin/python-zig" version), cargo-generate-rpm $(cargo-generate-rpm --version 2>/dev/null || "$HOME/.cargo/bin/cargo-generate-rpm" --version), root $ROOT_TAR"
