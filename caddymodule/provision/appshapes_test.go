package provision

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// shapeApp is a legacy app shaped unlike the demo app, end to end: users and groups with
// the ids it hands out in turn (ids), which it gives a create's answer in the Location
// header (absolute or relative) or in the body; answers written through encode (gzip,
// another charset, a byte order mark). It routes on the escaped path, unescaping each
// segment once, as an app whose ids hold "/" must.
type shapeApp struct {
	mu     sync.Mutex
	ids    []string
	n      int
	idIn   string // "location-abs", "location-rel", "body-raw" (the id written as is), "body"
	encode func(w http.ResponseWriter, status int, body []byte)
	users  map[string]map[string]any
	groups map[string]map[string]any
	member map[string]map[string]bool
	calls  []string
	posts  int
}

func newShapeApp(t *testing.T, idIn string, ids ...string) (*shapeApp, *httptest.Server) {
	a := &shapeApp{ids: ids, idIn: idIn, users: map[string]map[string]any{}, groups: map[string]map[string]any{}, member: map[string]map[string]bool{}}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv
}

func (a *shapeApp) answer(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	if a.encode != nil {
		a.encode(w, status, body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (a *shapeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, r.Method+" "+r.URL.EscapedPath())
	var in map[string]any
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &in)
	var seg []string
	for _, s := range strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(s)
		if err != nil {
			a.answer(w, http.StatusBadRequest, map[string]any{"message": "bad escape"})
			return
		}
		seg = append(seg, u)
	}
	coll := map[string]map[string]map[string]any{"users": a.users, "groups": a.groups}[seg[0]]
	if coll == nil {
		a.answer(w, http.StatusNotFound, map[string]any{"message": "no route"})
		return
	}
	switch {
	case len(seg) == 1 && r.Method == http.MethodPost:
		a.posts++
		id := a.ids[a.n%len(a.ids)] + strings.Repeat("~", a.n/len(a.ids))
		a.n++
		coll[id] = in
		if seg[0] == "groups" {
			a.member[id] = map[string]bool{}
		}
		loc := "/" + seg[0] + "/" + url.PathEscape(id)
		switch a.idIn {
		case "location-abs":
			w.Header().Set("Location", "http://"+r.Host+loc)
			w.WriteHeader(http.StatusCreated)
		case "location-rel":
			w.Header().Set("Location", loc)
			w.WriteHeader(http.StatusNoContent)
		case "body-raw":
			a.encode(w, http.StatusCreated, []byte(`{"id": `+id+`}`))
		default:
			a.answer(w, http.StatusCreated, map[string]any{"id": id})
		}
	case len(seg) == 1 && r.Method == http.MethodGet:
		items := []any{}
		for id, acc := range coll {
			if q := r.URL.Query().Get("name"); q == "" || acc["login"] == q || acc["name"] == q {
				items = append(items, map[string]any{"id": id, "login": acc["login"], "name": acc["name"]})
			}
		}
		a.answer(w, http.StatusOK, map[string]any{"items": items})
	case len(seg) == 2 && coll[seg[1]] == nil, len(seg) == 4 && coll[seg[1]] == nil:
		a.answer(w, http.StatusNotFound, map[string]any{"message": "no such object " + seg[1]})
	case len(seg) == 2 && r.Method == http.MethodPatch:
		for k, v := range in {
			coll[seg[1]][k] = v
		}
		a.answer(w, http.StatusOK, map[string]any{"id": seg[1]})
	case len(seg) == 2 && r.Method == http.MethodDelete:
		delete(coll, seg[1])
		w.WriteHeader(http.StatusNoContent)
	case len(seg) == 4 && seg[2] == "members" && r.Method == http.MethodPut:
		if a.users[seg[3]] == nil {
			a.answer(w, http.StatusNotFound, map[string]any{"message": "no such user " + seg[3]})
			return
		}
		a.member[seg[1]][seg[3]] = true
		w.WriteHeader(http.StatusNoContent)
	case len(seg) == 4 && seg[2] == "members" && r.Method == http.MethodDelete:
		delete(a.member[seg[1]], seg[3])
		w.WriteHeader(http.StatusNoContent)
	default:
		a.answer(w, http.StatusMethodNotAllowed, map[string]any{"message": "no route"})
	}
}

