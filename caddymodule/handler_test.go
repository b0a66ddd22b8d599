package caddymodule

// Handler tests through newTestGateway and serve: every way a request can fail, each
// answered with a SCIM Error (status, RFC scimType, a detail, status as a JSON string,
// application/scim+json), plus the request options Entra relies on, and golden files
// for the wire formats of the discovery endpoints.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// itBase is the default base path the handler tests address.
const itBase = "/scim/v2"

// itWantError checks that w is a SCIM Error with the status and scimType ("" for none).
func itWantError(t testing.TB, w *httptest.ResponseRecorder, status int, scimType string) map[string]any {
	t.Helper()
	return itCheckErrorBody(t, w.Code, w.Header(), w.Body.Bytes(), status, scimType)
}

// itWantOK checks the status and the SCIM media type and decodes the body.
func itWantOK(t testing.TB, w *httptest.ResponseRecorder, status int) map[string]any {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body: %s", w.Code, status, w.Body)
	}
	itCheckSCIMContentType(t, w.Header())
	return decodeJSON(t, w)
}

// itPost creates a resource and returns it.
func itPost(t testing.TB, g *Handler, endpoint string, body any) map[string]any {
	t.Helper()
	return itWantOK(t, serve(t, g, http.MethodPost, itBase+endpoint, body), http.StatusCreated)
}

// itPostID creates a resource and returns its id.
func itPostID(t testing.TB, g *Handler, endpoint string, body any) string {
	t.Helper()
	id, _ := itPost(t, g, endpoint, body)["id"].(string)
	if id == "" {
		t.Fatal("created resource has no id")
	}
	return id
}

// itListIDs runs a GET list query (raw query string) and returns the ids in order.
func itListIDs(t testing.TB, g *Handler, endpoint, rawQuery string) ([]string, map[string]any) {
	t.Helper()
	m := itWantOK(t, serve(t, g, http.MethodGet, itBase+endpoint+"?"+rawQuery, nil), http.StatusOK)
	ids := []string{}
	for _, res := range itListResources(t, m) {
		id, _ := res["id"].(string)
		ids = append(ids, id)
	}
	return ids, m
}

// itQ encodes a filter for a query string.
func itQ(filter string) string { return "filter=" + url.QueryEscape(filter) }

func TestHandlerAuthenticationFailures(t *testing.T) {
	g := newTestGateway(t, nil)
	cases := []struct{ name, authorization string }{
		{"no header", ""},
		{"empty bearer", "Bearer "},
		{"scheme only", "Bearer"},
		{"wrong token", "Bearer " + strings.Repeat("x", len(testToken))},
		{"token prefix", "Bearer " + testToken[:len(testToken)-1]},
		{"basic", "Basic ZW50cmE6" + testToken},
		{"token without scheme", testToken},
	}
	for _, tc := range cases {
		for _, target := range []string{"/Users", "/Users/some-id", "/Groups?filter=displayName+eq+%22x%22", "/ServiceProviderConfig", "/NoSuchEndpoint"} {
			t.Run(tc.name+" "+target, func(t *testing.T) {
				w := serve(t, g, http.MethodGet, itBase+target, nil, "Authorization", tc.authorization)
				itWantError(t, w, http.StatusUnauthorized, "")
				if h := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", h)
				}
			})
		}
	}
	// The scheme is case-insensitive (RFC 7235 §2.1).
	itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users", nil, "Authorization", "bearer "+testToken), http.StatusOK)
}

func TestHandlerRejectsMalformedBodies(t *testing.T) {
	g := newTestGateway(t, nil) // max_body_bytes 4 MiB, max_json_depth 64
	userID := itPostID(t, g, "/Users", map[string]any{"userName": "body-checks@contoso.example"})
	deep := strings.Repeat("[", 500000) + strings.Repeat("]", 500000)
	cases := []struct {
		name        string
		body        []byte
		contentType string
		status      int
		scimType    string
	}{
		{"body over max_body_bytes", []byte(`{"userName":"` + strings.Repeat("a", DefaultMaxBodyBytes) + `"}`), "", http.StatusRequestEntityTooLarge, ""},
		{"500,000-deep array", []byte(deep), "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"65-deep array inside an object", []byte(`{"userName":"a","x":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`), "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"invalid UTF-8", []byte("{\"userName\":\"caf\xe9\"}"), "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"invalid JSON", []byte(`{"userName":`), "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"trailing garbage", []byte(`{"userName":"a"} {"userName":"b"}`), "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"duplicate key", []byte(`{"userName":"a","userName":"b"}`), "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"case-variant duplicate key", []byte(`{"userName":"a","USERNAME":"b"}`), "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"nested case-variant duplicate key", []byte(`{"userName":"a","name":{"givenName":"x","GivenName":"y"}}`), "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"empty body", nil, "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"not an object", []byte(`["userName"]`), "", http.StatusBadRequest, scim.TypeInvalidSyntax},
		{"text/plain", []byte(`{"userName":"a"}`), "text/plain", http.StatusUnsupportedMediaType, ""},
		{"form", []byte(`userName=a`), "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType, ""},
		{"unparsable media type", []byte(`{"userName":"a"}`), "application/", http.StatusUnsupportedMediaType, ""},
	}
	targets := []struct{ method, path string }{
		{http.MethodPost, "/Users"},
		{http.MethodPut, "/Users/" + userID},
		{http.MethodPatch, "/Users/" + userID},
		{http.MethodPost, "/Users/.search"},
	}
	for _, tc := range cases {
		for _, tg := range targets {
			t.Run(tc.name+" "+tg.method+" "+tg.path, func(t *testing.T) {
				ct := tc.contentType
				if ct == "" {
					ct = "application/scim+json; charset=utf-8"
				}
				w := serve(t, g, tg.method, itBase+tg.path, tc.body, "Content-Type", ct)
				itWantError(t, w, tc.status, tc.scimType)
			})
		}
	}
	// The process survived all of that, and nothing was written.
	u := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+userID, nil), http.StatusOK)
	if u["userName"] != "body-checks@contoso.example" {
		t.Errorf("a rejected request changed the user: %v", u)
	}
	if ids, _ := itListIDs(t, g, "/Users", ""); len(ids) != 1 {
		t.Errorf("a rejected request created users: %v", ids)
	}
}

