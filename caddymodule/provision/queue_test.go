package provision

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Tests of queued delivery: the outbox committed with the change, the worker's attempts,
// order, dependencies, retries, dead letters, fallback and the deprovisioning override,
// against the real loopback app of engine_test.go.

// fastRetries retries within milliseconds, so that tests wait for nothing.
var fastRetries = outbox.Settings{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxConcurrent: 4}

func queuedRig(t *testing.T, url string, s outbox.Settings) *rig {
	t.Helper()
	target := newTarget(t, url, false)
	target.Delivery = s
	return newRig(t, rigOptions{target: target})
}

func withMode(m outbox.Mode) outbox.Settings {
	s := fastRetries
	s.Mode = m
	return s
}

// tasks lists the target's outbox.
func (r *rig) tasks() []*outbox.Task {
	r.t.Helper()
	var out []*outbox.Task
	err := r.store.View(func(tx *store.Tx) error {
		return tx.Tasks("native", 0, func(st store.Task) (bool, error) {
			tk, err := outbox.Decode(st.Seq, st.Data)
			out = append(out, tk)
			return err == nil, err
		})
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// settle waits (bounded) until the outbox holds no task that is still to be tried: every
// task delivered or dead. It fails the test when that does not happen in 10 s.
func (r *rig) settle() {
	r.t.Helper()
	for range 2000 {
		if s := r.eng.Worker().Stats(); s.Pending == s.Held && s.InFlight == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.t.Fatalf("the outbox did not settle: %+v", r.tasks())
}

// verify checks that the journal verifies as one chain.
func (r *rig) verify() {
	r.t.Helper()
	rep, err := r.j.Verify(context.Background(), nil)
	if err != nil || !rep.OK {
		r.t.Fatalf("journal verify: %+v, %v", rep, err)
	}
}

// outcomesOf lists the outcomes of the request's records, in journal order.
func (r *rig) outcomesOf(requestID string) []string {
	var out []string
	for _, rec := range r.records() {
		if rec.RequestID == requestID {
			out = append(out, string(rec.Action)+":"+string(rec.Outcome))
		}
	}
	return out
}

// TestQueuedAnswersAtOnce: Entra's create is answered while the app is down, committed with
// its task and a record saying queued; the worker retries until the app is back, journals
// every attempt with what the app answered, and the directory's id map follows.
func TestQueuedAnswersAtOnce(t *testing.T) {
	app, srv := newNativeApp(t)
	app.set(func(a *nativeApp) { a.fail["POST /accounts"] = http.StatusServiceUnavailable })
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	req := Request{ID: "q-1", Client: "entra"}
	res := r.eng.Apply(req, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("ada@contoso.example", `,"title":"Engineer"`)), Status: http.StatusCreated})
	if res.Err != nil || res.Status != http.StatusCreated || res.Record == nil || res.Record.Outcome != change.Queued {
		t.Fatalf("queued create: %+v (%v)", res, res.Err)
	}
	// Wait until at least two attempts failed: the task is retried.
	for i := 0; ; i++ {
		if n := strings.Count(strings.Join(r.outcomesOf("q-1"), " "), "deliver:failed"); n >= 2 {
			break
		}
		if i == 2000 {
			t.Fatalf("no retries: %v", r.outcomesOf("q-1"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.nativeID(scim.UserType, res.ID) != "" {
		t.Fatal("an id map entry before the delivery")
	}
	app.set(func(a *nativeApp) { delete(a.fail, "POST /accounts") })
	r.settle()
	if got := r.nativeID(scim.UserType, res.ID); got == "" || app.accountCount() != 1 || len(r.tasks()) != 0 {
		t.Fatalf("after delivery: native %q, accounts %d, tasks %v", got, app.accountCount(), r.tasks())
	}
	outcomes := r.outcomesOf("q-1")
	if outcomes[0] != "create:queued" || outcomes[len(outcomes)-1] != "deliver:delivered" || outcomes[len(outcomes)-2] != "deliver:pending" {
		t.Fatalf("records: %v", outcomes)
	}
	var failed, delivered journal.Record
	for _, rec := range r.records() {
		if rec.Outcome == change.Failed && failed.Seq == 0 {
			failed = rec
		}
		if rec.Outcome == change.Delivered {
			delivered = rec
		}
	}
	if failed.Backend == nil || failed.Backend.Status != http.StatusServiceUnavailable || failed.Error == "" {
		t.Fatalf("a failed attempt's record does not say what the app answered: %+v", failed)
	}
	if delivered.Backend == nil || delivered.Backend.Status != http.StatusCreated || delivered.NativeID == "" || delivered.Client != "entra" {
		t.Fatalf("delivery record: %+v", delivered)
	}
	r.verify()
}

// TestQueuedOrderPerResource: a resource's changes reach the app in the order they were
// made, with the final values.
func TestQueuedOrderPerResource(t *testing.T) {
	app, srv := newNativeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example", `,"title":"One"`))
	for _, title := range []string{"Two", "Three", "Four"} {
		if res := r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"`+title+`"}]`); res.Err != nil || res.Record.Outcome != change.Queued {
			t.Fatalf("patch %s: %+v", title, res)
		}
	}
	r.settle()
	n := r.nativeID(scim.UserType, uid)
	if n == "" || app.accounts[n]["title"] != "Four" {
		t.Fatalf("account %q: %v", n, app.accounts[n])
	}
	// The create first, then updates (those queued together are coalesced into one).
	calls := app.callLog()
	if len(calls) > 4 || calls[0] != "POST /accounts" || slices.ContainsFunc(calls[1:], func(c string) bool { return c != "PATCH /accounts/"+n }) {
		t.Fatalf("calls %v", calls)
	}
	r.verify()
}

// TestQueuedMembershipWaitsForMember: a group's member add waits for the member's create,
// though both are queued and tasks of different resources go in parallel.
func TestQueuedMembershipWaitsForMember(t *testing.T) {
	app, srv := newNativeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	release := make(chan struct{})
	app.set(func(a *nativeApp) { a.beforeCreate = func() { <-release } })
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Admins","members":[{"value":"`+uid+`"}]}`)
	close(release)
	r.settle()
	un, gn := r.nativeID(scim.UserType, uid), r.nativeID(scim.GroupType, gid)
	if un == "" || gn == "" || !app.roles[gn][un] {
		t.Fatalf("user %q group %q roles %v; calls %v; tasks %+v", un, gn, app.roles, app.callLog(), r.tasks())
	}
	if calls := app.callLog(); calls[0] != "POST /accounts" {
		t.Fatalf("the group's calls went before the member's create: %v", calls)
	}
}

// TestDeadLetter: a change the app rejects (400) is a dead letter at once, kept with the
// app's answer; the resource's later changes wait behind it, other resources' do not. When
// the rejected change went coalesced with a later one, the first is tried again at once on
// its own, so that the dead letter is the change the app refused and the later one waits
// untried. (Which of the two happens depends on whether the second change is queued before
// the first one's delivery starts; each is made certain here.)
func TestDeadLetter(t *testing.T) {
	for _, coalesced := range []bool{false, true} {
		t.Run(map[bool]string{false: "alone", true: "coalesced"}[coalesced], func(t *testing.T) {
			app, srv := newNativeApp(t)
			r := queuedRig(t, srv.URL, withMode(outbox.Queued))
			uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
			r.settle()
			n := r.nativeID(scim.UserType, uid)
			app.set(func(a *nativeApp) {
				a.fail["PATCH /accounts/"+n] = http.StatusBadRequest
				a.calls = nil
			})
			if coalesced {
				if err := r.eng.Worker().Pause("test"); err != nil {
					t.Fatal(err)
				}
			}
			r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Refused"}]`)
			if !coalesced {
				r.settle() // delivered (and refused) before the next change is queued
			}
			r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Later"}]`)
			if coalesced {
				if err := r.eng.Worker().Resume("test"); err != nil {
					t.Fatal(err)
				}
			}
			other := r.mustCreate(scim.UserType, user("bob@contoso.example"))
			r.settle()
			attempts := map[bool]int{false: 1, true: 2}[coalesced]
			tasks := r.tasks()
			app.mu.Lock()
			calls := slices.Clone(app.calls)
			app.mu.Unlock()
			patches := slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return !strings.HasPrefix(c, "PATCH ") })
			if len(tasks) != 2 || !tasks[0].Dead || tasks[0].Attempts != attempts || tasks[0].LastStatus != http.StatusBadRequest || tasks[1].Dead || tasks[1].Attempts != 0 || len(patches) != attempts {
				t.Fatalf("tasks (want the first dead after %d attempts, the second untried): %s\ncalls: %v", attempts, showTasks(tasks), calls)
			}
			if r.nativeID(scim.UserType, other) == "" {
				t.Fatal("another resource's task waited behind the dead letter")
			}
			if s := r.eng.Worker().Stats(); s.Pending != 1 || s.Held != 1 || s.Dead != 1 {
				t.Fatalf("stats: %+v", s)
			}
			var dead journal.Record
			for _, rec := range r.records() {
				if rec.Outcome == change.Dead {
					dead = rec
				}
			}
			if dead.Backend == nil || dead.Backend.Status != http.StatusBadRequest || !strings.Contains(dead.Error, "refused with 400") {
				t.Fatalf("dead letter record: %+v", dead)
			}
			r.verify()
		})
	}
}

// TestDeadAfterMaxAge: an app that stays unavailable makes a task a dead letter once it is
// older than max_age.
func TestDeadAfterMaxAge(t *testing.T) {
	app, srv := newNativeApp(t)
	s := withMode(outbox.Queued)
	s.MaxAge = time.Nanosecond
	r := queuedRig(t, srv.URL, s)
	app.set(func(a *nativeApp) { a.fail["POST /accounts"] = http.StatusServiceUnavailable })
	r.mustCreate(scim.UserType, user("ada@contoso.example"))
	r.settle()
	if tasks := r.tasks(); len(tasks) != 1 || !tasks[0].Dead || tasks[0].LastStatus != http.StatusServiceUnavailable {
		t.Fatalf("tasks: %+v", tasks)
	}
}

// TestRetryAfterHonoured: the wait before the next attempt is at least the app's
// Retry-After.
func TestRetryAfterHonoured(t *testing.T) {
	s := fastRetries.WithDefaults()
	tk := &outbox.Task{Queued: time.Now()}
	now := time.Now()
	if dead := s.Fail(tk, outbox.Failure{RetryAfter: time.Hour, Status: 429}, now); dead || tk.NextAttempt.Sub(now) < time.Hour {
		t.Fatalf("next attempt %v after now, dead %v", tk.NextAttempt.Sub(now), dead)
	}
	for n := 1; n < 12; n++ {
		if d := s.Backoff(n, 0); d > s.MaxBackoff || d < s.MinBackoff/2 {
			t.Fatalf("backoff %d: %v outside [%v, %v]", n, d, s.MinBackoff/2, s.MaxBackoff)
		}
	}
}

// TestFallback: in fallback mode a change goes at once; when the app is unavailable Entra
// gets success and the change is queued; when the app rejects it, Entra gets the rejection.
func TestFallback(t *testing.T) {
	app, srv := newNativeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Fallback))
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	if rec := r.last(); rec.Outcome != change.Applied {
		t.Fatalf("fallback with the app up: %+v", rec)
	}
	n := r.nativeID(scim.UserType, uid)
	app.set(func(a *nativeApp) { a.fail["PATCH /accounts/"+n] = http.StatusServiceUnavailable })
	res := r.eng.Apply(Request{ID: "fb-1", Client: "entra"}, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: uid, Patch: patchOps(t, `[{"op":"replace","path":"title","value":"Down"}]`), Status: http.StatusNoContent})
	if res.Err != nil || res.Status != http.StatusNoContent || res.Record.Outcome != change.Queued {
		t.Fatalf("outage: %+v (%v)", res, res.Err)
	}
	if got := r.outcomesOf("fb-1"); len(got) < 2 || got[0] != "patch:pending" || got[1] != "patch:queued" {
		t.Fatalf("records: %v", got)
	}
	// The resource has a task: this change queues behind it whatever the mode, without
	// trying the app first.
	res = r.eng.Apply(Request{ID: "fb-2", Client: "entra"}, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: uid, Patch: patchOps(t, `[{"op":"replace","path":"title","value":"Behind"}]`), Status: http.StatusNoContent})
	if got := r.outcomesOf("fb-2"); res.Err != nil || len(got) == 0 || got[0] != "patch:queued" {
		t.Fatalf("behind a task: %+v, records %v", res, got)
	}
	app.set(func(a *nativeApp) { delete(a.fail, "PATCH /accounts/"+n) })
	r.settle()
	if app.accounts[n]["title"] != "Behind" || len(r.tasks()) != 0 {
		t.Fatalf("account %v, tasks %+v", app.accounts[n], r.tasks())
	}
	app.set(func(a *nativeApp) { a.fail["PATCH /accounts/"+n] = http.StatusBadRequest })
	if res := r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Bad"}]`); res.Err == nil || res.Status != http.StatusBadRequest {
		t.Fatalf("a rejection in fallback mode: %+v", res)
	}
	r.verify()
}

