package provision

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Tests of a name freed and taken again while the change that frees it is still queued:
// Entra deletes user A and creates user B with A's userName (or renames B to it), and A's
// delete has not reached the app yet (deprovisioning queued, a fallback after an outage, a
// dead letter). B's change must wait for A's delete and then make B's own account: sent
// before it, an app refuses the login it still has (409), makes a second account beside the
// one still to be deleted, or its lookup finds A's account, which the directory maps to A.

// waitFor polls cond (bounded: 10 s) and fails the test with what when it stays false.
func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.t.Fatalf("%s did not happen; tasks %+v", what, r.tasks())
}

// failures counts the failed (and dead) delivery attempts of the resource's tasks.
func (r *rig) failures(id string) int {
	n := 0
	for _, rec := range r.records() {
		if rec.SCIMID == id && rec.Action == change.ActionDeliver && (rec.Outcome == change.Failed || rec.Outcome == change.Dead) {
			n++
		}
	}
	return n
}

// taskView is the outbox listing of the resource's first task.
func (r *rig) taskView(id string) outbox.View {
	r.t.Helper()
	views, err := r.eng.Worker().List(outbox.Filter{Resource: id})
	if err != nil || len(views) == 0 {
		r.t.Fatalf("listing the tasks of %s: %v, %v", id, views, err)
	}
	return views[0]
}

func (r *rig) deleteAs(requestID, typ, id string) *Result {
	r.t.Helper()
	return r.eng.Apply(Request{ID: requestID, Client: "entra"}, &Op{Action: change.ActionDelete, Type: typ, ID: id, Status: http.StatusNoContent})
}

// callIndex is the index of the first call in calls that is call and comes at or after
// from, or -1.
func callIndex(calls []string, call string, from int) int {
	for i := max(from, 0); i < len(calls); i++ {
		if calls[i] == call {
			return i
		}
	}
	return -1
}

// TestRecreateWaitsForQueuedDelete: A's delete is queued and failing (the app is
// unavailable for it); B's create with A's userName is queued behind it (listed as waiting,
// naming A's task), and once A's delete reaches the app B gets an account of its own, on
// an app that refuses a duplicate login (409), on one that would make a second account, and
// on one whose lookup finds the old account (B's first attempt's answer was lost).
func TestRecreateWaitsForQueuedDelete(t *testing.T) {
	for _, shape := range []string{"refuses duplicates", "second account", "lookup finds the old account"} {
		t.Run(shape, func(t *testing.T) {
			app, srv := newNativeApp(t)
			app.set(func(a *nativeApp) { a.unique = shape == "refuses duplicates" })
			s := withMode(outbox.Queued)
			s.DeprovisionQueued = true
			r := queuedRig(t, srv.URL, s)
			a := r.mustCreate(scim.UserType, user("alice@contoso.example"))
			r.settle()
			old := r.nativeID(scim.UserType, a)
			app.set(func(x *nativeApp) { x.fail["DELETE /accounts/"+old] = http.StatusServiceUnavailable })
			if res := r.deleteAs("del-a", scim.UserType, a); res.Err != nil || res.Record.Outcome != change.Queued {
				t.Fatalf("delete of A: %+v", res)
			}
			r.waitFor("a failed attempt of A's delete", func() bool { return r.failures(a) >= 1 })
			if shape == "lookup finds the old account" {
				app.set(func(x *nativeApp) { x.createThen = "500" }) // makes the account, answers 500
			}
			b := r.mustCreate(scim.UserType, user("alice@contoso.example"))
			// A's delete fails twice more while B's create is queued: B's waits.
			seen := r.failures(a)
			r.waitFor("more failed attempts of A's delete", func() bool { return r.failures(a) >= seen+2 })
			v := r.taskView(b)
			if v.State != "waiting" || v.Task.Attempts != 0 || len(v.Task.WaitsFor) != 1 || v.Task.WaitsFor[0] != a || !strings.Contains(v.Reason, a) {
				t.Fatalf("B's create while A's delete is queued: %+v (reason %q); calls %v", v.Task, v.Reason, app.callLog())
			}
			app.set(func(x *nativeApp) { delete(x.fail, "DELETE /accounts/"+old) })
			r.settle()
			mine := r.nativeID(scim.UserType, b)
			if tasks := r.tasks(); len(tasks) != 0 || mine == "" || mine == old || r.nativeID(scim.UserType, a) != "" {
				t.Fatalf("after A's delete: tasks %+v, B maps to %q (A's was %q), A maps to %q", tasks, mine, old, r.nativeID(scim.UserType, a))
			}
			app.mu.Lock()
			_, oldThere := app.accounts[old]
			logins := 0
			for _, acc := range app.accounts {
				if acc["login"] == "alice@contoso.example" {
					logins++
				}
			}
			app.mu.Unlock()
			if oldThere || logins != 1 || app.accounts[mine] == nil {
				t.Fatalf("the app holds A's account %v, %d accounts of the login, B's %q: %v", oldThere, logins, mine, app.accounts)
			}
			calls := app.callLog()
			deleted := -1
			for i := len(calls) - 1; i >= 0; i-- {
				if calls[i] == "DELETE /accounts/"+old {
					deleted = i // the last one is the one that went through
					break
				}
			}
			if post := callIndex(calls, "POST /accounts", 1); post < deleted {
				t.Fatalf("B's create reached the app (call %d) before A's delete (call %d): %v", post, deleted, calls)
			}
			r.verify()
		})
	}
}

