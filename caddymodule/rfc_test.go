package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// createUser POSTs body (JSON) to /Users and returns the new user's id.
func createUser(t *testing.T, g *Handler, body string) string {
	t.Helper()
	w := serve(t, g, "POST", "/scim/v2/Users", body)
	if w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	return decodeJSON(t, w)["id"].(string)
}

// expectSCIMError checks an answer is a SCIM error with status, scimType and a detail
// containing detail.
func expectSCIMError(t *testing.T, w *httptest.ResponseRecorder, status int, scimType, detail string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	body := decodeJSON(t, w)
	if got, _ := body["scimType"].(string); got != scimType {
		t.Errorf("scimType %q, want %q: %v", got, scimType, body)
	}
	if got, _ := body["detail"].(string); !strings.Contains(got, detail) {
		t.Errorf("detail %q does not mention %q", got, detail)
	}
}

// TestPatchAddReplaceNeedValue: a PATCH add or replace with a path and no "value" key is 400
// invalidValue and changes nothing (it used to unassign the attribute and answer 200), in
// both of Entra's dialects; an explicit "value": null, and "" for the manager, still
// unassign.
func TestPatchAddReplaceNeedValue(t *testing.T) {
	g := newTestGateway(t, nil)
	mgrPath := scim.EnterpriseUserSchema + ":manager"
	tests := []struct {
		name   string
		op     string
		status int
		gone   string // the attribute the op unassigns, for a 200
	}{
		{name: "Replace without value (default dialect)", op: `{"op":"Replace","path":"title"}`, status: http.StatusBadRequest},
		{name: "add without value (aadOptscim062020)", op: `{"op":"add","path":"nickName"}`, status: http.StatusBadRequest},
		{name: "replace manager without value", op: `{"op":"replace","path":"` + mgrPath + `"}`, status: http.StatusBadRequest},
		{name: "path-less add without value", op: `{"op":"Add"}`, status: http.StatusBadRequest},
		{name: "replace title null", op: `{"op":"Replace","path":"title","value":null}`, status: http.StatusOK, gone: "title"},
		{name: "replace manager empty string", op: `{"op":"Replace","path":"` + mgrPath + `","value":""}`, status: http.StatusOK, gone: "manager"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := createUser(t, g, `{"userName":"nv`+string(rune('a'+i))+`@contoso.example","title":"Boss","nickName":"B",`+
				`"`+scim.EnterpriseUserSchema+`":{"manager":{"value":"m1"}}}`)
			w := serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+scim.PatchOpSchema+`"],"Operations":[`+tt.op+`]}`)
			if tt.status == http.StatusBadRequest {
				expectSCIMError(t, w, http.StatusBadRequest, scim.TypeInvalidValue, "value")
			} else if w.Code != tt.status {
				t.Fatalf("PATCH: %d %s", w.Code, w.Body)
			}
			user := decodeJSON(t, serve(t, g, "GET", "/scim/v2/Users/"+id, nil))
			ext, _ := user[scim.EnterpriseUserSchema].(map[string]any)
			held := map[string]bool{"title": user["title"] != nil, "nickName": user["nickName"] != nil, "manager": ext["manager"] != nil}
			for name, has := range held {
				if want := name != tt.gone; has != want {
					t.Errorf("after the PATCH, %s present: %v, want %v (%v)", name, has, want, user)
				}
			}
		})
	}
}