// TestDeprovisionImmediate: in queued mode a deactivation goes at once (unless the
// resource has tasks waiting), or is queued when deprovisioning is set to queue too.
func TestDeprovisionImmediate(t *testing.T) {
	for _, queuedToo := range []bool{false, true} {
		app, srv := newNativeApp(t)
		s := withMode(outbox.Queued)
		s.DeprovisionQueued = queuedToo
		r := queuedRig(t, srv.URL, s)
		uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
		r.settle()
		n := r.nativeID(scim.UserType, uid)
		app.set(func(a *nativeApp) { a.fail["PATCH /accounts/"+n] = http.StatusServiceUnavailable })
		res := r.patchAs("d-1", uid, `[{"op":"replace","path":"active","value":false}]`)
		if res.Err != nil || res.Record.Outcome != change.Queued {
			t.Fatalf("queued too %v: %+v (%v)", queuedToo, res.Record, res.Err)
		}
		// Sent at once, the request has an intent of its own before it was queued.
		if got := r.outcomesOf("d-1"); (got[0] == "patch:pending") == queuedToo {
			t.Fatalf("queued too %v: records %v", queuedToo, got)
		}
		app.set(func(a *nativeApp) { delete(a.fail, "PATCH /accounts/"+n) })
		r.settle()
		if app.accounts[n]["enabled"] != false {
			t.Fatalf("queued too %v: account %v", queuedToo, app.accounts[n])
		}
		// With the app up, a deactivation in queued mode is applied at once.
		app.set(func(a *nativeApp) {})
		if res := r.patch(scim.UserType, uid, `[{"op":"replace","path":"active","value":true}]`); res.Err != nil {
			t.Fatal(res.Err)
		}
		r.settle()
		res = r.patch(scim.UserType, uid, `[{"op":"replace","path":"active","value":false}]`)
		if want := map[bool]change.Outcome{false: change.Applied, true: change.Queued}[queuedToo]; res.Err != nil || res.Record.Outcome != want {
			t.Fatalf("queued too %v: deactivation %+v, want %s", queuedToo, res.Record, want)
		}
		r.settle()
	}
}

