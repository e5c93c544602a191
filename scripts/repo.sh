#!/bin/sh
# Builds signed package repositories from the packages in $DIST, into
# $DIST/repo/:
#   deb/  an apt repository (dists/stable/main/binary-{amd64,arm64}, pool/main),
#         with InRelease and Release.gpg;
#   rpm/  a yum/dnf repository per architecture (rpm/x86_64, rpm/aarch64),
#         each with repodata/repomd.xml.asc, and the .rpm files signed;
#   ecr-credd-archive-keyring.gpg, ecr-credd-release.asc: the public key.
# The signing key is RELEASE_GPG_KEY: an armored secret key, or a file
# holding one. Without it a throwaway key is made, and this says so loudly.
set -eu
cd "$(dirname "$0")/.."
DIST=${DIST:-dist}
REPO="$DIST/repo"

missing=""
for tool in gpg apt-ftparchive createrepo_c rpmsign; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "repo: missing:$missing (apt-get install gnupg apt-utils createrepo-c rpm; make release-tools does)" >&2
    exit 2
fi

GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'rm -rf "$GNUPGHOME"' EXIT
gpg_batch() { gpg --batch --yes --quiet --pinentry-mode loopback --passphrase '' "$@"; }
if [ -n "${RELEASE_GPG_KEY:-}" ]; then
    if [ -f "$RELEASE_GPG_KEY" ]; then
        gpg_batch --import "$RELEASE_GPG_KEY" ||
            { echo "repo: RELEASE_GPG_KEY: $RELEASE_GPG_KEY holds no key gpg can import" >&2; exit 1; }
    else
        case "$RELEASE_GPG_KEY" in
        *"-----BEGIN PGP PRIVATE KEY BLOCK-----"*) ;;
        *)
            echo "repo: RELEASE_GPG_KEY is neither a file nor an armored secret key (-----BEGIN PGP PRIVATE KEY BLOCK-----)" >&2
            exit 1
            ;;
        esac
        printf '%s\n' "$RELEASE_GPG_KEY" | gpg_batch --import ||
            { echo "repo: RELEASE_GPG_KEY: the armored key does not import" >&2; exit 1; }
    fi
    gpg --batch --list-secret-keys --with-colons | grep -q '^sec' ||
        { echo "repo: RELEASE_GPG_KEY holds no secret key (a public key only?): nothing to sign with" >&2; exit 1; }
else
    cat >&2 <<'EOF'
repo: ************************************************************************
repo: RELEASE_GPG_KEY is not set: signing with a THROWAWAY key made now.
repo: Nobody can verify these repositories later. Publish only with your key.
repo: ************************************************************************
EOF
    # RSA: older rpm releases (Amazon Linux 2 ships 4.11) predate EdDSA keys.
    gpg_batch --quick-gen-key "ecr-credd release (throwaway) <release@localhost>" rsa3072 sign never
fi
KEY=$(gpg --batch --list-secret-keys --with-colons | awk -F: '$1 == "fpr" { print $10; exit }')
[ -n "$KEY" ] || { echo "repo: no secret key to sign with" >&2; exit 1; }

rm -rf "$REPO" && mkdir -p "$REPO/deb/pool/main" "$REPO/rpm"
gpg --batch --export "$KEY" > "$REPO/ecr-credd-archive-keyring.gpg"
gpg --batch --export --armor "$KEY" > "$REPO/ecr-credd-release.asc"

# apt: one suite, both architectures, the Release signed inline and detached.
cp "$DIST"/*.deb "$REPO/deb/pool/main/"
(
    cd "$REPO/deb"
    for arch in amd64 arm64; do
        d="dists/stable/main/binary-$arch"
        mkdir -p "$d"
        apt-ftparchive --arch "$arch" packages pool > "$d/Packages"
        gzip -9nk "$d/Packages"
    done
    apt-ftparchive \
        -o APT::FTPArchive::Release::Origin=ecr-credd -o APT::FTPArchive::Release::Label=ecr-credd \
        -o APT::FTPArchive::Release::Suite=stable -o APT::FTPArchive::Release::Codename=stable \
        -o APT::FTPArchive::Release::Architectures="amd64 arm64" -o APT::FTPArchive::Release::Components=main \
        release dists/stable > Release.tmp
    mv Release.tmp dists/stable/Release
    gpg_batch --local-user "$KEY" --digest-algo SHA512 --clearsign -o dists/stable/InRelease dists/stable/Release
    gpg_batch --local-user "$KEY" --digest-algo SHA512 --armor --detach-sign -o dists/stable/Release.gpg dists/stable/Release
)

# yum/dnf: the rpms signed, then one repository per architecture ($basearch).
for arch in x86_64 aarch64; do
    mkdir -p "$REPO/rpm/$arch"
    cp "$DIST"/*."$arch".rpm "$REPO/rpm/$arch/"
    rpmsign --addsign \
        --define "_gpg_name $KEY" \
        --define "__gpg $(command -v gpg)" \
        --define "_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback --passphrase ''" \
        "$REPO/rpm/$arch"/*.rpm >/dev/null
    createrepo_c --quiet "$REPO/rpm/$arch"
    gpg_batch --local-user "$KEY" --armor --detach-sign -o "$REPO/rpm/$arch/repodata/repomd.xml.asc" \
        "$REPO/rpm/$arch/repodata/repomd.xml"
done

# How instances use it (the README says where to publish it).
cat > "$REPO/ecr-credd.repo" <<'EOF'
[ecr-credd]
name=ecr-credd
baseurl=https://REPLACE_WITH_YOUR_BUCKET/rpm/$basearch/
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=https://REPLACE_WITH_YOUR_BUCKET/ecr-credd-release.asc
EOF
cat > "$REPO/ecr-credd.sources" <<'EOF'
Types: deb
URIs: https://REPLACE_WITH_YOUR_BUCKET/deb
Suites: stable
Components: main
Signed-By: /usr/share/keyrings/ecr-credd-archive-keyring.gpg
EOF
echo "repo: $REPO signed by $KEY"
