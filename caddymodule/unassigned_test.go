package caddymodule

// An empty multi-valued attribute is unassigned (RFC 7643 §2.5): a group without members
// and a user whose emails were replaced with [] are returned without the attribute, never
// with "members": [] or "emails": [], whichever way they were emptied (POST, PUT, both
// PATCH dialects), in every read (GET, list, .search, a PATCH's representation).

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// unWantNo fails when res has any of the attributes (as returned, case as written).
func unWantNo(t *testing.T, res map[string]any, attrs ...string) {
	t.Helper()
	for _, a := range attrs {
		if v, has := res[a]; has {
			t.Errorf("%s = %#v, want no %s attribute (unassigned)", a, v, a)
		}
	}
}

// unGroupReads reads a group every way a client can and checks none returns members.
func unGroupReads(t *testing.T, g *Handler, id, name string) {
	t.Helper()
	unWantNo(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+id, nil), http.StatusOK), "members")
	unWantNo(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+id+"?attributes=members", nil), http.StatusOK), "members")
	_, list := itListIDs(t, g, "/Groups", itQ(`displayName eq "`+name+`"`))
	res := itListResources(t, list)
	if len(res) != 1 {
		t.Fatalf("list found %d groups", len(res))
	}
	unWantNo(t, res[0], "members")
	w := serve(t, g, http.MethodPost, itBase+"/Groups/.search", map[string]any{"filter": `displayName eq "` + name + `"`, "attributes": []any{"members", "displayName"}})
	res = itListResources(t, itWantOK(t, w, http.StatusOK))
	if len(res) != 1 {
		t.Fatalf(".search found %d groups", len(res))
	}
	unWantNo(t, res[0], "members")
}

func TestHandlerEmptyGroupHasNoMembers(t *testing.T) {
	cases := []struct {
		name, mode string
		empty      func(t *testing.T, g *Handler, gid, uid string) *http.Response
	}{
		{"remove path=members (RFC)", "", func(t *testing.T, g *Handler, gid, _ string) *http.Response {
			return serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, itPatchBody(`{"op":"remove","path":"members"}`)).Result()
		}},
		{"Remove path=members with the last member as value (Entra's default dialect)", "", func(t *testing.T, g *Handler, gid, uid string) *http.Response {
			return serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, itPatchBody(`{"op":"Remove","path":"members","value":[{"$ref":null,"value":"`+uid+`"}]}`)).Result()
		}},
		{"remove members[value eq] of the last member (aadOptscim062020)", "", func(t *testing.T, g *Handler, gid, uid string) *http.Response {
			return serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, itPatchBody(`{"op":"remove","path":"members[value eq \"`+uid+`\"]"}`)).Result()
		}},
		{"replace path=members with [] (members_replace exact)", "exact", func(t *testing.T, g *Handler, gid, _ string) *http.Response {
			return serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, itPatchBody(`{"op":"replace","path":"members","value":[]}`)).Result()
		}},
		{"path-less replace with members [] (members_replace exact)", "exact", func(t *testing.T, g *Handler, gid, _ string) *http.Response {
			return serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, itPatchBody(`{"op":"replace","value":{"members":[]}}`)).Result()
		}},
		{"PUT with members []", "", func(t *testing.T, g *Handler, gid, _ string) *http.Response {
			w := serve(t, g, http.MethodPut, itBase+"/Groups/"+gid, map[string]any{"displayName": "Emptied", "members": []any{}})
			unWantNo(t, itWantOK(t, w, http.StatusOK), "members")
			return w.Result()
		}},
		{"PUT with members null", "", func(t *testing.T, g *Handler, gid, _ string) *http.Response {
			w := serve(t, g, http.MethodPut, itBase+"/Groups/"+gid, `{"displayName":"Emptied","members":null}`)
			unWantNo(t, itWantOK(t, w, http.StatusOK), "members")
			return w.Result()
		}},
		{"deleting the last member", "", func(t *testing.T, g *Handler, _, uid string) *http.Response {
			return serve(t, g, http.MethodDelete, itBase+"/Users/"+uid, nil).Result()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newTestGateway(t, func(g *Handler) { g.MembersReplace = tc.mode })
			uid := itPostID(t, g, "/Users", map[string]any{"userName": "member@contoso.example"})
			gid := itPostID(t, g, "/Groups", map[string]any{"displayName": "Emptied", "members": []any{map[string]any{"value": uid}}})
			if got := itMemberIDs(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil), http.StatusOK)); !slices.Equal(got, []string{uid}) {
				t.Fatalf("members before = %v", got)
			}
			if res := tc.empty(t, g, gid, uid); res.StatusCode >= 300 {
				t.Fatalf("emptying answered %d", res.StatusCode)
			}
			unGroupReads(t, g, gid, "Emptied")
		})
	}
	t.Run("created with members [] or none, in either answer", func(t *testing.T) {
		g := newTestGateway(t, nil)
		for _, body := range []map[string]any{
			{"displayName": "Empty list", "members": []any{}},
			{"displayName": "No list"},
		} {
			res := itPost(t, g, "/Groups", body)
			unWantNo(t, res, "members")
			unGroupReads(t, g, res["id"].(string), body["displayName"].(string))
		}
	})
	t.Run("merge replace with [] on an empty group, answered with the group", func(t *testing.T) {
		g := newTestGateway(t, nil)
		gid := itPostID(t, g, "/Groups", map[string]any{"displayName": "Merge"})
		w := serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, itPatchBody(`{"op":"replace","path":"members","value":[]}`), "Prefer", "return=representation")
		unWantNo(t, itWantOK(t, w, http.StatusOK), "members")
	})
}