// TestQueuedPolicyAndDryRun: the policy decides when the change arrives (the queued record
// has the decision), its obligations shape the calls the worker builds; a dry run queues
// and journals dry_run deliveries without calls.
func TestQueuedPolicyAndDryRun(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newTarget(t, srv.URL, false)
	target.Delivery = withMode(outbox.Queued)
	r := newRig(t, rigOptions{target: target, policy: writePolicy(t, obligationsPolicy)})
	created := r.create(scim.UserType, user("quiet@contoso.example", `,"title":"Secret"`))
	if created.Err != nil || created.Record == nil {
		t.Fatalf("create: %+v", created)
	}
	// The request's own record: the worker may already have journaled its delivery.
	uid, queued := created.ID, *created.Record
	if queued.Outcome != change.Queued || queued.Decision == nil || queued.Decision.PolicyHash == "" {
		t.Fatalf("queued record: %+v", queued)
	}
	res := r.create(scim.UserType, user("bg@contoso.example"))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := r.patch(scim.UserType, res.ID, `[{"op":"replace","path":"active","value":false}]`); res.Status != http.StatusForbidden {
		t.Fatalf("a denied change in queued mode: %+v", res)
	}
	r.settle()
	n := r.nativeID(scim.UserType, uid)
	if _, has := app.accounts[n]["title"]; n == "" || has {
		t.Fatalf("the obligation was not applied to the delivery: %v", app.accounts[n])
	}
	for _, rec := range r.records() {
		if rec.Outcome == change.Delivered && rec.SCIMID == uid && (rec.Decision == nil || rec.Decision.PolicyHash != queued.Decision.PolicyHash) {
			t.Fatalf("delivery record: %+v", rec)
		}
	}

	dapp, dsrv := newNativeApp(t)
	dry := newTarget(t, dsrv.URL, true)
	dry.Delivery = withMode(outbox.Queued)
	dr := newRig(t, rigOptions{target: dry})
	dr.mustCreate(scim.UserType, user("ada@contoso.example"))
	dr.settle()
	if got := dr.outcomesOf(testReq.ID); !slices.Equal(got, []string{"create:queued", "deliver:dry_run"}) || len(dapp.callLog()) != 0 || len(dr.tasks()) != 0 {
		t.Fatalf("dry run: records %v, calls %v", got, dapp.callLog())
	}
	r.verify()
}

