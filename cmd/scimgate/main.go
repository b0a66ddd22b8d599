// Command scimgate is Caddy with the scimgate module built in:
//
//	go run ./cmd/scimgate run --config Caddyfile.example
//
// Every Caddy subcommand works (run, start, stop, reload, adapt, validate, list-modules).
// For production builds with other plugins use xcaddy.sh.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/scimgate/scimgate/caddymodule"
	_ "github.com/scimgate/scimgate/demoapp"
)

func main() {
	caddycmd.Main()
}
