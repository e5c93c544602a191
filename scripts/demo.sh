#!/usr/bin/env bash
# make demo: the main job end to end on loopback. Starts emulated AWS (moto),
# our IMDSv2 double and Debian's docker-registry, runs ecr-credd, then pushes
# and pulls an image with skopeo and podman through the credential helper.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/target/debug
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ecr-credd-demo.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "$2 did not start" >&2; exit 1; }
clean_env() { env -i PATH="$BIN:/usr/local/bin:/usr/bin:/bin" HOME="$WORK" LANG=C.UTF-8 "$@"; }
# Starts a server in the background; exec makes $! the server itself, so the
# cleanup trap stops it rather than an intermediate shell.
bg() { local log=$1; shift; ( exec env -i PATH="$BIN:/usr/local/bin:/usr/bin:/bin" HOME="$WORK" LANG=C.UTF-8 "$@" >"$log" 2>&1 ) & PIDS+=($!); }
say() { printf '\033[1m==>\033[0m %s\n' "$*"; }

ACCOUNT=210987654321
MOTO=$(port); IMDS=$(port); REG=$(port); STATS=$(port)
HOST=127.0.0.1:$REG

say "starting moto (STS + ECR) on :$MOTO, IMDSv2 double on :$IMDS, docker-registry on :$REG"
bg "$WORK/moto.log" STATS_PORT="$STATS" "$ROOT/.venv/bin/python" testbed/moto_launcher.py -H 127.0.0.1 -p "$MOTO"
bg "$WORK/imds.log" python3 testbed/imds_double.py "$IMDS"
mkdir -p "$WORK/registry"
htpasswd -Bbn AWS "$ACCOUNT-auth-token" >"$WORK/registry/htpasswd" 2>/dev/null
cat >"$WORK/registry/config.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $WORK/registry/data}}
http: {addr: "$HOST"}
auth: {htpasswd: {realm: basic-realm, path: $WORK/registry/htpasswd}}
YML
bg "$WORK/registry.log" docker-registry serve "$WORK/registry/config.yml"
wait_port "$MOTO" moto; wait_port "$STATS" "moto stats"; wait_port "$IMDS" "IMDS double"; wait_port "$REG" docker-registry
echo "    the registry accepts only user AWS with the password moto's ECR token decodes to"

cat >"$WORK/config.toml" <<TOML
[server]
socket = "$WORK/ecr-credd.sock"

[[registry]]
host = "$HOST"
registry_id = "$ACCOUNT"
region = "us-east-1"
role_arn = "arn:aws:iam::$ACCOUNT:role/ecr-pull"
TOML
say "config:"; sed 's/^/    /' "$WORK/config.toml"
clean_env "$BIN/ecr-credd" check-config --config "$WORK/config.toml" | sed 's/^/    /'

say "starting ecr-credd (IMDS -> sts:AssumeRole -> ecr:GetAuthorizationToken)"
bg "$WORK/daemon.log" AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$IMDS" AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO" \
  "$BIN/ecr-credd" run --config "$WORK/config.toml"
for _ in $(seq 200); do [ -S "$WORK/ecr-credd.sock" ] && break; sleep 0.05; done
export ECR_CREDD_SOCKET=$WORK/ecr-credd.sock
for _ in $(seq 100); do clean_env ECR_CREDD_SOCKET="$ECR_CREDD_SOCKET" "$BIN/ecr-credd" get "$HOST" >"$WORK/get.txt" 2>&1 && break; sleep 0.1; done
sed 's/^/    /' "$WORK/get.txt"

say "clients use only credHelpers: {\"credHelpers\": {\"$HOST\": \"ecr-credd\"}}"
echo "{\"credHelpers\":{\"$HOST\":\"ecr-credd\"}}" >"$WORK/auth.json"
python3 testbed/make_oci.py "$WORK/image"
client() { clean_env REGISTRY_AUTH_FILE="$WORK/auth.json" ECR_CREDD_SOCKET="$ECR_CREDD_SOCKET" "$@"; }

say "skopeo push  oci:image -> $HOST/demo:latest"
client skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/image:latest" "docker://$HOST/demo:latest"
say "skopeo pull  $HOST/demo:latest -> oci:pulled"
client skopeo copy --quiet --src-tls-verify=false "docker://$HOST/demo:latest" "oci:$WORK/pulled:latest"
say "podman pull  $HOST/demo:latest (vfs storage)"
client podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --storage-driver vfs \
  --events-backend file --cgroup-manager cgroupfs pull --quiet --tls-verify=false "$HOST/demo:latest" | sed 's/^/    image id /'

say "without the helper the registry refuses the same push:"
echo '{}' >"$WORK/none.json"
if clean_env REGISTRY_AUTH_FILE="$WORK/none.json" skopeo copy --quiet --dest-tls-verify=false \
     "oci:$WORK/image:latest" "docker://$HOST/demo:denied" >"$WORK/denied.log" 2>&1; then
  echo "unexpected: push without credentials succeeded" >&2; exit 1
fi
echo "    $(grep -o 'authentication required\|unauthorized[^"]*' "$WORK/denied.log" | head -1)"

say "AWS calls the daemon made for all of the above: $(python3 -c 'import json,sys,urllib.request; c=json.load(urllib.request.urlopen(sys.argv[1])); print(", ".join(f"{k} {v}" for k,v in c.items() if isinstance(v, int)))' "http://127.0.0.1:$STATS/")"
say "daemon log:"
sed 's/^/    /' "$WORK/daemon.log"
say "demo OK: pushed and pulled through docker-credential-ecr-credd; no token on disk"