// TestQueuedDeleteAfterUpdates: a delete queued behind updates reaches the app after them,
// with the account's native id still known (the directory no longer has the user).
func TestQueuedDeleteAfterUpdates(t *testing.T) {
	app, srv := newNativeApp(t)
	s := withMode(outbox.Queued)
	s.DeprovisionQueued = true
	r := queuedRig(t, srv.URL, s)
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Admins","members":[{"value":"`+uid+`"}]}`)
	r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Gone soon"}]`)
	if res := r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: uid}); res.Err != nil || res.Record.Outcome != change.Queued {
		t.Fatalf("delete: %+v", res)
	}
	r.settle()
	if app.accountCount() != 0 || r.nativeID(scim.UserType, uid) != "" || len(r.tasks()) != 0 {
		t.Fatalf("accounts %d, tasks %+v, calls %v", app.accountCount(), r.tasks(), app.callLog())
	}
	if gn := r.nativeID(scim.GroupType, gid); len(app.roles[gn]) != 1 {
		t.Fatalf("the membership delivered before the delete: %v", app.roles)
	}
	r.verify()
}

// patchAs patches a user in a request of its own (Entra's requests each have their id).
func (r *rig) patchAs(requestID, id, ops string) *Result {
	r.t.Helper()
	return r.eng.Apply(Request{ID: requestID, Client: "entra"}, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: id, Patch: patchOps(r.t, ops), Status: http.StatusOK})
}

