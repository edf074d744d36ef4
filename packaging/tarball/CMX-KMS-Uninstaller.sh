#!/bin/sh
# Remove cmx-kms from this node (/var/log/kms is kept):
#   sudo sh CMX-KMS-Uninstaller.sh [--yes]
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 1
exec "$here/ckms-uninstall" "$@"
