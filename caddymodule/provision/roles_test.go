package provision

// Groups as roles, end to end in the engine: a real HTTP app on loopback of a role-style
// shape (string role ids such as "role_admin" that exist before any group, a user's roles
// set as a whole list with PUT, and a delete refused while the user holds roles), driven
// with Entra's member PATCHes in both dialects, with faults.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/roleapp"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

func newRoleApp(t testing.TB) (*roleapp.App, *httptest.Server) {
	app := roleapp.New()
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	return app, srv
}

// roleMapping (for roleapp) finds roles by the groups lookup on displayName, and sets a user's roles as
// the whole list; the app refuses to delete a user with roles, so they are cleared first.
const roleMapping = `{"version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/users?login={userName}", "id": "data.0.id"},
    "events": {
      "create": {"method": "POST", "path": "/users", "id": "id", "body": {"login": "userName"}},
      "delete": {"method": "DELETE", "path": "/users/{id}", "expect": {"status": [204], "body": "empty"}}}},
  "groups": {
    "lookup": {"method": "GET", "path": "/roles?name={displayName}", "id": "data.0.id"},
    "roles": {
      "assign": {"method": "PUT", "path": "/users/{id}/roles", "body": {"roles": "$role_ids"}, "expect": {"has": ["roles"]}},
      "clear_on_user_delete": true}}}`

// entraDialect writes Entra's member PATCHes: without the aadOptscim062020 flag (Add and
// Remove with a value list) and with it (remove by a members[value eq] path).
type entraDialect struct {
	name        string
	add, remove func(ids ...string) string
}

var entraDialects = []entraDialect{
	{"default", func(ids ...string) string { return `[{"op":"Add","path":"members","value":` + memberValues(ids) + `}]` },
		func(ids ...string) string {
			return `[{"op":"Remove","path":"members","value":` + memberValues(ids) + `}]`
		}},
	{"aadOptscim062020", func(ids ...string) string { return `[{"op":"add","path":"members","value":` + memberValues(ids) + `}]` },
		func(ids ...string) string {
			ops := make([]string, len(ids))
			for i, id := range ids {
				ops[i] = `{"op":"remove","path":"members[value eq \"` + id + `\"]"}`
			}
			return "[" + strings.Join(ops, ",") + "]"
		}},
}

func memberValues(ids []string) string {
	vals := make([]string, len(ids))
	for i, id := range ids {
		vals[i] = `{"value":"` + id + `"}`
	}
	return "[" + strings.Join(vals, ",") + "]"
}

func group(name string) string {
	return `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"` + name + `"}`
}

// mustPatch applies a PATCH that must succeed.
func (r *rig) mustPatch(typ, id, ops string) {
	r.t.Helper()
	if res := r.patch(typ, id, ops); res.Err != nil {
		r.t.Fatalf("patch %s %s: %v", typ, id, res.Err)
	}
}

// wantRoles checks the roles each user holds in the app.
func (r *rig) wantRoles(app *roleapp.App, want map[string][]string) {
	r.t.Helper()
	for uid, roles := range want {
		if got := app.Held(r.nativeID(scim.UserType, uid)); !slices.Equal(got, roles) && !(len(got) == 0 && len(roles) == 0) {
			r.t.Fatalf("user %s holds %v in the app, want %v; calls %v", uid, got, roles, app.Calls())
		}
	}
}