// TestRecreateHeldBehindDeadDelete: A's delete is a dead letter (the app refused it); B's
// create with A's userName is held behind it, counted and listed as held with a reason
// naming A's task, never tried. An operator drops the dead letter: B's create goes, and
// its lookup (its first attempt's answer was lost) finds A's account, which the directory
// still maps to A: it is not taken over, and the task is a dead letter at once, whose
// detail names A, instead of being retried for max_age.
func TestRecreateHeldBehindDeadDelete(t *testing.T) {
	app, srv := newNativeApp(t)
	s := withMode(outbox.Queued)
	s.DeprovisionQueued = true
	r := queuedRig(t, srv.URL, s)
	a := r.mustCreate(scim.UserType, user("alice@contoso.example"))
	r.settle()
	old := r.nativeID(scim.UserType, a)
	app.set(func(x *nativeApp) { x.fail["DELETE /accounts/"+old] = http.StatusBadRequest })
	r.deleteAs("del-a", scim.UserType, a)
	r.settle()
	b := r.mustCreate(scim.UserType, user("alice@contoso.example"))
	r.settle()
	tasks := r.tasks()
	if len(tasks) != 2 || !tasks[0].Dead || tasks[1].Dead || tasks[1].Attempts != 0 {
		t.Fatalf("tasks: %+v", tasks)
	}
	if st := r.eng.Worker().Stats(); st.Dead != 1 || st.Pending != 1 || st.Held != 1 {
		t.Fatalf("stats: %+v", st)
	}
	v := r.taskView(b)
	if v.State != "held" || v.Behind != tasks[0].Seq || !strings.Contains(v.Reason, a) || !strings.Contains(v.Reason, "dead letter") {
		t.Fatalf("B's create behind A's dead delete: state %s behind %d reason %q", v.State, v.Behind, v.Reason)
	}
	app.set(func(x *nativeApp) { x.createThen = "500" }) // B's first create makes the account, answers 500
	if err := r.eng.Worker().Drop(tasks[0].Seq, "ops"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	tasks = r.tasks()
	if len(tasks) != 1 || !tasks[0].Dead || tasks[0].ID != b ||
		!strings.Contains(tasks[0].LastError, a) || !strings.Contains(tasks[0].LastError, old) || !strings.Contains(tasks[0].LastError, "does not take that account over") {
		t.Fatalf("B's create after A's dead delete was dropped: %+v", tasks)
	}
	if tasks[0].Attempts > 2 || r.nativeID(scim.UserType, b) != "" || r.nativeID(scim.UserType, a) != old {
		t.Fatalf("B's create: %d attempts, B maps to %q, A to %q", tasks[0].Attempts, r.nativeID(scim.UserType, b), r.nativeID(scim.UserType, a))
	}
	r.verify()
}

// TestRecreateInFallback: in fallback delivery, A's delete was queued while the app was
// down; B's create with A's userName, made once the app is up, is answered 201 queued
// behind A's delete (its record says so), and nothing of it reaches the app before A's
// delete does: Entra is never told of an account that is A's.
func TestRecreateInFallback(t *testing.T) {
	for _, mode := range []outbox.Mode{outbox.Fallback, outbox.Immediate} {
		t.Run(string(mode), func(t *testing.T) {
			app, srv := newNativeApp(t)
			app.set(func(x *nativeApp) { x.unique = true })
			r := queuedRig(t, srv.URL, withMode(outbox.Fallback))
			a := r.mustCreate(scim.UserType, user("alice@contoso.example"))
			old := r.nativeID(scim.UserType, a)
			app.set(func(x *nativeApp) { x.fail["DELETE /accounts/"+old] = http.StatusServiceUnavailable })
			if res := r.deleteAs("del-a", scim.UserType, a); res.Err != nil || res.Record.Outcome != change.Queued {
				t.Fatalf("delete of A while the app is down: %+v", res)
			}
			if mode == outbox.Immediate {
				// A reload to immediate delivery while A's delete is still queued.
				target := *r.eng.target
				target.Delivery = withMode(outbox.Immediate)
				r.eng = r.build(rigOptions{target: &target})
				r.eng.Activate()
			}
			res := r.eng.Apply(Request{ID: "create-b", Client: "entra"}, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("alice@contoso.example")), Status: http.StatusCreated})
			if res.Err != nil || res.Status != http.StatusCreated || res.Record.Outcome != change.Queued || res.Record.Decision == nil ||
				!slices.ContainsFunc(res.Record.Decision.Reasons, func(s string) bool { return strings.Contains(s, a) && strings.Contains(s, "alice@contoso.example") }) {
				t.Fatalf("B's create while A's delete is queued: %+v (%v), record %+v", res, res.Err, res.Record)
			}
			if callIndex(app.callLog(), "POST /accounts", 1) >= 0 {
				t.Fatalf("B's create reached the app before A's delete: %v", app.callLog())
			}
			app.set(func(x *nativeApp) { delete(x.fail, "DELETE /accounts/"+old) })
			r.settle()
			mine := r.nativeID(scim.UserType, res.ID)
			if len(r.tasks()) != 0 || mine == "" || mine == old || app.accounts[old] != nil {
				t.Fatalf("tasks %+v, B maps to %q, A's account %v", r.tasks(), mine, app.accounts[old])
			}
			r.verify()
		})
	}
}

