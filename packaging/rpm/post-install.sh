# cmx-kms-server %post. $1: 1 = first install, 2 or more = upgrade.
# The configuration directory and its files are readable by the service user
# only; /var/log/kms belongs to it (it is not a file of the package, so it and
# the logs stay when the package is removed).
chown root:kms /usr/share/kms/conf
chmod 0750 /usr/share/kms/conf
install -d -m 0750 -o kms -g kms /var/log/kms
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # First install: the service is neither enabled nor started here.
    # ckms-install does both once kms.properties is complete.
    :
else
    # Upgrade: the service is never stopped, disabled or restarted here.
    # ckms-install restarts it after `cmx-kms check-config` passes and rolls
    # back if it does not become ready; after a bare `rpm -U`, run
    # `systemctl restart cmx-kms` yourself.
    :
fi
exit 0