func TestHandlerMediaTypes(t *testing.T) {
	g := newTestGateway(t, nil)
	for i, ct := range []string{"application/json; charset=utf-8", "application/json", "application/scim+json", "Application/SCIM+JSON; charset=UTF-8"} {
		w := serve(t, g, http.MethodPost, itBase+"/Users", map[string]any{"userName": "media" + strconv.Itoa(i)}, "Content-Type", ct)
		itWantOK(t, w, http.StatusCreated)
	}
	for _, accept := range []string{"text/html", "application/xml", "*/*", "application/json"} {
		t.Run("Accept "+accept, func(t *testing.T) {
			w := serve(t, g, http.MethodGet, itBase+"/Users?"+itQ(`userName eq "00000000-0000-0000-0000-000000000000"`), nil, "Accept", accept)
			itWantOK(t, w, http.StatusOK)
			w = serve(t, g, http.MethodGet, itBase+"/Users/missing", nil, "Accept", accept)
			itWantError(t, w, http.StatusNotFound, "")
		})
	}
}

func TestHandlerFilterErrors(t *testing.T) {
	g := newTestGateway(t, nil)
	itPostID(t, g, "/Users", map[string]any{"userName": "filter-errors@contoso.example"})
	itPostID(t, g, "/Groups", map[string]any{"displayName": "Filter Errors"})
	cases := []struct{ name, filter string }{
		{"missing value", `userName eq`},
		{"missing operator", `userName "x"`},
		{"unterminated string", `userName eq "x`},
		{"unsupported operator", `userName like "x"`},
		{"regex operator", `userName regex "^x"`},
		{"dangling and", `userName eq "x" and`},
		{"unbalanced parenthesis", `(userName eq "x"`},
		{"unclosed value filter", `emails[type eq "work"`},
		{"empty value filter", `emails[] eq "x"`},
		{"over 4096 bytes", `userName eq "` + strings.Repeat("a", 4100) + `"`},
		{"100,000 nested parentheses", strings.Repeat("(", 100000) + `userName eq "x"` + strings.Repeat(")", 100000)},
		{"1,000 nested parentheses", strings.Repeat("(", 1000) + `userName eq "x"` + strings.Repeat(")", 1000)},
		{"1,000 nested not", strings.Repeat("not (", 1000) + `userName eq "x"` + strings.Repeat(")", 1000)},
	}
	for _, tc := range cases {
		for _, endpoint := range []string{"/Users", "/Groups"} {
			t.Run(tc.name+" "+endpoint, func(t *testing.T) {
				w := serve(t, g, http.MethodGet, itBase+endpoint+"?"+itQ(tc.filter), nil)
				itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidFilter)
				w = serve(t, g, http.MethodPost, itBase+endpoint+"/.search", map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:SearchRequest"}, "filter": tc.filter})
				itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidFilter)
			})
		}
	}
	t.Run("no match is 200 with an empty list", func(t *testing.T) {
		ids, m := itListIDs(t, g, "/Users", itQ(`userName eq "nobody@contoso.example"`))
		if len(ids) != 0 || m["totalResults"] != float64(0) {
			t.Fatalf("matched %v", m)
		}
		ids, _ = itListIDs(t, g, "/Groups", "excludedAttributes=members&"+itQ(`displayName eq "nobody"`))
		if len(ids) != 0 {
			t.Fatalf("matched %v", ids)
		}
	})
}

func TestHandlerPaging(t *testing.T) {
	g := newTestGateway(t, func(g *Handler) { g.MaxResults = 2 })
	var all []string
	for _, n := range []string{"page-a", "page-b", "page-c"} {
		all = append(all, itPostID(t, g, "/Users", map[string]any{"userName": n}))
	}
	cases := []struct {
		query      string
		n          int // resources on the page
		startIndex float64
	}{
		{"", 2, 1},
		{"count=100000", 2, 1},
		{"count=2", 2, 1},
		{"count=1", 1, 1},
		{"count=0", 0, 1},
		{"count=-1", 0, 1},
		{"startIndex=0", 2, 1},
		{"startIndex=-7", 2, 1},
		{"startIndex=3", 1, 3},
		{"startIndex=4", 0, 4},
		{"startIndex=2&count=1", 1, 2},
		{"count=%202%20", 2, 1},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			m := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users?"+tc.query, nil), http.StatusOK)
			if m["startIndex"] != tc.startIndex || m["totalResults"] != float64(3) || m["itemsPerPage"] != float64(tc.n) {
				t.Fatalf("startIndex %v totalResults %v itemsPerPage %v", m["startIndex"], m["totalResults"], m["itemsPerPage"])
			}
			res, _ := m["Resources"].([]any)
			if res == nil || len(res) != tc.n {
				t.Fatalf("Resources = %#v, want %d", m["Resources"], tc.n)
			}
		})
	}
	// Pages walk the whole set without repeats.
	var seen []string
	for start := 1; start <= 3; start += 2 {
		ids, _ := itListIDs(t, g, "/Users", "count=2&startIndex="+strconv.Itoa(start))
		seen = append(seen, ids...)
	}
	slices.Sort(seen)
	slices.Sort(all)
	if !slices.Equal(seen, all) {
		t.Errorf("paging returned %v, want %v", seen, all)
	}
	// An integer too large for an int is clamped, not refused: see TestPagingLargeIntegers.
	for _, q := range []string{"count=ten", "count=1.5", "startIndex=first"} {
		t.Run(q, func(t *testing.T) {
			itWantError(t, serve(t, g, http.MethodGet, itBase+"/Users?"+q, nil), http.StatusBadRequest, scim.TypeInvalidValue)
		})
	}
}

