#!/bin/sh
# Builds the daemon and helper of an earlier commit, for `make fleet`'s
# baseline: the policy as it was, driven the same way as today's.
# Usage: build-baseline.sh COMMIT DIR. The binaries land in DIR/bin; a DIR
# that already holds that commit's build is left as it is.
set -eu
commit=$1
dir=$2
if [ "$(cat "$dir/commit" 2>/dev/null || true)" = "$commit" ] && [ -x "$dir/bin/ecr-credd" ]; then
    exit 0
fi
rm -rf "$dir/src" "$dir/bin"
mkdir -p "$dir/src" "$dir/bin"
# The history holds the commit in any clone of this repository.
git archive "$commit" | tar -x -C "$dir/src"
CARGO_TARGET_DIR="$dir/target" cargo build --release --locked \
    --manifest-path "$dir/src/Cargo.toml" --bin ecr-credd --bin docker-credential-ecr-credd
for p in ecr-credd docker-credential-ecr-credd; do
    cp "$dir/target/release/$p" "$dir/bin/$p"
done
echo "$commit" > "$dir/commit"
