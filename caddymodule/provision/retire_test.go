package provision

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestRetiredTargetStopsItsWorker: reloads that rename the target (or drop it) on an open
// store, and configurations thrown away that named a new one, each left an outbox worker
// running for good, delivering the old target's outbox with a configuration no longer in
// force (its URL, its credentials) and listed by the outbox admin routes: one goroutine
// and one worker per name the store ever saw. The last configuration released that names
// a target now stops its worker; the queued changes stay in the outbox and are delivered
// once a configuration names the target again.
func TestRetiredTargetStopsItsWorker(t *testing.T) {
	app, srv := newNativeApp(t)
	app.set(func(a *nativeApp) { a.fail["POST /accounts"] = http.StatusServiceUnavailable })
	target := func(name string) *Target {
		tg := newTarget(t, srv.URL, false)
		tg.Name = name
		tg.Delivery = withMode(outbox.Queued)
		return tg
	}
	r := newRig(t, rigOptions{target: target("native")})
	r.eng.Activate()
	workers := func() []string {
		var out []string
		for _, w := range outbox.Running() {
			if w.StorePath() == r.store.DB().String() {
				out = append(out, w.Target())
			}
		}
		return out
	}
	// A change the app refuses for now stays queued for the target.
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))

	prev := r.eng
	for i := range 20 {
		next := r.build(rigOptions{target: target(fmt.Sprintf("renamed%d", i))})
		next.Activate()
		prev.Release() // Caddy cleans up the old configuration once the new one started
		prev = next
		// A configuration Caddy throws away (another module failed) that named a target
		// of its own.
		r.build(rigOptions{target: target(fmt.Sprintf("thrown%d", i))}).Release()
	}
	if got := workers(); !slices.Equal(got, []string{"renamed19"}) {
		t.Fatalf("workers after 20 reloads renaming the target: %v, want only the one in force", got)
	}

	// The first target comes back: its queued change was kept and is delivered.
	app.set(func(a *nativeApp) { delete(a.fail, "POST /accounts") })
	r.eng = r.build(rigOptions{target: target("native")})
	r.eng.Activate()
	prev.Release()
	r.settle()
	if r.nativeID(scim.UserType, uid) == "" || app.accountCount() != 1 {
		t.Fatalf("the queued create was not delivered once its target came back: %v", r.outcomesOf(testReq.ID))
	}
	if got := workers(); !slices.Equal(got, []string{"native"}) {
		t.Fatalf("workers: %v, want only native's", got)
	}

	// A configuration without a target on the same store retires the last one too.
	r.build(rigOptions{}).Activate()
	r.eng.Release()
	if got := workers(); len(got) != 0 {
		t.Fatalf("workers with no target configured: %v", got)
	}
	r.verify()
}

// TestRetiredTargetStopsItsSweeper: on a store gateways share, each target has a sweeper
// that closes other gateways' stale intents. It was handed to every configuration built,
// a configuration Caddy threw away included (whose engine then swept, and stayed
// referenced), and it ran for good once no configuration named its target. It now goes to
// the configuration in force, and stops with the last one that names its target.
func TestRetiredTargetStopsItsSweeper(t *testing.T) {
	_, srv := newNativeApp(t)
	r := newRig(t, rigOptions{})
	share := NewShared(nil)
	t.Cleanup(share.Close)
	build := func(name string) *Engine {
		tg := newTarget(t, srv.URL, false)
		tg.Name = name
		eng, err := New(Config{Store: r.store, Journal: r.j, Shared: share, Target: tg, SharedStore: true})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	sweeping := func() map[string]*Engine {
		share.sweepMu.Lock()
		defer share.sweepMu.Unlock()
		out := map[string]*Engine{}
		for name, w := range share.sweepers {
			out[name] = w.eng.Load()
		}
		return out
	}
	inForce := build("native")
	inForce.Activate()
	thrown := build("native")
	thrown.Release()
	if got := sweeping(); len(got) != 1 || got["native"] != inForce {
		t.Fatalf("after a configuration thrown away, the sweeper sweeps for %v, want the one in force", got)
	}
	for i := range 20 {
		next := build(fmt.Sprintf("renamed%d", i))
		next.Activate()
		inForce.Release()
		inForce = next
		build(fmt.Sprintf("thrown%d", i)).Release()
	}
	if got := sweeping(); len(got) != 1 || got["renamed19"] != inForce {
		t.Fatalf("sweepers after 20 reloads renaming the target: %v, want only renamed19's", got)
	}
}