// TestOutboxOperators: dead letters and the tasks held behind them are listed as such, a
// task is shown with its attempts, retried, dropped, and a target paused and resumed, each
// journaled with who did it.
func TestOutboxOperators(t *testing.T) {
	app, srv := newNativeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	w := r.eng.Worker()
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	r.settle()
	n := r.nativeID(scim.UserType, uid)
	app.set(func(a *nativeApp) { a.fail["PATCH /accounts/"+n] = http.StatusUnprocessableEntity })
	r.patchAs("p-1", uid, `[{"op":"replace","path":"title","value":"One"}]`)
	// p-1 is delivered (and dies) alone before p-2 is queued: queued while p-1 still
	// waited, p-2 would be coalesced with it into one attempt.
	r.settle()
	r.patchAs("p-2", uid, `[{"op":"replace","path":"title","value":"Two"}]`)
	r.settle()

	dead, err := w.List(outbox.Filter{State: "dead"})
	if err != nil || len(dead) != 1 || dead[0].State != "dead" {
		t.Fatalf("dead letters: %+v %v", dead, err)
	}
	pending, _ := w.List(outbox.Filter{State: "pending", Resource: uid})
	if len(pending) != 1 || pending[0].State != "held" || pending[0].Behind != dead[0].Seq {
		t.Fatalf("held: %+v", pending)
	}
	if _, err := w.List(outbox.Filter{State: "stuck"}); err == nil {
		t.Fatal("an unknown state was accepted")
	}
	v, err := w.Show(context.Background(), dead[0].Seq)
	if err != nil || len(v.Attempts) != 2 || v.Attempts[0].Outcome != change.Pending || v.Attempts[1].Outcome != change.Dead || v.Attempts[1].Backend.Status != http.StatusUnprocessableEntity {
		t.Fatalf("show: %+v %v", v, err)
	}
	if err := w.Retry(pending[0].Seq, "alice"); !errors.Is(err, outbox.ErrConflict) {
		t.Fatalf("retry of a task that is not dead: %v", err)
	}
	if err := w.Retry(999, "alice"); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("retry of no task: %v", err)
	}

	app.set(func(a *nativeApp) { delete(a.fail, "PATCH /accounts/"+n) })
	if err := w.Retry(dead[0].Seq, "alice"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if app.accounts[n]["title"] != "Two" || len(r.tasks()) != 0 {
		t.Fatalf("after the retry: account %v, tasks %+v", app.accounts[n], r.tasks())
	}

	app.set(func(a *nativeApp) { a.fail["PATCH /accounts/"+n] = http.StatusConflict })
	r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Refused"}]`)
	r.settle()
	app.set(func(a *nativeApp) { delete(a.fail, "PATCH /accounts/"+n) })
	r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"After"}]`)
	tasks := r.tasks()
	if err := w.Drop(tasks[0].Seq, "bob"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if app.accounts[n]["title"] != "After" {
		t.Fatalf("after the drop: %v", app.accounts[n])
	}

	if err := w.Pause("carol"); err != nil {
		t.Fatal(err)
	}
	if !w.Stats().Paused {
		t.Fatal("not paused")
	}
	pausedID := r.mustCreate(scim.UserType, user("bob@contoso.example"))
	if err := w.Resume("carol"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	var order []string
	for _, rec := range r.records() {
		switch {
		case rec.Action == change.ActionRetry || rec.Action == change.ActionDrop || rec.Action == change.ActionPause || rec.Action == change.ActionResume:
			order = append(order, string(rec.Action)+" by "+rec.Client)
		case rec.SCIMID == pausedID && rec.Action == change.ActionDeliver && rec.Outcome == change.Delivered:
			order = append(order, "delivered")
		}
	}
	if want := []string{"retry by alice", "drop by bob", "pause by carol", "resume by carol", "delivered"}; !slices.Equal(order, want) {
		t.Fatalf("journal: %v, want %v", order, want)
	}
	r.verify()
}

// TestScheduleWindowAndUrgentDeprovision: outside the target's delivery window queued
// changes wait, but a deactivation queued behind a user's create goes at once, with that
// create (losing access does not wait for a window).
func TestScheduleWindowAndUrgentDeprovision(t *testing.T) {
	app, srv := newNativeApp(t)
	s := withMode(outbox.Queued)
	var closed outbox.Window // one hour on a day three days from now: closed now
	closed.Days[(time.Now().UTC().Weekday()+3)%7] = true
	closed.From, closed.To = 60, 120
	s.Schedule = outbox.Schedule{Windows: []outbox.Window{closed}}
	r := queuedRig(t, srv.URL, s)
	waiting := r.mustCreate(scim.UserType, user("bob@contoso.example"))
	leaver := r.mustCreate(scim.UserType, user("leaver@contoso.example"))
	res := r.patch(scim.UserType, leaver, `[{"op":"replace","path":"active","value":false}]`)
	if res.Err != nil || res.Record.Outcome != change.Queued {
		t.Fatalf("deactivation behind the create: %+v", res)
	}
	for i := 0; r.nativeID(scim.UserType, leaver) == "" || len(r.tasks()) != 1; i++ {
		if i == 2000 {
			t.Fatalf("the urgent deprovisioning waited for the window: tasks %+v", r.tasks())
		}
		time.Sleep(5 * time.Millisecond)
	}
	n := r.nativeID(scim.UserType, leaver)
	if app.accounts[n]["enabled"] != false {
		t.Fatalf("leaver's account: %v", app.accounts[n])
	}
	if tasks := r.tasks(); tasks[0].ID != waiting || r.nativeID(scim.UserType, waiting) != "" {
		t.Fatalf("a change outside the window was delivered: %+v", tasks)
	}
}

// TestCoalescing: changes queued while deliveries wait are delivered as their net effect:
// a create and its updates are one create with the final values, two updates one call, a
// deactivation undone before delivery and a create deleted before delivery nothing, member
// adds to a group one delivery; every request still gets its delivery record.
func TestCoalescing(t *testing.T) {
	app, srv := newNativeApp(t)
	s := withMode(outbox.Queued)
	s.DeprovisionQueued = true
	r := queuedRig(t, srv.URL, s)
	w := r.eng.Worker()
	hold := func() {
		if err := w.Pause("test"); err != nil {
			t.Fatal(err)
		}
	}
	release := func() {
		if err := w.Resume("test"); err != nil {
			t.Fatal(err)
		}
		r.settle()
	}
	deliveries := func(id string) (intents, records int) {
		for _, rec := range r.records() {
			if rec.SCIMID == id && rec.Action == change.ActionDeliver {
				if rec.Outcome == change.Pending {
					intents++
				} else {
					records++
				}
			}
		}
		return intents, records
	}

	hold()
	res := r.eng.Apply(Request{ID: "c-1"}, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("ada@contoso.example", `,"title":"One"`)), Status: http.StatusCreated})
	uid := res.ID
	r.patchAs("c-2", uid, `[{"op":"replace","path":"title","value":"Two"}]`)
	r.patchAs("c-3", uid, `[{"op":"replace","path":"title","value":"Three"}]`)
	release()
	n := r.nativeID(scim.UserType, uid)
	if calls := app.callLog(); !slices.Equal(calls, []string{"POST /accounts"}) || app.accounts[n]["title"] != "Three" {
		t.Fatalf("create and updates: calls %v, account %v", calls, app.accounts[n])
	}
	if intents, records := deliveries(uid); intents != 1 || records != 3 {
		t.Fatalf("create and updates: %d intents, %d records", intents, records)
	}

	hold()
	r.patchAs("c-4", uid, `[{"op":"replace","path":"title","value":"Four"}]`)
	r.patchAs("c-5", uid, `[{"op":"replace","path":"title","value":"Five"}]`)
	release()
	if calls := app.callLog(); len(calls) != 2 || calls[1] != "PATCH /accounts/"+n || app.accounts[n]["title"] != "Five" {
		t.Fatalf("two updates: calls %v, account %v", calls, app.accounts[n])
	}

	hold()
	r.patchAs("c-6", uid, `[{"op":"replace","path":"active","value":false}]`)
	r.patchAs("c-7", uid, `[{"op":"replace","path":"active","value":true}]`)
	release()
	if calls := app.callLog(); len(calls) != 2 {
		t.Fatalf("deactivated and reactivated: calls %v", calls)
	}

	hold()
	gone := r.mustCreate(scim.UserType, user("temp@contoso.example"))
	if res := r.eng.Apply(Request{ID: "c-8"}, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: gone}); res.Err != nil {
		t.Fatal(res.Err)
	}
	release()
	if calls := app.callLog(); len(calls) != 2 || app.accountCount() != 1 {
		t.Fatalf("created and deleted: calls %v", calls)
	}
	if last := r.last(); last.Outcome != change.Delivered || last.Decision == nil || !strings.Contains(last.Decision.Reasons[0], "undid each other") {
		t.Fatalf("created and deleted: record %+v", last)
	}

	var members []string
	for _, name := range []string{"m1", "m2", "m3"} {
		members = append(members, r.mustCreate(scim.UserType, user(name+"@contoso.example")))
	}
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Team"}`)
	r.settle()
	hold()
	for i, m := range members {
		r.eng.Apply(Request{ID: fmt.Sprintf("m-%d", i)}, &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Patch: patchOps(t, `[{"op":"add","path":"members","value":[{"value":"`+m+`"}]}]`), Status: http.StatusNoContent})
	}
	release()
	gn := r.nativeID(scim.GroupType, gid)
	if len(app.roles[gn]) != 3 {
		t.Fatalf("member adds: holders %v", app.roles[gn])
	}
	if intents, records := deliveries(gid); intents != 2 || records != 4 { // the group's create, then the three adds at once
		t.Fatalf("member adds: %d intents, %d records", intents, records)
	}
	r.verify()
}

