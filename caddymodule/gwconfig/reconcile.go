package gwconfig

import (
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/scimgate/scimgate/caddymodule/reconcile"
)

// ReconcileConfig says how a target's app is reconciled with the directory (see
// caddymodule/reconcile): on request (`scimgate reconcile`, the admin API) whenever the
// mapping has a list call, and on a schedule when Every is set.
type ReconcileConfig struct {
	// Every runs a reconcile when the newest report of the target is older than this
	// (checked every minute, so a reload or a restart neither skips nor repeats a run).
	// At least 1m; 0: on request only.
	Every caddy.Duration `json:"every,omitempty"`

	// Fix makes the scheduled runs repair what they find, within the policy and its
	// brake. Default: report only.
	Fix bool `json:"fix,omitempty"`

	// Orphans is what a repair does with accounts of the app that the directory does not
	// stand for: "report" (default) or "disable". They are never deleted.
	Orphans string `json:"orphans,omitempty"`

	// Keep is how many reports the store keeps (all targets' reports count). Default 20.
	Keep int `json:"keep,omitempty"`

	// MaxFindings bounds the findings a report lists; its counts are always complete.
	// Default 10000.
	MaxFindings int `json:"max_findings,omitempty"`
}

// MinReconcileEvery is the shortest schedule; scheduleCheck how often it is checked.
const (
	MinReconcileEvery = time.Minute
	scheduleCheck     = time.Minute
)

// parseReconcileBlock parses a target's reconcile options:
//
//	reconcile {
//	    every <duration>            # run when the newest report is older; default on request only
//	    fix                         # scheduled runs repair what they find
//	    orphans report|disable      # default report; orphans are never deleted
//	    keep <n>                    # reports the store keeps; default 20
//	    max_findings <n>            # findings a report lists; default 10000
//	}
func parseReconcileBlock(d *caddyfile.Dispenser) (*ReconcileConfig, error) {
	rc := &ReconcileConfig{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !slices.Contains(reconcileOptions, opt) {
			return nil, unknownOption(d, "reconcile", opt, reconcileOptions)
		}
		if seen[opt] {
			return nil, d.Errf("target: reconcile: %s is set twice", opt)
		}
		seen[opt] = true
		if opt == "fix" {
			if d.NextArg() {
				return nil, d.Errf("target: reconcile: fix takes no argument")
			}
			rc.Fix = true
			continue
		}
		if !d.NextArg() {
			return nil, d.Errf("target: reconcile: %s needs a value", opt)
		}
		v := d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		switch opt {
		case "every":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur < MinReconcileEvery {
				return nil, d.Errf("target: reconcile: every: want a duration of at least %s, got %q", MinReconcileEvery, v)
			}
			rc.Every = caddy.Duration(dur)
		case "orphans":
			if v != reconcile.OrphansReport && v != reconcile.OrphansDisable {
				return nil, d.Errf("target: reconcile: orphans: want report or disable, got %q", v)
			}
			rc.Orphans = v
		case "keep", "max_findings":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, d.Errf("target: reconcile: %s: want a positive integer, got %q", opt, v)
			}
			if opt == "keep" {
				rc.Keep = n
			} else {
				rc.MaxFindings = n
			}
		}
	}
	return rc, nil
}
