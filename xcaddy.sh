#!/usr/bin/env bash
# Builds a production Caddy with the scimgate module (and nothing of the demo), then checks
# that the module is registered:
#
#   ./xcaddy.sh [OUTPUT]        (default ./caddy)
#
# xcaddy comes from the Go module proxy; extra xcaddy flags can go in XCADDY_ARGS, e.g.
# XCADDY_ARGS="--with github.com/caddyserver/transform-encoder".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/caddy}
caddy_version=$(cd "$here" && go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)
xcaddy_bin=$(go env GOPATH)/bin/xcaddy
if [[ ! -x $xcaddy_bin ]]; then
  go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
fi
cd "$here"
# shellcheck disable=SC2086
XCADDY_SKIP_CLEANUP=0 "$xcaddy_bin" build "$caddy_version" \
  --output "$out" \
  --with github.com/scimgate/scimgate/caddymodule \
  --replace github.com/scimgate/scimgate=. \
  ${XCADDY_ARGS:-}
"$out" list-modules | grep -qx 'http.handlers.scim_gateway' || {
  echo "xcaddy.sh: http.handlers.scim_gateway missing from $out list-modules" >&2
  exit 1
}
echo "xcaddy.sh: built $out with http.handlers.scim_gateway"