// TestCoalescingWaitsForReferences: a create whose resource's next change refers to a
// resource with a change queued before it waits for that one, so that both go as one
// delivery: a user's create and its manager link after the manager's create, a group's
// create and its member adds after the members' creates (Entra's initial cycle).
func TestCoalescingWaitsForReferences(t *testing.T) {
	app, srv := newNativeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	w := r.eng.Worker()
	if err := w.Pause("test"); err != nil {
		t.Fatal(err)
	}
	mid := r.mustCreate(scim.UserType, user("manager@contoso.example"))
	uid := r.mustCreate(scim.UserType, user("report@contoso.example"))
	r.patchAs("link", uid, `[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"`+mid+`"}]`)
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Team"}`)
	r.eng.Apply(Request{ID: "adds"}, &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Patch: patchOps(t, `[{"op":"add","path":"members","value":[{"value":"`+uid+`"},{"value":"`+mid+`"}]}]`), Status: http.StatusNoContent})
	if err := w.Resume("test"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	intents := map[string]int{}
	for _, rec := range r.records() {
		if rec.Action == change.ActionDeliver && rec.Outcome == change.Pending {
			intents[rec.SCIMID]++
		}
	}
	if intents[mid] != 1 || intents[uid] != 1 || intents[gid] != 1 {
		t.Fatalf("deliveries (intents) per resource: manager %d, report %d, group %d, want one each; calls %v", intents[mid], intents[uid], intents[gid], app.callLog())
	}
	gn := r.nativeID(scim.GroupType, gid)
	if len(app.roles[gn]) != 2 {
		t.Fatalf("the group's members in the app: %v", app.roles[gn])
	}
	if got := r.outcomesOf("link"); !slices.Contains(got, "deliver:delivered") {
		t.Fatalf("the manager link's records: %v", got)
	}
	r.verify()
}

