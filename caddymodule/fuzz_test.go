package caddymodule

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// FuzzHandler sends arbitrary PATCH bodies, POST bodies and filters through the real
// handler against a small directory. Whatever the input, the gateway must answer: never a
// panic, never a 5xx (but 501 for unsupported endpoints), and every error is a SCIM Error.
func FuzzHandler(f *testing.F) {
	seeds := []struct {
		kind uint8
		in   string
	}{
		{0, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"a@b.c"}]}`},
		{0, `{"Operations":[{"op":"add","value":{"name.givenName":"x","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager":"m"}}]}`},
		{0, `{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`},
		{0, `{"Operations":[{"op":"remove","path":"members[value eq \"x\"]"}]}`},
		{1, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"u","emails":[{"value":"e"}]}`},
		{1, `{"userName":"u","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":[{"value":"m","$ref":"x"}]}}`},
		{0, `{"Operations":[{"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:MyApp:2.0:User:hireDate":"a","urn:ietf:params:scim:schemas:extension:MyApp:2.0:User":{"hireDate":"b"}}}]}`},
		{1, `{"userName":"f","urn:ietf:params:scim:schemas:extension:MyApp:2.0:User:badge.level":"2","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager":"m","urn:ietf:params:scim:schemas:extension:MyApp:2.0:User":{"badge":{"level":"2"}}}`},
		{2, `userName eq "alice"`},
		{2, `emails[type eq "work" and value co "@"] or not (active eq false)`},
		{2, `meta.lastModified gt 2020-01-01T00:00:00Z`},
		{3, `members[value eq "x"]`},
	}
	for _, s := range seeds {
		f.Add(s.kind, s.in)
	}
	g := newTestGateway(f, nil)
	u := decodeJSON(f, serve(f, g, "POST", "/scim/v2/Users", map[string]any{"userName": "alice", "emails": []any{map[string]any{"type": "work", "value": "a@contoso.example"}}}))
	grp := decodeJSON(f, serve(f, g, "POST", "/scim/v2/Groups", map[string]any{"displayName": "g", "members": []any{map[string]any{"value": u["id"]}}}))
	userPath, groupPath := "/scim/v2/Users/"+u["id"].(string), "/scim/v2/Groups/"+grp["id"].(string)

	f.Fuzz(func(t *testing.T, kind uint8, in string) {
		var method, target string
		var body any
		switch kind % 4 {
		case 0:
			method, body = "PATCH", in
			target = userPath
			if len(in)%2 == 1 {
				target = groupPath
			}
		case 1:
			method, target, body = "POST", "/scim/v2/Users", in
		case 2:
			method, target = "GET", "/scim/v2/Users?filter="+url.QueryEscape(in)
		case 3:
			method, target = "GET", "/scim/v2/Groups?attributes="+url.QueryEscape(in)
		}
		w := serve(t, g, method, target, body)
		if w.Code >= 500 && w.Code != 501 {
			t.Fatalf("%s %s with %q: %d %s", method, target, in, w.Code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); w.Code != 204 && !strings.HasPrefix(ct, "application/scim+json") {
			t.Fatalf("Content-Type %q", ct)
		}
		if w.Code >= 400 {
			var e map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e["detail"] == "" || e["status"] == nil {
				t.Fatalf("error body is not a SCIM Error: %s", w.Body)
			}
			if _, isString := e["status"].(string); !isString {
				t.Fatalf("status is not a string: %s", w.Body)
			}
		}
	})
}
