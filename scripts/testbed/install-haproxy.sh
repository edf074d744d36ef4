#!/usr/bin/env bash
# Install HAProxy from the distribution, idempotently, for the load-balancer
# tests (kms/tests/haproxy*.rs). The tests start it themselves, in the
# foreground on loopback, and kill it when they end: nothing is enabled or
# started here (Debian's policy-rc.d keeps the packaged service down in
# containers; on a machine with a running systemd we stop and disable it so it
# holds no port).
# A second run does nothing.
set -euo pipefail

if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    echo "== installing haproxy"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq haproxy
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now haproxy >/dev/null 2>&1 || true
    fi
fi
haproxy -v | sed -n 1p