func TestHandlerRouting(t *testing.T) {
	g := newTestGateway(t, nil)
	id := itPostID(t, g, "/Users", map[string]any{"userName": "routing@contoso.example"})
	notFound := []string{"/Foo", "/Users/a/b", "/Users/" + id + "/manager", "/Schemas/a/b", "/ServiceProviderConfig/x", "/ResourceTypes/User/x", "/Schemas/urn:nope", "/ResourceTypes/Device"}
	for _, p := range notFound {
		t.Run("404 "+p, func(t *testing.T) {
			itWantError(t, serve(t, g, http.MethodGet, itBase+p, nil), http.StatusNotFound, "")
		})
	}
	methods := []struct{ method, path, allow string }{
		{http.MethodDelete, "/Users", "GET, HEAD, POST"},
		{http.MethodPut, "/Groups", "GET, HEAD, POST"},
		{http.MethodPost, "/Users/" + id, "GET, HEAD, PUT, PATCH, DELETE"},
		{http.MethodGet, "/Users/.search", "POST"},
		{http.MethodPost, "", "GET, HEAD"},
		{http.MethodDelete, "/", "GET, HEAD"},
		{http.MethodPost, "/ServiceProviderConfig", "GET, HEAD"},
		{http.MethodDelete, "/Schemas", "GET, HEAD"},
		{http.MethodOptions, "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", "GET, HEAD"},
		{http.MethodPatch, "/ResourceTypes/User", "GET, HEAD"},
	}
	for _, tc := range methods {
		t.Run("405 "+tc.method+" "+tc.path, func(t *testing.T) {
			w := serve(t, g, tc.method, itBase+tc.path, nil)
			itWantError(t, w, http.StatusMethodNotAllowed, "")
			if got := w.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
		})
	}
	t.Run("501 Bulk", func(t *testing.T) {
		itWantError(t, serve(t, g, http.MethodPost, itBase+"/Bulk", map[string]any{}), http.StatusNotImplemented, "")
	})
	t.Run("outside the base path goes to the next handler", func(t *testing.T) {
		for _, p := range []string{"/", "/scim", "/scim/v20/Users", "/other/Users"} {
			if w := serve(t, g, http.MethodGet, p, nil); w.Code != http.StatusTeapot {
				t.Errorf("%s: status %d, want the next handler's 418", p, w.Code)
			}
		}
	})
	t.Run("HEAD has no body", func(t *testing.T) {
		w := serve(t, g, http.MethodHead, itBase+"/Users/"+id, nil)
		if w.Code != http.StatusOK || w.Body.Len() != 0 {
			t.Errorf("HEAD: %d with %d bytes", w.Code, w.Body.Len())
		}
	})
}

func TestHandlerEndpointCaseAndSlashes(t *testing.T) {
	g := newTestGateway(t, nil)
	id := itPostID(t, g, "/Users", map[string]any{"userName": "Case.Test@contoso.example"})
	cases := []struct {
		path  string
		check func(t *testing.T, m map[string]any)
	}{
		{"/users", itHasResources(1)},
		{"/USERS", itHasResources(1)},
		{"/Users/", itHasResources(1)},
		{"/users/" + id, itHasID(id)},
		{"/Users/" + id + "/", itHasID(id)},
		{"/Users/?" + itQ(`userName eq "case.test@contoso.example"`), itHasResources(1)},
		{"/groups", itHasResources(0)},
		{"/serviceConfiguration", itHasSchema(scim.SPConfigSchema)},
		{"/ServiceProviderConfig", itHasSchema(scim.SPConfigSchema)},
		{"/serviceproviderconfig", itHasSchema(scim.SPConfigSchema)},
		{"/Schemas/" + scim.UserSchema, itHasID(scim.UserSchema)},
		{"/schemas/" + strings.ToUpper(scim.EnterpriseUserSchema), itHasID(scim.EnterpriseUserSchema)},
		{"/Schemas/" + scim.GroupSchema, itHasID(scim.GroupSchema)},
		{"/ResourceTypes/User", itHasID("User")},
		{"/resourcetypes/group", itHasID("Group")},
		{"/ResourceTypes/", itHasResources(2)},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			tc.check(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+tc.path, nil), http.StatusOK))
		})
	}
	t.Run("base path in another case", func(t *testing.T) {
		itWantOK(t, serve(t, g, http.MethodGet, "/SCIM/V2/Users/"+id, nil), http.StatusOK)
	})
}

func itHasResources(n int) func(t *testing.T, m map[string]any) {
	return func(t *testing.T, m map[string]any) {
		t.Helper()
		if res := itListResources(t, m); len(res) != n {
			t.Errorf("%d resources, want %d", len(res), n)
		}
	}
}

func itHasID(id string) func(t *testing.T, m map[string]any) {
	return func(t *testing.T, m map[string]any) {
		t.Helper()
		if m["id"] != id {
			t.Errorf("id = %v, want %s", m["id"], id)
		}
	}
}

func itHasSchema(urn string) func(t *testing.T, m map[string]any) {
	return func(t *testing.T, m map[string]any) {
		t.Helper()
		if !reflect.DeepEqual(m["schemas"], []any{urn}) {
			t.Errorf("schemas = %v, want [%s]", m["schemas"], urn)
		}
	}
}

