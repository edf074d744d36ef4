#!/usr/bin/env bash
# Install what the tests under a real systemd need, idempotently:
#   - Debian package systemd-container (systemd-nspawn boots a root with
#     systemd as its PID 1, even though this machine's PID 1 is not systemd);
#     util-linux's nsenter (runs commands inside the booted root);
#   - a Debian bookworm root with systemd, systemd-sysv, dbus, rpm, procps and
#     curl, made once with debootstrap and kept as a tarball under the testbed
#     cache dir (installer/tests/systemd.rs boots a copy of it per test run).
# A second run does nothing.
set -euo pipefail

TB="${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}"
ROOT_TAR="$TB/systemd/debroot-systemd.tar"
mkdir -p "$TB/systemd"

need_apt=()
command -v systemd-nspawn >/dev/null 2>&1 || need_apt+=(systemd-container)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}"
fi

# debian_mirror: the archive debootstrap uses.
. "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"

if [ ! -s "$ROOT_TAR" ]; then
    mirror="${DEBIAN_MIRROR:-$(debian_mirror)}"
    if [ -z "$mirror" ]; then
        echo "no Debian bookworm archive found in /etc/apt sources; set DEBIAN_MIRROR" >&2
        exit 1
    fi
    work="$TB/systemd/root.build"
    rm -rf "$work"
    echo "== debootstrap bookworm with systemd and rpm (about 2 minutes, once)"
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,rpm,procps,curl,ca-certificates \
        bookworm "$work" "$mirror" >"$TB/systemd/debootstrap.log" 2>&1 || {
        tail -n 30 "$TB/systemd/debootstrap.log" >&2
        exit 1
    }
    # debootstrap writes no /etc/hosts; "localhost" must resolve from it (as
    # on every RHEL node) without a DNS server.
    printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >"$work/etc/hosts"
    echo cmx-kms-test >"$work/etc/hostname"
    # A booted test root needs no getty, no timers and no network setup; the
    # fewer units, the faster the boot.
    rm -f "$work/etc/systemd/system/getty.target.wants/"* \
        "$work/etc/systemd/system/timers.target.wants/"*
    systemctl --root="$work" mask console-getty.service systemd-networkd.service \
        systemd-resolved.service systemd-timesyncd.service >/dev/null 2>&1 || true
    # The journal stays in memory (/run/log/journal): nothing to flush at stop.
    mkdir -p "$work/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\n' >"$work/etc/systemd/journald.conf.d/volatile.conf"
    rm -rf "$work/var/cache/apt/archives/"*.deb "$work/var/lib/apt/lists/"*
    tar -C "$work" -cf "$ROOT_TAR.tmp" .
    mv "$ROOT_TAR.tmp" "$ROOT_TAR"
    rm -rf "$work"
fi
echo "systemd root ready: $(systemd-nspawn --version | sed -n 1p), root $ROOT_TAR"