// TestRolesFullList: a group that stands for an existing role is not created in the app; a
// membership change of any group sends each affected user's whole list of roles, in both of
// Entra's dialects; a group that gives no role is skipped and journaled as such, while Entra
// gets its answer.
func TestRolesFullList(t *testing.T) {
	for _, d := range entraDialects {
		t.Run(d.name, func(t *testing.T) {
			app, srv := newRoleApp(t)
			r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, roleMapping)})
			ada := r.mustCreate(scim.UserType, user("ada@contoso.example"))
			bob := r.mustCreate(scim.UserType, user("bob@contoso.example"))
			admins := r.mustCreate(scim.GroupType, group("Admins"))
			if rec := r.last(); rec.Outcome != change.Applied || len(rec.Calls) != 1 || rec.Calls[0].Method != http.MethodGet {
				t.Fatalf("the group's create looks its role up and creates nothing: %+v", rec)
			}
			billing := r.mustCreate(scim.GroupType, group("Billing"))
			res := r.create(scim.GroupType, group("Ghosts"))
			if res.Err != nil || res.Status != http.StatusCreated {
				t.Fatalf("a group without a role is Entra's success: %+v", res)
			}
			ghosts := res.ID
			if rec := r.last(); rec.Outcome != change.Skipped || rec.Decision == nil || !strings.Contains(strings.Join(rec.Decision.Reasons, " "), "gives no role") {
				t.Fatalf("a group without a role is journaled as skipped with the reason: %+v", rec)
			}
			if slices.ContainsFunc(app.Calls(), func(c string) bool { return strings.HasPrefix(c, "POST /roles") }) {
				t.Fatalf("a role was created: %v", app.Calls())
			}

			r.mustPatch(scim.GroupType, admins, d.add(ada))
			r.wantRoles(app, map[string][]string{ada: {"role_admin"}, bob: nil})
			r.mustPatch(scim.GroupType, billing, d.add(ada, bob))
			r.wantRoles(app, map[string][]string{ada: {"role_admin", "role_billing"}, bob: {"role_billing"}})
			if rec := r.last(); len(rec.Calls) != 2 || rec.Calls[0].Method != http.MethodPut || rec.Calls[1].Method != http.MethodPut {
				t.Fatalf("one whole list per affected user, each journaled: %+v", rec.Calls)
			}
			// A remove from one group sends the list that still holds the other group's role.
			r.mustPatch(scim.GroupType, admins, d.remove(ada))
			r.wantRoles(app, map[string][]string{ada: {"role_billing"}, bob: {"role_billing"}})
			r.mustPatch(scim.GroupType, billing, d.remove(ada, bob))
			r.wantRoles(app, map[string][]string{ada: {}, bob: {}})
			if got := app.Held(r.nativeID(scim.UserType, ada)); got == nil {
				t.Fatal("the last remove did not send an empty list")
			}
			// Members of a group that gives no role: the directory only.
			calls := len(app.Calls())
			r.mustPatch(scim.GroupType, ghosts, d.add(ada))
			if got := app.Calls()[calls:]; slices.ContainsFunc(got, func(c string) bool { return strings.HasPrefix(c, "PUT") }) {
				t.Fatalf("a group without a role sent roles: %v", got)
			}
			if rec := r.last(); rec.Outcome != change.Skipped || !slices.Equal(r.members(ghosts), []string{ada}) {
				t.Fatalf("ghosts: record %+v, members %v", rec, r.members(ghosts))
			}
		})
	}
}

// TestRolesFollowGroups: a rename follows the role the new name stands for (and a name that
// stands for none takes the role away), a role made in the app after its group is found on
// the group's next change, a deleted group's role is revoked from its members, and a user's
// delete clears its roles before the delete, in one flow under one intent.
func TestRolesFollowGroups(t *testing.T) {
	app, srv := newRoleApp(t)
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, roleMapping)})
	ada := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	bob := r.mustCreate(scim.UserType, user("bob@contoso.example"))
	admins := r.mustCreate(scim.GroupType, group("Admins"))
	team := r.mustCreate(scim.GroupType, group("Billing"))
	r.mustPatch(scim.GroupType, admins, entraDialects[0].add(ada))
	r.mustPatch(scim.GroupType, team, entraDialects[0].add(ada, bob))
	r.wantRoles(app, map[string][]string{ada: {"role_admin", "role_billing"}, bob: {"role_billing"}})

	r.mustPatch(scim.GroupType, team, `[{"op":"Replace","path":"displayName","value":"Auditors"}]`)
	r.wantRoles(app, map[string][]string{ada: {"role_admin", "role_audit"}, bob: {"role_audit"}})
	r.mustPatch(scim.GroupType, team, `[{"op":"replace","value":{"displayName":"Interns"}}]`) // the flag's path-less form
	r.wantRoles(app, map[string][]string{ada: {"role_admin"}, bob: {}})
	if rec := r.last(); rec.Outcome != change.Applied || !strings.Contains(strings.Join(rec.Decision.Reasons, " "), "no longer gives role role_audit") {
		t.Fatalf("a rename to no role: %+v", rec)
	}
	// The role is made in the app: the group's next change finds it.
	app.AddRole("Interns", "role_intern")
	carl := r.mustCreate(scim.UserType, user("carl@contoso.example"))
	r.mustPatch(scim.GroupType, team, entraDialects[1].add(carl))
	r.wantRoles(app, map[string][]string{ada: {"role_admin", "role_intern"}, bob: {"role_intern"}, carl: {"role_intern"}})

	// Deleting a group revokes its role from its members.
	if res := r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: team, Status: http.StatusNoContent}); res.Err != nil {
		t.Fatal(res.Err)
	}
	r.wantRoles(app, map[string][]string{ada: {"role_admin"}, bob: {}, carl: {}})

	// The app refuses to delete a user who holds roles: the roles are cleared first.
	native := r.nativeID(scim.UserType, ada)
	before := len(r.records())
	if res := r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: ada, Status: http.StatusNoContent}); res.Err != nil {
		t.Fatal(res.Err)
	}
	recs := r.records()[before:]
	if len(recs) != 2 || recs[0].Outcome != change.Pending || recs[1].Outcome != change.Applied || len(recs[1].Calls) != 2 ||
		recs[1].Calls[0].URL != "/users/"+native+"/roles" || recs[1].Calls[1].Method != http.MethodDelete {
		t.Fatalf("one intent, then the clear and the delete: %+v", recs)
	}
	if app.HasUser(native) {
		t.Fatal("the user is still in the app")
	}
	// A user without roles is deleted with one call.
	calls := len(app.Calls())
	if res := r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: bob, Status: http.StatusNoContent}); res.Err != nil || len(app.Calls()) != calls+1 {
		t.Fatalf("delete without roles: %v, calls %v", res.Err, app.Calls()[calls:])
	}
}