// TestOnePrimaryValue: POST and PUT with two primary values of one attribute are 400
// invalidValue naming it (RFC 7643 §2.4); a PATCH adding a primary email to a user whose
// work email is primary leaves only the new one primary (RFC 7644 §3.5.2), in either
// dialect, and GET reads back the same.
func TestOnePrimaryValue(t *testing.T) {
	g := newTestGateway(t, nil)
	twoPrimary := `"emails":[{"type":"work","value":"w@contoso.example","primary":true},{"type":"home","value":"h@home.example","primary":"True"}]`
	workPrimary := `"emails":[{"type":"work","value":"w@contoso.example","primary":true}]`
	t.Run("POST", func(t *testing.T) {
		w := serve(t, g, "POST", "/scim/v2/Users", `{"userName":"two@contoso.example",`+twoPrimary+`}`)
		expectSCIMError(t, w, http.StatusBadRequest, scim.TypeInvalidValue, "emails")
	})
	t.Run("PUT", func(t *testing.T) {
		id := createUser(t, g, `{"userName":"put@contoso.example",`+workPrimary+`}`)
		w := serve(t, g, "PUT", "/scim/v2/Users/"+id, `{"userName":"put@contoso.example",`+twoPrimary+`}`)
		expectSCIMError(t, w, http.StatusBadRequest, scim.TypeInvalidValue, "emails")
	})
	for i, op := range []string{
		`{"op":"Add","path":"emails","value":[{"type":"home","value":"h@home.example","primary":"True"}]}`,
		`{"op":"add","value":{"emails":[{"type":"home","value":"h@home.example","primary":true}]}}`,
		`{"op":"Replace","path":"emails[type eq \"home\"]","value":{"type":"home","value":"h@home.example","primary":"True"}}`,
	} {
		t.Run("PATCH "+op, func(t *testing.T) {
			id := createUser(t, g, `{"userName":"patch`+string(rune('a'+i))+`@contoso.example",`+workPrimary+`}`)
			w := serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+scim.PatchOpSchema+`"],"Operations":[`+op+`]}`)
			if w.Code != http.StatusOK {
				t.Fatalf("PATCH: %d %s", w.Code, w.Body)
			}
			for from, user := range map[string]map[string]any{"PATCH": decodeJSON(t, w), "GET": decodeJSON(t, serve(t, g, "GET", "/scim/v2/Users/"+id, nil))} {
				primary := map[string]any{}
				emails, _ := user["emails"].([]any)
				for _, e := range emails {
					m := e.(map[string]any)
					primary[m["type"].(string)] = m["primary"]
				}
				if primary["work"] != false || primary["home"] != true {
					t.Errorf("%s: emails %v, want home primary and work primary false", from, emails)
				}
			}
		})
	}
}

