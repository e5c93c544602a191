# Shared by release.sh and image.sh (sourced, not run).

# Every program a release ships, as packaged under /usr/bin. The package
# metadata (Cargo.toml's deb and rpm assets) lists the same three, and
# tests/packages.rs checks each package holds exactly them.
PROGRAMS="ecr-credd docker-credential-ecr-credd ecr-credd-kubelet-provider"

# The workspace version, as cargo resolves it (not scraped from Cargo.toml).
workspace_version() {
    cargo metadata --no-deps --format-version 1 |
        python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ecr-credd"))'
}

# The release binaries of target $1, one path per program.
release_programs() {
    for p in $PROGRAMS; do printf '%s\n' "target/$1/release/$p"; done
}

# SHA256SUMS of the artifacts in $1: its files (not repo/, which is signed itself).
write_sums() {
    (cd "$1" && find . -maxdepth 1 -type f ! -name 'SHA256SUMS*' -printf '%P\n' | LC_ALL=C sort |
        xargs sha256sum --) > "$1/SHA256SUMS.tmp" && mv "$1/SHA256SUMS.tmp" "$1/SHA256SUMS"
}
