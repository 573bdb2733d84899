#!/usr/bin/env bash
# The whole product on one machine, no AWS account needed: an emulated AWS account (moto)
# holding a registry password as an SSM SecureString, a box role served by an IMDS
# fixture, a real private registry, and skopeo pulling a private image through
# docker-credential-slothbox. Everything runs on 127.0.0.1 and is removed at the end.
#
# Usage: scripts/demo.sh [--binary PATH]   (default: builds target/release with cargo)
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown option $1" >&2; exit 1 ;;
    esac
done

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }

if [ -z "$binary" ]; then
    step "Building docker-credential-slothbox (cargo build --release --locked)"
    cargo build --release --locked
    binary=target/release/docker-credential-slothbox
fi
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"

step "Checking the tools (skopeo, docker-registry, htpasswd, moto)"
scripts/setup-test-deps.sh

work="$(mktemp -d)"
cleanup() {
    [ -n "${AWS_FIX_PID:-}" ] && kill "$AWS_FIX_PID" 2>/dev/null || true
    if [ -n "${REG_FIX_PID:-}" ]; then
        exec {REG_IN}>&- 2>/dev/null || true
        wait "$REG_FIX_PID" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Starting the emulated AWS account (moto), its fault proxy and the box's IMDS"
mkfifo "$work/aws.out"
python3 tests/fixtures/aws_fixture.py >"$work/aws.out" &
AWS_FIX_PID=$!
read -r aws_urls <"$work/aws.out"
# A field of a JSON document; the document goes through stdin (printf is a builtin, so
# nothing lands in a process argument: the registry document holds its password).
json() { printf '%s' "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }
aws_endpoint="$(json "$aws_urls" aws)"
imds_endpoint="$(json "$aws_urls" imds)"
moto_endpoint="$(json "$aws_urls" moto)"
echo "AWS endpoint $aws_endpoint, IMDS $imds_endpoint"

step "Starting a private registry (docker-registry, TLS, htpasswd) and pushing a small image"
mkfifo "$work/reg.in" "$work/reg.out"
python3 tests/fixtures/registry_fixture.py <"$work/reg.in" >"$work/reg.out" &
REG_FIX_PID=$!
exec {REG_IN}>"$work/reg.in"
read -r registry_doc <"$work/reg.out"
case "$registry_doc" in *'"error"'*) echo "registry fixture failed: $registry_doc" >&2; exit 1 ;; esac
registry="$(json "$registry_doc" registry)"
image="$(json "$registry_doc" image)"
username="$(json "$registry_doc" username)"
cert_dir="$(json "$registry_doc" cert_dir)"
echo "registry $registry holds $image (user $username)"

step "Storing the registry password in the customer's (emulated) SSM as a SecureString"
parameter=/slothbox/registry-credentials/rc_demo
# The password travels through the environment of this one command, never argv.
REGISTRY_DOC="$registry_doc" python3 - "$moto_endpoint" "$parameter" <<'PY'
import json, os, sys, boto3
endpoint, name = sys.argv[1], sys.argv[2]
password = json.loads(os.environ["REGISTRY_DOC"])["password"]
ssm = boto3.client("ssm", region_name="eu-west-1", endpoint_url=endpoint,
                   aws_access_key_id="demo", aws_secret_access_key="demo")
ssm.put_parameter(Name=name, Value=password, Type="SecureString", Overwrite=True)
print(f"put {name} (SecureString)")
PY

step "Configuring the box: the credentials file and docker's credHelpers"
export HOME="$work/home" DOCKER_CONFIG="$work/home/.docker" XDG_RUNTIME_DIR="$work/run"
export SLOTHBOX_CONFIG="$HOME/.config/slothbox/credentials.json"
export AWS_ENDPOINT_URL="$aws_endpoint" AWS_EC2_METADATA_SERVICE_ENDPOINT="$imds_endpoint"
# The demo leaves nothing behind, not even a cached answer in the keyring.
export SLOTHBOX_CACHE=off
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION AWS_DEFAULT_REGION
mkdir -p "$DOCKER_CONFIG" "$(dirname "$SLOTHBOX_CONFIG")" "$XDG_RUNTIME_DIR"
cat >"$SLOTHBOX_CONFIG" <<JSON
{"credentials": [
  {"id": "rc_demo", "type": "token", "label": "demo registry", "registry": "$registry",
   "username": "$username", "parameter": "$parameter"}
]}
JSON
printf '{\n  "credHelpers": {\n    "%s": "slothbox"\n  }\n}\n' "$registry" >"$DOCKER_CONFIG/config.json"
echo "$SLOTHBOX_CONFIG:"; cat "$SLOTHBOX_CONFIG"
echo "$DOCKER_CONFIG/config.json:"; cat "$DOCKER_CONFIG/config.json"
mkdir -p "$work/bin"
ln -s "$binary" "$work/bin/docker-credential-slothbox"
export PATH="$work/bin:$PATH"

step "Asking the helper by hand, as an operator would (secret masked here)"
printf '%s' "$registry" | docker-credential-slothbox get | sed -E 's/"Secret":"[^"]*"/"Secret":"***"/'
printf 'list: '; docker-credential-slothbox list

step "skopeo inspect docker://$image (credentials from SSM through the helper)"
skopeo inspect --cert-dir "$cert_dir" "docker://$image" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("name", d["Name"], "digest", d["Digest"], "layers", len(d["Layers"]))'

step "skopeo copy docker://$image dir:$work/pulled"
skopeo copy --quiet --src-cert-dir "$cert_dir" "docker://$image" "dir:$work/pulled"
ls "$work/pulled"

step "No secret on disk: docker's config holds only the credHelpers entry"
if json "$registry_doc" password | grep -rqF -f - "$HOME"; then
    echo "the password was found under $HOME" >&2; exit 1
fi
echo "grep for the password under $HOME: nothing found"

step "Done; cleaning up"