// TestRolesFaults: a 503 in the middle of a change that sends several lists, and a list
// whose answer was lost, answer Entra 503 with nothing changed in the directory; Entra's
// retry sends the whole lists again and the app ends up as the directory says.
func TestRolesFaults(t *testing.T) {
	app, srv := newRoleApp(t)
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, roleMapping)})
	var users []string
	for _, n := range []string{"a", "b", "c"} {
		users = append(users, r.mustCreate(scim.UserType, user(n+"@contoso.example")))
	}
	admins := r.mustCreate(scim.GroupType, group("Admins"))
	r.mustPatch(scim.GroupType, admins, entraDialects[1].add(users...))
	r.wantRoles(app, map[string][]string{users[0]: {"role_admin"}, users[1]: {"role_admin"}, users[2]: {"role_admin"}})

	// The rename to Billing looks the role up and sends three lists (in the order of the
	// users' SCIM ids); the second fails with a 503.
	order := slices.Sorted(slices.Values(users))
	second := "PUT /users/" + r.nativeID(scim.UserType, order[1]) + "/roles"
	app.Fail(second, http.StatusServiceUnavailable)
	rename := `[{"op":"Replace","path":"displayName","value":"Billing"}]`
	res := r.patch(scim.GroupType, admins, rename)
	if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
		t.Fatalf("a 503 in the middle: %+v", res)
	}
	if rec := r.last(); rec.Outcome != change.Failed || len(rec.Calls) != 3 || rec.Calls[0].Method != http.MethodGet ||
		rec.Calls[1].Status != http.StatusOK || rec.Calls[2].Status != http.StatusServiceUnavailable {
		t.Fatalf("the failure's record has every call: %+v", rec.Calls)
	}
	if name := r.displayName(admins); name != "Admins" {
		t.Fatalf("the directory changed: %q", name)
	}
	if res := r.patch(scim.GroupType, admins, rename); res.Err != nil {
		t.Fatal(res.Err)
	}
	r.wantRoles(app, map[string][]string{users[0]: {"role_billing"}, users[1]: {"role_billing"}, users[2]: {"role_billing"}})

	// The answer to a list is lost after the app set it.
	auditors := r.mustCreate(scim.GroupType, group("Auditors"))
	lost := "PUT /users/" + r.nativeID(scim.UserType, users[0]) + "/roles"
	app.Drop(lost)
	add := entraDialects[0].add(users[0])
	if res := r.patch(scim.GroupType, auditors, add); res.Status != http.StatusServiceUnavailable {
		t.Fatalf("a lost answer: %+v", res)
	}
	if got := r.members(auditors); len(got) != 0 {
		t.Fatalf("the directory took a change whose outcome is unknown: %v", got)
	}
	if res := r.patch(scim.GroupType, auditors, add); res.Err != nil {
		t.Fatal(res.Err)
	}
	r.wantRoles(app, map[string][]string{users[0]: {"role_audit", "role_billing"}, users[1]: {"role_billing"}})

	// The app's own 400 reaches Entra as 400: a table naming a role the app does not have.
	bad := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, tableMapping(`{"ops": "role_ops"}`, true))})
	u := bad.mustCreate(scim.UserType, user("d@contoso.example"))
	ops := bad.mustCreate(scim.GroupType, group("Ops"))
	res = bad.patch(scim.GroupType, ops, entraDialects[0].add(u))
	if res.Status != http.StatusBadRequest || res.Err.ScimType != scim.TypeInvalidValue || !strings.Contains(res.Err.Detail, "unknown role role_ops") {
		t.Fatalf("the app's 400: %+v (%v)", res, res.Err)
	}
}

