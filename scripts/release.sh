#!/bin/sh
# Builds the release into dist/: static binaries for x86_64 and aarch64 (one
# set runs on every glibc-based EC2 Linux: no dynamic loader, no libc
# version), a .deb and an .rpm for each architecture, a tarball of each, and
# SHA256SUMS. `make release` installs the tools first; run alone, this script
# says which tool is missing and how to install it.
set -eu
cd "$(dirname "$0")/.."
. scripts/common.sh

# Debian 12's rustc-web: the only toolchain here with an aarch64 std. Both
# architectures are built with it so one compiler makes every artifact.
RELEASE_CARGO=${RELEASE_CARGO:-/usr/bin/cargo}
RELEASE_RUSTC=${RELEASE_RUSTC:-/usr/bin/rustc}
CROSS_CC=${CROSS_CC:-aarch64-linux-gnu-gcc}
TARGETS="x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu"
DIST=${DIST:-dist}

missing=""
need_file() { [ -e "$1" ] || missing="$missing
  $1: apt-get install $2"; }
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing="$missing
  $1: $2"; }
need_file "$RELEASE_CARGO" cargo-web
need_file "$RELEASE_RUSTC" rustc-web
need_file /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib "libstd-rust-web-dev:arm64 (after: dpkg --add-architecture arm64 && apt-get update)"
need_file /usr/lib/x86_64-linux-gnu/libc.a libc6-dev
need_file /usr/aarch64-linux-gnu/lib/libc.a libc6-dev-arm64-cross
need_cmd "$CROSS_CC" "apt-get install gcc-aarch64-linux-gnu"
need_cmd sha256sum "apt-get install coreutils"
need_cmd readelf "apt-get install binutils"
cargo deb --version >/dev/null 2>&1 || missing="$missing
  cargo-deb: cargo install --locked cargo-deb"
cargo generate-rpm --version >/dev/null 2>&1 || missing="$missing
  cargo-generate-rpm: cargo install --locked cargo-generate-rpm"
command -v cargo-auditable >/dev/null 2>&1 || missing="$missing
  cargo-auditable: cargo install --locked cargo-auditable"
cargo cyclonedx --version >/dev/null 2>&1 || missing="$missing
  cargo-cyclonedx: cargo install --locked cargo-cyclonedx"
if [ -n "$missing" ]; then
    echo "release: missing tools (make release-tools installs all of them):$missing" >&2
    exit 2
fi

# crt-static links glibc into each binary (a static-pie). Only the target
# gets the flag: build scripts and proc macros stay ordinary host programs.
export RUSTC="$RELEASE_RUSTC"
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$CROSS_CC"
export CC_aarch64_unknown_linux_gnu="$CROSS_CC"
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
set --
for t in $TARGETS; do set -- "$@" --target "$t"; done
# cargo auditable: each binary carries its dependency list (a .dep-v0
# section, zlib-compressed JSON), which `cargo audit bin` and syft read.
"$RELEASE_CARGO" auditable build --release --locked --bins "$@"

# Every shipped binary must be static: no interpreter, no NEEDED libraries.
for t in $TARGETS; do
    for f in $(release_programs "$t"); do
        if readelf -lW "$f" | grep -q 'INTERP' || readelf -dW "$f" | grep -q '(NEEDED)'; then
            echo "release: $f is dynamically linked" >&2
            exit 1
        fi
    done
done

rm -rf target/man && target/x86_64-unknown-linux-gnu/release/ecr-credd man target/man >/dev/null
version=$(workspace_version)
rm -rf "$DIST" && mkdir -p "$DIST"
for t in $TARGETS; do
    arch=${t%%-*}
    cargo deb --target "$t" --no-build --no-strip --output "$DIST/" >/dev/null
    # gzip: Amazon Linux 2's rpm 4.11 cannot read the default zstd payload.
    cargo generate-rpm --target "$t" --payload-compress gzip --output "$DIST/" >/dev/null
    # The tarball: the same files as the packages, for other installers.
    stage="target/stage/ecr-credd-$version-$arch-linux"
    rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/man" "$stage/systemd" "$stage/sysusers.d"
    # shellcheck disable=SC2046 # one word per program path
    cp $(release_programs "$t") "$stage/bin/"
    cp target/man/*.1 packaging/docker-credential-ecr-credd.1 "$stage/man/"
    cp systemd/ecr-credd.service systemd/ecr-credd.socket "$stage/systemd/"
    cp packaging/sysusers.d/ecr-credd.conf "$stage/sysusers.d/"
    cp packaging/config.toml README.md LICENSE "$stage/"
    tar -C target/stage --owner=0 --group=0 --sort=name -czf "$DIST/ecr-credd-$version-$arch-linux.tar.gz" \
        "ecr-credd-$version-$arch-linux"
done
# A CycloneDX SBOM per artifact: the ecr-credd crate's dependency graph for
# that target (the helper's and provider's crate is one of its
# dependencies), build-only and dev dependencies left out.
for t in $TARGETS; do
    cargo cyclonedx --format json --spec-version 1.5 --no-build-deps --target "$t" --override-filename "sbom-$t" -q
    case $t in x86_64-*) deb=amd64 ;; *) deb=arm64 ;; esac
    arch=${t%%-*}
    for artifact in "ecr-credd_${version}-1_$deb.deb" "ecr-credd-$version-1.$arch.rpm" "ecr-credd-$version-$arch-linux.tar.gz"; do
        [ -f "$DIST/$artifact" ] || { echo "release: no $DIST/$artifact to describe" >&2; exit 1; }
        cp "sbom-$t.json" "$DIST/$artifact.cdx.json"
    done
    rm -f "sbom-$t.json" crates/*/"sbom-$t.json"
done
write_sums "$DIST"
# The signed apt and yum repositories, from the packages just built.
DIST="$DIST" scripts/repo.sh
ls -l "$DIST"