func (a *shapeApp) state() (users map[string]map[string]any, groups map[string][]string, posts int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	users = map[string]map[string]any{}
	for id, u := range a.users {
		c := map[string]any{}
		for k, v := range u {
			c[k] = v
		}
		users[id] = c
	}
	groups = map[string][]string{}
	for id := range a.groups {
		ms := []string{}
		for m := range a.member[id] {
			ms = append(ms, m)
		}
		slices.Sort(ms)
		groups[id] = ms
	}
	return users, groups, a.posts
}

// shapeMapping maps shapeApp with the create's id read by idSource (a JSON value).
func shapeMapping(idSource string) string {
	return `{"version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/users?name={userName}", "items": "items", "id": "id", "match": {"login": "{userName}"}},
    "events": {
      "create": {"method": "POST", "path": "/users", "id": ` + idSource + `, "body": {"login": "userName", "title": "title", "active": "active"}},
      "update": {"method": "PATCH", "path": "/users/{id}", "body": {"title": "title", "login": "userName"}},
      "deactivate": {"method": "PATCH", "path": "/users/{id}", "body": {"active": "active"}},
      "reactivate": {"method": "PATCH", "path": "/users/{id}", "body": {"active": "active"}},
      "delete": {"method": "DELETE", "path": "/users/{id}"}}},
  "groups": {
    "lookup": {"method": "GET", "path": "/groups?name={displayName}", "items": "items", "id": "id", "match": {"name": "{displayName}"}},
    "events": {
      "create": {"method": "POST", "path": "/groups", "id": ` + idSource + `, "body": {"name": "displayName"}},
      "update": {"method": "PATCH", "path": "/groups/{id}", "body": {"name": "displayName"}},
      "add_members": {"method": "PUT", "path": "/groups/{id}/members/{member_id}"},
      "remove_members": {"method": "DELETE", "path": "/groups/{id}/members/{member_id}"},
      "delete": {"method": "DELETE", "path": "/groups/{id}"}}}}`
}

// lifecycle runs every event against the app and checks the app's state after each:
// two users made, one updated, deactivated and reactivated, a group made with one of
// them, the other added and the first removed, a user and the group deleted.
func lifecycle(t *testing.T, r *rig, app *shapeApp) {
	t.Helper()
	ok := func(what string, res *Result) *Result {
		t.Helper()
		if res.Err != nil {
			t.Fatalf("%s: %d %v", what, res.Status, res.Err)
		}
		return res
	}
	ada := ok("create ada", r.create(scim.UserType, user("ada@contoso.example", `,"title":"Eng"`))).ID
	bob := ok("create bob", r.create(scim.UserType, user("bob@contoso.example"))).ID
	nAda, nBob := r.nativeID(scim.UserType, ada), r.nativeID(scim.UserType, bob)
	users, _, _ := app.state()
	if users[nAda]["login"] != "ada@contoso.example" || users[nBob]["login"] != "bob@contoso.example" {
		t.Fatalf("mapped to %q and %q; the app holds %v", nAda, nBob, users)
	}
	ok("update", r.patch(scim.UserType, ada, `[{"op":"replace","path":"title","value":"Lead"}]`))
	ok("deactivate", r.patch(scim.UserType, ada, `[{"op":"replace","path":"active","value":false}]`))
	if users, _, _ = app.state(); users[nAda]["title"] != "Lead" || users[nAda]["active"] != false {
		t.Fatalf("after update and deactivate the app holds %v", users[nAda])
	}
	ok("reactivate", r.patch(scim.UserType, ada, `[{"op":"replace","path":"active","value":true}]`))
	gid := ok("create group", r.create(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Eng","members":[{"value":"`+ada+`"}]}`)).ID
	nG := r.nativeID(scim.GroupType, gid)
	ok("add bob", r.patch(scim.GroupType, gid, `[{"op":"add","path":"members","value":[{"value":"`+bob+`"}]}]`))
	ok("remove ada", r.patch(scim.GroupType, gid, `[{"op":"remove","path":"members[value eq \"`+ada+`\"]"}]`))
	if _, groups, _ := app.state(); !slices.Equal(groups[nG], []string{nBob}) {
		t.Fatalf("group %q: %v, want [%s]", nG, groups, nBob)
	}
	ok("rename group", r.patch(scim.GroupType, gid, `[{"op":"replace","path":"displayName","value":"Engineering"}]`))
	ok("delete bob", r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: bob, Status: http.StatusNoContent}))
	ok("delete group", r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent}))
	users, groups, posts := app.state()
	if len(users) != 1 || users[nAda] == nil || len(groups) != 0 || posts != 3 {
		t.Fatalf("at the end the app holds users %v, groups %v after %d creates", users, groups, posts)
	}
}

