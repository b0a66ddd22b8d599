package caddymodule

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/reconcile"
	"github.com/scimgate/scimgate/caddymodule/reconcileadmin"
	"github.com/scimgate/scimgate/caddymodule/scim"
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

// minReconcileEvery is the shortest schedule; scheduleCheck how often it is checked.
const (
	minReconcileEvery = time.Minute
	scheduleCheck     = time.Minute
)

// provisionReconcile makes the target's reconciler, registers it with the admin routes
// and starts its schedule. A target whose mapping has no list call cannot be reconciled:
// an error only when the config asks for reconciles.
func (g *Handler) provisionReconcile() error {
	if g.target == nil || !g.canReconcile() {
		return nil
	}
	cfg := g.Target.Reconcile
	if cfg == nil {
		cfg = &ReconcileConfig{}
	}
	rc, err := reconcile.New(g.store.Store, g.store.journal, g.engine, g.target,
		reconcile.Options{Orphans: cfg.Orphans, Keep: cfg.Keep, MaxFindings: cfg.MaxFindings}, g.logger.Named("reconcile"))
	if err != nil {
		return fmt.Errorf("target %s: %w", g.target.Name, err)
	}
	g.reconciler = rc
	g.unregisterReconcile = reconcileadmin.Register(rc)
	if cfg.Every > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		g.stopReconcile = func() {
			cancel()
			<-done // a run in progress ends before the store may close
		}
		// One gateway of a fleet runs the schedule: the one holding "reconcile/<target>".
		job := "reconcile/" + g.target.Name
		go func() {
			defer close(done)
			err := g.store.elector.Run(ctx, job, func(ctx context.Context) {
				g.scheduleReconcile(ctx, time.Duration(cfg.Every), cfg.Fix)
			})
			if err != nil && ctx.Err() == nil {
				g.logger.Error("the reconcile schedule stopped", zap.String("job", job), zap.Error(err))
			}
		}()
	}
	return nil
}

// scheduleReconcile runs a reconcile whenever the target's newest report is older than
// every, until ctx ends (the config's cleanup, or another gateway took the job over: the
// reports are in the shared store, so the new holder neither skips nor repeats a run).
func (g *Handler) scheduleReconcile(ctx context.Context, every time.Duration, fix bool) {
	t := time.NewTicker(min(every, scheduleCheck))
	defer t.Stop()
	for {
		if due, err := g.reconcileDue(every); err != nil {
			g.logger.Warn("reading the reconcile reports failed; the scheduled reconcile waits", zap.Error(err))
		} else if due {
			if _, err := g.reconciler.Run(ctx, fix, "schedule"); err != nil && ctx.Err() == nil {
				g.logger.Error("the scheduled reconcile failed", zap.String("target", g.target.Name), zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcileDue reports whether the target's newest report is older than every.
func (g *Handler) reconcileDue(every time.Duration) (bool, error) {
	sums, err := g.reconciler.Summaries()
	if err != nil {
		return false, err
	}
	return len(sums) == 0 || time.Since(sums[0].Started) >= every, nil
}

// checkReconcile checks the target's reconcile settings when the config is provisioned (so
// that `caddy validate` reports them), before any store is open.
func (g *Handler) checkReconcile() error {
	if g.target == nil {
		return nil
	}
	cfg := g.Target.Reconcile
	if !g.canReconcile() {
		if cfg != nil {
			return fmt.Errorf("target %s: reconcile: the mapping has no list call (users.list or groups.list) to read the app's accounts with", g.target.Name)
		}
		return nil
	}
	if cfg != nil && cfg.Every != 0 && time.Duration(cfg.Every) < minReconcileEvery {
		return fmt.Errorf("target %s: reconcile: every must be at least %s, got %s", g.target.Name, minReconcileEvery, time.Duration(cfg.Every))
	}
	return nil
}

// canReconcile reports whether the mapping can list the app's accounts or groups.
func (g *Handler) canReconcile() bool {
	m := g.target.Mapping
	return m.CanList(scim.UserType) || m.CanList(scim.GroupType)
}

// cleanupReconcile stops the schedule and unregisters the reconciler.
func (g *Handler) cleanupReconcile() {
	if g.stopReconcile != nil {
		g.stopReconcile()
	}
	if g.unregisterReconcile != nil {
		g.unregisterReconcile()
	}
}

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
			if err != nil || dur < minReconcileEvery {
				return nil, d.Errf("target: reconcile: every: want a duration of at least %s, got %q", minReconcileEvery, v)
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
		default:
			return nil, d.Errf("target: unrecognized reconcile option %q", opt)
		}
	}
	return rc, nil
}