// TestQueuedUnknownMember: a member add naming no resource is refused up front with the
// 400 immediate delivery answers, in every mode (in queued mode it would otherwise become
// a dead letter later): nothing is committed or queued, and the group's next change goes.
// A member whose create is still queued is not unknown: the add is queued behind it.
func TestQueuedUnknownMember(t *testing.T) {
	for _, mode := range outbox.Modes {
		t.Run(string(mode), func(t *testing.T) {
			app, srv := newNativeApp(t)
			r := queuedRig(t, srv.URL, withMode(mode))
			gid := r.mustCreate(scim.GroupType, `{"displayName":"Team"}`)
			uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
			r.settle()
			tasks := len(r.tasks())
			res := r.patch(scim.GroupType, gid, `[{"op":"add","path":"members","value":[{"value":"`+uid+`"},{"value":"no-such-member"}]}]`)
			if res.Err == nil || res.Err.Status != http.StatusBadRequest || res.Err.ScimType != scim.TypeInvalidValue || !strings.Contains(res.Err.Detail, "no-such-member") {
				t.Fatalf("unknown member: %+v", res.Err)
			}
			if got := r.members(gid); len(got) != 0 || len(r.tasks()) != tasks {
				t.Fatalf("a refused membership was kept: members %v, tasks %d (were %d)", got, len(r.tasks()), tasks)
			}
			if mode != outbox.Queued {
				return
			}
			if err := r.eng.Worker().Pause("test"); err != nil {
				t.Fatal(err)
			}
			later := r.mustCreate(scim.UserType, user("grace@contoso.example"))
			if res := r.patch(scim.GroupType, gid, `[{"op":"add","path":"members","value":[{"value":"`+uid+`"},{"value":"`+later+`"}]}]`); res.Err != nil {
				t.Fatalf("members, one of them queued: %v", res.Err)
			}
			if err := r.eng.Worker().Resume("test"); err != nil {
				t.Fatal(err)
			}
			r.settle()
			if gn := r.nativeID(scim.GroupType, gid); len(app.roles[gn]) != 2 {
				t.Fatalf("the app's members: %v", app.roles[gn])
			}
		})
	}
}