func TestHandlerUniqueness(t *testing.T) {
	g := newTestGateway(t, nil)
	itPostID(t, g, "/Users", map[string]any{"userName": "alice@contoso.example"})
	bobID := itPostID(t, g, "/Users", map[string]any{"userName": "bob@contoso.example"})
	itPostID(t, g, "/Groups", map[string]any{"displayName": "Sales"})
	marketingID := itPostID(t, g, "/Groups", map[string]any{"displayName": "Marketing"})

	cases := []struct {
		name, method, path string
		body               any
	}{
		{"POST duplicate userName in another case", http.MethodPost, "/Users", map[string]any{"userName": "ALICE@Contoso.Example"}},
		{"PATCH rename onto an existing userName", http.MethodPatch, "/Users/" + bobID, itPatchBody(`{"op":"Replace","path":"userName","value":"Alice@contoso.example"}`)},
		{"path-less PATCH rename onto an existing userName", http.MethodPatch, "/Users/" + bobID, itPatchBody(`{"op":"replace","value":{"userName":"alice@contoso.example"}}`)},
		{"PUT onto an existing userName", http.MethodPut, "/Users/" + bobID, map[string]any{"userName": "alice@CONTOSO.example"}},
		{"POST duplicate group displayName", http.MethodPost, "/Groups", map[string]any{"displayName": "sales"}},
		{"PATCH group rename onto an existing displayName", http.MethodPatch, "/Groups/" + marketingID, itPatchBody(`{"op":"Replace","path":"displayName","value":"SALES"}`)},
		{"PUT group onto an existing displayName", http.MethodPut, "/Groups/" + marketingID, map[string]any{"displayName": "Sales"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, g, tc.method, itBase+tc.path, tc.body)
			m := itWantError(t, w, http.StatusConflict, scim.TypeUniqueness)
			if d, _ := m["detail"].(string); strings.Contains(d, testToken) {
				t.Errorf("detail leaks the token: %s", d)
			}
		})
	}
	// The failed writes changed nothing.
	if u := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+bobID, nil), http.StatusOK); u["userName"] != "bob@contoso.example" {
		t.Errorf("bob became %v", u["userName"])
	}
	if ids, _ := itListIDs(t, g, "/Users", itQ(`userName eq "alice@contoso.example"`)); len(ids) != 1 {
		t.Errorf("alice matches %d users", len(ids))
	}
	if ids, _ := itListIDs(t, g, "/Groups", itQ(`displayName eq "Sales"`)); len(ids) != 1 {
		t.Errorf("Sales matches %d groups", len(ids))
	}
	// Changing only the case of one's own userName is no conflict.
	w := serve(t, g, http.MethodPatch, itBase+"/Users/"+bobID, itPatchBody(`{"op":"Replace","path":"userName","value":"Bob@contoso.example"}`))
	if u := itWantOK(t, w, http.StatusOK); u["userName"] != "Bob@contoso.example" {
		t.Errorf("userName = %v", u["userName"])
	}
}

// TestHandlerEntraCreateBodies posts the create bodies Microsoft's tools send and checks
// what is stored: string booleans become JSON booleans, nulls mean "not set", everything
// else round-trips as sent (Entra re-PATCHes any value that reads back differently).
func TestHandlerEntraCreateBodies(t *testing.T) {
	g := newTestGateway(t, nil)
	t.Run("Validator full body", func(t *testing.T) {
		body := itFixture(t, "user_validator_full.json")
		created := itPost(t, g, "/Users", body)
		u := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+created["id"].(string), nil), http.StatusOK)
		sent := itJSON(t, body).(map[string]any)
		for k, want := range sent {
			switch k {
			case "schemas", "active", "roles":
				continue
			}
			if !reflect.DeepEqual(u[k], want) {
				t.Errorf("%s = %v, want %v as sent", k, u[k], want)
			}
		}
		if u["active"] != false {
			t.Errorf("active = %#v, want the JSON boolean false", u["active"])
		}
		want := `[{"primary":true,"display":"MRONYWGFFHXQ","value":"WDEIISGWWQBE","type":"XVTUOHMYUFRL"}]`
		if !reflect.DeepEqual(u["roles"], itJSON(t, want)) {
			t.Errorf("roles = %v, want %s", u["roles"], want)
		}
	})
	t.Run("Tutorial Example 2 with nulls and a misspelt schema", func(t *testing.T) {
		created := itPost(t, g, "/Users", itFixture(t, "user_tutorial_example2_nulls.json"))
		u := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+created["id"].(string), nil), http.StatusOK)
		for _, k := range []string{"addresses", "phoneNumbers", "preferredLanguage", "title", "department", "manager"} {
			if v, has := u[k]; has {
				t.Errorf("%s = %#v stored from a null", k, v)
			}
		}
		if u["userName"] != "jyoung@testuser.com" || u["displayName"] != "Joy Young" {
			t.Errorf("user = %v", u)
		}
		if ids, _ := itListIDs(t, g, "/Users", "filter=externalId+eq+jyoung"); !slices.Equal(ids, []string{created["id"].(string)}) {
			t.Errorf("externalId eq jyoung matched %v", ids)
		}
	})
}

// TestHandlerConcurrentCreates: Entra's initial cycle sends bursts; concurrent creates of
// one userName must yield exactly one user, the others 409 uniqueness.
func TestHandlerConcurrentCreates(t *testing.T) {
	g := newTestGateway(t, nil)
	const n = 16
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodPost, "http://scim.test"+itBase+"/Users", strings.NewReader(`{"userName":"Race@contoso.example"}`))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", "application/scim+json")
			w := httptest.NewRecorder()
			if err := g.ServeHTTP(w, req, nil); err != nil {
				codes[i] = -1
				return
			}
			codes[i] = w.Code
		}()
	}
	wg.Wait()
	created, conflicts := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
			conflicts++
		}
	}
	if created != 1 || conflicts != n-1 {
		t.Fatalf("statuses %v: want one 201 and %d 409", codes, n-1)
	}
	if ids, _ := itListIDs(t, g, "/Users", itQ(`userName eq "race@contoso.example"`)); len(ids) != 1 {
		t.Fatalf("%d users stored", len(ids))
	}
}

