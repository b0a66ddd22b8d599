package mapping

import (
	"errors"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// rolesFile is a minimal mapping whose groups are roles, with groups given verbatim.
func rolesFile(groups string) string {
	return `{"version": 1, "tables": {"roles": {"Admins": "role_admin", "Billing": 7, "Retired": null}},
	  "users": {"events": {"create": {"method": "POST", "path": "/users", "id": "id", "body": {"login": "userName"}}}},
	  "groups": ` + groups + `}`
}

const assignPUT = `{"method": "PUT", "path": "/users/{id}/roles", "body": {"roles": "$role_ids"}}`

// TestRolesLoadErrors: every inconsistent roles configuration fails the load, naming the rule.
func TestRolesLoadErrors(t *testing.T) {
	tests := []struct{ name, file, want string }{
		{"table and lookup", rolesFile(`{"lookup": {"method": "GET", "path": "/roles?name={displayName}", "id": "0.id"}, "roles": {"table": "roles", "assign": ` + assignPUT + `}}`),
			`roles.json: groups.roles.table: roles come from one place: a table or the groups lookup, not both; remove one`},
		{"neither table nor lookup", rolesFile(`{"roles": {"assign": ` + assignPUT + `}}`),
			`roles.json: groups.roles: says nowhere where a group's role comes from: give a "table" (group names to role ids) or a groups "lookup" (a GET by {displayName} whose "id" is the role's id)`},
		{"group events beside roles", rolesFile(`{"roles": {"table": "roles", "assign": ` + assignPUT + `}, "events": {"create": {"method": "POST", "path": "/roles", "id": "id"}}}`),
			`roles.json: groups.events.create: groups that are roles (groups.roles) have no calls of their own: roles are found, not created, and members are sent as users' roles by groups.roles.assign; remove groups.events or groups.roles`},
		{"no assign", rolesFile(`{"roles": {"table": "roles"}}`),
			`roles.json: groups.roles.assign: missing: the call that sets a user's roles, e.g. {"method": "PUT", "path": "/users/{id}/roles", "body": {"roles": "$role_ids"}}`},
		{"assign without the roles", rolesFile(`{"roles": {"table": "roles", "assign": {"method": "PUT", "path": "/users/{id}/roles", "body": {"login": "userName"}}}}`),
			`roles.json: groups.roles.assign: has no source for the roles: give it a body field with "from": "$role_ids" (the user's roles, every one)`},
		{"assign as a flow", rolesFile(`{"roles": {"table": "roles", "assign": [` + assignPUT + `]}}`),
			`roles.json: groups.roles.assign: one call: it sends the user's whole list of roles`},
		{"assign with a condition", rolesFile(`{"roles": {"table": "roles", "assign": {"method": "PUT", "path": "/users/{id}/roles", "body": {"roles": "$role_ids"}, "when": {"present": ["title"]}}}}`),
			`roles.json: groups.roles.assign.when: the call is made whenever a user's roles change: it takes no condition`},
		{"unknown table", rolesFile(`{"roles": {"table": "perms", "assign": ` + assignPUT + `}}`),
			`roles.json: groups.roles.table: no table "perms" in "tables" (tables: roles)`},
		{"read without a users list", rolesFile(`{"roles": {"table": "roles", "assign": ` + assignPUT + `, "read": "roles"}}`),
			`roles.json: groups.roles.read: says where a listed user holds its roles, but users have no "list" call: a reconcile reads the roles from it`},
		{"read with an empty component", rolesFile(`{"roles": {"table": "roles", "assign": ` + assignPUT + `, "read": "roles..id"}}`),
			`roles.json: groups.roles.read: "roles..id" has an empty component`},
		{"bad role id", rolesFile(`{"roles": {"table": {"Admins": true}, "assign": ` + assignPUT + `}}`),
			`roles.json: groups.roles.table["Admins"]: a role id is a string or an integer (or null for no role), not bool`},
		{"key without a table", rolesFile(`{"lookup": {"method": "GET", "path": "/roles?name={displayName}", "id": "0.id"}, "roles": {"key": "{displayName|lower}", "assign": ` + assignPUT + `}}`),
			`roles.json: groups.roles.key: the key of a table: roles found by the groups lookup are looked up by its path ({displayName} there)`},
		{"roles of users", `{"version": 1, "users": {"roles": {}}}`,
			`roles.json: users.roles: roles are what groups stand for: write them as groups.roles`},
		{"users without native ids", `{"version": 1, "users": {"events": {"update": {"method": "PUT", "path": "/u/{userName}"}}}, "groups": {"roles": {"table": {"A": "a"}, "assign": ` + assignPUT + `}}}`,
			`roles.json: groups.roles.assign: names users by native id ({id}), but users have no create "id" or lookup to learn it from`},
		{"no users", `{"version": 1, "groups": {"roles": {"table": {"A": "a"}, "assign": ` + assignPUT + `}}}`,
			`roles.json: groups.roles.assign: sets users' roles, but the mapping has no "users"`},
		{"$role_ids elsewhere", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id", "body": {"r": "$role_ids"}}}}}`,
			`roles.json: users.events.create.body["r"]: uses $role_ids, which exists only in groups.roles.assign (the call that sets a user's roles)`},
		{"{role_ids} in a path", rolesFile(`{"roles": {"table": "roles", "assign": {"method": "PUT", "path": "/users/{id}/roles/{role_ids}", "body": {"roles": "$role_ids"}}}}`),
			`roles.json: groups.roles.assign.path: placeholder {role_ids}: a list of ids goes in a body field ("from": "$role_ids"), not in a template`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("roles.json", []byte(tc.file), nil)
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %v is not a *LoadError", err)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tc.want)
			}
		})
	}
}

