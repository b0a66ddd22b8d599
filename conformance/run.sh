#!/usr/bin/env bash
# Runs Microsoft's SCIM test collection against the demo gateway, from a clone of the
# repository: builds ./cmd/scimgate, starts it from Caddyfile.example on loopback with a
# fresh data directory, runs run-postman.sh (newman, from the npm registry on first use)
# and stops it. CI runs this script.
#
#   bash conformance/run.sh [WORKDIR]
#
# The target runs in dry-run mode: the collection checks the SCIM surface, and its test
# data is not a real directory (an e-mail address "emailName357", a manager "SuzzyQ",
# members "string id 1") that the demo app would rightly refuse; every change is still
# decided, mapped and journaled. User PATCH answers 204 (no_content), as the collection
# expects (the gateway's default, 200 with the user, is what Microsoft's SCIM Validator
# and Entra expect). Ports: SCIMGATE_CONFORMANCE_PORT (default 18080) and the two after it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-}
if [[ -z $work ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
port=${SCIMGATE_CONFORMANCE_PORT:-18080}
token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
(cd "$root" && go build -o "$work/scimgate" ./cmd/scimgate)
rm -rf "$work/data"
(
  cd "$root"
  SCIMGATE_ADDR=127.0.0.1:$port SCIMGATE_BIND=127.0.0.1 SCIMGATE_ADMIN=127.0.0.1:$((port + 1)) \
  SCIM_TOKEN=$token SCIMGATE_DATA=$work/data SCIMGATE_USER_PATCH_RESPONSE=no_content \
  SCIMGATE_DEMO_ADDR=127.0.0.1:$((port + 2)) SCIMGATE_DRY_RUN=true \
    exec "$work/scimgate" run --config Caddyfile.example >"$work/gateway.log" 2>&1
) &
gateway=$!
trap 'kill "$gateway" 2>/dev/null || true; wait "$gateway" 2>/dev/null || true; [[ -n ${1:-} ]] || rm -rf "$work"' EXIT
probe() { curl -fsS -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$port/scim/v2/ServiceProviderConfig"; }
for _ in $(seq 1 100); do
  probe 2>/dev/null && break
  sleep 0.2
done
if ! probe; then
  echo "the gateway did not start:"; cat "$work/gateway.log"; exit 1
fi
if ! bash "$here/run-postman.sh" "http://127.0.0.1:$port/scim/v2" "$token" "$work/postman.json"; then
  echo "conformance failed; gateway log:"; tail -50 "$work/gateway.log"; exit 1
fi
if grep -qF "$token" "$work/gateway.log"; then
  echo "the gateway log mentions the token"; exit 1
fi
