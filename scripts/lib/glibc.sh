#!/usr/bin/env bash
# Shared by scripts/check-glibc-abi and scripts/lib/shipped-bin.sh (sourced,
# not run): the glibc symbol versions an ELF file needs, read with readelf.

# glibc_versions FILE: every GLIBC_* symbol version FILE needs, one per line,
# sorted and unique (GLIBC_PRIVATE and GLIBC_ABI_* included).
glibc_versions() {
    readelf -VW "$1" | grep -o 'GLIBC_[0-9A-Z_.]*' | sort -u -V || true
}

# glibc_newest: of the versions on standard input, the newest numbered one
# without its prefix (e.g. 2.28); empty when there is none.
glibc_newest() {
    grep -E '^GLIBC_[0-9.]+$' | sed 's/^GLIBC_//' | sort -V | tail -n 1 || true
}
