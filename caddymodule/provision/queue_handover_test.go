package provision

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestDeliveredWhileDeciding: a change of a user whose queued create the worker delivers
// while the change is being decided (here, held in the policy's evaluation) was read with
// the create still in the outbox and no account; the outbox was then checked again, found
// empty, and the change made the account a second time (its catch-up create). The outbox
// is now read with the plan, so the change waits behind the create and updates the one
// account. Found by TestReloadDuringWriteStream in CI (a user created twice in the app).
func TestDeliveredWhileDeciding(t *testing.T) {
	for _, tc := range []struct {
		name string
		// failFirst: the create's first attempt fails (503), which lists it for adoption;
		// otherwise its first attempt is the one that makes the account.
		failFirst bool
	}{{"first attempt", false}, {"after a failed attempt", true}} {
		t.Run(tc.name, func(t *testing.T) { testDeliveredWhileDeciding(t, tc.failFirst) })
	}
}

func testDeliveredWhileDeciding(t *testing.T, failFirst bool) {
	app, srv := newNativeApp(t)
	creating, letCreate := make(chan struct{}), make(chan struct{})
	app.set(func(a *nativeApp) {
		if failFirst {
			a.fail["POST /accounts"] = http.StatusServiceUnavailable
			return
		}
		a.beforeCreate = func() { close(creating); <-letCreate }
	})

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "decision.rego"), []byte(`package scimgate

default decision := {"allow": true}

decision := {"allow": false} if {
	print("deciding", input.resource.title)
	input.resource.title == "never"
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var hold atomic.Bool
	paused, resume := make(chan struct{}), make(chan struct{})
	pol, err := policy.Load(policy.Options{Dir: dir, Timeout: 30 * time.Second, Print: func(_, msg string) {
		if strings.Contains(msg, "Lead") && hold.CompareAndSwap(true, false) {
			close(paused)
			<-resume
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pol.Close() })
	queued := newTarget(t, srv.URL, false)
	queued.Delivery = withMode(outbox.Queued)
	r := newRig(t, rigOptions{target: queued, policy: pol})
	// The configuration a reload brings: the same target, delivering at once.
	immediate := newTarget(t, srv.URL, false)
	immediate.Delivery = withMode(outbox.Immediate)
	now := r.build(rigOptions{target: immediate, policy: pol})

	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	if rec := r.last(); rec.Outcome != change.Queued {
		t.Fatalf("the create: %+v", rec)
	}
	if failFirst {
		for i := 0; !strings.Contains(strings.Join(r.outcomesOf(testReq.ID), " "), "deliver:failed"); i++ {
			if i == 2000 {
				t.Fatalf("no failed attempt: %v", r.outcomesOf(testReq.ID))
			}
			time.Sleep(5 * time.Millisecond)
		}
	} else {
		<-creating // the worker's attempt is at the app
	}
	hold.Store(true)
	done := make(chan *Result, 1)
	go func() {
		done <- now.Apply(testReq, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: uid,
			Patch: patchOps(t, `[{"op":"replace","path":"title","value":"Lead"}]`), Status: http.StatusNoContent})
	}()
	select {
	case <-paused:
	case <-time.After(10 * time.Second):
		t.Fatal("the change was never decided")
	}
	// While the change is held in its decision, the worker delivers the create.
	if failFirst {
		app.set(func(a *nativeApp) { delete(a.fail, "POST /accounts") })
	} else {
		close(letCreate)
	}
	for i := 0; r.nativeID(scim.UserType, uid) == ""; i++ {
		if i == 2000 {
			t.Fatalf("the queued create was not delivered: %v", app.callLog())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(resume)
	if res := <-done; res.Err != nil {
		t.Fatalf("the change: %+v (%v)", res, res.Err)
	}
	r.settle()
	n := r.nativeID(scim.UserType, uid)
	if app.accountCount() != 1 || app.accountOf(n)["title"] != "Lead" {
		t.Fatalf("accounts %d, account %v; calls %v; records %v", app.accountCount(), app.accountOf(n), app.callLog(), r.outcomesOf(testReq.ID))
	}
	r.verify()
}