// TestAppShapesLifecycle: apps that give a create's id only in the Location header (201
// or 204 without a body, the URL absolute or relative), ids beyond 2^53, and ids holding
// characters a URL must escape, through every event.
func TestAppShapesLifecycle(t *testing.T) {
	odd := []string{"a/b", "50%off", "what?x=1", "tag#1", "ada lovelace", "Zoë-日本", "9007199254740993"}
	for _, tc := range []struct {
		name, idIn, idSource string
		ids                  []string
	}{
		{"location absolute", "location-abs", `{"location": "last_segment"}`, odd},
		{"location relative", "location-rel", `{"location": "last_segment"}`, odd},
		{"location pattern", "location-rel", `{"location": "^/(?:users|groups)/(.+)$"}`, odd},
		{"body string ids", "body", `"id"`, odd},
		{"body big integers", "body-raw", `"id"`, []string{"9007199254740993", "18446744073709551615", "9223372036854775807"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, srv := newShapeApp(t, tc.idIn, tc.ids...)
			app.encode = func(w http.ResponseWriter, status int, body []byte) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = w.Write(body)
			}
			r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, shapeMapping(tc.idSource))})
			lifecycle(t, r, app)
		})
	}
}

// TestAppShapesEncodings: answers gzip-encoded, in latin1, with a byte order mark.
func TestAppShapesEncodings(t *testing.T) {
	for name, enc := range map[string]func(w http.ResponseWriter, status int, body []byte){
		"gzip": func(w http.ResponseWriter, status int, body []byte) {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			_, _ = zw.Write(body)
			_ = zw.Close()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			w.WriteHeader(status)
			_, _ = w.Write(b.Bytes())
		},
		"latin1": func(w http.ResponseWriter, status int, body []byte) {
			var out []byte
			for _, r := range string(body) {
				if r > 0xff {
					r = '?'
				}
				out = append(out, byte(r))
			}
			w.Header().Set("Content-Type", "application/json; charset=ISO-8859-1")
			w.WriteHeader(status)
			_, _ = w.Write(out)
		},
		"bom": func(w http.ResponseWriter, status int, body []byte) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(status)
			_, _ = w.Write(append([]byte("\xEF\xBB\xBF"), body...))
		},
	} {
		t.Run(name, func(t *testing.T) {
			app, srv := newShapeApp(t, "body", "Zoë-1", "Zoë-2", "Zoë-3")
			app.encode = enc
			r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, shapeMapping(`"id"`))})
			lifecycle(t, r, app)
		})
	}
}

// etagApp guards its accounts with ETag/If-Match (optimistic concurrency): GET
// /users/{id} gives the account's version as its ETag, and a PATCH must send it in
// If-Match: without it the app answers 428, with an older one 412, and does nothing.
// bump, when set, changes the account behind the gateway's back (another admin) once,
// between its GET and its PATCH.
type etagApp struct {
	mu      sync.Mutex
	version map[string]int
	title   map[string]string
	bump    bool
	patches int
}

