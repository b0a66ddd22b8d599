package provision

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Two engines on one store, each with its own shared state and SharedStore set, are two
// gateways of a fleet (the store is bbolt here: what the engine does on a shared store does
// not depend on the backend, whose own cluster tests are in kv/etcdkv).

// testClock is a gateway's clock, moved forward by the test instead of waiting.
type testClock struct{ ahead atomic.Int64 }

func (c *testClock) now() time.Time       { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *testClock) skip(d time.Duration) { c.ahead.Add(int64(d)) }

// fleetGateway builds an engine on the rig's store as another gateway of a fleet: its own
// shared state, the store shared, its own clock (nil: the real one).
func (r *rig) fleetGateway(target *Target, clock *testClock) *Engine {
	r.t.Helper()
	share := NewShared(nil)
	r.t.Cleanup(share.Close)
	now := time.Now
	if clock != nil {
		now = clock.now
	}
	eng, err := New(Config{Store: r.store, Journal: r.j, Shared: share, Target: target, SharedStore: true, Now: now})
	if err != nil {
		r.t.Fatal(err)
	}
	return eng
}

// patientTarget is newTarget with a client that waits a minute for an answer: a gateway
// whose create is in flight while the app takes its time.
func patientTarget(t testing.TB, url string) *Target {
	t.Helper()
	target := newTarget(t, url, false)
	c, err := legacy.New(legacy.Options{BaseURL: url, Timeout: time.Minute, MaxRetries: -1, CircuitFailures: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	target.Client = c
	return target
}

func createThrough(t testing.TB, eng *Engine, requestID, name string) *Result {
	t.Helper()
	return eng.Apply(Request{ID: requestID, Client: "entra"},
		&Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user(name)), Status: http.StatusCreated})
}

// openRequests lists the request ids of the target's open intents.
func (r *rig) openRequests() []string {
	r.t.Helper()
	open, err := r.j.OpenIntents("native")
	if err != nil {
		r.t.Fatal(err)
	}
	var ids []string
	for _, in := range open {
		ids = append(ids, in.RequestID)
	}
	return ids
}

// reconciles counts the reconcile records of each request.
func (r *rig) reconciles() map[string]int {
	r.t.Helper()
	n := map[string]int{}
	for _, rec := range r.records() {
		if rec.Action == change.ActionReconcile {
			n[rec.RequestID]++
		}
	}
	return n
}

// appendIntent journals a create intent of name as a gateway does before its call, stamped
// at (zero: now).
func (r *rig) appendIntent(requestID, name string, at time.Time) *journal.Record {
	r.t.Helper()
	in := &journal.Record{RequestID: requestID, Client: "entra", Target: "native", Action: change.ActionCreate, Time: at,
		ResourceType: scim.UserType, SCIMID: "scim-" + requestID, Subject: name, Events: []change.Event{change.Create}, Outcome: change.Pending}
	if err := r.store.Update(func(tx *store.Tx) error { return r.j.Append(tx.KV(), in) }); err != nil {
		r.t.Fatal(err)
	}
	return in
}