// TestQueuedSkipWaitsBehindChanges: a change the policy skips while its resource still has
// changes in the outbox waits behind them instead of setting the account's mark at once
// (which their delivery would then clear): nothing is sent for it, and once they are
// delivered the account is marked as having missed it (stale), so its next change that
// reaches the app sends everything.
func TestQueuedSkipWaitsBehindChanges(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newTarget(t, srv.URL, false)
	target.Delivery = withMode(outbox.Queued)
	r := newRig(t, rigOptions{target: target, policy: writePolicy(t, obligationsPolicy)})
	w := r.eng.Worker()
	if err := w.Pause("test"); err != nil {
		t.Fatal(err)
	}
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	if res := r.patchAs("moved", uid, `[{"op":"replace","path":"userName","value":"ada@fabrikam.example"}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := r.outcomesOf("moved"); !slices.Equal(got, []string{"patch:queued"}) || r.mark(scim.UserType, uid) != change.MarkNone || len(r.tasks()) != 2 {
		t.Fatalf("a skip behind a queued create: records %v, mark %q, %d tasks", got, r.mark(scim.UserType, uid), len(r.tasks()))
	}
	if err := w.Resume("test"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if calls := app.callLog(); !slices.Equal(calls, []string{"POST /accounts"}) {
		t.Fatalf("calls %v: the skipped change reached the app", calls)
	}
	if m := r.mark(scim.UserType, uid); m != change.MarkStale {
		t.Fatalf("mark after the delivery %q, want %q", m, change.MarkStale)
	}
	var skipped journal.Record
	for _, rec := range r.records() {
		if rec.RequestID == "moved" && rec.Action == change.ActionDeliver {
			skipped = rec
		}
	}
	if skipped.Outcome != change.Skipped || skipped.Decision == nil || !skipped.Decision.Skip || len(skipped.Calls) != 0 {
		t.Fatalf("the skip's delivery record: %+v", skipped)
	}
	if res := r.patch(scim.UserType, uid, `[{"op":"replace","path":"userName","value":"ada@contoso.example"}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	r.settle()
	if m := r.mark(scim.UserType, uid); m != change.MarkNone || len(app.callLog()) != 2 {
		t.Fatalf("the next change: mark %q, calls %v", m, app.callLog())
	}
	r.verify()
}

// TestCoalescingManyChanges: 60 queued changes of one user are delivered, coalesced into as
// few deliveries as the store commits at once (all 60 in one on bbolt; on etcd, whose
// transactions hold 128 operations, in groups that fit: SCIMGATE_TEST_STORE=etcd).
func TestCoalescingManyChanges(t *testing.T) {
	app, srv := newNativeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	w := r.eng.Worker()
	if err := w.Pause("test"); err != nil {
		t.Fatal(err)
	}
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example", `,"title":"T0"`))
	const changes = 60
	for i := 1; i < changes; i++ {
		if res := r.patchAs(fmt.Sprintf("c-%d", i), uid, fmt.Sprintf(`[{"op":"replace","path":"title","value":"T%d"}]`, i)); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if err := w.Resume("test"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	n := r.nativeID(scim.UserType, uid)
	if got := app.accounts[n]["title"]; got != fmt.Sprintf("T%d", changes-1) || len(r.tasks()) != 0 {
		t.Fatalf("after the deliveries: account %v, %d tasks left", app.accounts[n], len(r.tasks()))
	}
	delivered := 0
	for _, rec := range r.records() {
		if rec.SCIMID == uid && rec.Action == change.ActionDeliver && rec.Outcome == change.Delivered {
			delivered++
		}
	}
	if delivered != changes {
		t.Errorf("%d changes journaled as delivered, want %d", delivered, changes)
	}
	// Each delivery's commit fits the store: none is made again after its commit failed.
	posts, calls := 0, app.callLog()
	for _, c := range calls {
		if strings.HasPrefix(c, "POST ") {
			posts++
		}
	}
	if posts != 1 || len(calls) > changes/2 {
		t.Errorf("%d calls to the app (%d creates) for %d coalescible changes: %v", len(calls), posts, changes, calls)
	}
}

// showTasks prints tasks for a failure message.
func showTasks(tasks []*outbox.Task) string {
	var b strings.Builder
	for _, tk := range tasks {
		fmt.Fprintf(&b, "\n  %+v", *tk)
	}
	return b.String()
}
