package caddymodule

// Tests of the request bounds the handler enforces before anything else sees a request:
// ids no resource can have, numbers no attribute can hold.

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestHandlerInvalidIDs: an id no resource can have (a NUL or another control character,
// more than 256 bytes, not UTF-8) answers 404 naming the problem for every method, never a
// storage error, and a write's rejection is journaled with the id quoted and cut.
func TestHandlerInvalidIDs(t *testing.T) {
	g := newTestGateway(t, nil)
	uid := itPostID(t, g, "/Users", map[string]any{"userName": "ada@contoso.example"})
	gid := itPostID(t, g, "/Groups", map[string]any{"displayName": "Team", "members": []any{map[string]any{"value": uid}}})

	ids := []struct{ name, escaped, problem string }{
		{"NUL", "abc%00def", "control characters"},
		{"newline", "abc%0Adef", "control characters"},
		{"15,000 characters", strings.Repeat("a", 15000), "ids are at most 256 bytes, this one has 15000"},
		{"not UTF-8", "%FF%FE", "UTF-8"},
	}
	patch := map[string]any{"schemas": []any{scim.PatchOpSchema}, "Operations": []any{map[string]any{"op": "replace", "path": "title", "value": "x"}}}
	put := map[string]any{"userName": "someone@contoso.example"}
	for _, id := range ids {
		for _, endpoint := range []string{"/Users/", "/Groups/"} {
			for _, m := range []struct {
				method string
				body   any
			}{{http.MethodGet, nil}, {http.MethodHead, nil}, {http.MethodPut, put}, {http.MethodPatch, patch}, {http.MethodDelete, nil}} {
				t.Run(id.name+" "+m.method+" "+endpoint, func(t *testing.T) {
					w := serve(t, g, m.method, itBase+endpoint+id.escaped, m.body)
					if m.method == http.MethodHead {
						if w.Code != http.StatusNotFound {
							t.Fatalf("status %d, want 404", w.Code)
						}
						return
					}
					body := itWantError(t, w, http.StatusNotFound, "")
					if d, _ := body["detail"].(string); !strings.Contains(d, "with that id: ") || !strings.Contains(d, id.problem) {
						t.Errorf("detail %q does not name the problem %q", d, id.problem)
					}
				})
			}
		}
	}

	// The writes' rejections are journaled, with the id quoted and cut to 64 bytes.
	rec := lastRecord(t, g)
	if rec.Action != change.ActionDelete || rec.Status != http.StatusNotFound || rec.SCIMID != `"\xff\xfe"` {
		t.Errorf("last record: action %s status %d scim_id %q", rec.Action, rec.Status, rec.SCIMID)
	}
	for _, r := range auditRecords(t, g) {
		if len(r.SCIMID) > 80 {
			t.Errorf("a journal record holds a %d-byte id", len(r.SCIMID))
		}
	}
	auditVerify(t, g)

	// A method that is not allowed is still 405, whatever the id.
	w := serve(t, g, http.MethodPost, itBase+"/Users/abc%00def", put)
	itWantError(t, w, http.StatusMethodNotAllowed, "")

	// A filter on such an id matches nothing (200, an empty list, as Entra expects).
	for _, v := range []string{`abc\u0000def`, strings.Repeat("a", 3000), `\u0085`} {
		ids, _ := itListIDs(t, g, "/Users", itQ(`id eq "`+v+`"`))
		if len(ids) != 0 {
			t.Errorf("filter on an invalid id found %v", ids)
		}
	}
	if ids, _ := itListIDs(t, g, "/Users", itQ(`id eq "`+uid+`"`)); len(ids) != 1 {
		t.Errorf("filter on a valid id found %v", ids)
	}

	// A member reference that cannot be an id is 400 invalidValue, not a storage error.
	for _, member := range []string{"abc\x00def", strings.Repeat("m", 300)} {
		w := serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, map[string]any{
			"schemas":    []any{scim.PatchOpSchema},
			"Operations": []any{map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": member}}}},
		})
		itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidValue)
		w = serve(t, g, http.MethodPost, itBase+"/Groups", map[string]any{"displayName": "Other " + url.PathEscape(member[:3]), "members": []any{member}})
		itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidValue)
	}

	// Valid ids still work.
	itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+uid, nil), http.StatusOK)
	itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil), http.StatusOK)
}

// TestHandlerNumbersOutOfRange: a number no attribute can hold answers 400 invalidValue,
// naming its attribute, in POST, PUT, PATCH and .search bodies, before the policy sees it
// (a policy that allows everything fails on 1e999999 and would answer 403).
func TestHandlerNumbersOutOfRange(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package scimgate\n\ndecision := {\"allow\": true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, func(g *Handler) {
		g.Policy = &PolicyConfig{Dir: dir, Timeout: caddy.Duration(time.Second)}
	})
	uid := itPostID(t, g, "/Users", map[string]any{"userName": "ada@contoso.example"})
	const ext = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
	cases := []struct{ name, method, path, body, attr string }{
		{"POST", http.MethodPost, "/Users", `{"userName":"bob@contoso.example","x":1e999999}`, `"x"`},
		{"POST extension", http.MethodPost, "/Users", `{"userName":"bob@contoso.example","` + ext + `":{"badge":-1e999999}}`, `"` + ext + `:badge"`},
		{"POST underflow", http.MethodPost, "/Users", `{"userName":"bob@contoso.example","x":1e-999999}`, `"x"`},
		{"PUT", http.MethodPut, "/Users/" + uid, `{"userName":"ada@contoso.example","emails":[{"value":"ada@contoso.example","rank":1e999999}]}`, `"emails.rank"`},
		{"PATCH", http.MethodPatch, "/Users/" + uid, `{"schemas":["` + scim.PatchOpSchema + `"],"Operations":[{"op":"replace","path":"title","value":1e999999}]}`, `"Operations.value"`},
		{".search", http.MethodPost, "/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"count":1e999999}`, `"count"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := itWantError(t, serve(t, g, tc.method, itBase+tc.path, tc.body), http.StatusBadRequest, scim.TypeInvalidValue)
			if d, _ := body["detail"].(string); !strings.Contains(d, "out of range") || !strings.Contains(d, tc.attr) {
				t.Errorf("detail %q does not name %s", d, tc.attr)
			}
		})
	}
	// In a PATCH path's filter (which can create an element from its value) too.
	w := serve(t, g, http.MethodPatch, itBase+"/Users/"+uid, `{"schemas":["`+scim.PatchOpSchema+`"],"Operations":[{"op":"add","path":"phoneNumbers[type eq 1e999999].value","value":"1"}]}`)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "out of range") {
		t.Errorf("filtered path: %d %s", w.Code, w.Body)
	}
	// And in a list filter.
	w = serve(t, g, http.MethodGet, itBase+"/Users?"+itQ("title eq 1e999999"), nil)
	itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidFilter)

	// Numbers a double holds still pass through the policy.
	itPost(t, g, "/Users", `{"userName":"carol@contoso.example","x":1.5e300}`)
}
