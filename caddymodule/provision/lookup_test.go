package provision

// Tests of the lookup that decides whether an account exists (adoption of a create whose
// answer was lost), and of an update whose account is gone from the app, against an app
// of the probe's shape: ids in data.user.uid, lists in data.users, its own errors as
// {"errors": [{"kind": ...}]} and its "no such object" as the kind not_found.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// peopleApp is an app whose lookups and creates the test makes misbehave.
type peopleApp struct {
	mu     sync.Mutex
	next   int
	people map[string]map[string]any // uid -> person
	order  []string                  // uids in creation order (the list's order)
	posts  int
	// createThen is what the next create does: "drop" the connection after making the
	// account, "500" without making it, "409" refuse it as the app's own conflict.
	createThen string
	// lookupThen is how GET /people answers: "" as the app does, "{}", "notlist" (the list
	// is a string), "text" (text/plain 200), "own404" (its own not-found), "own400" (its
	// own refusal), "503", "proxy404" (an HTML 404), "page2{}" ({} from the second page on).
	lookupThen string
}

func newPeopleApp(t *testing.T) (*peopleApp, string) {
	t.Helper()
	a := &peopleApp{people: map[string]map[string]any{}}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv.URL
}

func (a *peopleApp) set(f func(*peopleApp)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// logins returns the login of every account, sorted.
func (a *peopleApp) logins() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, p := range a.people {
		out = append(out, fmt.Sprint(p["login"]))
	}
	slices.Sort(out)
	return out
}

func (a *peopleApp) postCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.posts
}

// person returns a copy of the account uid (nil: none).
func (a *peopleApp) person(uid string) map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.people[uid] == nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range a.people[uid] {
		out[k] = v
	}
	return out
}

// drop removes an account behind the gateway's back.
func (a *peopleApp) drop(uid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.people, uid)
	a.order = slices.DeleteFunc(a.order, func(id string) bool { return id == uid })
}

func (a *peopleApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	appErr := func(status int, kind string) {
		answer(status, map[string]any{"errors": []any{map[string]any{"kind": kind, "message": kind}}})
	}
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	_ = json.Unmarshal(body, &in)
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	person := func() map[string]any {
		if len(parts) < 2 {
			return nil
		}
		return a.people[parts[1]]
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/people":
		a.posts++
		then := a.createThen
		a.createThen = ""
		if then == "500" {
			appErr(http.StatusInternalServerError, "internal")
			return
		}
		if then == "409" {
			appErr(http.StatusConflict, "conflict")
			return
		}
		a.next++
		uid := fmt.Sprintf("u%03d", a.next)
		in["uid"], in["status"] = uid, "active"
		a.people[uid] = in
		a.order = append(a.order, uid)
		if then == "drop" {
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			_ = conn.Close()
			return
		}
		answer(http.StatusCreated, map[string]any{"data": map[string]any{"user": in}})
	case r.Method == http.MethodGet && r.URL.Path == "/people":
		a.lookup(w, r, answer, appErr)
	case len(parts) == 2 && parts[0] == "people" && r.Method == http.MethodPut:
		p := person()
		if p == nil {
			appErr(http.StatusNotFound, "not_found")
			return
		}
		for k, v := range in {
			p[k] = v
		}
		answer(http.StatusOK, map[string]any{"data": map[string]any{"user": p}})
	case len(parts) == 3 && parts[0] == "people" && r.Method == http.MethodPost && (parts[2] == "disable" || parts[2] == "enable"):
		p := person()
		if p == nil {
			appErr(http.StatusNotFound, "not_found")
			return
		}
		p["status"] = map[string]string{"disable": "disabled", "enable": "active"}[parts[2]]
		answer(http.StatusOK, map[string]any{"data": map[string]any{"user": p}})
	default:
		appErr(http.StatusNotFound, "no_route")
	}
}

