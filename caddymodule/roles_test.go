package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/roleapp"
)

// TestIntegrationGroupsAsRoles: a real Caddy with the gateway in front of an app whose
// groups are roles, through the shipped mappings/roles-example.json, driven as Entra does:
// groups are created (none in the app; one that stands for no role is still Entra's
// success), members are added and removed in both PATCH dialects and each affected user
// gets its whole list of roles; a rename follows the role; a 503 in the middle is Entra's
// 503 with Retry-After and its retry converges; a user's delete clears its roles first.
func TestIntegrationGroupsAsRoles(t *testing.T) {
	app := roleapp.New()
	srv := httptest.NewServer(app)
	defer srv.Close()
	t.Setenv("SCIMGATE_IT_APP_URL", srv.URL)
	t.Setenv("SCIMGATE_IT_MAPPING", filepath.Join("..", "mappings", "roles-example.json"))
	s := itStartCaddyfile(t, filepath.Join("testdata", "roles", "Caddyfile"))

	ada, _ := s.create(t, "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@contoso.example","active":true}`)
	bob, _ := s.create(t, "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bob@contoso.example","active":true}`)
	group := func(name string) string {
		id, _ := s.create(t, "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"`+name+`","members":[]}`)
		return id
	}
	admins, billing, ghosts := group("Admins"), group("Billing"), group("Ghosts")
	// The app's user ids: the gateway created ada then bob, usr_1 then usr_2.
	holds := func(native string, want ...string) {
		t.Helper()
		if got := app.Held(native); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("%s holds %v, want %v; calls %v", native, got, want, app.Calls())
		}
	}
	patch := func(id, ops string, status int) *itResponse {
		t.Helper()
		r := s.do(t, http.MethodPatch, "/Groups/"+id, itPatchBody(ops))
		r.expect(t, status)
		return r
	}

	patch(admins, `{"op":"Add","path":"members","value":[{"value":"`+ada+`"}]}`, http.StatusNoContent)
	patch(billing, `{"op":"add","path":"members","value":[{"value":"`+ada+`"},{"value":"`+bob+`"}]}`, http.StatusNoContent)
	holds("usr_1", "role_admin", "role_billing")
	holds("usr_2", "role_billing")
	patch(admins, `{"op":"remove","path":"members[value eq \"`+ada+`\"]"}`, http.StatusNoContent)
	holds("usr_1", "role_billing")
	patch(ghosts, `{"op":"Add","path":"members","value":[{"value":"`+bob+`"}]}`, http.StatusNoContent)
	if got := itMemberIDs(t, s.get(t, "/Groups/"+ghosts)); !slices.Equal(got, []string{bob}) {
		t.Fatalf("the directory's Ghosts: %v", got)
	}
	holds("usr_2", "role_billing")

	// The rename to Auditors sends both lists; the app fails the second once.
	app.Fail("PUT /users/usr_2/roles", http.StatusServiceUnavailable)
	rename := `{"op":"Replace","path":"displayName","value":"Auditors"}`
	if r := patch(billing, rename, http.StatusServiceUnavailable); r.header.Get("Retry-After") == "" {
		t.Fatal("a 503 without Retry-After")
	}
	if name := s.get(t, "/Groups/"+billing)["displayName"]; name != "Billing" {
		t.Fatalf("the directory took the failed rename: %v", name)
	}
	patch(billing, rename, http.StatusNoContent)
	holds("usr_1", "role_audit")
	holds("usr_2", "role_audit")

	// Deleting a user clears its roles first: the app refuses to delete a user with roles.
	s.do(t, http.MethodDelete, "/Users/"+ada, "").expect(t, http.StatusNoContent)
	if app.HasUser("usr_1") {
		t.Fatalf("ada is still in the app; calls %v", app.Calls())
	}
	// Deleting a group revokes its role.
	s.do(t, http.MethodDelete, "/Groups/"+billing, "").expect(t, http.StatusNoContent)
	holds("usr_2")
}