// TestFleetCreateWaitsForLiveGateway: while gateway A's create is in flight (its intent
// journaled, the app not yet answering), a gateway starting does not close A's intent, and
// Entra's retry of the create through gateway B answers 503 with Retry-After without
// calling the app; A then finishes, its intent closed by its own outcome, and the app holds
// one account.
func TestFleetCreateWaitsForLiveGateway(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{})
	a := r.fleetGateway(patientTarget(t, srv.URL), nil)
	b := r.fleetGateway(newTarget(t, srv.URL, false), nil)
	arrived, release := make(chan struct{}), make(chan struct{})
	app.set(func(a *nativeApp) {
		a.beforeCreate = func() {
			close(arrived)
			<-release
		}
	})
	resA := make(chan *Result, 1)
	opA := &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("ada@contoso.example")), Status: http.StatusCreated}
	go func() { resA <- a.Apply(Request{ID: "req-a", Client: "entra"}, opA) }()
	<-arrived // A's intent is journaled: the app has its create
	released := false
	defer func() {
		if !released {
			close(release)
			<-resA
		}
	}()

	r.fleetGateway(newTarget(t, srv.URL, false), nil) // a gateway starting now
	if open := r.openRequests(); !slices.Equal(open, []string{"req-a"}) || r.reconciles()["req-a"] != 0 {
		t.Fatalf("a gateway starting closed the intent of a live gateway: open %v, reconciles %v", open, r.reconciles())
	}
	calls := len(app.callLog())
	res := createThrough(t, b, "req-b", "ADA@contoso.example")
	if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 || res.RetryAfter > a.intentBound() ||
		!strings.Contains(res.Err.Detail, "a create of ADA@contoso.example is in progress through another request") {
		t.Fatalf("a retry while the first create is in flight: status %d, Retry-After %v, %v", res.Status, res.RetryAfter, res.Err)
	}
	if got := app.callLog()[calls:]; len(got) != 0 {
		t.Fatalf("the retry called the app: %v", got)
	}
	if rec := r.last(); rec.RequestID != "req-b" || rec.Outcome != change.Failed {
		t.Fatalf("the retry is journaled as %+v", rec)
	}

	close(release)
	released = true
	if res := <-resA; res.Err != nil || r.nativeID(scim.UserType, res.ID) == "" {
		t.Fatalf("gateway A's create: %+v", res)
	}
	if open := r.openRequests(); len(open) != 0 || len(r.reconciles()) != 0 {
		t.Fatalf("after A's outcome: open %v, reconciles %v", open, r.reconciles())
	}
	if n := app.accountCount(); n != 1 || app.posts() != 1 {
		t.Fatalf("the app holds %d accounts after %d creates", n, app.posts())
	}
	// Entra's next retry finds the user A made: a conflict, no call.
	calls = len(app.callLog())
	if res := createThrough(t, b, "req-b2", "ada@contoso.example"); res.Status != http.StatusConflict {
		t.Fatalf("a retry after A's create: %+v", res)
	}
	if got := app.callLog()[calls:]; len(got) != 0 {
		t.Fatalf("the retry after A's create called the app: %v", got)
	}
}