// lookup answers GET /people[?login=][&page=&per_page=] as lookupThen says.
func (a *peopleApp) lookup(w http.ResponseWriter, r *http.Request, answer func(int, any), appErr func(int, string)) {
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	switch a.lookupThen {
	case "{}":
		answer(http.StatusOK, map[string]any{})
		return
	case "page2{}":
		if page >= 2 {
			answer(http.StatusOK, map[string]any{})
			return
		}
	case "notlist":
		answer(http.StatusOK, map[string]any{"data": map[string]any{"users": "none"}})
		return
	case "text":
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "ok")
		return
	case "own404":
		appErr(http.StatusNotFound, "not_found")
		return
	case "own400":
		appErr(http.StatusBadRequest, "invalid")
		return
	case "503":
		appErr(http.StatusServiceUnavailable, "unavailable")
		return
	case "proxy404":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "<html><body><h1>404 Not Found</h1></body></html>")
		return
	}
	users := []any{}
	for _, uid := range a.order {
		if login := q.Get("login"); login == "" || a.people[uid]["login"] == login {
			users = append(users, a.people[uid])
		}
	}
	if size, _ := strconv.Atoi(q.Get("per_page")); page > 0 && size > 0 {
		from := min((page-1)*size, len(users))
		users = users[from:min(from+size, len(users))]
	}
	answer(http.StatusOK, map[string]any{"data": map[string]any{"users": users}})
}

// peopleMapping maps users onto peopleApp; lookup is the users' lookup call.
func peopleMapping(lookup string) string {
	return `{
  "version": 1,
  "expect": {"errors": {"body": "json", "has": ["errors.0.kind"]}, "not_found": {"equals": {"errors.0.kind": "not_found"}}},
  "users": {
    "lookup": ` + lookup + `,
    "events": {
      "create": {"method": "POST", "path": "/people", "id": "data.user.uid",
                 "body": {"login": {"from": "userName", "transforms": ["lower"]}, "title": "title"}},
      "update": {"method": "PUT", "path": "/people/{id}", "send": "all",
                 "body": {"login": {"from": "userName", "transforms": ["lower"]}, "title": "title"}},
      "deactivate": {"method": "POST", "path": "/people/{id}/disable", "idempotent": true,
                     "expect": {"equals": {"data.user.status": "disabled"}}},
      "reactivate": {"method": "POST", "path": "/people/{id}/enable", "idempotent": true,
                     "expect": {"equals": {"data.user.status": "active"}}},
      "delete": {"method": "DELETE", "path": "/people/{id}"}
    }
  }
}`
}

// The lookups of the tests: a list matched by login, a single object whose id is in a
// list (data.users.0.uid), and a list read page by page over every account.
var (
	listLookup   = `{"method": "GET", "path": "/people?login={userName|lower}", "items": "data.users", "id": "uid", "match": {"login": "{userName|lower}"}}`
	singleLookup = `{"method": "GET", "path": "/people?login={userName|lower}", "id": "data.users.0.uid"}`
	pagedLookup  = `{"method": "GET", "path": "/people", "items": "data.users", "id": "uid", "match": {"login": "{userName|lower}"},
	                 "paging": {"type": "page", "param": "page", "start": 1, "size": 1, "size_param": "per_page", "max_pages": 5}}`
)

func (r *rig) createUser(name string) *Result {
	r.t.Helper()
	return r.eng.Apply(testReq, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(r.t, scim.UserType, user(name)), Status: http.StatusCreated})
}