func (a *etagApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	id := strings.TrimPrefix(r.URL.Path, "/users/")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/users":
		id = "u" + strconv.Itoa(len(a.version)+1)
		a.version[id] = 1
		answer(http.StatusCreated, map[string]any{"id": id})
	case a.version[id] == 0:
		answer(http.StatusNotFound, map[string]any{"message": "no such user"})
	case r.Method == http.MethodGet:
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, a.version[id]))
		answer(http.StatusOK, map[string]any{"id": id, "title": a.title[id]})
		if a.bump {
			a.bump = false
			a.version[id]++
		}
	case r.Method == http.MethodPatch:
		a.patches++
		switch m := r.Header.Get("If-Match"); {
		case m == "":
			answer(http.StatusPreconditionRequired, map[string]any{"message": "precondition required"})
		case m != fmt.Sprintf(`"v%d"`, a.version[id]):
			answer(http.StatusPreconditionFailed, map[string]any{"message": "the account changed"})
		default:
			var in map[string]string
			_ = json.NewDecoder(r.Body).Decode(&in)
			a.title[id] = in["title"]
			a.version[id]++
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

// TestAppWithIfMatch: an app that wants If-Match on its updates. Without it in the
// mapping, the app's 428 is an outage naming the precondition (the app did nothing, and
// the mapping must change), never a 400 that says Entra's data is wrong; with a flow that
// reads the account first and sends its ETag, updates go through; an update that lost a
// race with another writer (412) is an outage whose retry reads the new ETag.
func TestAppWithIfMatch(t *testing.T) {
	const without = `{"version": 1, "users": {"events": {
      "create": {"method": "POST", "path": "/users", "id": "id", "body": {"login": "userName"}},
      "update": {"method": "PATCH", "path": "/users/{id}", "body": {"title": "title"}}}}}`
	const with = `{"version": 1, "users": {"events": {
      "create": {"method": "POST", "path": "/users", "id": "id", "body": {"login": "userName"}},
      "update": [
        {"method": "GET", "path": "/users/{id}"},
        {"method": "PATCH", "path": "/users/{id}", "headers": {"If-Match": {"from": "$header.0.ETag"}}, "body": {"title": "title"}}]}}}`
	app := &etagApp{version: map[string]int{}, title: map[string]string{}}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)

	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, without)})
	id := r.mustCreate(scim.UserType, user("etag@contoso.example"))
	res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"Eng"}]`)
	if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 || res.Err == nil || !strings.Contains(res.Err.Error(), "If-Match") {
		t.Fatalf("an update without the If-Match the app requires: %d %v, want 503 naming the precondition", res.Status, res.Err)
	}

	r.eng = r.build(rigOptions{target: newMappedTarget(t, srv.URL, with)})
	if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"Eng"}]`); res.Err != nil {
		t.Fatalf("update with If-Match: %d %v", res.Status, res.Err)
	}
	app.mu.Lock()
	app.bump = true
	app.mu.Unlock()
	res = r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"Lead"}]`)
	if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
		t.Fatalf("an update that lost a race (412): %d %v, want 503 with Retry-After", res.Status, res.Err)
	}
	if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"Lead"}]`); res.Err != nil {
		t.Fatalf("retry of the update: %d %v", res.Status, res.Err)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if app.title["u1"] != "Lead" {
		t.Fatalf("the app holds title %q", app.title["u1"])
	}
}

// TestAppThatRefusesWith200: an app that answers its refusals 200 {"success": false,
// "error": ...} (as many RPC-style APIs do) is mapped with a file-wide expectation that a
// success says so; its refusal is then an outage, never a change taken as made.
func TestAppThatRefusesWith200(t *testing.T) {
	var refuse bool
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if refuse {
			_, _ = w.Write([]byte(`{"success": false, "error": "title too long"}`))
			return
		}
		_, _ = w.Write([]byte(`{"success": true, "data": {"id": "u1"}}`))
	}))
	t.Cleanup(srv.Close)
	const file = `{"version": 1, "expect": {"equals": {"success": true}}, "users": {"events": {
      "create": {"method": "POST", "path": "/users", "id": "data.id", "body": {"login": "userName"}},
      "update": {"method": "POST", "path": "/users/{id}/update", "body": {"title": "title"}}}}}`
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, file)})
	id := r.mustCreate(scim.UserType, user("rpc@contoso.example"))
	mu.Lock()
	refuse = true
	mu.Unlock()
	res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"Eng"}]`)
	if res.Status != http.StatusServiceUnavailable || res.Err == nil || !strings.Contains(res.Err.Error(), `"success"`) {
		t.Fatalf("a 200 that says the app refused: %d %v, want 503 naming \"success\"", res.Status, res.Err)
	}
}
