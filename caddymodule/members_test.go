package caddymodule

// Group members a client made up: ids the directory does not know and sub-attributes of
// its own choosing. The gateway's rule: a member is accepted and returned exactly as
// stored (value and display as sent, type the directory's or the client's User/Group,
// $ref always the gateway's own), or refused with 400 invalidValue naming what it would
// not keep; never dropped, never changed behind the client's back. (With a target that
// maps member events, a member without an account in the app, an unknown id included,
// is refused as a whole: TestTargetMemberWithoutAccount.)

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

const memBase = "http://scim.test" + itBase

// memberOf returns the member entry of id in the group as GET returns it, failing when
// it is missing.
func memberOf(t *testing.T, g *Handler, gid, id string) map[string]any {
	t.Helper()
	grp := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil), http.StatusOK)
	m := itMember(grp, id)
	if m == nil {
		t.Fatalf("member %s is not in the group: %v", id, grp["members"])
	}
	return m
}

func TestHandlerMembersAsSent(t *testing.T) {
	g := newTestGateway(t, nil)
	uid := itPostID(t, g, "/Users", map[string]any{"userName": "real@contoso.example", "displayName": "Real User"})
	nested := itPostID(t, g, "/Groups", map[string]any{"displayName": "Nested"})
	const ghost = "f0e1d2c3-0000-4000-8000-00000000dead" // no resource has it
	cases := []struct {
		name string
		body any // a PATCH body
		id   string
		want map[string]any
	}{
		{"unknown id, Entra's default dialect", itPatchBody(`{"op":"Add","path":"members","value":[{"$ref":null,"value":"` + ghost + `"}]}`), ghost,
			map[string]any{"value": ghost}},
		{"unknown id as a bare string (Microsoft's Postman collection)", itPatchBody(`{"op":"add","path":"members","value":"string id 1"}`), "string id 1",
			map[string]any{"value": "string id 1"}},
		{"unknown id by filter with details (aadOptscim062020 path)", itPatchBody(`{"op":"add","path":"members[value eq \"ghost-2\"]","value":{"display":"Ghost Two","type":"user"}}`), "ghost-2",
			map[string]any{"value": "ghost-2", "display": "Ghost Two", "type": "User", "$ref": memBase + "/Users/ghost-2"}},
		{"unknown id with a client's type, display and $ref", itPatchBody(`{"op":"add","path":"members","value":[{"value":"ghost-3","type":"Group","display":"Ghost Three","$ref":"https://elsewhere.example/Groups/ghost-3"}]}`), "ghost-3",
			map[string]any{"value": "ghost-3", "display": "Ghost Three", "type": "Group", "$ref": memBase + "/Groups/ghost-3"}},
		{"known user with a made-up display, type and $ref", itPatchBody(`{"op":"add","path":"members","value":[{"value":"` + uid + `","display":"Made Up","type":"Group","$ref":"http://evil.example/Users/x"}]}`), uid,
			map[string]any{"value": uid, "display": "Made Up", "type": "User", "$ref": memBase + "/Users/" + uid}},
		{"displayName is display (Microsoft's Postman collection)", itPatchBody(`{"op":"add","path":"members","value":[{"displayName":"new User","value":"` + uid + `"}]}`), uid,
			map[string]any{"value": uid, "display": "new User", "type": "User", "$ref": memBase + "/Users/" + uid}},
		{"nested group without a type", itPatchBody(`{"op":"add","path":"members","value":[{"value":"` + nested + `"}]}`), nested,
			map[string]any{"value": nested, "type": "Group", "$ref": memBase + "/Groups/" + nested}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gid := itPostID(t, g, "/Groups", map[string]any{"displayName": "As sent " + tc.name})
			w := serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, tc.body, "Prefer", "return=representation")
			answer := itWantOK(t, w, http.StatusOK)
			if got := itMember(answer, tc.id); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("PATCH answered member %v, want %v", got, tc.want)
			}
			if got := memberOf(t, g, gid, tc.id); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("GET returns member %v, want %v", got, tc.want)
			}
			_, list := itListIDs(t, g, "/Groups", itQ(`members.value eq "`+tc.id+`" and id eq "`+gid+`"`))
			if res := itListResources(t, list); len(res) != 1 || !reflect.DeepEqual(itMember(res[0], tc.id), tc.want) {
				t.Errorf("a filter on the member finds %v", res)
			}
		})
	}
	t.Run("an unknown member is journaled with the change", func(t *testing.T) {
		gid := itPostID(t, g, "/Groups", map[string]any{"displayName": "Journaled"})
		w := serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, itPatchBody(`{"op":"add","path":"members","value":"string id 9"}`))
		if w.Code != http.StatusNoContent {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		r := lastRecord(t, g)
		if r.SCIMID != gid || len(r.Changes) != 1 || r.Changes[0].Path != "members" || !strings.Contains(string(r.Changes[0].Value), "string id 9") {
			t.Errorf("record: %+v", r)
		}
	})
	t.Run("POST and PUT keep unknown members too", func(t *testing.T) {
		res := itPost(t, g, "/Groups", map[string]any{"displayName": "Posted", "members": []any{map[string]any{"value": ghost, "display": "Ghost"}}})
		want := map[string]any{"value": ghost, "display": "Ghost"}
		if got := itMember(res, ghost); !reflect.DeepEqual(got, want) {
			t.Errorf("POST answered %v, want %v", got, want)
		}
		gid := res["id"].(string)
		w := serve(t, g, http.MethodPut, itBase+"/Groups/"+gid, map[string]any{"displayName": "Posted", "members": []any{"string id 2"}})
		if got := itMemberIDs(t, itWantOK(t, w, http.StatusOK)); !reflect.DeepEqual(got, []string{"string id 2"}) {
			t.Errorf("PUT answered members %v", got)
		}
		if got := memberOf(t, g, gid, "string id 2"); !reflect.DeepEqual(got, map[string]any{"value": "string id 2"}) {
			t.Errorf("GET returns %v", got)
		}
	})
	t.Run("a GET, PUT back unchanged, reads the same", func(t *testing.T) {
		gid := itPostID(t, g, "/Groups", map[string]any{"displayName": "Round trip", "members": []any{
			map[string]any{"value": uid, "display": "Real"}, map[string]any{"value": "ghost-4", "type": "User"}, "ghost-5",
		}})
		before := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil), http.StatusOK)
		body := map[string]any{"displayName": before["displayName"], "members": before["members"]}
		itWantOK(t, serve(t, g, http.MethodPut, itBase+"/Groups/"+gid, body), http.StatusOK)
		after := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil), http.StatusOK)
		if !reflect.DeepEqual(itSortedMembers(before), itSortedMembers(after)) {
			t.Errorf("members changed:\n before %v\n after  %v", before["members"], after["members"])
		}
	})
}