// tableMapping is a role mapping whose roles come from a table, keyed by the lowercased
// displayName.
func tableMapping(table string, revoke bool) string {
	return `{"version": 1, "tables": {"roles": ` + table + `},
	  "users": {"events": {"create": {"method": "POST", "path": "/users", "id": "id", "body": {"login": "userName"}}}},
	  "groups": {"roles": {"table": "roles", "key": "{displayName|lower}", "revoke_on_delete": ` + fmt.Sprint(revoke) + `,
	    "assign": {"method": "PUT", "path": "/users/{id}/roles", "body": {"roles": "$role_ids"}}}}}`
}

func (r *rig) displayName(gid string) string {
	r.t.Helper()
	var name string
	_ = r.store.View(func(tx *store.Tx) error {
		rec, err := tx.Get(scim.GroupType, gid)
		if err != nil {
			return err
		}
		doc, err := DecodeDoc(rec)
		name = SubjectOf(scim.GroupType, doc)
		return err
	})
	return name
}

const rolesPolicy = `package scimgate

default decision := {"allow": true}

decision := {"allow": true, "skip": true, "reasons": ["privileged groups are managed by hand"]} if {
	input.resource_type == "Group"
	input.resource.displayName == "Privileged"
}

decision := {"allow": true, "drop_members": [m.id | some m in input.members.add; m.display == "temp@contoso.example"]} if {
	input.resource_type == "Group"
	input.resource.displayName == "Administrators"
}
`

// TestRolesTableAndPolicy: roles from a table (two groups may stand for one role, given
// once); a group the policy keeps out of the app gives no role, even to members whose lists
// other groups send; with revoke_on_delete off a deleted group's members keep its role.
func TestRolesTableAndPolicy(t *testing.T) {
	app, srv := newRoleApp(t)
	target := newMappedTarget(t, srv.URL, tableMapping(`{"admins": "role_admin", "administrators": "role_admin", "privileged": "role_audit", "billing": "role_billing"}`, false))
	r := newRig(t, rigOptions{target: target, policy: writePolicy(t, rolesPolicy)})
	ada := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	admins := r.mustCreate(scim.GroupType, group("Admins"))
	administrators := r.mustCreate(scim.GroupType, group("Administrators"))
	privileged := r.mustCreate(scim.GroupType, group("Privileged"))
	billing := r.mustCreate(scim.GroupType, group("Billing"))
	if n := len(app.Calls()); n != 1 { // the user's create; a table needs no call
		t.Fatalf("calls: %v", app.Calls())
	}
	r.mustPatch(scim.GroupType, admins, entraDialects[0].add(ada))
	r.mustPatch(scim.GroupType, administrators, entraDialects[1].add(ada))
	r.wantRoles(app, map[string][]string{ada: {"role_admin"}})
	r.mustPatch(scim.GroupType, privileged, entraDialects[0].add(ada))
	if rec := r.last(); rec.Outcome != change.Skipped || !slices.Equal(r.members(privileged), []string{ada}) {
		t.Fatalf("the policy's skip: %+v", rec)
	}
	r.mustPatch(scim.GroupType, billing, entraDialects[0].add(ada))
	r.wantRoles(app, map[string][]string{ada: {"role_admin", "role_billing"}})
	// One of the two groups that give role_admin goes: ada keeps it through the other.
	r.mustPatch(scim.GroupType, admins, entraDialects[1].remove(ada))
	r.wantRoles(app, map[string][]string{ada: {"role_admin", "role_billing"}})
	// revoke_on_delete is off: the delete makes no call and says so.
	calls := len(app.Calls())
	if res := r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: billing, Status: http.StatusNoContent}); res.Err != nil || len(app.Calls()) != calls {
		t.Fatalf("delete without revoke: %v, calls %v", res.Err, app.Calls()[calls:])
	}
	if rec := r.last(); !strings.Contains(strings.Join(rec.Decision.Reasons, " "), "keep role role_billing") {
		t.Fatalf("the delete's reason: %+v", rec.Decision)
	}
	// The next list sent for ada has neither the deleted group's role nor the kept-out one's.
	r.mustPatch(scim.GroupType, administrators, entraDialects[0].remove(ada))
	r.wantRoles(app, map[string][]string{ada: {}})

	// A member the policy drops from a group is in the directory's group, but its role
	// reaches the app neither then nor with the lists other groups send later.
	temp := r.mustCreate(scim.UserType, user("temp@contoso.example"))
	r.mustPatch(scim.GroupType, administrators, entraDialects[0].add(temp))
	if got := r.members(administrators); !slices.Contains(got, temp) || r.last().Decision == nil || !slices.Equal(r.last().Decision.DroppedMembers, []string{temp}) {
		t.Fatalf("the dropped member: members %v, decision %+v", got, r.last().Decision)
	}
	r.wantRoles(app, map[string][]string{temp: {}})
	billing2 := r.mustCreate(scim.GroupType, group("BILLING"))
	r.mustPatch(scim.GroupType, billing2, entraDialects[1].add(temp))
	r.wantRoles(app, map[string][]string{temp: {"role_billing"}})
}

