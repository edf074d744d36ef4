#!/usr/bin/env bash
# Shared by the testbed scripts that debootstrap a root (sourced, not run).

# The mirror debootstrap uses: the first Debian bookworm archive apt is
# configured with (deb822 sources or a classic sources.list line), never a
# fixed host.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
        [ -r "$f" ] || continue
        awk '
            /^URIs:/ { uri=$2 }
            /^Suites:/ { if (uri != "" && $0 ~ /bookworm( |$)/ && uri !~ /security/) { print uri; exit } }
            /^deb / { if ($0 ~ / bookworm / && $0 !~ /security/) { for (i=2;i<=NF;i++) if ($i ~ /:\/\//) { print $i; exit } } }
        ' "$f"
    done | sed -n 1p
}
