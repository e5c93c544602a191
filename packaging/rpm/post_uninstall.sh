# $1 is 0 on removal: the drop-in %post wrote for old systemd goes too.
if [ "$1" -eq 0 ]; then
    rm -f /etc/systemd/system/ecr-credd.service.d/old-systemd.conf
    rmdir /etc/systemd/system/ecr-credd.service.d 2>/dev/null || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