// TestRenameWaitsForQueuedDelete: B is renamed to A's userName while A's delete is
// queued: the rename waits for it (an app that refuses a duplicate login would refuse the
// rename), then B's own account takes the name.
func TestRenameWaitsForQueuedDelete(t *testing.T) {
	app, srv := newNativeApp(t)
	app.set(func(x *nativeApp) { x.unique = true })
	s := withMode(outbox.Queued)
	s.DeprovisionQueued = true
	r := queuedRig(t, srv.URL, s)
	a := r.mustCreate(scim.UserType, user("alice@contoso.example"))
	b := r.mustCreate(scim.UserType, user("bob@contoso.example"))
	r.settle()
	old, mine := r.nativeID(scim.UserType, a), r.nativeID(scim.UserType, b)
	app.set(func(x *nativeApp) { x.fail["DELETE /accounts/"+old] = http.StatusServiceUnavailable })
	r.deleteAs("del-a", scim.UserType, a)
	r.waitFor("a failed attempt of A's delete", func() bool { return r.failures(a) >= 1 })
	if res := r.patchAs("rename-b", b, `[{"op":"replace","path":"userName","value":"Alice@contoso.example"}]`); res.Err != nil {
		t.Fatalf("rename: %v", res.Err)
	}
	seen := r.failures(a)
	r.waitFor("more failed attempts of A's delete", func() bool { return r.failures(a) >= seen+2 })
	if v := r.taskView(b); v.State != "waiting" || v.Task.Attempts != 0 || !strings.Contains(v.Reason, a) {
		t.Fatalf("B's rename while A's delete is queued: %s %+v %q", v.State, v.Task, v.Reason)
	}
	app.set(func(x *nativeApp) { delete(x.fail, "DELETE /accounts/"+old) })
	r.settle()
	if len(r.tasks()) != 0 || r.nativeID(scim.UserType, b) != mine || app.accounts[mine]["login"] != "Alice@contoso.example" || app.accounts[old] != nil {
		t.Fatalf("tasks %+v; B's account %v; A's %v", r.tasks(), app.accounts[mine], app.accounts[old])
	}
	r.verify()
}

// TestGroupRecreateWaitsForQueuedDelete: a group created with the displayName of a group
// whose delete is queued waits for that delete, on an app that refuses a second role of
// one name.
func TestGroupRecreateWaitsForQueuedDelete(t *testing.T) {
	app, srv := newNativeApp(t)
	app.set(func(x *nativeApp) { x.unique = true })
	target := newMappedTarget(t, srv.URL, strings.Replace(nativeMapping,
		`"remove_members": {"method": "DELETE", "path": "/roles/{id}/holders/{member_id}", "members": "each"}`,
		`"remove_members": {"method": "DELETE", "path": "/roles/{id}/holders/{member_id}", "members": "each"},
      "delete": {"method": "DELETE", "path": "/roles/{id}"}`, 1))
	target.Name = "native"
	target.Delivery = withMode(outbox.Queued)
	target.Delivery.DeprovisionQueued = true
	r := newRig(t, rigOptions{target: target})
	a := r.mustCreate(scim.GroupType, `{"displayName":"Admins"}`)
	r.settle()
	old := r.nativeID(scim.GroupType, a)
	if old == "" {
		t.Fatalf("group A has no role: %+v", r.tasks())
	}
	app.set(func(x *nativeApp) { x.fail["DELETE /roles/"+old] = http.StatusServiceUnavailable })
	r.deleteAs("del-a", scim.GroupType, a)
	r.waitFor("a failed attempt of A's delete", func() bool { return r.failures(a) >= 1 })
	b := r.mustCreate(scim.GroupType, `{"displayName":"ADMINS"}`)
	seen := r.failures(a)
	r.waitFor("more failed attempts of A's delete", func() bool { return r.failures(a) >= seen+2 })
	if v := r.taskView(b); v.State != "waiting" || v.Task.Attempts != 0 || !strings.Contains(v.Reason, a) {
		t.Fatalf("B's create while A's delete is queued: %s %+v %q", v.State, v.Task, v.Reason)
	}
	app.set(func(x *nativeApp) { delete(x.fail, "DELETE /roles/"+old) })
	r.settle()
	mine := r.nativeID(scim.GroupType, b)
	if len(r.tasks()) != 0 || mine == "" || mine == old || app.roles[old] != nil || app.roleNames[mine] != "ADMINS" {
		t.Fatalf("tasks %+v; B maps to %q; roles %v", r.tasks(), mine, app.roleNames)
	}
	r.verify()
}
