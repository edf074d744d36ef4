#!/usr/bin/env bash
# Install what the installer and packaging tests need, idempotently:
#   - Debian packages rpm (rpm, rpmbuild, rpmsign, rpm2cpio), rpmlint, cpio,
#     debootstrap, musl-tools, file, systemd (for systemd-analyze; PID 1 stays
#     whatever it is), createrepo-c (repository metadata), dnf (the tests list
#     that repository with a real client), gnupg (signing);
#   - the Rust target x86_64-unknown-linux-musl (static binaries);
#   - cargo-generate-rpm (only if absent: compiling it takes about 10 minutes;
#     a binary already in ~/.cargo/bin is reused);
#   - a Debian "minbase" root (bash, useradd, getent, glibc) made once with
#     debootstrap and kept as a tarball under the testbed cache dir, into which
#     the tests install our RPM with the real rpm, scriptlets running.
# A second run does nothing.
set -euo pipefail

TB="${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}"
ROOT_TAR="$TB/rpm/debroot-minbase.tar"
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
command -v musl-gcc >/dev/null 2>&1 || need_apt+=(musl-tools)
command -v file >/dev/null 2>&1 || need_apt+=(file)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)   # unit checks (verify, security)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
    apt-get install -y -qq "${need_apt[@]}"
fi

if ! rustup target list --installed 2>/dev/null | grep -x x86_64-unknown-linux-musl >/dev/null; then
    echo "== rustup target add x86_64-unknown-linux-musl"
    rustup target add x86_64-unknown-linux-musl
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
    echo "== debootstrap --variant=minbase bookworm (about 90 s, once)"
    debootstrap --variant=minbase bookworm "$work" "$mirror" >"$TB/rpm/debootstrap.log" 2>&1 || {
        tail -n 30 "$TB/rpm/debootstrap.log" >&2
        exit 1
    }
    # Drop the package caches; keep what a scriptlet needs (sh, useradd, getent).
    rm -rf "$work/var/cache/apt/archives/"*.deb "$work/var/lib/apt/lists/"*
    tar -C "$work" -cf "$ROOT_TAR.tmp" .
    mv "$ROOT_TAR.tmp" "$ROOT_TAR"
    rm -rf "$work"
fi
echo "rpm tools ready: $(rpm --version), cargo-generate-rpm $(cargo-generate-rpm --version 2>/dev/null || "$HOME/.cargo/bin/cargo-generate-rpm" --version), root $ROOT_TAR"
