# cmx-kms-server %postun. $1: 0 = the package was removed, 1 or more = this
# is the old package of an upgrade.
if [ "$1" -eq 0 ]; then
    # Removal: forget the unit. /var/log/kms and the kms user stay: the logs
    # (and the audit trail) outlive the package.
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || :
    fi
else
    # Upgrade: nothing to do; the service keeps running.
    :
fi
exit 0
