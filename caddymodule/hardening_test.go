package caddymodule

// Tests of the request bounds the handler enforces before anything else sees a request
// (ids no resource can have, numbers no attribute can hold, the body's deadline), of
// public_url, and of the log of failed authentications.

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

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

// serveHost is serve with the request's Host header set to host (httptest.NewRequest takes
// it from the URL), the way a client that spoofs Host sends it.
func serveHost(t testing.TB, g *Handler, method, host, target string, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://"+host+target, r)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	w := httptest.NewRecorder()
	if err := g.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestHandlerPublicURL: with public_url, a spoofed Host header changes nothing the gateway
// answers: Location, meta.location, members' and groups' $ref and the discovery documents
// are all built from public_url and base_path.
func TestHandlerPublicURL(t *testing.T) {
	t.Setenv("SCIMGATE_TEST_PUBLIC_URL", "https://scim.example.com/")
	g := newTestGateway(t, func(g *Handler) { g.PublicURL = "{env.SCIMGATE_TEST_PUBLIC_URL}" })
	const evil = "evil.example"
	const base = "https://scim.example.com/scim/v2"

	w := serveHost(t, g, http.MethodPost, evil, itBase+"/Users", `{"userName":"ada@contoso.example"}`)
	user := itWantOK(t, w, http.StatusCreated)
	uid, _ := user["id"].(string)
	if got := w.Header().Get("Location"); got != base+"/Users/"+uid {
		t.Errorf("Location = %q, want %q", got, base+"/Users/"+uid)
	}
	w = serveHost(t, g, http.MethodPost, evil, itBase+"/Groups", `{"displayName":"Team","members":[{"value":"`+uid+`"}]}`)
	group := itWantOK(t, w, http.StatusCreated)
	gid, _ := group["id"].(string)
	if got := w.Header().Get("Location"); got != base+"/Groups/"+gid {
		t.Errorf("Location = %q", got)
	}

	reads := []string{
		"/Users/" + uid, "/Groups/" + gid, "/Users", "/Groups?" + itQ(`displayName eq "Team"`),
		"/ServiceProviderConfig", "/ResourceTypes", "/ResourceTypes/User", "/Schemas",
		"/Schemas/" + scim.UserSchema,
	}
	for _, path := range reads {
		w := serveHost(t, g, http.MethodGet, evil, itBase+path, "")
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		if strings.Contains(w.Body.String(), evil) {
			t.Errorf("GET %s reflects the Host header: %s", path, w.Body)
		}
		if !strings.Contains(w.Body.String(), `"`+base+"/") {
			t.Errorf("GET %s has no location under %s: %s", path, base, w.Body)
		}
	}
	got := decodeJSON(t, serveHost(t, g, http.MethodGet, evil, itBase+"/Users/"+uid, ""))
	if loc := got["meta"].(map[string]any)["location"]; loc != base+"/Users/"+uid {
		t.Errorf("meta.location = %v", loc)
	}
	if ref := got["groups"].([]any)[0].(map[string]any)["$ref"]; ref != base+"/Groups/"+gid {
		t.Errorf("groups[0].$ref = %v", ref)
	}
	got = decodeJSON(t, serveHost(t, g, http.MethodGet, evil, itBase+"/Groups/"+gid, ""))
	if ref := got["members"].([]any)[0].(map[string]any)["$ref"]; ref != base+"/Users/"+uid {
		t.Errorf("members[0].$ref = %v", ref)
	}

	// Without public_url the Host header is reflected, as before: hence the host matcher.
	plain := newTestGateway(t, nil)
	w = serveHost(t, plain, http.MethodPost, evil, itBase+"/Users", `{"userName":"ada@contoso.example"}`)
	if loc := w.Header().Get("Location"); !strings.HasPrefix(loc, "http://"+evil+itBase+"/Users/") {
		t.Errorf("without public_url, Location = %q", loc)
	}
}

func TestParsePublicURL(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"https://scim.example.com", "https://scim.example.com", ""},
		{"https://scim.example.com/", "https://scim.example.com", ""},
		{"HTTPS://scim.example.com:8443", "https://scim.example.com:8443", ""},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", ""},
		{"https://[::1]:8443", "https://[::1]:8443", ""},
		{"scim.example.com", "", "absolute http or https URL"},
		{"ftp://scim.example.com", "", "absolute http or https URL"},
		{"https://", "", "no host"},
		{"https://:8443", "", "no host"},
		{"https://user:pw@scim.example.com", "", "user information"},
		{"https://scim.example.com/scim/v2", "", "has a path"},
		{"https://scim.example.com?x=1", "", "query or fragment"},
		{"https://scim.example.com?", "", "query or fragment"},
		{"https://scim.example.com#top", "", "query or fragment"},
		{"https://scim.example.com:port", "", "invalid port"},
	}
	for _, tc := range cases {
		got, err := parsePublicURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parsePublicURL(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parsePublicURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	// A bad value (after its placeholders) stops provisioning.
	t.Setenv("SCIMGATE_TEST_PUBLIC_URL", "scim.example.com")
	g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(), PublicURL: "{env.SCIMGATE_TEST_PUBLIC_URL}"}
	if err := provisionHandler(t, g); err == nil || !strings.Contains(err.Error(), "public_url") {
		t.Fatalf("provision = %v, want a public_url error", err)
	}
}

func TestUnmarshalCaddyfileHardening(t *testing.T) {
	cases := []struct {
		name, input, err string
		check            func(t *testing.T, g *Handler)
	}{
		{name: "public_url", input: "scim_gateway {\n public_url https://scim.example.com\n}", check: func(t *testing.T, g *Handler) {
			if g.PublicURL != "https://scim.example.com" {
				t.Errorf("public_url = %q", g.PublicURL)
			}
		}},
		{name: "public_url placeholder", input: "scim_gateway {\n public_url {env.SCIMGATE_PUBLIC_URL}\n}", check: func(t *testing.T, g *Handler) {
			if g.PublicURL != "{env.SCIMGATE_PUBLIC_URL}" {
				t.Errorf("public_url = %q", g.PublicURL)
			}
		}},
		{name: "public_url with a path", input: "scim_gateway {\n public_url https://scim.example.com/scim/v2\n}", err: "base_path is appended"},
		{name: "public_url not absolute", input: "scim_gateway {\n public_url scim.example.com\n}", err: "absolute http or https URL"},
		{name: "public_url twice", input: "scim_gateway {\n public_url https://a.example\n public_url https://b.example\n}", err: "public_url is set twice"},
		{name: "public_url without value", input: "scim_gateway {\n public_url\n}", err: "wrong argument count"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := new(Handler)
			err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, g)
		})
	}
}
