# $1 is 1 on install, 2 or more on upgrade; nothing to do without systemd.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now ecr-credd.socket || :
        systemctl enable ecr-credd.service || :
    else
        systemctl try-restart ecr-credd.socket ecr-credd.service || :
    fi
fi