// TestHandlerCreateRacesARename: a create and a rename of another user to the same
// userName at once: whichever commits first keeps the name, the other is answered 409
// uniqueness, and the directory never holds two users of that name. The rename is decided
// before its commit (a read transaction), so the name may be taken between the two. Run
// many times, so that each side wins some rounds.
func TestHandlerCreateRacesARename(t *testing.T) {
	g := newTestGateway(t, nil)
	wins := map[string]int{}
	for round := range 150 {
		name := fmt.Sprintf("race%d@contoso.example", round)
		other := itPostID(t, g, "/Users", map[string]any{"userName": fmt.Sprintf("other%d@contoso.example", round)})
		var create, rename *httptest.ResponseRecorder
		var wg sync.WaitGroup
		wg.Go(func() { create = serve(t, g, http.MethodPost, itBase+"/Users", map[string]any{"userName": name}) })
		wg.Go(func() {
			rename = serve(t, g, http.MethodPatch, itBase+"/Users/"+other,
				itPatchBody(`{"op":"replace","path":"userName","value":"`+strings.ToUpper(name)+`"}`))
		})
		wg.Wait()
		switch {
		case create.Code == http.StatusCreated && rename.Code == http.StatusConflict:
			wins["create"]++
			if typ, _ := decodeJSON(t, rename)["scimType"].(string); typ != scim.TypeUniqueness {
				t.Fatalf("round %d: the rename's 409 has scimType %q", round, typ)
			}
		case create.Code == http.StatusConflict && rename.Code == http.StatusOK:
			wins["rename"]++
			if typ, _ := decodeJSON(t, create)["scimType"].(string); typ != scim.TypeUniqueness {
				t.Fatalf("round %d: the create's 409 has scimType %q", round, typ)
			}
		default:
			t.Fatalf("round %d: create %d %s, rename %d %s: want one 409 uniqueness", round, create.Code, create.Body, rename.Code, rename.Body)
		}
		if ids, _ := itListIDs(t, g, "/Users", itQ(`userName eq "`+name+`"`)); len(ids) != 1 {
			t.Fatalf("round %d: %d users named %s", round, len(ids), name)
		}
	}
	t.Logf("wins: %v", wins)
}

// TestHandlerDeleteFreesNames: after a hard delete Entra may provision the same
// userName or group displayName again.
func TestHandlerDeleteFreesNames(t *testing.T) {
	g := newTestGateway(t, nil)
	for _, tc := range []struct{ endpoint, attr, value string }{
		{"/Users", "userName", "again@contoso.example"},
		{"/Groups", "displayName", "Again"},
	} {
		first := itPostID(t, g, tc.endpoint, map[string]any{tc.attr: tc.value, "externalId": "first"})
		if w := serve(t, g, http.MethodDelete, itBase+tc.endpoint+"/"+first, nil); w.Code != http.StatusNoContent {
			t.Fatalf("delete: %d %s", w.Code, w.Body)
		}
		second := itPostID(t, g, tc.endpoint, map[string]any{tc.attr: strings.ToUpper(tc.value), "externalId": "second"})
		if second == first {
			t.Errorf("the id %s was reused", first)
		}
		ids, _ := itListIDs(t, g, tc.endpoint, itQ(tc.attr+` eq "`+tc.value+`"`))
		if !slices.Equal(ids, []string{second}) {
			t.Errorf("%s eq %q matched %v, want [%s]", tc.attr, tc.value, ids, second)
		}
		if ids, _ := itListIDs(t, g, tc.endpoint, itQ(`externalId eq "first"`)); len(ids) != 0 {
			t.Errorf("the deleted resource's externalId still matches %v", ids)
		}
	}
}

func TestHandlerMutabilityAndRequired(t *testing.T) {
	g := newTestGateway(t, nil)
	userID := itPostID(t, g, "/Users", map[string]any{"userName": "mutability@contoso.example"})
	groupID := itPostID(t, g, "/Groups", map[string]any{"displayName": "Mutability"})
	cases := []struct {
		name, method, path string
		body               any
		scimType           string
	}{
		{"PATCH id", http.MethodPatch, "/Users/" + userID, itPatchBody(`{"op":"Replace","path":"id","value":"other-id"}`), scim.TypeMutability},
		{"path-less PATCH id", http.MethodPatch, "/Users/" + userID, itPatchBody(`{"op":"replace","value":{"id":"other-id"}}`), scim.TypeMutability},
		{"PATCH group id", http.MethodPatch, "/Groups/" + groupID, itPatchBody(`{"op":"replace","path":"id","value":"other-id"}`), scim.TypeMutability},
		{"PATCH meta", http.MethodPatch, "/Users/" + userID, itPatchBody(`{"op":"Replace","path":"meta","value":{"created":"2000-01-01T00:00:00Z"}}`), scim.TypeMutability},
		{"PATCH meta.lastModified", http.MethodPatch, "/Users/" + userID, itPatchBody(`{"op":"Replace","path":"meta.lastModified","value":"2000-01-01T00:00:00Z"}`), scim.TypeMutability},
		{"remove meta", http.MethodPatch, "/Users/" + userID, itPatchBody(`{"op":"Remove","path":"meta"}`), scim.TypeMutability},
		{"PATCH a user's groups", http.MethodPatch, "/Users/" + userID, itPatchBody(`{"op":"Add","path":"groups","value":[{"value":"` + groupID + `"}]}`), scim.TypeMutability},
		{"path-less PATCH of groups", http.MethodPatch, "/Users/" + userID, itPatchBody(`{"op":"add","value":{"groups":[{"value":"` + groupID + `"}]}}`), scim.TypeMutability},
		{"PATCH schemas", http.MethodPatch, "/Users/" + userID, itPatchBody(`{"op":"replace","path":"schemas","value":["` + scim.UserSchema + `"]}`), scim.TypeMutability},
		{"PUT with another id", http.MethodPut, "/Users/" + userID, map[string]any{"id": "other-id", "userName": "mutability@contoso.example"}, scim.TypeMutability},
		{"PUT group with another id", http.MethodPut, "/Groups/" + groupID, map[string]any{"id": "other-id", "displayName": "Mutability"}, scim.TypeMutability},
		{"PUT without userName", http.MethodPut, "/Users/" + userID, map[string]any{"displayName": "No Name"}, scim.TypeInvalidValue},
		{"PUT group without displayName", http.MethodPut, "/Groups/" + groupID, map[string]any{"externalId": "x"}, scim.TypeInvalidValue},
		{"POST without userName", http.MethodPost, "/Users", map[string]any{"displayName": "No Name"}, scim.TypeInvalidValue},
		{"POST with an empty userName", http.MethodPost, "/Users", map[string]any{"userName": " "}, scim.TypeInvalidValue},
		{"POST with a numeric userName", http.MethodPost, "/Users", map[string]any{"userName": 42}, scim.TypeInvalidValue},
		{"POST group without displayName", http.MethodPost, "/Groups", map[string]any{"externalId": "x"}, scim.TypeInvalidValue},
		{"PATCH removing userName", http.MethodPatch, "/Users/" + userID, itPatchBody(`{"op":"Remove","path":"userName"}`), scim.TypeInvalidValue},
		{"POST a group to /Users", http.MethodPost, "/Users", map[string]any{"schemas": []string{scim.GroupSchema}, "userName": "x", "displayName": "x"}, scim.TypeInvalidValue},
		{"active not a boolean", http.MethodPost, "/Users", map[string]any{"userName": "bad-active", "active": "maybe"}, scim.TypeInvalidValue},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			itWantError(t, serve(t, g, tc.method, itBase+tc.path, tc.body), http.StatusBadRequest, tc.scimType)
		})
	}
	u := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+userID, nil), http.StatusOK)
	if u["id"] != userID || u["userName"] != "mutability@contoso.example" {
		t.Errorf("a rejected request changed the user: %v", u)
	}
	if _, has := u["groups"]; has {
		t.Errorf("PATCH of groups created a membership: %v", u["groups"])
	}
	// PUT with the same id in the body is fine.
	w := serve(t, g, http.MethodPut, itBase+"/Users/"+userID, map[string]any{"id": userID, "userName": "mutability@contoso.example", "displayName": "Same"})
	itWantOK(t, w, http.StatusOK)
}

