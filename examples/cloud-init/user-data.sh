#!/bin/sh
# EC2 user data (cloud-init runs it once, as root, at first boot): installs
# ecr-credd from your signed repository, writes its config, and routes the
# default user's docker to the helper. Debian and Ubuntu use the apt
# repository; Amazon Linux 2 and 2023 and RHEL the dnf/yum one.
set -eu

# ---- edit these ----
REPO_URL=${REPO_URL:-https://REPLACE_WITH_YOUR_BUCKET}    # where dist/repo is published
LOGIN_USER=${LOGIN_USER:-}                                # default: admin, ubuntu or ec2-user, whichever exists
write_config() {
    cat > /etc/ecr-credd/config.toml <<'TOML'
# BEGIN ecr-credd config
[[registry]]
host = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
role_arn = "arn:aws:iam::111122223333:role/ecr-access-from-b"
# END ecr-credd config
TOML
}
# ---- end ----

if command -v apt-get >/dev/null 2>&1; then
    mkdir -p /usr/share/keyrings /etc/apt/sources.list.d
    # The key is fetched once over TLS; apt checks every file against it.
    if [ "${REPO_URL#file://}" != "$REPO_URL" ]; then
        cp "${REPO_URL#file://}/ecr-credd-archive-keyring.gpg" /usr/share/keyrings/
    else
        curl -fsSL "$REPO_URL/ecr-credd-archive-keyring.gpg" -o /usr/share/keyrings/ecr-credd-archive-keyring.gpg
    fi
    cat > /etc/apt/sources.list.d/ecr-credd.sources <<SOURCES
Types: deb
URIs: $REPO_URL/deb
Suites: stable
Components: main
Signed-By: /usr/share/keyrings/ecr-credd-archive-keyring.gpg
SOURCES
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y ecr-credd
else
    cat > /etc/yum.repos.d/ecr-credd.repo <<REPO
[ecr-credd]
name=ecr-credd
baseurl=$REPO_URL/rpm/\$basearch/
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=$REPO_URL/ecr-credd-release.asc
REPO
    if command -v dnf >/dev/null 2>&1; then dnf install -y ecr-credd; else yum install -y ecr-credd; fi
fi

write_config
ecr-credd check-config
if [ -d /run/systemd/system ]; then
    systemctl enable --now ecr-credd.socket ecr-credd.service
fi

if [ -z "$LOGIN_USER" ]; then
    for u in admin ubuntu ec2-user; do
        if id "$u" >/dev/null 2>&1; then LOGIN_USER=$u; break; fi
    done
fi
if [ -n "$LOGIN_USER" ]; then
    usermod -aG ecr-credd "$LOGIN_USER"
    ecr-credd configure docker --user "$LOGIN_USER"
fi