// TestRolesConcurrentGroups: changes of different groups that share a user, made at the
// same time, leave the app with the user's list as the directory says.
func TestRolesConcurrentGroups(t *testing.T) {
	app, srv := newRoleApp(t)
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, roleMapping)})
	ada := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	groups := []string{r.mustCreate(scim.GroupType, group("Admins")), r.mustCreate(scim.GroupType, group("Billing")), r.mustCreate(scim.GroupType, group("Auditors"))}
	for round := range 6 {
		var wg sync.WaitGroup
		for i, g := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ops := entraDialects[0].add(ada)
				if (round+i)%2 == 1 {
					ops = entraDialects[1].remove(ada)
				}
				if res := r.patch(scim.GroupType, g, ops); res.Err != nil {
					t.Errorf("round %d, group %d: %v", round, i, res.Err)
				}
			}()
		}
		wg.Wait()
		var want []string
		for i, g := range groups {
			if slices.Contains(r.members(g), ada) {
				want = append(want, []string{"role_admin", "role_billing", "role_audit"}[i])
			}
		}
		slices.Sort(want)
		r.wantRoles(app, map[string][]string{ada: want})
	}
}

// TestRolesCatchUp: a user the policy kept out of the app is left out of its groups' lists;
// when a later change lets it in (its create catches up), the account gets the roles its
// groups already give.
func TestRolesCatchUp(t *testing.T) {
	app, srv := newRoleApp(t)
	pol := writePolicy(t, `package scimgate

default decision := {"allow": true}

decision := {"allow": true, "skip": true, "reasons": ["contractors wait"]} if input.resource.title == "Contractor"
`)
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, roleMapping), policy: pol})
	ada := r.mustCreate(scim.UserType, user("ada@contoso.example", `,"title":"Contractor"`))
	admins := r.mustCreate(scim.GroupType, group("Admins"))
	r.mustPatch(scim.GroupType, admins, entraDialects[0].add(ada))
	if rec := r.last(); rec.Outcome != change.Applied || !strings.Contains(strings.Join(rec.Decision.Reasons, " "), "kept out of") {
		t.Fatalf("the kept-out member: %+v", rec)
	}
	r.mustPatch(scim.UserType, ada, `[{"op":"Replace","path":"title","value":"Engineer"}]`)
	native := r.nativeID(scim.UserType, ada)
	if native == "" {
		t.Fatalf("no catch-up create: %v", app.Calls())
	}
	r.wantRoles(app, map[string][]string{ada: {"role_admin"}})
}