// TestRolesRequests: the table (its key through transforms, integer and null ids) and the
// assign call with the user's whole list, an empty list as [], never null.
func TestRolesRequests(t *testing.T) {
	m, err := Parse("roles.json", []byte(rolesFile(`{"roles": {"table": "roles", "key": "{displayName|trim}", "assign": {"method": "PUT", "path": "/users/{id}/roles",
	  "body": {"login": "userName", "roles": "$role_ids"}}, "clear_on_user_delete": true}}`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := m.Roles()
	if r == nil || r.ByLookup() || !r.RevokeOnDelete || !r.ClearOnUserDelete || r.Source() != `table "roles"` {
		t.Fatalf("roles: %+v", r)
	}
	for name, want := range map[string]string{" Admins ": "role_admin", "Billing": "7", "Retired": "", "Sales": ""} {
		got, err := r.FromTable(scim.Resource{"displayName": name})
		if err != nil || got != want {
			t.Errorf("FromTable(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	user := scim.Resource{"userName": "ada@contoso.example"}
	req, err := r.AssignRequest(Input{Resource: user, NativeID: "u/1", RoleIDs: []string{"7", "role_admin"}})
	if err != nil || req.Method != "PUT" || req.Path != "/users/u%2F1/roles" || string(req.Body) != `{"login":"ada@contoso.example","roles":["7","role_admin"]}` || !req.Idempotent {
		t.Fatalf("assign: %+v (%s), %v", req, req.Body, err)
	}
	req, err = r.AssignRequest(Input{Resource: user, NativeID: "u1"})
	if err != nil || !strings.HasSuffix(string(req.Body), `"roles":[]}`) {
		t.Fatalf("an empty list: %s, %v", req.Body, err)
	}
	// Native groups have no role rules, and revoke_on_delete can be turned off.
	if m, err := Parse("n.json", []byte(`{"version": 1, "groups": {"events": {"create": {"method": "POST", "path": "/g", "id": "id"}}}}`), nil); err != nil || m.Roles() != nil {
		t.Fatalf("native groups: %v, %v", err, m)
	}
	m, err = Parse("roles.json", []byte(rolesFile(`{"lookup": {"method": "GET", "path": "/roles?name={displayName}", "id": "0.id"}, "roles": {"assign": `+assignPUT+`, "revoke_on_delete": false}}`)), nil)
	if err != nil || !m.Roles().ByLookup() || m.Roles().RevokeOnDelete || m.Roles().Source() != "the groups lookup" {
		t.Fatalf("by lookup: %v", err)
	}
}

// TestRolesIn: a listed user's roles, read where groups.roles.read says: ids as strings or
// integers (as their text), inside objects with a path like roles.#.id, sorted and each
// once; absent or null is none; anything else is an error naming the path.
func TestRolesIn(t *testing.T) {
	load := func(read string) *Roles {
		t.Helper()
		m, err := Parse("roles.json", []byte(`{"version": 1, "tables": {"roles": {"Admins": "role_admin"}},
		  "users": {"list": {"method": "GET", "path": "/users", "items": "data", "id": "id"},
		    "events": {"create": {"method": "POST", "path": "/users", "id": "id", "body": {"login": "userName"}}}},
		  "groups": {"roles": {"table": "roles", "assign": `+assignPUT+`, "read": "`+read+`"}}}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !m.Roles().CanRead() {
			t.Fatal("CanRead is false with read given")
		}
		return m.Roles()
	}
	tests := []struct {
		read, item string
		want       []string
		err        string
	}{
		{"roles", `{"roles": ["b", "a", "b"]}`, []string{"a", "b"}, ""},
		{"roles", `{"roles": [7, "x", 12345678901234567890]}`, []string{"12345678901234567890", "7", "x"}, ""},
		{"roles", `{}`, []string{}, ""},
		{"roles", `{"roles": null}`, []string{}, ""},
		{"grants.#.role.id", `{"grants": [{"role": {"id": 3}}, {"role": {"id": "r"}}]}`, []string{"3", "r"}, ""},
		{"roles", `{"roles": "admin"}`, nil, `the user's roles at "roles" are not a list: "admin"`},
		{"roles", `{"roles": [{"id": 1}]}`, nil, `a role id at "roles" is not a string or an integer: {"id": 1}`},
		{"roles", `{"roles": [1.5]}`, nil, `a role id at "roles": 1.5 is not an integer`},
		{"roles", `{"roles": [""]}`, nil, `a role id at "roles" is not a string or an integer: ""`},
	}
	for _, tc := range tests {
		got, err := load(tc.read).RolesIn([]byte(tc.item))
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("%s in %s: %v, want error %q", tc.read, tc.item, err, tc.err)
		case tc.err == "" && (err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") || got == nil):
			t.Errorf("%s in %s: %q, %v; want %q", tc.read, tc.item, got, err, tc.want)
		}
	}
}
