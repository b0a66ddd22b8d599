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
# scimgate is built from this checkout (--replace), never fetched: GOPRIVATE keeps the Go
# command from asking a module proxy or checksum database about it, and GOVCS=off from
# trying git, so module resolution falls through to the local replacement even where the
# network or the proxy refuses unknown modules.
export GOPRIVATE=${GOPRIVATE:+$GOPRIVATE,}github.com/scimgate
export GOVCS=${GOVCS:+$GOVCS,}github.com/scimgate:off
# shellcheck disable=SC2086
"$xcaddy_bin" build "$caddy_version" \
  --output "$out" \
  --with github.com/scimgate/scimgate/caddymodule \
  --replace github.com/scimgate/scimgate=. \
  ${XCADDY_ARGS:-}
"$out" list-modules | grep -qx 'http.handlers.scim_gateway' || {
  echo "xcaddy.sh: http.handlers.scim_gateway missing from $out list-modules" >&2
  exit 1
}
echo "xcaddy.sh: built $out with http.handlers.scim_gateway"
