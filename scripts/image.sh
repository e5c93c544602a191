#!/bin/sh
# Builds the OCI image, a multi-arch index (amd64 + arm64), from the release's
# static binaries with buildah: no docker daemon, no base image, no shell. It
# holds the three programs, CA certificates, a user and group `ecr-credd`
# (64872, a uid of its own: not distroless's shared nonroot 65532) to run as, and the packaged config as a default.
# Writes dist/ecr-credd-image-VERSION.oci.tar (an OCI archive of the index).
set -eu
cd "$(dirname "$0")/.."
. scripts/common.sh

for tool in buildah sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || { echo "image: missing $tool: apt-get install ${tool%sum}" >&2; exit 2; }
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || { echo "image: missing CA certificates: apt-get install ca-certificates" >&2; exit 2; }
version=$(workspace_version)
for t in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    [ -x "target/$t/release/ecr-credd" ] || { echo "image: no release build for $t; run make release" >&2; exit 2; }
done

# A private store: no daemon, no shared state, vfs works everywhere.
store=target/image-store
B="buildah --root $PWD/$store/root --runroot $PWD/$store/run --storage-driver vfs"
name="localhost/ecr-credd:$version"
$B manifest rm "$name" >/dev/null 2>&1 || true
$B manifest create "$name" >/dev/null

etc=target/image-etc
rm -rf "$etc" && mkdir -p "$etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\necr-credd:x:64872:64872:ecr-credd:/nonexistent:/sbin/nologin\n' > "$etc/passwd"
printf 'root:x:0:\necr-credd:x:64872:\n' > "$etc/group"

for arch in amd64 arm64; do
    case $arch in amd64) t=x86_64-unknown-linux-gnu ;; arm64) t=aarch64-unknown-linux-gnu ;; esac
    c=$($B from --arch "$arch" --os linux scratch)
    # shellcheck disable=SC2046 # one word per program path
    $B copy --chmod 0755 "$c" $(release_programs "$t") /usr/bin/ >/dev/null
    $B copy --chmod 0644 "$c" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
    $B copy --chmod 0644 "$c" "$etc/passwd" "$etc/group" /etc/ >/dev/null
    $B copy --chmod 0644 "$c" packaging/config.toml /etc/ecr-credd/config.toml >/dev/null
    $B config --arch "$arch" --os linux --user 64872:64872 \
        --entrypoint '["/usr/bin/ecr-credd"]' --cmd '["run", "--config", "/etc/ecr-credd/config.toml"]' \
        --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        --label org.opencontainers.image.title=ecr-credd \
        --label "org.opencontainers.image.version=$version" \
        --label org.opencontainers.image.licenses=Apache-2.0 "$c"
    $B commit --quiet --format oci --manifest "$name" "$c" >/dev/null
    $B rm "$c" >/dev/null
done

mkdir -p dist
out="dist/ecr-credd-image-$version.oci.tar"
rm -f "$out"
$B manifest push --quiet --all --format oci "$name" "oci-archive:$out:$name" >/dev/null
# The sums cover the image too (written outside dist/ so they never list themselves).
write_sums dist
ls -l "$out"
