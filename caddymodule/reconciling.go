package caddymodule

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/gwconfig"
	"github.com/scimgate/scimgate/caddymodule/reconcile"
	"github.com/scimgate/scimgate/caddymodule/reconcileadmin"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// scheduleCheck is how often a reconcile schedule is checked.
const scheduleCheck = time.Minute

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
	if cfg != nil && cfg.Every != 0 && time.Duration(cfg.Every) < gwconfig.MinReconcileEvery {
		return fmt.Errorf("target %s: reconcile: every must be at least %s, got %s", g.target.Name, gwconfig.MinReconcileEvery, time.Duration(cfg.Every))
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