// TestFleetCreateAdoptsDeadGatewaysCreate: gateway A journaled a create's intent and died
// (no outcome ever follows). Entra's retry through gateway B within the bound answers 503
// and calls nothing; past the bound B closes A's intent, looks the account up and adopts
// the one A's call made (the app holds one account, the directory the user), or, when A's
// call never reached the app, creates it once.
func TestFleetCreateAdoptsDeadGatewaysCreate(t *testing.T) {
	for _, reached := range []bool{true, false} {
		t.Run(fmt.Sprintf("reached=%v", reached), func(t *testing.T) {
			app, srv := newNativeApp(t)
			r := newRig(t, rigOptions{})
			if reached {
				app.accounts["acct-0042"] = map[string]any{"login": "ada@contoso.example"}
			}
			r.appendIntent("req-a", "ada@contoso.example", time.Time{})
			clock := &testClock{}
			b := r.fleetGateway(newTarget(t, srv.URL, false), clock)
			if open := r.openRequests(); !slices.Equal(open, []string{"req-a"}) {
				t.Fatalf("gateway B's start closed a fresh intent: open %v", open)
			}

			res := createThrough(t, b, "req-b1", "ada@contoso.example")
			if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
				t.Fatalf("a retry within the bound: status %d, Retry-After %v, %v", res.Status, res.RetryAfter, res.Err)
			}
			if calls := app.callLog(); len(calls) != 0 {
				t.Fatalf("a retry within the bound called the app: %v", calls)
			}

			clock.skip(b.intentBound() + time.Second)
			res = createThrough(t, b, "req-b2", "ada@contoso.example")
			if res.Err != nil {
				t.Fatalf("a retry past the bound: %+v", res.Err)
			}
			if n := app.accountCount(); n != 1 {
				t.Fatalf("the app holds %d accounts", n)
			}
			wantPosts, wantNative := 0, "acct-0042"
			if !reached {
				wantPosts, wantNative = 1, "acct-0001"
			}
			if app.posts() != wantPosts || r.nativeID(scim.UserType, res.ID) != wantNative {
				t.Fatalf("%d creates sent, native id %q; want %d, %q (calls %v)", app.posts(), r.nativeID(scim.UserType, res.ID), wantPosts, wantNative, app.callLog())
			}
			if calls := app.callLog(); calls[0] != "GET /accounts" {
				t.Fatalf("the retry did not look the account up first: %v", calls)
			}
			if open := r.openRequests(); len(open) != 0 {
				t.Fatalf("A's intent is still open: %v", open)
			}
			recs := r.records()
			var closedBy *journal.Record
			for i := range recs {
				if recs[i].Action == change.ActionReconcile && recs[i].RequestID == "req-a" {
					closedBy = &recs[i]
				}
			}
			if closedBy == nil || !strings.Contains(closedBy.Error, "its gateway stopped or gave up") {
				t.Fatalf("A's intent was not closed by a reconcile record: %+v", closedBy)
			}
			if last := recs[len(recs)-1]; last.RequestID != "req-b2" || last.Outcome != change.Applied || last.Seq < closedBy.Seq {
				t.Fatalf("the create is journaled as %+v", last)
			}
			if reached {
				if d := recs[len(recs)-1].Decision; d == nil || !strings.Contains(strings.Join(d.Reasons, " "), "adopted account acct-0042") {
					t.Fatalf("the adoption is not journaled: %+v", d)
				}
			}
			if err := r.store.View(func(tx *store.Tx) error {
				if _, listed := tx.Adoption("native", scim.UserType, "ada@contoso.example"); listed {
					return fmt.Errorf("the name is still listed for adoption")
				}
				_, err := tx.Get(scim.UserType, res.ID)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFleetRecoveryClosesStaleOnce: gateways close only intents older than the bound, and
// each exactly once: two gateways that read the same open intents and close them in turn
// (the second finds each closed in its transaction), and gateways starting at once on a
// store with stale intents.
func TestFleetRecoveryClosesStaleOnce(t *testing.T) {
	_, srv := newNativeApp(t)
	r := newRig(t, rigOptions{})
	target := newTarget(t, srv.URL, false)
	g1, g2 := r.fleetGateway(target, nil), r.fleetGateway(target, nil)
	old := time.Now().Add(-2 * g1.intentBound())
	const n = 20
	for i := range n {
		r.appendIntent(fmt.Sprintf("old-%02d", i), fmt.Sprintf("u%02d@contoso.example", i), old)
	}
	r.appendIntent("fresh", "fresh@contoso.example", time.Time{})

	open, err := r.j.OpenIntents("native")
	if err != nil {
		t.Fatal(err)
	}
	closed := 0
	for i := range open {
		for _, g := range []*Engine{g2, g1} { // both gateways read the intents before either closed them
			stale, _ := g.staleIntent(&open[i], time.Now())
			if !stale {
				continue
			}
			ok, err := g.closeIntent(&open[i], time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				closed++
			}
		}
	}
	if closed != n {
		t.Fatalf("%d closes of %d stale intents", closed, n)
	}

	for i := range n {
		r.appendIntent(fmt.Sprintf("older-%02d", i), fmt.Sprintf("v%02d@contoso.example", i), old)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			share := NewShared(nil)
			defer share.Close()
			if _, err := New(Config{Store: r.store, Journal: r.j, Shared: share, Target: target, SharedStore: true}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	counts := r.reconciles()
	if len(counts) != 2*n {
		t.Fatalf("%d intents reconciled, want %d: %v", len(counts), 2*n, counts)
	}
	for req, c := range counts {
		if c != 1 || req == "fresh" {
			t.Errorf("request %s reconciled %d times", req, c)
		}
	}
	if got := r.openRequests(); !slices.Equal(got, []string{"fresh"}) {
		t.Fatalf("open after recovery: %v, want [fresh]", got)
	}
	// The periodic pass closes the fresh intent once it is stale, at most its limit at once.
	clock := &testClock{}
	g3 := r.fleetGateway(target, clock)
	if k, err := g3.closeOpenIntents(sweepLimit); err != nil || k != 0 {
		t.Fatalf("a pass within the bound closed %d (%v)", k, err)
	}
	clock.skip(g3.intentBound() + time.Second)
	if k, err := g3.closeOpenIntents(sweepLimit); err != nil || k != 1 || len(r.openRequests()) != 0 {
		t.Fatalf("a pass past the bound closed %d (%v), open %v", k, err, r.openRequests())
	}
}

// TestFleetFlowDeadline: on a shared store a change's calls run under a deadline within the
// flow budget, which bounds how long its intent stays open; a gateway alone keeps the
// request's context.
func TestFleetFlowDeadline(t *testing.T) {
	_, srv := newNativeApp(t)
	r := newRig(t, rigOptions{})
	target := newTarget(t, srv.URL, false)
	start := time.Now()
	ctx, cancel := r.fleetGateway(target, nil).flowContext(context.Background())
	defer cancel()
	deadline, ok := ctx.Deadline()
	if !ok || deadline.After(time.Now().Add(target.flowBudget())) || deadline.Before(start.Add(target.flowBudget())) {
		t.Fatalf("the calls' deadline %v (set %v), want within the budget %v", deadline, ok, target.flowBudget())
	}
	alone := r.build(rigOptions{target: target})
	if _, ok := func() (time.Time, bool) {
		ctx, cancel := alone.flowContext(context.Background())
		defer cancel()
		return ctx.Deadline()
	}(); ok {
		t.Fatal("a gateway alone bounds its calls")
	}
}

// TestFleetDeliveryTakenOver: gateway A died while it delivered a queued create (its
// deliver intent journaled, its call made, no outcome). Gateway B's attempt within the bound
// waits without a record and without a call; past the bound B closes A's intent and adopts
// the account A's call made: the app holds one account, the task is delivered.
func TestFleetDeliveryTakenOver(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{})
	if err := r.store.Update(func(tx *store.Tx) error { return tx.SetOutboxPaused("native", true) }); err != nil {
		t.Fatal(err) // the tests attempt deliveries themselves
	}
	target := newTarget(t, srv.URL, false)
	target.Delivery = withMode(outbox.Queued)
	a := r.fleetGateway(target, nil)
	clock := &testClock{}
	b := r.fleetGateway(target, clock)
	res := createThrough(t, a, "req-q", "ada@contoso.example")
	if res.Err != nil || len(r.tasks()) != 1 {
		t.Fatalf("queued create: %+v, tasks %v", res.Err, r.tasks())
	}
	// A's attempt: the intent, the call that made the account, then A died.
	app.accounts["acct-0042"] = map[string]any{"login": "ada@contoso.example"}
	in := &journal.Record{RequestID: "req-q", Client: "entra", Target: "native", Action: change.ActionDeliver,
		ResourceType: scim.UserType, SCIMID: res.ID, Subject: "ada@contoso.example", Events: []change.Event{change.Create}, Outcome: change.Pending}
	if err := r.store.Update(func(tx *store.Tx) error { return r.j.Append(tx.KV(), in) }); err != nil {
		t.Fatal(err)
	}
	records := len(r.records())

	rep := b.Deliver(context.Background(), r.tasks())
	if rep.Done || rep.Dead || !rep.NextAttempt.After(clock.now()) {
		t.Fatalf("an attempt while A's delivery may be in flight: %+v", rep)
	}
	if calls := app.callLog(); len(calls) != 0 {
		t.Fatalf("the attempt called the app: %v", calls)
	}
	if n := len(r.records()); n != records || !slices.Equal(r.openRequests(), []string{"req-q"}) {
		t.Fatalf("the attempt journaled %d records; open %v", n-records, r.openRequests())
	}

	clock.skip(b.intentBound() + time.Second)
	if rep := b.Deliver(context.Background(), r.tasks()); !rep.Done {
		t.Fatalf("the attempt past the bound: %+v (outcomes %v)", rep, r.outcomesOf("req-q"))
	}
	if app.posts() != 0 || app.accountCount() != 1 || r.nativeID(scim.UserType, res.ID) != "acct-0042" {
		t.Fatalf("%d creates sent, %d accounts, native id %q", app.posts(), app.accountCount(), r.nativeID(scim.UserType, res.ID))
	}
	if got := r.outcomesOf("req-q"); !slices.Equal(got, []string{"create:queued", "deliver:pending", "reconcile:applied", "deliver:pending", "deliver:delivered"}) {
		t.Fatalf("the request's records: %v", got)
	}
	if len(r.tasks()) != 0 || len(r.openRequests()) != 0 {
		t.Fatalf("left: tasks %v, open %v", r.tasks(), r.openRequests())
	}
	r.verify()
}

// TestFleetCreateClaimsItsIntent: two gateways decide creates of one name at once (neither
// sees the other's intent yet); the one whose intent commits second finds the first in its
// intent's transaction and backs off (503, no call) instead of creating a second account.
func TestFleetCreateClaimsItsIntent(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{})
	a := r.fleetGateway(newTarget(t, srv.URL, false), nil)
	j := a.newJob(Request{ID: "req-a", Client: "entra"},
		&Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("ada@contoso.example")), Status: http.StatusCreated})
	p, err := a.decideView(j)
	if err != nil {
		t.Fatal(err)
	}
	r.appendIntent("req-b", "Ada@Contoso.example", time.Time{}) // gateway B's intent commits first
	_, err = a.send(j, p, policy.Decision{Allow: true})
	wait, busy := inFlightWait(err)
	if !busy || wait <= 0 || wait > a.intentBound() {
		t.Fatalf("the second intent: %v (wait %v)", err, wait)
	}
	if calls := app.callLog(); len(calls) != 0 {
		t.Fatalf("the app was called: %v", calls)
	}
	if got := r.openRequests(); !slices.Equal(got, []string{"req-b"}) {
		t.Fatalf("open intents %v, want only B's", got)
	}
}

// TestFleetSweepWhileRunning: a gateway that keeps running recovers the intents of a
// gateway that died after it started, once they are stale, through its periodic pass, with
// the configuration in force (a reload hands the pass over once it is activated).
func TestFleetSweepWhileRunning(t *testing.T) {
	_, srv := newNativeApp(t)
	r := newRig(t, rigOptions{})
	target := newTarget(t, srv.URL, false)
	share := NewShared(nil)
	t.Cleanup(share.Close)
	build := func(now func() time.Time) *Engine {
		eng, err := New(Config{Store: r.store, Journal: r.j, Shared: share, Target: target, SharedStore: true, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	first := build(time.Now)
	first.Activate()
	r.appendIntent("died", "ada@contoso.example", time.Time{}) // another gateway's, after this one started
	clock := &testClock{}
	clock.skip(first.intentBound() + time.Second)
	build(clock.now).Activate() // a reload: its clock sees the intent stale, the first config's does not
	first.Release()
	share.sweepers["native"].kick <- struct{}{}
	for range 2000 {
		if len(r.openRequests()) == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if open := r.openRequests(); len(open) != 0 || r.reconciles()["died"] != 1 {
		t.Fatalf("after a pass: open %v, reconciles %v", open, r.reconciles())
	}
	if _, listed := func() (uint64, bool) {
		var (
			seq uint64
			ok  bool
		)
		_ = r.store.View(func(tx *store.Tx) error {
			seq, ok = tx.Adoption("native", scim.UserType, "ada@contoso.example")
			return nil
		})
		return seq, ok
	}(); !listed {
		t.Fatal("the dead gateway's create is not listed for adoption")
	}
}
