package provision

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Tests of an app whose delete only deactivates the account and keeps its login (a soft
// delete): a later user with the same userName (a recycled login) never gets the deleted
// user's account through a lookup, which finds that account by the login.

const recycled = "alice@contoso.example"

// softDeleted creates user A (title Engineer) in a soft-deleting app and deletes it: the
// app keeps A's account, deactivated, with its login. It returns A's SCIM id and account.
func softDeleted(t *testing.T, app *nativeApp, r *rig) (string, string) {
	t.Helper()
	app.set(func(x *nativeApp) { x.softDelete = true })
	a := r.mustCreate(scim.UserType, user(recycled, `,"title":"Engineer"`))
	if r.eng.Worker() != nil {
		r.settle()
	}
	old := r.nativeID(scim.UserType, a)
	if res := r.deleteAs("del-a", scim.UserType, a); res.Err != nil {
		t.Fatalf("A's delete: %v", res.Err)
	}
	if r.eng.Worker() != nil {
		r.settle()
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if acc := app.accounts[old]; old == "" || acc == nil || acc["enabled"] != false || acc["login"] != recycled {
		t.Fatalf("A's account %q after its soft delete: %v", old, acc)
	}
	return a, old
}

// checkUntouched fails the test unless A's account is as A's delete left it.
func checkUntouched(t *testing.T, app *nativeApp, old string) {
	t.Helper()
	app.mu.Lock()
	defer app.mu.Unlock()
	if acc := app.accounts[old]; acc["enabled"] != false || acc["title"] != "Engineer" {
		t.Fatalf("A's deleted account %s was changed for B: %v", old, acc)
	}
}

// checkRetiredConflict fails the test unless err is the 409 that names A (its id), its
// account and what the operator can do.
func checkRetiredConflict(t *testing.T, what string, err error, a, old string) {
	t.Helper()
	var se *scim.Error
	if !errors.As(err, &se) || se.Status != http.StatusConflict {
		t.Fatalf("%s: %v, want 409", what, err)
	}
	checkRetiredDetail(t, what, se.Detail, a, old)
}

// checkRetiredDetail fails the test unless detail names A (its id), its account and what
// the operator can do.
func checkRetiredDetail(t *testing.T, what, detail, a, old string) {
	t.Helper()
	if !strings.Contains(detail, "deleted user "+a) || !strings.Contains(detail, "account "+old) || !strings.Contains(detail, "delete or rename that account") {
		t.Fatalf("%s: %q, want a detail naming deleted user %s and its account %s", what, detail, a, old)
	}
}

// TestRecycledLoginNotAdopted: A is deleted in an app that keeps A's account; B, with A's
// userName, is created, the app makes B's account and answers 500, so B's create is listed
// for adoption. Entra's retry looked the account up, found A's old account by the login,
// adopted it for B and brought it in line (enabled again, B's title): B got A's account,
// with whatever the app attached to it. The retry is refused now (409 naming A and its
// account); A's account is left as its delete left it; once the operator renames A's
// account in the app, the retry adopts the account B's first attempt made.
func TestRecycledLoginNotAdopted(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	a, old := softDeleted(t, app, r)

	app.set(func(x *nativeApp) { x.createThen = "500" })
	if res := r.create(scim.UserType, user(recycled, `,"title":"Intern"`)); res.Err == nil {
		t.Fatalf("B's first create, answered 500: %+v", res)
	}
	mine := "acct-0002" // the account B's first attempt made
	res := r.create(scim.UserType, user(recycled, `,"title":"Intern"`))
	if res.Err == nil {
		t.Fatalf("B's create took account %s (A's is %s)", r.nativeID(scim.UserType, res.ID), old)
	}
	checkRetiredConflict(t, "the retry of B's create", res.Err, a, old)
	checkUntouched(t, app, old)

	app.set(func(x *nativeApp) { x.accounts[old]["login"] = "alice.left@contoso.example" })
	res = r.create(scim.UserType, user(recycled, `,"title":"Intern"`))
	if res.Err != nil || r.nativeID(scim.UserType, res.ID) != mine {
		t.Fatalf("B's create once A's account is renamed: %v, account %q, want %s", res.Err, r.nativeID(scim.UserType, res.ID), mine)
	}
	checkUntouched(t, app, old)
	r.verify()
}

// TestRecycledLoginQueuedDeadLetter: the same with queued delivery: B's task, whose first
// attempt's answer was lost, is a dead letter whose detail names A, not a takeover.
func TestRecycledLoginQueuedDeadLetter(t *testing.T) {
	app, srv := newNativeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	a, old := softDeleted(t, app, r)

	app.set(func(x *nativeApp) { x.createThen = "500" })
	b := r.mustCreate(scim.UserType, user(recycled, `,"title":"Intern"`))
	r.settle()
	if n := r.nativeID(scim.UserType, b); n != "" {
		t.Fatalf("B is mapped to %s (A's account is %s)", n, old)
	}
	tasks := r.tasks()
	if len(tasks) != 1 || !tasks[0].Dead || tasks[0].ID != b {
		t.Fatalf("tasks: %+v", tasks)
	}
	checkRetiredDetail(t, "B's dead letter", tasks[0].LastError, a, old)
	checkUntouched(t, app, old)
}

// TestRecycledLoginRepairNotLinked: B, with A's userName, is created after A's delete (a
// new account, as any create: unaffected); the app loses B's account, and a reconcile's
// repair creates it again, looking the account up first. The lookup found A's old
// account, and the repair linked it to B. It is refused now (409 naming A); once the
// operator deletes A's account in the app, the repair makes B's account.
func TestRecycledLoginRepairNotLinked(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	a, old := softDeleted(t, app, r)

	b := r.mustCreate(scim.UserType, user(recycled, `,"title":"Intern"`))
	mine := r.nativeID(scim.UserType, b)
	if mine == "" || mine == old {
		t.Fatalf("B's create: account %q (A's is %s)", mine, old)
	}
	app.set(func(x *nativeApp) { delete(x.accounts, mine) }) // the app loses B's account

	repair := func() *Result {
		return r.eng.Repair(Request{ID: "report-1", Client: "reconcile"}, Repair{Kind: RepairCreate, Type: scim.UserType, ID: b})
	}
	res := repair()
	if n := r.nativeID(scim.UserType, b); res.Err == nil || n == old {
		t.Fatalf("the repair of B's account linked %s (A's is %s): %v", n, old, res.Err)
	}
	checkRetiredConflict(t, "the repair of B's account", res.Err, a, old)
	checkUntouched(t, app, old)

	app.set(func(x *nativeApp) { delete(x.accounts, old) })
	res = repair()
	n := r.nativeID(scim.UserType, b)
	app.mu.Lock()
	acc := app.accounts[n]
	app.mu.Unlock()
	if res.Err != nil || n == "" || n == old || n == mine || acc == nil || acc["login"] != recycled {
		t.Fatalf("the repair once A's account is deleted: %v, account %q: %v", res.Err, n, acc)
	}
	r.verify()
}

// TestRecycledLoginNotMoved: B, with A's userName, has its own account, which the app
// loses; B's next change is answered "no such object", and the lookup that finds an
// account the app renamed found A's old account by the login: B's mapping moved to it and
// the change was sent to it. It is refused now (409 naming A), B's mapping unchanged.
func TestRecycledLoginNotMoved(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	a, old := softDeleted(t, app, r)

	b := r.mustCreate(scim.UserType, user(recycled, `,"title":"Intern"`))
	mine := r.nativeID(scim.UserType, b)
	app.set(func(x *nativeApp) { delete(x.accounts, mine) })
	res := r.patch(scim.UserType, b, `[{"op":"replace","path":"title","value":"Analyst"}]`)
	if n := r.nativeID(scim.UserType, b); res.Err == nil || n == old {
		t.Fatalf("B's change moved B to account %s (A's is %s): %v", n, old, res.Err)
	}
	checkRetiredConflict(t, "B's change", res.Err, a, old)
	checkUntouched(t, app, old)
}