func (r *rig) userCount() int {
	r.t.Helper()
	var n int
	if err := r.store.View(func(tx *store.Tx) error {
		var err error
		n, err = tx.Count(scim.UserType)
		return err
	}); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// TestLookupThatProvesNothingIsAnOutage: when a create's answer was lost, its retry looks
// the account up; an answer that does not prove the account absent ({} where the app
// answers with a list, a list that is not one, a page that is not JSON, a page of a paged
// listing without its list) or a failed lookup (the app's 400 or 503, a proxy's 404) is an
// outage, 503 with Retry-After naming the lookup: the app never gets a second account, the
// directory does not change, and the journal says what came back. Once the lookup answers,
// the account is adopted.
func TestLookupThatProvesNothingIsAnOutage(t *testing.T) {
	cases := []struct {
		lookup, mode string
	}{
		{listLookup, "{}"},
		{listLookup, "notlist"},
		{listLookup, "text"},
		{listLookup, "own400"},
		{listLookup, "503"},
		{listLookup, "proxy404"},
		{singleLookup, "{}"},
		{singleLookup, "own400"},
		{pagedLookup, "page2{}"},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d-%s", i, c.mode), func(t *testing.T) {
			app, url := newPeopleApp(t)
			r := newRig(t, rigOptions{target: newMappedTarget(t, url, peopleMapping(c.lookup))})
			r.mustCreate(scim.UserType, user("first@contoso.example")) // the first page of a paged lookup
			name := "ada@contoso.example"
			app.set(func(a *peopleApp) { a.createThen = "drop" })
			if res := r.createUser(name); res.Status != http.StatusServiceUnavailable {
				t.Fatalf("a create whose answer is lost: %+v (%v)", res, res.Err)
			}
			posts, users := app.postCount(), r.userCount()

			app.set(func(a *peopleApp) { a.lookupThen = c.mode })
			res := r.createUser(name)
			if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 || res.Err == nil ||
				!strings.Contains(res.Err.Detail, "lookup") || strings.Contains(res.Err.Detail, "update") {
				t.Fatalf("the retry while the lookup proves nothing: %+v (%v), want 503 with Retry-After naming the lookup", res, res.Err)
			}
			if got := app.logins(); app.postCount() != posts || !slices.Equal(got, []string{name, "first@contoso.example"}) {
				t.Fatalf("the app got another create: posts %d -> %d, accounts %v", posts, app.postCount(), got)
			}
			if r.userCount() != users {
				t.Fatalf("the directory changed: %d users, was %d", r.userCount(), users)
			}
			rec := r.last()
			if rec.Outcome != change.Failed || rec.Status != http.StatusServiceUnavailable || rec.Backend == nil ||
				rec.Backend.Method != http.MethodGet || rec.Backend.Error == "" {
				t.Fatalf("journal: %+v (backend %+v), want the failed lookup with what came back", rec, rec.Backend)
			}

			app.set(func(a *peopleApp) { a.lookupThen = "" })
			res = r.createUser(name)
			if res.Err != nil || app.postCount() != posts {
				t.Fatalf("the retry once the lookup answers: %v, posts %d -> %d", res.Err, posts, app.postCount())
			}
			if n := r.nativeID(scim.UserType, res.ID); n != "u002" {
				t.Fatalf("adopted %q, want the account the lost create made (u002)", n)
			}
		})
	}
}

// TestLookupOwnNotFoundCreates: the lookup's own "no such object", like a list without the
// account, proves it absent: the retried create goes ahead (never a 404 for a create).
func TestLookupOwnNotFoundCreates(t *testing.T) {
	for _, c := range []struct{ lookup, mode string }{
		{listLookup, "own404"}, {singleLookup, "own404"}, {listLookup, ""}, {singleLookup, ""}, {pagedLookup, ""},
	} {
		t.Run(c.mode, func(t *testing.T) {
			app, url := newPeopleApp(t)
			r := newRig(t, rigOptions{target: newMappedTarget(t, url, peopleMapping(c.lookup))})
			name := "bob@contoso.example"
			app.set(func(a *peopleApp) { a.createThen = "500" }) // nothing made, but the app may have
			if res := r.createUser(name); res.Status != http.StatusServiceUnavailable {
				t.Fatalf("first attempt: %+v", res)
			}
			app.set(func(a *peopleApp) { a.lookupThen = c.mode })
			res := r.createUser(name)
			if res.Err != nil || res.Status != http.StatusCreated {
				t.Fatalf("the retry after the lookup's not-found: %+v (%v), want 201", res, res.Err)
			}
			if got := app.logins(); !slices.Equal(got, []string{name}) || r.nativeID(scim.UserType, res.ID) == "" {
				t.Fatalf("accounts %v, mapped to %q", got, r.nativeID(scim.UserType, res.ID))
			}
		})
	}
}