// TestGroupVersionMovesWhenAMemberIsDeleted: deleting a user changes the groups it was in
// (their members), so each answers a new ETag and meta.lastModified, and a PUT with the
// ETag read before fails with 412 instead of writing back the member list it was built
// from. (The groups attribute of a user is computed from the groups and does not move the
// user's version; the README says so.)
func TestGroupVersionMovesWhenAMemberIsDeleted(t *testing.T) {
	g := newTestGateway(t, nil)
	a := itPostID(t, g, "/Users", map[string]any{"userName": "etag-a@contoso.example"})
	b := itPostID(t, g, "/Users", map[string]any{"userName": "etag-b@contoso.example"})
	grp := itPost(t, g, "/Groups", map[string]any{"displayName": "etag-g", "members": []any{map[string]any{"value": a}, map[string]any{"value": b}}})
	gid := grp["id"].(string)
	meta := grp["meta"].(map[string]any)
	etag, modified := meta["version"].(string), meta["lastModified"].(string)
	time.Sleep(2 * time.Millisecond) // lastModified has millisecond precision at least
	if w := serve(t, g, http.MethodDelete, itBase+"/Users/"+b, nil); w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	w := serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil)
	after := itWantOK(t, w, http.StatusOK)
	meta = after["meta"].(map[string]any)
	if w.Header().Get("ETag") == etag || meta["version"] == etag || meta["lastModified"] == modified {
		t.Fatalf("the group lost a member and kept version %v, lastModified %v", meta["version"], meta["lastModified"])
	}
	if members, _ := after["members"].([]any); len(members) != 1 {
		t.Fatalf("members %v, want only %s", after["members"], a)
	}
	put := map[string]any{"displayName": "etag-g", "members": []any{map[string]any{"value": a}, map[string]any{"value": b}}}
	itWantError(t, serve(t, g, http.MethodPut, itBase+"/Groups/"+gid, put, "If-Match", etag), http.StatusPreconditionFailed, "")
}

func TestHandlerPreconditionsAndMissing(t *testing.T) {
	g := newTestGateway(t, nil)
	u := itPost(t, g, "/Users", map[string]any{"userName": "etag@contoso.example"})
	id := u["id"].(string)
	etag := u["meta"].(map[string]any)["version"].(string)
	patch := itPatchBody(`{"op":"Replace","path":"displayName","value":"x"}`)
	for _, tc := range []struct {
		method string
		body   any
	}{{http.MethodPatch, patch}, {http.MethodPut, map[string]any{"userName": "etag@contoso.example"}}, {http.MethodDelete, nil}} {
		t.Run("If-Match mismatch "+tc.method, func(t *testing.T) {
			itWantError(t, serve(t, g, tc.method, itBase+"/Users/"+id, tc.body, "If-Match", `W/"999999"`), http.StatusPreconditionFailed, "")
		})
	}
	// An entity tag without its quotes is not one (RFC 9110 §8.8.3): 412, naming the tag.
	unquoted := strings.Trim(strings.TrimPrefix(etag, "W/"), `"`)
	if w := serve(t, g, http.MethodPatch, itBase+"/Users/"+id, patch, "If-Match", unquoted); w.Code != http.StatusPreconditionFailed || !strings.Contains(w.Body.String(), `W/\"`+unquoted) {
		t.Fatalf("If-Match %s: %d %s", unquoted, w.Code, w.Body)
	}
	// A list in two header lines (RFC 9110 §5.3) is one list: the second line's tag matches.
	w := serve(t, g, http.MethodPatch, itBase+"/Users/"+id, patch, "If-Match", `W/"999999"`, "If-Match", etag)
	itWantOK(t, w, http.StatusOK)
	if w.Header().Get("ETag") == etag {
		t.Errorf("the version did not change: %s", etag)
	}
	itWantOK(t, serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(`{"op":"Replace","path":"displayName","value":"y"}`), "If-Match", "*"), http.StatusOK)

	groupID := itPostID(t, g, "/Groups", map[string]any{"displayName": "Missing"})
	missing := []struct{ method, path string }{
		{http.MethodGet, "/Users/00000000-0000-0000-0000-000000000000"},
		{http.MethodPatch, "/Users/00000000-0000-0000-0000-000000000000"},
		{http.MethodPut, "/Users/00000000-0000-0000-0000-000000000000"},
		{http.MethodDelete, "/Users/00000000-0000-0000-0000-000000000000"},
		{http.MethodGet, "/Groups/00000000-0000-0000-0000-000000000000"},
		{http.MethodGet, "/Users/" + groupID}, // a group is not a user
		{http.MethodPatch, "/Groups/" + id},   // a user is not a group
		{http.MethodDelete, "/Groups/" + id},  // nor deleted as one
		{http.MethodGet, "/Users/" + url.PathEscape(`"quoted"`)},
	}
	for _, tc := range missing {
		t.Run("404 "+tc.method+" "+tc.path, func(t *testing.T) {
			var body any
			switch tc.method {
			case http.MethodPatch:
				body = patch
			case http.MethodPut:
				body = map[string]any{"userName": "x", "displayName": "x"}
			}
			itWantError(t, serve(t, g, tc.method, itBase+tc.path, body), http.StatusNotFound, "")
		})
	}
	itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil), http.StatusOK)
}

