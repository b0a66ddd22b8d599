package provision

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Tests of a group change naming a member whose account the app refused to create (its
// own validation answered 400 for that user): no call of the change is left orphaned by
// a refusal that comes after it, the group and its other members reach the app, and the
// membership follows once the member's account exists. The app is nativeApp (roles with
// holders added one call at a time), not the demo app.

// roleCreates counts the app's role creations (POST /roles).
func (a *nativeApp) roleCreates() int {
	n := 0
	for _, c := range a.callLog() {
		if c == "POST /roles" {
			n++
		}
	}
	return n
}

// holders lists the accounts holding role id, sorted.
func (a *nativeApp) holders(id string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for h := range a.roles[id] {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// TestQueuedGroupMemberCreateDead: in queued and fallback delivery, a member whose create
// became a dead letter (the app refused the user) does not make the group's change a dead
// letter: the group is created once with its other members, the journal says which
// membership is held back (and not that Entra retries it: it never does for a queued
// change), and when an operator retries the member's create, the membership follows.
func TestQueuedGroupMemberCreateDead(t *testing.T) {
	for _, mode := range []outbox.Mode{outbox.Queued, outbox.Fallback} {
		t.Run(string(mode), func(t *testing.T) {
			app, srv := newNativeApp(t)
			r := queuedRig(t, srv.URL, withMode(mode))
			ada := r.mustCreate(scim.UserType, user("ada@contoso.example"))
			r.settle()
			if mode == outbox.Fallback {
				// Fallback sends at once; the app is down for the user's create, which is
				// queued, and refuses the user when the worker delivers it.
				app.set(func(a *nativeApp) { a.fail["POST /accounts"] = http.StatusServiceUnavailable })
			}
			bob := r.mustCreate(scim.UserType, user("bob@contoso.example"))
			app.set(func(a *nativeApp) {
				delete(a.fail, "POST /accounts")
				a.refuse["bob@contoso.example"] = true
			})
			r.settle()
			var bobTask *outbox.Task
			for _, tk := range r.tasks() {
				if tk.ID == bob && tk.Dead {
					bobTask = tk
				}
			}
			if bobTask == nil || r.nativeID(scim.UserType, ada) == "" {
				t.Fatalf("bob's create is not a dead letter, or ada has no account: %+v", r.tasks())
			}

			gid := r.mustCreate(scim.GroupType, `{"displayName":"Admins","members":[{"value":"`+ada+`"},{"value":"`+bob+`"}]}`)
			r.settle()
			for _, tk := range r.tasks() {
				if tk.ID == gid {
					t.Fatalf("the group's change is still in the outbox (dead %v): %s", tk.Dead, tk.LastError)
				}
			}
			role := r.nativeID(scim.GroupType, gid)
			if role == "" || app.roleCreates() != 1 {
				t.Fatalf("role %q, %d role creations", role, app.roleCreates())
			}
			if got := app.holders(role); !slices.Equal(got, []string{r.nativeID(scim.UserType, ada)}) {
				t.Fatalf("holders %v, want ada's account only", got)
			}
			if got := r.members(gid); !slices.Equal(got, sorted(ada, bob)) {
				t.Fatalf("directory members %v", got)
			}
			held := false
			for _, rec := range r.records() {
				text := rec.Error
				if rec.Decision != nil {
					text += strings.Join(rec.Decision.Reasons, " ")
				}
				if rec.Action == change.ActionDeliver && strings.Contains(text, "Entra retries") {
					t.Fatalf("a delivery record says Entra retries: %+v", rec)
				}
				if rec.Action == change.ActionDeliver && rec.SCIMID == gid && rec.Outcome == change.Delivered && strings.Contains(text, bob) {
					held = true
				}
			}
			if !held {
				t.Fatal("the group's delivery record does not name the member held back")
			}

			// The operator fixes the user's data in the app and retries its create: the
			// account is made, and the membership held back follows it.
			app.set(func(a *nativeApp) { delete(a.refuse, "bob@contoso.example") })
			if err := r.eng.Worker().Retry(bobTask.Seq, "alice"); err != nil {
				t.Fatal(err)
			}
			r.settle()
			bobNative := r.nativeID(scim.UserType, bob)
			if bobNative == "" || len(r.tasks()) != 0 {
				t.Fatalf("after the retry: bob's account %q, tasks %+v", bobNative, r.tasks())
			}
			if got := app.holders(role); !slices.Equal(got, sorted(r.nativeID(scim.UserType, ada), bobNative)) {
				t.Fatalf("holders after bob's create %v", got)
			}
			if app.roleCreates() != 1 {
				t.Fatalf("%d role creations", app.roleCreates())
			}
			r.verify()
		})
	}
}

// groupUpdateMapping is nativeMapping with a group rename call (PATCH /roles/{id}).
var groupUpdateMapping = strings.Replace(nativeMapping, `"add_members":`,
	`"update": {"method": "PATCH", "path": "/roles/{id}", "body": {"name": "displayName"}},
      "add_members":`, 1)

// TestImmediateGroupMemberWithoutAccount: in immediate delivery, a group change adding a
// member that has no account in the app (its create was refused) is refused before any of
// its calls (a group's create, a rename), with a detail naming the member; nothing is left
// in the app for Entra's retry to make twice, and once the member's account exists the
// retried changes make the group once with both members.
func TestImmediateGroupMemberWithoutAccount(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{})
	bob := r.mustCreate(scim.UserType, user("bob@contoso.example")) // before the target was configured
	r.eng = r.build(rigOptions{target: newMappedTarget(t, srv.URL, groupUpdateMapping)})
	ada := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	app.set(func(a *nativeApp) { a.refuse["bob@contoso.example"] = true })
	if res := r.patch(scim.UserType, bob, `[{"op":"replace","path":"title","value":"Engineer"}]`); res.Err == nil || res.Err.Status != http.StatusBadRequest {
		t.Fatalf("bob's catch-up create the app refuses: %+v", res.Err)
	}
	ops := gid(t, r, "Ops", ada)
	calls := len(app.callLog())

	admins := `{"displayName":"Admins","members":[{"value":"` + ada + `"},{"value":"` + bob + `"}]}`
	res := r.create(scim.GroupType, admins)
	if res.Err == nil || res.Err.Status != http.StatusBadRequest || !strings.Contains(res.Err.Detail, bob) || !strings.Contains(res.Err.Detail, "no account") {
		t.Fatalf("group create with a member without an account: %+v", res.Err)
	}
	rename := `[{"op":"replace","path":"displayName","value":"Operations"},{"op":"add","path":"members","value":[{"value":"` + bob + `"}]}]`
	if res := r.patch(scim.GroupType, ops, rename); res.Err == nil || res.Err.Status != http.StatusBadRequest || !strings.Contains(res.Err.Detail, bob) {
		t.Fatalf("rename with a member without an account: %+v", res.Err)
	}
	if got := app.callLog()[calls:]; len(got) != 0 {
		t.Fatalf("refused changes reached the app: %v", got)
	}
	if r.members(ops)[0] != ada || len(r.members(ops)) != 1 {
		t.Fatalf("the directory changed: %v", r.members(ops))
	}

	// The user's data is fixed; Entra retries the user (its create is made), then the
	// group changes.
	app.set(func(a *nativeApp) { delete(a.refuse, "bob@contoso.example") })
	if res := r.patch(scim.UserType, bob, `[{"op":"replace","path":"title","value":"Engineer"}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	adminsID := r.mustCreate(scim.GroupType, admins)
	if res := r.patch(scim.GroupType, ops, rename); res.Err != nil {
		t.Fatal(res.Err)
	}
	want := sorted(r.nativeID(scim.UserType, ada), r.nativeID(scim.UserType, bob))
	for _, g := range []string{adminsID, ops} {
		if got := app.holders(r.nativeID(scim.GroupType, g)); !slices.Equal(got, want) {
			t.Fatalf("holders of %s: %v, want %v", g, got, want)
		}
	}
	if app.roleCreates() != 2 {
		t.Fatalf("%d role creations for two groups", app.roleCreates())
	}
}

// gid creates group name with member and returns its id.
func gid(t *testing.T, r *rig, name, member string) string {
	t.Helper()
	return r.mustCreate(scim.GroupType, `{"displayName":"`+name+`","members":[{"value":"`+member+`"}]}`)
}

// TestQueuedCreateLeavesQueuedMembershipToItsTask: a user's queued create whose group's
// member add is queued behind it does not send that membership itself (its catch-up of
// held memberships leaves it to the group's task): the app gets one add, not two.
func TestQueuedCreateLeavesQueuedMembershipToItsTask(t *testing.T) {
	app, srv := newNativeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Admins"}`)
	r.settle()
	w := r.eng.Worker()
	if err := w.Pause("alice"); err != nil {
		t.Fatal(err)
	}
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	if res := r.patch(scim.GroupType, gid, `[{"op":"add","path":"members","value":[{"value":"`+uid+`"}]}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	if err := w.Resume("alice"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	role, acct := r.nativeID(scim.GroupType, gid), r.nativeID(scim.UserType, uid)
	adds := 0
	for _, c := range app.callLog() {
		if c == "PUT /roles/"+role+"/holders/"+acct {
			adds++
		}
	}
	if adds != 1 || len(r.tasks()) != 0 || !slices.Equal(app.holders(role), []string{acct}) {
		t.Fatalf("%d adds of the membership, tasks %+v, holders %v", adds, r.tasks(), app.holders(role))
	}
}
