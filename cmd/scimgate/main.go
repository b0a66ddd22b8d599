// Command scimgate is Caddy with the scimgate module built in:
//
//	go run ./cmd/scimgate run --config Caddyfile.example
//
// Caddy's subcommands work (run, start, stop, reload, adapt, validate, list-modules, and
// scimgate's journal, reconcile, preview, outbox and store). reload prints the error of a refused config as plain text, escaped
// once (Caddy's prints the admin endpoint's JSON answer inside its log line). upgrade,
// add-package and remove-package refuse: they would replace this binary with a Caddy
// downloaded without the scimgate module; build with xcaddy.sh to add other plugins.
//
// It runs with at least two Ps unless GOMAXPROCS is set (see minProcs), and
// SCIMGATE_DEBUG_PROFILE=1 turns on block and mutex profiling for the admin endpoint's
// /debug/pprof/block and /debug/pprof/mutex (a debug switch: it costs time on every lock).
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

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
	scimgate reconcile [--fix] | reports | show <id> | fix <id>
	scimgate preview --policy <dir> | --mapping <file>   (what a change would do)
	scimgate outbox targets|list|show|retry|drop|pause|resume
	scimgate store copy --from <file|etcd> --to <file|etcd>   (moves the store to a fleet)

upgrade, add-package and remove-package are not available: they would replace
this binary with a Caddy downloaded without the scimgate module. To add
plugins, build with xcaddy.sh.`

// unavailable are Caddy's commands that would replace this binary.
var unavailable = map[string]bool{"upgrade": true, "add-package": true, "remove-package": true}

func main() {
	caddy.CustomBinaryName = "scimgate"
	caddy.CustomLongDescription = longDescription
	atLeastTwoProcs()
	if os.Getenv("SCIMGATE_DEBUG_PROFILE") == "1" {
		// Debug only (never set in production): record every blocking event and mutex
		// contention for /debug/pprof/block and /debug/pprof/mutex on the admin endpoint.
		runtime.SetBlockProfileRate(1)
		runtime.SetMutexProfileFraction(1)
	}
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

// minProcs is the fewest Ps (GOMAXPROCS) the gateway runs with. With one P (a process
// limited to one CPU by taskset, cpuset or a CPU quota of 1), the goroutine that fsyncs the
// store's commit keeps the P during the fdatasync until the runtime's monitor takes it back
// (up to 10 ms later), so no request makes progress while a commit syncs: issue 17's trace
// showed the requests runnable for up to 0.57 s while the process used 26% of its core. A
// second P lets the other requests run during the fsync; the OS still time-shares the one
// core. See README.md, Performance.
const minProcs = 2

// atLeastTwoProcs raises GOMAXPROCS to minProcs unless the GOMAXPROCS environment variable
// sets it. It also sets that variable, so that Caddy's automaxprocs (which lowers GOMAXPROCS
// to a container's CPU quota) honours it.
func atLeastTwoProcs() {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) >= minProcs {
		return
	}
	runtime.GOMAXPROCS(minProcs)
	_ = os.Setenv("GOMAXPROCS", strconv.Itoa(minProcs))
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
