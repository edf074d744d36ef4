# cmx-kms-server %pre. $1: 1 = first install, 2 or more = upgrade.
# Creates the service user and group, each only if it is missing. Never
# touches the service. A failure stops the installation: files owned by a
# missing group would fall back to root.
ensure_service_user() {
    if ! getent group kms >/dev/null 2>&1; then
        groupadd -r kms || return 1
    fi
    if ! getent passwd kms >/dev/null 2>&1; then
        useradd -r -M -g kms -d /usr/share/kms -s /sbin/nologin \
            -c "cmx-kms key management server" kms || return 1
    fi
}
if [ "$1" -eq 1 ]; then
    # First install: the files about to be unpacked belong to group kms.
    ensure_service_user || exit 1
else
    # Upgrade: the user normally exists; recreate it if it was deleted by hand.
    ensure_service_user || exit 1
fi
exit 0
