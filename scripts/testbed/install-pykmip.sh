#!/bin/sh
# Install the PyKMIP server used as the KMIP 1.x HSM stand-in by the kmip tests.
#
# Idempotent: does nothing when the venv already has the pinned set.
# Location: ${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}/venv-pykmip
# The pins are the set tested in TESTBED.md section 1: cryptography is pinned because
# PyKMIP looks up ciphers that newer releases remove.
set -eu

TB="${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}"
VENV="$TB/venv-pykmip"
PINS="pykmip==0.11.0 cryptography==50.0.2 sqlalchemy==2.1.9"
STAMP="$VENV/.cmx-kms-installed"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PINS" ] && [ -x "$VENV/bin/pykmip-server" ]; then
    echo "install-pykmip: already installed in $VENV"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "install-pykmip: $PYTHON not found; install Python 3.11 or newer" >&2
    exit 1
fi

mkdir -p "$TB"
if [ ! -x "$VENV/bin/pip" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC2086 # PINS is a list of words on purpose
"$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
"$VENV/bin/python" -W ignore -c "import kmip.services.server" 
printf '%s' "$PINS" > "$STAMP"
echo "install-pykmip: installed $PINS in $VENV"