// itSortedMembers returns a group's member entries keyed by id.
func itSortedMembers(group map[string]any) map[string]any {
	out := map[string]any{}
	raw, _ := group["members"].([]any)
	for _, e := range raw {
		if m, _ := e.(map[string]any); m != nil {
			out[m["value"].(string)] = m
		}
	}
	return out
}

// TestHandlerMembersRefused: what the gateway would not keep is 400 invalidValue naming
// it, and the group is left as it was (nothing of the request applied).
func TestHandlerMembersRefused(t *testing.T) {
	g := newTestGateway(t, nil)
	uid := itPostID(t, g, "/Users", map[string]any{"userName": "kept@contoso.example"})
	gid := itPostID(t, g, "/Groups", map[string]any{"displayName": "Refusals", "members": []any{map[string]any{"value": uid}}})
	before := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil), http.StatusOK)
	cases := []struct{ name, op, detail string }{
		{"a sub-attribute the gateway does not keep", `{"op":"add","path":"members","value":[{"value":"x1","primary":true}]}`, `no sub-attribute "primary"`},
		{"SCIM 1.1's operation: delete", `{"op":"add","path":"members","value":[{"value":"` + uid + `","operation":"delete"}]}`, `"operation"`},
		{"a type that is neither User nor Group", `{"op":"add","path":"members","value":[{"value":"x1","type":"Device"}]}`, `not "Device"`},
		{"a display that is not a string", `{"op":"add","path":"members","value":[{"value":"x1","display":5}]}`, `"display" must be a string`},
		{"a value that names another member than the path", `{"op":"add","path":"members[value eq \"x1\"]","value":{"value":"x2"}}`, `"x2"`},
		{"remove with an unknown sub-attribute", `{"op":"Remove","path":"members","value":[{"value":"` + uid + `","foo":"bar"}]}`, `"foo"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A valid op first: the refusal must undo it too.
			w := serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, itPatchBody(`{"op":"add","path":"members","value":[{"value":"fine-1"}]}`, tc.op))
			e := itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidValue)
			if d, _ := e["detail"].(string); !strings.Contains(d, tc.detail) || !strings.Contains(d, "Operations[1]") {
				t.Errorf("detail %q, want it to name Operations[1] and %s", d, tc.detail)
			}
			after := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil), http.StatusOK)
			if !reflect.DeepEqual(after, before) {
				t.Errorf("the group changed:\n before %v\n after  %v", before, after)
			}
		})
	}
	t.Run("POST with an unknown sub-attribute", func(t *testing.T) {
		w := serve(t, g, http.MethodPost, itBase+"/Groups", map[string]any{"displayName": "Refused", "members": []any{map[string]any{"value": uid, "role": "owner"}}})
		if e := itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidValue); !strings.Contains(e["detail"].(string), `"role"`) {
			t.Errorf("detail %v", e["detail"])
		}
	})
}