func TestHandlerProjection(t *testing.T) {
	g := newTestGateway(t, nil)
	userID := itPostID(t, g, "/Users", map[string]any{
		"schemas":  []string{scim.UserSchema, scim.EnterpriseUserSchema},
		"userName": "projection@contoso.example",
		"name":     map[string]any{"givenName": "Pro", "familyName": "Jection"},
		"emails": []any{
			map[string]any{"type": "work", "value": "pro@contoso.example", "primary": true},
			map[string]any{"type": "other", "value": "pro@example.org"},
		},
		scim.EnterpriseUserSchema: map[string]any{"department": "Sales", "costCenter": "42"},
	})
	groupID := itPostID(t, g, "/Groups", map[string]any{"displayName": "Projection", "members": []any{map[string]any{"value": userID}}})

	cases := []struct {
		name, path string
		want       []string // top-level keys, sorted
		check      func(t *testing.T, m map[string]any)
	}{
		{"attributes=userName", "/Users/" + userID + "?attributes=userName", []string{"id", "schemas", "userName"}, nil},
		{"attributes=id only", "/Users/" + userID + "?attributes=id", []string{"id", "schemas"}, nil},
		{"attributes=emails[type eq \"work\"]", "/Users/" + userID + "?attributes=" + url.QueryEscape(`emails[type eq "work"]`), []string{"emails", "id", "schemas"}, nil},
		{"attributes=name.givenName", "/Users/" + userID + "?attributes=name.givenName", []string{"id", "name", "schemas"}, func(t *testing.T, m map[string]any) {
			if !reflect.DeepEqual(m["name"], map[string]any{"givenName": "Pro"}) {
				t.Errorf("name = %v", m["name"])
			}
		}},
		{"attributes=enterprise department", "/Users/" + userID + "?attributes=" + scim.EnterpriseUserSchema + ":department", []string{scim.EnterpriseUserSchema, "id", "schemas"}, func(t *testing.T, m map[string]any) {
			if !reflect.DeepEqual(m[scim.EnterpriseUserSchema], map[string]any{"department": "Sales"}) {
				t.Errorf("extension = %v", m[scim.EnterpriseUserSchema])
			}
		}},
		{"excludedAttributes=emails,name", "/Users/" + userID + "?excludedAttributes=emails,name", []string{scim.EnterpriseUserSchema, "groups", "id", "meta", "schemas", "userName"}, nil},
		{"excludedAttributes=id keeps id", "/Users/" + userID + "?excludedAttributes=id", []string{scim.EnterpriseUserSchema, "emails", "groups", "id", "meta", "name", "schemas", "userName"}, nil},
		{"excludedAttributes=members by id", "/Groups/" + groupID + "?excludedAttributes=members", []string{"displayName", "id", "meta", "schemas"}, nil},
		{"attributes=displayName on a group", "/Groups/" + groupID + "?attributes=displayName", []string{"displayName", "id", "schemas"}, nil},
		{"group by default has members", "/Groups/" + groupID, []string{"displayName", "id", "members", "meta", "schemas"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := itWantOK(t, serve(t, g, http.MethodGet, itBase+tc.path, nil), http.StatusOK)
			if got := itKeys(m); !slices.Equal(got, itSorted(tc.want...)) {
				t.Errorf("keys = %v, want %v", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
	t.Run("list with excludedAttributes=members", func(t *testing.T) {
		_, m := itListIDs(t, g, "/Groups", "excludedAttributes=members&"+itQ(`displayName eq "projection"`))
		res := itListResources(t, m)
		if len(res) != 1 {
			t.Fatalf("%d results", len(res))
		}
		if _, has := res[0]["members"]; has {
			t.Errorf("members returned: %v", res[0])
		}
	})
	t.Run("list with attributes=userName", func(t *testing.T) {
		_, m := itListIDs(t, g, "/Users", "attributes=userName")
		for _, res := range itListResources(t, m) {
			if got := itKeys(res); !slices.Equal(got, []string{"id", "schemas", "userName"}) {
				t.Errorf("keys = %v", got)
			}
		}
	})
	t.Run("both lists at once", func(t *testing.T) {
		w := serve(t, g, http.MethodGet, itBase+"/Users/"+userID+"?attributes=userName&excludedAttributes=emails", nil)
		itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidSyntax)
	})
}

func itKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestHandlerCustomExtension: Entra sends custom extension attributes under their full
// URN path without listing the URN in schemas[]; they must round-trip verbatim.
func TestHandlerCustomExtension(t *testing.T) {
	const urn = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
	g := newTestGateway(t, nil)
	id := itPostID(t, g, "/Users", map[string]any{"schemas": []string{scim.UserSchema}, "userName": "custom@contoso.example"})

	w := serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(`{"op":"Add","path":"`+urn+`:tag","value":"Blue-42 "}`))
	itWantOK(t, w, http.StatusOK)
	u := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil), http.StatusOK)
	if !reflect.DeepEqual(u[urn], map[string]any{"tag": "Blue-42 "}) {
		t.Fatalf("%s = %#v, want {\"tag\":\"Blue-42 \"}", urn, u[urn])
	}
	if !slices.Contains(u["schemas"].([]any), any(urn)) {
		t.Errorf("schemas = %v lacks %s", u["schemas"], urn)
	}
	if _, flat := u[urn+":tag"]; flat {
		t.Errorf("the attribute is stored under the literal path key")
	}
	if ids, _ := itListIDs(t, g, "/Users", itQ(urn+`:tag eq "Blue-42 "`)); !slices.Equal(ids, []string{id}) {
		t.Errorf("filter on the custom attribute matched %v", ids)
	}

	// The path-less form (aadOptscim062020) with a full-URN key.
	w = serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(`{"op":"replace","value":{"`+urn+`:tag":"green","`+urn+`:level":"7"}}`))
	itWantOK(t, w, http.StatusOK)
	u = itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil), http.StatusOK)
	if !reflect.DeepEqual(u[urn], map[string]any{"tag": "green", "level": "7"}) {
		t.Fatalf("%s = %#v", urn, u[urn])
	}

	// A POST carrying the extension object without listing it.
	body := map[string]any{"schemas": []string{scim.UserSchema}, "userName": "custom2@contoso.example", urn: map[string]any{"tag": "x"}}
	created := itPost(t, g, "/Users", body)
	if !reflect.DeepEqual(created[urn], map[string]any{"tag": "x"}) || !slices.Contains(created["schemas"].([]any), any(urn)) {
		t.Errorf("created = %v", created)
	}
}

