// Command scimgate is Caddy with the scimgate module built in:
//
//	go run ./cmd/scimgate run --config Caddyfile.example
//
// Caddy's subcommands work (run, start, stop, reload, adapt, validate, list-modules, and
// scimgate's journal). reload prints the error of a refused config as plain text, escaped
// once (Caddy's prints the admin endpoint's JSON answer inside its log line). upgrade,
// add-package and remove-package refuse: they would replace this binary with a Caddy
// downloaded without the scimgate module; build with xcaddy.sh to add other plugins.
package main

import (
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/scimgate/scimgate/caddymodule"
	_ "github.com/scimgate/scimgate/demoapp"
)

const longDescription = `scimgate is Caddy with the scimgate module built in: a SCIM 2.0 gateway
for Microsoft Entra ID provisioning, in front of a legacy application, with
policies and a tamper-evident audit journal (see README.md).

Run it like Caddy:

	scimgate run --config Caddyfile.example
	scimgate validate --config Caddyfile.production   (opens no store: safe while it runs)
	scimgate reload --config Caddyfile.production      (applies edited mappings and policies)
	scimgate journal verify|export|backup|tail|watch

upgrade, add-package and remove-package are not available: they would replace
this binary with a Caddy downloaded without the scimgate module. To add
plugins, build with xcaddy.sh.`

// unavailable are Caddy's commands that would replace this binary.
var unavailable = map[string]bool{"upgrade": true, "add-package": true, "remove-package": true}

func main() {
	caddy.CustomBinaryName = "scimgate"
	caddy.CustomLongDescription = longDescription
	if len(os.Args) > 1 {
		switch cmd := os.Args[1]; {
		case unavailable[cmd]:
			fmt.Fprintf(os.Stderr, "scimgate %s is not available: it would replace this binary with a Caddy downloaded without the scimgate module; to add plugins, build with xcaddy.sh\n", cmd)
			os.Exit(caddy.ExitCodeFailedStartup)
		case cmd == "reload" && !wantsHelp(os.Args[2:]):
			os.Exit(reload(os.Args[2:], os.Stderr))
		}
	}
	caddycmd.Main()
}

// wantsHelp reports whether args ask for help (left to Caddy's command).
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}
