package reconcile

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/roleapp"
	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// rolesListMapping is for roleapp: groups are its roles, found by name; users are listed
// with the roles each holds (groups.roles.read).
const rolesListMapping = `{"version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/users?login={userName}", "id": "data.0.id"},
    "list": {"method": "GET", "path": "/users", "items": "data", "id": "id"},
    "events": {
      "create": {"method": "POST", "path": "/users", "id": "id", "body": {"login": "userName"}}}},
  "groups": {
    "lookup": {"method": "GET", "path": "/roles?name={displayName}", "id": "data.0.id"},
    "roles": {
      "assign": {"method": "PUT", "path": "/users/{id}/roles", "body": {"roles": "$role_ids"}, "expect": {"has": ["roles"]}},
      "read": "roles"}}}`

// newRolesRig is a rig whose target is roleapp, on loopback.
func newRolesRig(t *testing.T) (*rig, *roleapp.App) {
	t.Helper()
	app := roleapp.New()
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	s := teststore.Open(t, t.TempDir())
	j, err := journal.Open(s.DB(), journal.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = j.Close()
		_ = s.Close()
	})
	m, err := mapping.Parse("roles.json", []byte(rolesListMapping), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := legacy.New(legacy.Options{BaseURL: srv.URL, Timeout: 5 * time.Second, MaxConcurrent: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	r := &rig{t: t, store: s, j: j, shared: provision.NewShared(nil),
		target: &provision.Target{Name: "roles", Mapping: m, Client: c, Headers: http.Header{}}}
	if r.eng, err = provision.New(provision.Config{Store: s, Journal: j, Shared: r.shared, Target: r.target}); err != nil {
		t.Fatal(err)
	}
	return r, app
}

// TestReconcileComparesRoles: the roles each user holds in an app whose groups are roles
// are compared with the lists the directory gives: a role taken away in the app is a
// member missing from its group, a role given there by hand a member extra (of the group
// that gives it, or of none), and nothing is reported for users as the directory says.
// --fix sends the users' lists of roles again; a role no group gives is reported only.
func TestReconcileComparesRoles(t *testing.T) {
	r, app := newRolesRig(t)
	ids := map[string]string{}
	for _, u := range []string{"ann", "bob", "cat", "dan"} {
		noTitle := user(u, "", true)
		delete(noTitle, "title")
		ids[u] = r.create(r.eng, scim.UserType, noTitle)
	}
	r.create(r.eng, scim.GroupType, group("Admins", ids["ann"], ids["bob"]))
	r.create(r.eng, scim.GroupType, group("Billing", ids["bob"], ids["cat"]))
	native := func(u string) string { return r.nativeID(scim.UserType, ids[u]) }
	app.SetHeld(native("ann"), nil)                                    // lost role_admin
	app.SetHeld(native("cat"), []string{"role_billing", "role_admin"}) // given role_admin by hand
	app.SetHeld(native("dan"), []string{"role_audit"})                 // a role no group gives

	rc := r.reconciler(Options{})
	rep, err := rc.Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"member_extra Group Admins member cat@example.com",
		"member_extra Group role role_audit member dan@example.com",
		"member_missing Group Admins member ann@example.com",
	}
	if got := keys(rep); !slices.Equal(got, want) {
		t.Fatalf("findings %v, want %v (notes %v)", got, want, rep.Notes)
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool {
		return strings.HasPrefix(n, "groups are the app's roles: their members are compared")
	}) {
		t.Errorf("notes %q: the report does not say how groups that are roles are compared", rep.Notes)
	}
	for _, f := range rep.Findings {
		wantFix := "applied"
		if strings.HasPrefix(f.Subject, "role ") {
			wantFix = "reported only"
		}
		if !strings.HasPrefix(f.Fix, wantFix) {
			t.Errorf("%s: fix %q, want %q", findingKey(f), f.Fix, wantFix)
		}
	}
	for u, roles := range map[string][]string{"ann": {"role_admin"}, "bob": {"role_admin", "role_billing"}, "cat": {"role_billing"}, "dan": {"role_audit"}} {
		if got := app.Held(native(u)); !slices.Equal(got, roles) {
			t.Errorf("%s holds %v in the app, want %v", u, got, roles)
		}
	}
	again, err := rc.Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(again); !slices.Equal(got, want[1:2]) {
		t.Fatalf("after the fix: %v, want only %v", got, want[1:2])
	}
}