func TestHandlerPatchResponses(t *testing.T) {
	patch := itPatchBody(`{"op":"Replace","path":"displayName","value":"Changed"}`)
	cases := []struct {
		name   string
		mode   string // user_patch_response
		prefer string
		want   int
	}{
		{"default", "", "", http.StatusOK},
		{"Prefer return=minimal", "", "return=minimal", http.StatusNoContent},
		{"Prefer with other preferences", "", "respond-async, return=minimal", http.StatusNoContent},
		{"no_content", "no_content", "", http.StatusNoContent},
		{"no_content with Prefer return=representation", "no_content", "return=representation", http.StatusOK},
		{"resource", "resource", "", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newTestGateway(t, func(g *Handler) { g.UserPatchResponse = tc.mode })
			id := itPostID(t, g, "/Users", map[string]any{"userName": "prefer@contoso.example"})
			w := serve(t, g, http.MethodPatch, itBase+"/Users/"+id, patch, "Prefer", tc.prefer)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if tc.want == http.StatusNoContent && w.Body.Len() != 0 {
				t.Errorf("204 with a body: %s", w.Body)
			}
			if tc.want == http.StatusOK && decodeJSON(t, w)["displayName"] != "Changed" {
				t.Errorf("the response does not show the change: %s", w.Body)
			}
			if w.Header().Get("ETag") == "" {
				t.Errorf("no ETag")
			}
			if u := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil), http.StatusOK); u["displayName"] != "Changed" {
				t.Errorf("the PATCH was not applied: %v", u)
			}
		})
	}
	t.Run("group PATCH answers 204, or the group when asked", func(t *testing.T) {
		g := newTestGateway(t, nil)
		id := itPostID(t, g, "/Groups", map[string]any{"displayName": "Prefer"})
		w := serve(t, g, http.MethodPatch, itBase+"/Groups/"+id, itPatchBody(`{"op":"Replace","path":"displayName","value":"Prefer 2"}`))
		if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
			t.Fatalf("status %d body %q", w.Code, w.Body)
		}
		w = serve(t, g, http.MethodPatch, itBase+"/Groups/"+id, itPatchBody(`{"op":"Replace","path":"displayName","value":"Prefer 3"}`), "Prefer", "return=representation")
		if m := itWantOK(t, w, http.StatusOK); m["displayName"] != "Prefer 3" {
			t.Errorf("group = %v", m)
		}
	})
}

func TestHandlerMembersReplaceModes(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want func(a, b, c string) []string
	}{
		{"", func(a, b, c string) []string { return itSorted(a, b, c) }},
		{"merge", func(a, b, c string) []string { return itSorted(a, b, c) }},
		{"exact", func(a, b, c string) []string { return []string{c} }},
	} {
		t.Run("members_replace="+tc.mode, func(t *testing.T) {
			g := newTestGateway(t, func(g *Handler) { g.MembersReplace = tc.mode })
			var ids []string
			for _, n := range []string{"m-a", "m-b", "m-c"} {
				ids = append(ids, itPostID(t, g, "/Users", map[string]any{"userName": n}))
			}
			gid := itPostID(t, g, "/Groups", map[string]any{"displayName": "Replace " + tc.mode, "members": []any{map[string]any{"value": ids[0]}, map[string]any{"value": ids[1]}}})
			w := serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, itPatchBody(`{"op":"replace","path":"members","value":[{"value":"`+ids[2]+`"}]}`))
			if w.Code != http.StatusNoContent {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			grp := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil), http.StatusOK)
			if got, want := itMemberIDs(t, grp), tc.want(ids[0], ids[1], ids[2]); !slices.Equal(got, want) {
				t.Errorf("members = %v, want %v", got, want)
			}
		})
	}
}

// TestGoldenWireFormats pins the exact JSON of the discovery endpoints and of an error
// body, as clients (Microsoft's Validator, Postman collection) read them. Run with
// -update to rewrite testdata/golden after a deliberate change.
func TestGoldenWireFormats(t *testing.T) {
	g := newTestGateway(t, nil)
	cases := []struct {
		file, path string
		status     int
	}{
		{"service_provider_config.json", "/ServiceProviderConfig", http.StatusOK},
		{"resource_types.json", "/ResourceTypes", http.StatusOK},
		{"schemas.json", "/Schemas", http.StatusOK},
		{"error_404.json", "/Users/2819c223-7f76-453a-919d-413861904646", http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			w := serve(t, g, http.MethodGet, itBase+tc.path, nil)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			itCheckSCIMContentType(t, w.Header())
			var got bytes.Buffer
			if err := json.Indent(&got, w.Body.Bytes(), "", "  "); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			got.WriteByte('\n')
			path := filepath.Join("testdata", "golden", tc.file)
			if *update {
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run Golden -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s differs from %s (run with -update after a deliberate change):\n%s", tc.path, path, itFirstDiff(string(want), got.String()))
			}
		})
	}
}

// itFirstDiff shows the first differing line of two texts, with a little context.
func itFirstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n want: " + w + "\n got:  " + g
		}
	}
	return "(no line differs)"
}
