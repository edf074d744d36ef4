# cmx-kms-server %preun. $1: 0 = the package is being removed, 1 or more =
# this is the old package of an upgrade.
if [ "$1" -eq 0 ]; then
    # Removal: stop and disable the service.
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now cmx-kms.service >/dev/null 2>&1 || :
    fi
else
    # Upgrade: never stop or disable the running service.
    :
fi
exit 0