// TestGoneAccountIsCreatedAgain: an update whose account the app answers with its own "no
// such object" (the account was deleted in the app) drops the stale mapping, journaled,
// and sends the resource as a create with its new state, so that Entra gets success and
// the directory and the app converge; a deactivation of a gone account needs none (the
// mapping is dropped, nothing is created), and the next change that needs one makes it. A
// recreate whose answer is lost is adopted by its retry, and one the app refuses is
// answered as a refused create.
func TestGoneAccountIsCreatedAgain(t *testing.T) {
	app, url := newPeopleApp(t)
	r := newRig(t, rigOptions{target: newMappedTarget(t, url, peopleMapping(listLookup))})
	id := r.mustCreate(scim.UserType, user("ada@contoso.example", `,"title":"A"`))
	first := r.nativeID(scim.UserType, id)
	title := func() any {
		var doc scim.Resource
		_ = r.store.View(func(tx *store.Tx) error {
			rec, err := tx.Get(scim.UserType, id)
			if err == nil {
				doc, err = DecodeDoc(rec)
			}
			return err
		})
		return doc["title"]
	}

	app.drop(first)
	res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"B"}]`)
	second := r.nativeID(scim.UserType, id)
	if res.Err != nil || second == "" || second == first || title() != "B" {
		t.Fatalf("update of a gone account: %+v (%v), mapped %q -> %q, title %v", res, res.Err, first, second, title())
	}
	if got := app.person(second); got["login"] != "ada@contoso.example" || got["title"] != "B" {
		t.Fatalf("the account made again: %v", got)
	}
	var dropped *journal.Record
	for _, rec := range r.records() {
		if rec.Action == change.ActionReconcile && rec.NativeID == first && rec.SCIMID == id {
			dropped = &rec
		}
	}
	if dropped == nil || !strings.Contains(dropped.Error, "gone") || !strings.Contains(dropped.Error, "dropped") ||
		dropped.Backend == nil || dropped.Backend.Status != http.StatusNotFound {
		t.Fatalf("no record of the dropped mapping: %+v", dropped)
	}
	if last := r.last(); last.Outcome != change.Applied || last.NativeID != second || last.Backend == nil || last.Backend.Method != http.MethodPost {
		t.Fatalf("outcome record: %+v", last)
	}

	posts := app.postCount()
	if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"C"}]`); res.Err != nil || app.postCount() != posts || app.person(second)["title"] != "C" {
		t.Fatalf("the next update: %v, posts %d -> %d", res.Err, posts, app.postCount())
	}

	// A deactivation of a gone account: nothing to make.
	app.drop(second)
	res = r.patch(scim.UserType, id, `[{"op":"replace","path":"active","value":false}]`)
	if res.Err != nil || app.postCount() != posts || len(app.logins()) != 0 || r.nativeID(scim.UserType, id) != "" {
		t.Fatalf("deactivation of a gone account: %v, posts %d -> %d, accounts %v, mapped %q", res.Err, posts, app.postCount(), app.logins(), r.nativeID(scim.UserType, id))
	}
	res = r.patch(scim.UserType, id, `[{"op":"replace","path":"active","value":true}]`)
	third := r.nativeID(scim.UserType, id)
	if res.Err != nil || third == "" || app.person(third)["status"] != "active" {
		t.Fatalf("reactivation without an account: %v, mapped %q, accounts %v", res.Err, third, app.logins())
	}

	// The recreate's answer is lost: its retry adopts the account it made.
	app.drop(third)
	app.set(func(a *peopleApp) { a.createThen = "drop" })
	if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"D"}]`); res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
		t.Fatalf("a recreate whose answer is lost: %+v (%v)", res, res.Err)
	}
	posts = app.postCount()
	res = r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"D"}]`)
	if res.Err != nil || app.postCount() != posts || len(app.logins()) != 1 || title() != "D" {
		t.Fatalf("its retry: %v, posts %d -> %d, accounts %v", res.Err, posts, app.postCount(), app.logins())
	}
	fourth := r.nativeID(scim.UserType, id)
	if app.person(fourth) == nil || app.person(fourth)["title"] != "D" {
		t.Fatalf("adopted %q: %v", fourth, app.person(fourth))
	}

	// The recreate the app refuses is answered as its refusal of a create.
	app.drop(fourth)
	app.set(func(a *peopleApp) { a.createThen = "409" })
	if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"E"}]`); res.Status != http.StatusConflict || title() != "D" {
		t.Fatalf("a refused recreate: %+v (%v), title %v", res, res.Err, title())
	}
}

// TestRoleLookupThatProvesNothingIsAnOutage: the groups lookup of an app whose groups are
// roles decides whether a group gives a role; {} or the app's 400 proves nothing and is an
// outage naming the role lookup (never "no role": the group would be skipped and its
// members' lists sent without it), while an empty list or the app's own not-found is no
// role.
func TestRoleLookupThatProvesNothingIsAnOutage(t *testing.T) {
	var mu sync.Mutex
	mode := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		m := mode
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path != "/roles":
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[{"kind":"no_route"}]}`)
		case m == "{}":
			fmt.Fprint(w, `{}`)
		case m == "own400":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"errors":[{"kind":"invalid"}]}`)
		case m == "own404":
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[{"kind":"not_found"}]}`)
		case r.URL.Query().Get("name") == "Admins":
			fmt.Fprint(w, `{"data":[{"id":"role_admin"}]}`)
		default:
			fmt.Fprint(w, `{"data":[]}`)
		}
	}))
	t.Cleanup(srv.Close)
	file := `{"version": 1,
  "expect": {"errors": {"body": "json", "has": ["errors.0.kind"]}, "not_found": {"equals": {"errors.0.kind": "not_found"}}},
  "users": {"events": {"create": {"method": "POST", "path": "/users", "id": "id", "body": {"login": "userName"}}}},
  "groups": {
    "lookup": {"method": "GET", "path": "/roles?name={displayName}", "id": "data.0.id"},
    "roles": {"assign": {"method": "PUT", "path": "/users/{id}/roles", "body": {"roles": "$role_ids"}}}}}`
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, file)})
	set := func(m string) {
		mu.Lock()
		mode = m
		mu.Unlock()
	}
	for _, m := range []string{"{}", "own400"} {
		set(m)
		res := r.create(scim.GroupType, group("Admins"))
		if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 || !strings.Contains(res.Err.Detail, "role lookup") {
			t.Fatalf("%s: %+v (%v), want 503 naming the role lookup", m, res, res.Err)
		}
		if rec := r.last(); rec.Outcome != change.Failed || rec.Backend == nil || rec.Backend.Error == "" {
			t.Fatalf("%s: journal %+v", m, rec)
		}
	}
	set("")
	if res := r.create(scim.GroupType, group("Admins")); res.Err != nil || r.last().Outcome != change.Applied {
		t.Fatalf("the role lookup answers: %v, %+v", res.Err, r.last())
	}
	for _, m := range []string{"", "own404"} {
		set(m)
		res := r.create(scim.GroupType, group("Ghosts "+m))
		if rec := r.last(); res.Err != nil || rec.Outcome != change.Skipped {
			t.Fatalf("%q: a group the lookup proves gives no role: %v, %+v", m, res.Err, rec)
		}
	}
}