// TestProjectionCoreURNOverHTTP: attributes and excludedAttributes take core attributes in
// their fully qualified form on GET by id, on lists and on .search (they used to return
// only id and schemas, or exclude nothing).
func TestProjectionCoreURNOverHTTP(t *testing.T) {
	g := newTestGateway(t, nil)
	id := createUser(t, g, `{"userName":"ada@contoso.example","title":"Engineer","name":{"givenName":"Ada"}}`)
	w := serve(t, g, "POST", "/scim/v2/Groups", `{"displayName":"Sales","members":[{"value":"`+id+`"}]}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("group: %d %s", w.Code, w.Body)
	}
	gid := decodeJSON(t, w)["id"].(string)
	userName := url.QueryEscape(scim.UserSchema + ":userName")
	filter := url.QueryEscape(`userName eq "ada@contoso.example"`)
	tests := []struct {
		name, method, target, body string
		want                       []string // the attributes the resource has, id and schemas aside
	}{
		{"GET by id", "GET", "/scim/v2/Users/" + id + "?attributes=" + userName, "", []string{"userName"}},
		{"GET by id, sub-attribute", "GET", "/scim/v2/Users/" + id + "?attributes=" + url.QueryEscape(scim.UserSchema+":name.givenName"), "", []string{"name"}},
		{"list", "GET", "/scim/v2/Users?filter=" + filter + "&attributes=" + userName, "", []string{"userName"}},
		{".search", "POST", "/scim/v2/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"userName eq \"ada@contoso.example\"","attributes":["` + scim.UserSchema + `:userName"]}`, []string{"userName"}},
		{"excluded", "GET", "/scim/v2/Users/" + id + "?excludedAttributes=" + url.QueryEscape(scim.UserSchema+":title,"+scim.UserSchema+":name"), "", []string{"groups", "meta", "userName"}},
		{"group members excluded", "GET", "/scim/v2/Groups/" + gid + "?excludedAttributes=" + url.QueryEscape(scim.GroupSchema+":members"), "", []string{"displayName", "meta"}},
		{"group members", "GET", "/scim/v2/Groups/" + gid + "?attributes=" + url.QueryEscape(scim.GroupSchema+":members"), "", []string{"members"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.body != "" {
				body = tt.body
			}
			w := serve(t, g, tt.method, tt.target, body)
			if w.Code != http.StatusOK {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			res := decodeJSON(t, w)
			if list, ok := res["Resources"].([]any); ok {
				if len(list) != 1 {
					t.Fatalf("want one resource: %s", w.Body)
				}
				res = list[0].(map[string]any)
			}
			var got []string
			for k := range res {
				if k != "id" && k != "schemas" {
					got = append(got, k)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("attributes %v, want %v: %v", got, tt.want, res)
			}
		})
	}
}

// TestGetIfNoneMatch: GET (and HEAD) of one resource with an If-None-Match that names its
// current ETag (weak comparison, or "*") answers 304 with the ETag and no body (RFC 7644
// §3.14); any other tag, or a changed resource, gets 200 with the resource.
func TestGetIfNoneMatch(t *testing.T) {
	g := newTestGateway(t, nil)
	id := createUser(t, g, `{"userName":"etag@contoso.example"}`)
	w := serve(t, g, "GET", "/scim/v2/Users/"+id, nil)
	etag := w.Header().Get("ETag")
	if w.Code != http.StatusOK || !strings.HasPrefix(etag, `W/"`) {
		t.Fatalf("GET: %d, ETag %q", w.Code, etag)
	}
	strong := strings.TrimPrefix(etag, "W/")
	tests := []struct {
		name, method, inm string
		status            int
	}{
		{"the ETag", "GET", etag, http.StatusNotModified},
		{"strong form, weak comparison", "GET", strong, http.StatusNotModified},
		{"star", "GET", "*", http.StatusNotModified},
		{"in a list", "GET", `W/"999999", ` + etag, http.StatusNotModified},
		{"HEAD", "HEAD", etag, http.StatusNotModified},
		{"another version", "GET", `W/"999999"`, http.StatusOK},
		{"unquoted", "GET", strings.Trim(strong, `"`), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(t, g, tt.method, "/scim/v2/Users/"+id, nil, "If-None-Match", tt.inm)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if w.Header().Get("ETag") != etag {
				t.Errorf("ETag %q, want %q", w.Header().Get("ETag"), etag)
			}
			if tt.status == http.StatusNotModified && w.Body.Len() != 0 {
				t.Errorf("a 304 with a body: %s", w.Body)
			}
		})
	}
	t.Run("changed since", func(t *testing.T) {
		if w := serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"Operations":[{"op":"replace","path":"title","value":"New"}]}`); w.Code != http.StatusOK {
			t.Fatalf("PATCH: %d %s", w.Code, w.Body)
		}
		w := serve(t, g, "GET", "/scim/v2/Users/"+id, nil, "If-None-Match", etag)
		if w.Code != http.StatusOK || w.Header().Get("ETag") == etag || decodeJSON(t, w)["title"] != "New" {
			t.Fatalf("status %d, ETag %q: %s", w.Code, w.Header().Get("ETag"), w.Body)
		}
	})
	t.Run("lists ignore it", func(t *testing.T) {
		if w := serve(t, g, "GET", "/scim/v2/Users", nil, "If-None-Match", "*"); w.Code != http.StatusOK {
			t.Fatalf("list: %d %s", w.Code, w.Body)
		}
	})
}

// TestDiscoveryRefusesFilter: a filter on /ServiceProviderConfig, /ResourceTypes or /Schemas
// (and their single resources) is 403 with a SCIM error saying so (RFC 7644 §4), instead of
// the unfiltered answer; without one, or with an empty one, they answer 200.
func TestDiscoveryRefusesFilter(t *testing.T) {
	g := newTestGateway(t, nil)
	filter := "?filter=" + url.QueryEscape(`id eq "User"`)
	for _, path := range []string{"/ServiceProviderConfig", "/serviceConfiguration", "/ResourceTypes", "/ResourceTypes/User", "/Schemas", "/Schemas/" + scim.UserSchema} {
		t.Run(path, func(t *testing.T) {
			w := serve(t, g, "GET", "/scim/v2"+path+filter, nil)
			expectSCIMError(t, w, http.StatusForbidden, "", "filter")
			for _, q := range []string{"", "?filter=", "?attributes=id"} {
				if w := serve(t, g, "GET", "/scim/v2"+path+q, nil); w.Code != http.StatusOK {
					t.Errorf("%s%s: %d %s", path, q, w.Code, w.Body)
				}
			}
		})
	}
}

// TestPagingLargeIntegers: a startIndex or count too large for an int is clamped, not
// refused as "not an integer": a startIndex past the end gives an empty page, a count is
// capped at max_results, and a hugely negative one means 1 (startIndex) or 0 (count).
// Anything that is not an integer is still 400 invalidValue.
func TestPagingLargeIntegers(t *testing.T) {
	g := newTestGateway(t, nil)
	createUser(t, g, `{"userName":"page1@contoso.example"}`)
	createUser(t, g, `{"userName":"page2@contoso.example"}`)
	const huge = "99999999999999999999"
	tests := []struct {
		query     string
		status    int
		resources int
	}{
		{"startIndex=" + huge, http.StatusOK, 0},
		{"count=" + huge, http.StatusOK, 2},
		{"startIndex=-" + huge, http.StatusOK, 2},
		{"count=-" + huge, http.StatusOK, 0},
		{"startIndex=" + huge + "&count=" + huge, http.StatusOK, 0},
		{"startIndex=1.5", http.StatusBadRequest, 0},
		{"count=ten", http.StatusBadRequest, 0},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			w := serve(t, g, "GET", "/scim/v2/Users?"+tt.query, nil)
			if tt.status != http.StatusOK {
				expectSCIMError(t, w, tt.status, scim.TypeInvalidValue, "must be an integer")
				return
			}
			if w.Code != http.StatusOK {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			list := decodeJSON(t, w)
			res, _ := list["Resources"].([]any)
			if len(res) != tt.resources || list["totalResults"] != float64(2) {
				t.Errorf("%d resources of %v, want %d of 2: %s", len(res), list["totalResults"], tt.resources, w.Body)
			}
		})
	}
}

// TestSearchEndpointAnyCase: /Users/.SEARCH is the .search endpoint (endpoint names match
// case-insensitively), not a user with the id ".SEARCH": POST searches, GET is 405.
func TestSearchEndpointAnyCase(t *testing.T) {
	g := newTestGateway(t, nil)
	createUser(t, g, `{"userName":"case@contoso.example"}`)
	for _, name := range []string{".search", ".SEARCH", ".Search"} {
		t.Run(name, func(t *testing.T) {
			if w := serve(t, g, "GET", "/scim/v2/Users/"+name, nil); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
				t.Errorf("GET: %d (Allow %q) %s", w.Code, w.Header().Get("Allow"), w.Body)
			}
			w := serve(t, g, "POST", "/scim/v2/Users/"+name, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"userName eq \"case@contoso.example\""}`)
			if w.Code != http.StatusOK || decodeJSON(t, w)["totalResults"] != float64(1) {
				t.Errorf("POST: %d %s", w.Code, w.Body)
			}
		})
	}
}

