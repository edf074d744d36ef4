#!/bin/sh
# Install, upgrade or take over a Tomcat-based Connected-KMS with cmx-kms:
#   sudo sh CMX-KMS-Installer.sh [--yes] [options: see ./ckms-install --help]
# Run it from the directory where cmx-kms-server-rpm.tar.gz was extracted.
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 1
exec "$here/ckms-install" "$@"
