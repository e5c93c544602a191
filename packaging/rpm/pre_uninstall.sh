# $1 is 0 on removal (1 on upgrade): stop and disable only on removal.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now ecr-credd.service ecr-credd.socket || :
fi
