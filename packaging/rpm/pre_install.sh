# The socket's group and the daemon's user (the sysusers.d file makes it too, where systemd runs
# sysusers on install); then keep 0.1's `docker` socket group on upgrade.
grep -q '^ecr-credd:' /etc/group || groupadd -r ecr-credd || :
# The daemon's user: systemd 219 (Amazon Linux 2) ignores DynamicUser= and
# runs the service as this user, which must exist; newer systemd uses it too.
grep -q '^ecr-credd-daemon:' /etc/passwd || \
    useradd -r -U -M -d / -s /sbin/nologin -c "ecr-credd daemon" ecr-credd-daemon || :
if [ "$1" -ge 2 ] && rpm -q --qf '%{VERSION}\n' ecr-credd 2>/dev/null | grep -q '^0\.1\.' \
    && grep -q '^docker:' /etc/group; then
    mkdir -p /etc/systemd/system/ecr-credd.socket.d
    printf '# Written on upgrade from ecr-credd 0.1, whose socket group was docker.\n# Delete this file to use the ecr-credd group (add its users first).\n[Socket]\nSocketGroup=docker\n' \
        > /etc/systemd/system/ecr-credd.socket.d/group-from-0.1.conf
    echo "ecr-credd: kept the socket's group 'docker' from 0.1 (see /etc/systemd/system/ecr-credd.socket.d/group-from-0.1.conf)"
fi