func TestHandlerEmptyUserListsAreUnassigned(t *testing.T) {
	const custom = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
	g := newTestGateway(t, nil)
	// Entra's create body (the Tutorial's) carries "roles": [].
	u := itPost(t, g, "/Users", map[string]any{
		"schemas": []any{scim.UserSchema}, "userName": "lists@contoso.example", "roles": []any{},
		"emails":         []any{map[string]any{"value": "lists@contoso.example", "type": "work"}},
		"phoneNumbers":   []any{map[string]any{"value": "1", "type": "work"}},
		"ims":            []any{map[string]any{"value": "x", "type": "skype"}},
		custom + ":tags": []any{},
	})
	unWantNo(t, u, "roles", custom)
	if slices.Contains(u["schemas"].([]any), any(custom)) {
		t.Errorf("schemas lists %s although none of its attributes is assigned: %v", custom, u["schemas"])
	}
	id := u["id"].(string)
	patches := []struct{ name, op, attr string }{
		{"replace with [] (default dialect)", `{"op":"Replace","path":"phoneNumbers","value":[]}`, "phoneNumbers"},
		{"path-less replace with [] (aadOptscim062020)", `{"op":"replace","value":{"ims":[]}}`, "ims"},
		{"remove the last element by filter", `{"op":"remove","path":"emails[type eq \"work\"]"}`, "emails"},
	}
	for _, p := range patches {
		t.Run(p.name, func(t *testing.T) {
			res := itWantOK(t, serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(p.op)), http.StatusOK)
			unWantNo(t, res, p.attr)
			unWantNo(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil), http.StatusOK), p.attr)
		})
	}
	t.Run("PUT with []", func(t *testing.T) {
		w := serve(t, g, http.MethodPut, itBase+"/Users/"+id, map[string]any{"userName": "lists@contoso.example", "emails": []any{}, "roles": []any{}})
		unWantNo(t, itWantOK(t, w, http.StatusOK), "emails", "roles")
	})
	t.Run("an unassigned list is not present to a filter", func(t *testing.T) {
		if ids, _ := itListIDs(t, g, "/Users", itQ(`roles pr or emails pr`)); len(ids) != 0 {
			t.Errorf("matched %v", ids)
		}
	})
}

// TestHandlerEmptyListsStoredBefore: a user stored by an earlier version with "roles": []
// reads without it, and a PATCH of another attribute changes only that attribute (the
// empty list is not a change of its own).
func TestHandlerEmptyListsStoredBefore(t *testing.T) {
	g := newTestGateway(t, nil)
	now := time.Now().UTC()
	doc := `{"schemas":["` + scim.UserSchema + `"],"userName":"before@contoso.example","roles":[],"emails":[],"displayName":"Before"}`
	var attrs map[string]any
	if err := json.Unmarshal([]byte(doc), &attrs); err != nil {
		t.Fatal(err)
	}
	rec := &store.Record{Type: scim.UserType, ID: "stored-before", Created: now, LastModified: now, Version: 1, Doc: []byte(doc), Index: provision.IndexEntries(scim.UserType, attrs)}
	if err := g.store.Update(func(tx *store.Tx) error { return tx.Put(rec) }); err != nil {
		t.Fatal(err)
	}
	unWantNo(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/stored-before", nil), http.StatusOK), "roles", "emails")
	w := serve(t, g, http.MethodPatch, itBase+"/Users/stored-before", itPatchBody(`{"op":"Replace","path":"displayName","value":"After"}`))
	unWantNo(t, itWantOK(t, w, http.StatusOK), "roles", "emails")
	if got, want := changePaths(lastRecord(t, g)), []string{"replace displayName"}; !slices.Equal(got, want) {
		t.Errorf("journaled changes %v, want %v", got, want)
	}
}