// TestProjectionOnWrites: attributes and excludedAttributes shape the resource a POST or
// PUT answers, as they do for GET and PATCH (RFC 7644 §3.9: "any operation that returns a
// resource"); they used to be ignored there, and a group POST with
// excludedAttributes=members answered its members. A malformed one is 400 before anything
// is written.
func TestProjectionOnWrites(t *testing.T) {
	g := newTestGateway(t, nil)
	uid := createUser(t, g, `{"userName":"member@contoso.example"}`)
	qualified := url.QueryEscape(scim.UserSchema + ":userName")
	tests := []struct {
		name, method, target, body string
		want                       []string // the attributes the answer has, id and schemas aside
	}{
		{"POST user attributes", "POST", "/scim/v2/Users?attributes=userName", `{"userName":"p1@contoso.example","title":"T","name":{"givenName":"P"}}`, []string{"userName"}},
		{"POST user attributes qualified", "POST", "/scim/v2/Users?attributes=" + qualified, `{"userName":"p2@contoso.example","title":"T"}`, []string{"userName"}},
		{"POST user excluded", "POST", "/scim/v2/Users?excludedAttributes=meta,name.givenName,title", `{"userName":"p3@contoso.example","title":"T","name":{"givenName":"P","familyName":"F"}}`, []string{"name", "userName"}},
		{"POST group excluded members", "POST", "/scim/v2/Groups?excludedAttributes=members", `{"displayName":"Sales","members":[{"value":"` + uid + `"}]}`, []string{"displayName", "meta"}},
		{"PUT user attributes", "PUT", "/scim/v2/Users/" + uid + "?attributes=title", `{"userName":"member@contoso.example","title":"Boss"}`, []string{"title"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(t, g, tt.method, tt.target, tt.body)
			if w.Code != http.StatusCreated && w.Code != http.StatusOK {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			res := decodeJSON(t, w)
			var got []string
			for k := range res {
				if k != "id" && k != "schemas" {
					got = append(got, k)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("attributes %v, want %v: %v", got, tt.want, res)
			}
			if name, ok := res["name"].(map[string]any); ok && (name["givenName"] != nil || name["familyName"] != "F") {
				t.Errorf("name %v, want familyName alone", name)
			}
			// The projection shapes the answer only: the resource holds all it was sent.
			location := tt.target[:strings.Index(tt.target, "?")]
			if tt.method == "POST" {
				location += "/" + res["id"].(string)
			}
			stored := decodeJSON(t, serve(t, g, "GET", location, nil))
			if stored["meta"] == nil || (stored["userName"] == nil && stored["displayName"] == nil) {
				t.Errorf("stored resource lost attributes: %v", stored)
			}
		})
	}
	for _, m := range []struct{ method, target, body string }{
		{"POST", "/scim/v2/Users?attributes=userName&excludedAttributes=title", `{"userName":"bad1@contoso.example"}`},
		{"POST", "/scim/v2/Users?attributes=" + url.QueryEscape(`emails[type eq "work"`), `{"userName":"bad2@contoso.example"}`},
		{"PUT", "/scim/v2/Users/" + uid + "?attributes=userName&excludedAttributes=title", `{"userName":"member@contoso.example","title":"Changed"}`},
	} {
		t.Run("malformed "+m.method+" "+m.target, func(t *testing.T) {
			w := serve(t, g, m.method, m.target, m.body)
			if w.Code != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", w.Code, w.Body)
			}
			list := decodeJSON(t, serve(t, g, "GET", "/scim/v2/Users?filter="+url.QueryEscape(`userName sw "bad"`), nil))
			if list["totalResults"] != float64(0) {
				t.Errorf("a refused POST created a user: %v", list)
			}
			if u := decodeJSON(t, serve(t, g, "GET", "/scim/v2/Users/"+uid, nil)); u["title"] == "Changed" {
				t.Errorf("a refused PUT changed the user: %v", u)
			}
		})
	}
}
