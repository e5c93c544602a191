#!/bin/sh
# Runs every test binary of the workspace in a minimal Debian root (the
# systemd root the tests cache under target/reach/, which has no moto, venv,
# registry, clients, docker, rpm or release tools), as on a contributor's
# machine without the test bed: each must pass, skipping what it cannot run
# and saying why. Needs root (chroot, bind mounts) and a `make test` run
# before it (for the cached root). Prints each skip and a summary.
set -eu
cd "$(dirname "$0")/.."
root=target/reach/systemd-ca-bookworm
[ -f "$root/.complete" ] || { echo "without-testbed: no $root; run make test once" >&2; exit 2; }
bare=$(mktemp -d /tmp/ecr-credd-bare.XXXXXX)
cleanup() { umount "$bare$PWD" "$bare/proc" 2>/dev/null || true; rm -rf "$bare"; }
trap cleanup EXIT
cp -a "$root/." "$bare/"
mkdir -p "$bare$PWD" && mount --bind "$PWD" "$bare$PWD" && mount -o remount,ro,bind "$bare$PWD"
mount -t proc proc "$bare/proc"
exes=$(cargo test --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')
failed=0; passed=0
for exe in $exes; do
    if out=$(chroot "$bare" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root "$exe" 2>&1); then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); printf '%s\n' "FAILED: $exe" "$out"
    fi
    printf '%s\n' "$out" | grep '^skipped ' || true
done
echo "without-testbed: $passed test binaries passed, $failed failed"
[ "$failed" = 0 ]
