# systemd before 231 (Amazon Linux 2 has 219) knows no @sets in
# SystemCallFilter=: it would ignore every name, keep a near-empty allow-list
# and kill the daemon with SIGSYS. A drop-in resets the filter there. Done
# with or without a running systemd, as AMI builds install in a chroot.
v=$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }')
if [ -n "$v" ] && [ "$v" -lt 231 ] 2>/dev/null; then
    mkdir -p /etc/systemd/system/ecr-credd.service.d
    printf '# Written by the ecr-credd package for systemd %s, which cannot parse the\n# unit'"'"'s SystemCallFilter= sets; removed with the package.\n[Service]\nSystemCallFilter=\n' "$v" \
        > /etc/systemd/system/ecr-credd.service.d/old-systemd.conf
fi
# $1 is 1 on install, 2 or more on upgrade; nothing to do without systemd.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now ecr-credd.socket || :
        systemctl enable ecr-credd.service || :
    else
        # Only the service: restarting the socket would remove its path
        # (RemoveOnStop=) and fail the gets made during the upgrade.
        systemctl try-restart ecr-credd.service || :
    fi
fi
