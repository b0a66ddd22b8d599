package provision

// Tests of what an adopted account holds: a create (or a catch-up create) that adopts the
// account an earlier attempt made resumes after the call that made it, so the account holds
// what that attempt sent; when the adopting change carries another state, the account is
// brought in line with it (an update with every attribute, and the state), journaled.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// account returns a copy of the nativeApp's account id.
func (a *nativeApp) account(id string) map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.accounts[id] == nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range a.accounts[id] {
		out[k] = v
	}
	return out
}

// reasonsOf joins a record's decision reasons.
func reasonsOf(rec journal.Record) string {
	if rec.Decision == nil {
		return ""
	}
	return strings.Join(rec.Decision.Reasons, " | ")
}

// callsOf lists a record's calls as "METHOD URL".
func callsOf(rec journal.Record) []string {
	var out []string
	for _, c := range rec.Calls {
		out = append(out, c.Method+" "+c.URL)
	}
	return out
}

// TestAdoptedCreateTakesItsState: Entra's retry of a create whose answer was lost carries
// another state than the first attempt (a title changed, the user made inactive since):
// the retry adopts the account the first attempt made and brings it in line (the update
// with every attribute, the deactivation), journaled with those calls and why. A retry
// with the very state the first attempt sent makes no call but the lookup.
func TestAdoptedCreateTakesItsState(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})

	t.Run("another state", func(t *testing.T) {
		app.set(func(a *nativeApp) { a.createThen = "drop" })
		if res := r.create(scim.UserType, user("ada@contoso.example", `,"title":"A"`)); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("first attempt: %+v (%v)", res, res.Err)
		}
		posts := app.posts()
		res := r.create(scim.UserType, `{"userName":"ada@contoso.example","active":false,"title":"B"}`)
		if res.Err != nil || app.posts() != posts {
			t.Fatalf("retry: %v, posts %d -> %d", res.Err, posts, app.posts())
		}
		native := r.nativeID(scim.UserType, res.ID)
		if acc := app.account(native); acc["title"] != "B" || acc["enabled"] != false || acc["login"] != "ada@contoso.example" {
			t.Fatalf("the adopted account %s holds what the first attempt sent: %v", native, acc)
		}
		rec := r.last()
		if rec.Outcome != change.Applied || !strings.Contains(reasonsOf(rec), "adopted account "+native) || !strings.Contains(reasonsOf(rec), "updated") {
			t.Fatalf("the record does not say the account was adopted and updated: %s %q", rec.Outcome, reasonsOf(rec))
		}
		if got := callsOf(rec); !slices.Contains(got, "PATCH /accounts/"+native) {
			t.Fatalf("the record lacks the update's call: %v", got)
		}
	})

	t.Run("the same state", func(t *testing.T) {
		app.set(func(a *nativeApp) { a.createThen = "500" })
		body := user("bob@contoso.example", `,"title":"A"`)
		if res := r.create(scim.UserType, body); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("first attempt: %+v (%v)", res, res.Err)
		}
		before := len(app.callLog())
		res := r.create(scim.UserType, body)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if got := app.callLog()[before:]; !slices.Equal(got, []string{"GET /accounts"}) {
			t.Fatalf("a retry with the state the first attempt sent made calls: %v", got)
		}
		if acc := app.account(r.nativeID(scim.UserType, res.ID)); acc["title"] != "A" || acc["enabled"] != true {
			t.Fatalf("the account: %v", acc)
		}
	})

	t.Run("a third attempt between", func(t *testing.T) {
		// The first attempt (title A) loses its answer, the second (title B) its lookup
		// (an outage: nothing created), the third carries A again: the account holds A,
		// which the first attempt sent, so nothing differs.
		app.set(func(a *nativeApp) { a.createThen = "drop" })
		if res := r.create(scim.UserType, user("cy@contoso.example", `,"title":"A"`)); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("first attempt: %+v (%v)", res, res.Err)
		}
		app.set(func(a *nativeApp) { a.fail = map[string]int{"GET /accounts": http.StatusBadGateway} })
		if res := r.create(scim.UserType, user("cy@contoso.example", `,"title":"B"`)); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("second attempt: %+v (%v)", res, res.Err)
		}
		app.set(func(a *nativeApp) { a.fail = map[string]int{} })
		before := len(app.callLog())
		res := r.create(scim.UserType, user("cy@contoso.example", `,"title":"A"`))
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if got := app.callLog()[before:]; !slices.Equal(got, []string{"GET /accounts"}) {
			t.Fatalf("calls: %v", got)
		}
	})
}

// TestAdoptedCatchUpTakesCurrentState: a user without an account in the app (created
// before the target was configured) gets one on its next change (catch-up create); that
// create's answer is lost, and that change is never committed. The next change carries
// another state than the lost create sent (another title; inactive and without the title
// the lost create sent): it adopts the account and brings it in line, a title that is
// gone cleared.
func TestAdoptedCatchUpTakesCurrentState(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	bare := r.build(rigOptions{}) // the directory before the target existed
	mk := func(name string) string {
		res := bare.Apply(testReq, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user(name)), Status: http.StatusCreated})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.ID
	}
	for _, c := range []struct {
		name, second string
		want         map[string]any
	}{
		{"another title", `[{"op":"replace","path":"title","value":"B"}]`, map[string]any{"title": "B", "enabled": true}},
		{"inactive, no title", `[{"op":"replace","path":"active","value":false}]`, map[string]any{"title": nil, "enabled": false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := strings.NewReplacer(" ", "-", ",", "").Replace(c.name) + "@contoso.example"
			id := mk(name)
			app.set(func(a *nativeApp) { a.createThen = "drop" })
			if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"A"}]`); res.Status != http.StatusServiceUnavailable {
				t.Fatalf("the catch-up create whose answer is lost: %+v (%v)", res, res.Err)
			}
			posts := app.posts()
			res := r.patch(scim.UserType, id, c.second)
			if res.Err != nil || app.posts() != posts {
				t.Fatalf("the next change: %v, posts %d -> %d", res.Err, posts, app.posts())
			}
			native := r.nativeID(scim.UserType, id)
			acc := app.account(native)
			for k, v := range c.want {
				if acc[k] != v {
					t.Fatalf("the adopted account %s: %s = %v, want %v (%v)", native, k, acc[k], v, acc)
				}
			}
			if rec := r.last(); rec.Outcome != change.Applied || !strings.Contains(reasonsOf(rec), "updated") {
				t.Fatalf("record: %s %q", rec.Outcome, reasonsOf(rec))
			}
		})
	}
}

// realignApp is an app of another shape: a create's id in a header (X-User-Id) and in a
// nested answer, an update that is a PUT of everything, a deactivation and a reactivation
// that are calls of their own (the create cannot carry the state), and a lookup answered
// from a search index that shows what the test says (cached), not the account.
type realignApp struct {
	mu     sync.Mutex
	next   int
	users  map[string]map[string]any
	calls  []string
	posts  int
	noID   int               // the next creates make the account and answer 200 {}
	failOn map[string]string // "POST /disable": act, then answer 503
	cached map[string]any    // the lookup's index shows these fields
}

func (a *realignApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, r.Method+" "+r.URL.Path)
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	_ = json.Unmarshal(body, &in)
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	seg := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/users":
		a.posts++
		a.next++
		id := fmt.Sprintf("u-%d", a.next)
		in["enabled"] = true
		a.users[id] = in
		if a.noID > 0 {
			a.noID--
			answer(http.StatusOK, map[string]any{})
			return
		}
		w.Header().Set("X-User-Id", id)
		answer(http.StatusCreated, map[string]any{"data": map[string]any{"user": map[string]any{"uid": id}}})
	case r.Method == http.MethodGet && r.URL.Path == "/v2/users":
		items := []any{}
		for id, u := range a.users {
			if u["login"] == r.URL.Query().Get("login") {
				item := map[string]any{"uid": id, "login": u["login"]}
				for k, v := range a.cached {
					item[k] = v
				}
				items = append(items, item)
			}
		}
		answer(http.StatusOK, map[string]any{"data": map[string]any{"users": items}})
	case len(seg) >= 3 && a.users[seg[2]] == nil:
		answer(http.StatusNotFound, map[string]any{"error": "no such user"})
	case len(seg) == 3 && r.Method == http.MethodPut:
		enabled := a.users[seg[2]]["enabled"]
		in["enabled"] = enabled
		a.users[seg[2]] = in
		answer(http.StatusOK, map[string]any{"data": map[string]any{"user": map[string]any{"uid": seg[2]}}})
	case len(seg) == 4 && r.Method == http.MethodPost && (seg[3] == "disable" || seg[3] == "enable"):
		a.users[seg[2]]["enabled"] = seg[3] == "enable"
		if a.failOn["POST /"+seg[3]] != "" {
			delete(a.failOn, "POST /"+seg[3])
			answer(http.StatusServiceUnavailable, map[string]any{"error": "busy"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		answer(http.StatusNotFound, map[string]any{"error": "no route"})
	}
}

func (a *realignApp) set(f func(*realignApp)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *realignApp) user(id string) (map[string]any, int, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]any{}
	for k, v := range a.users[id] {
		out[k] = v
	}
	return out, a.posts, slices.Clone(a.calls)
}

const realignMapping = `{"version": 1, "users": {
  "lookup": {"method": "GET", "path": "/v2/users?login={userName}", "items": "data.users", "id": "uid", "match": {"login": "{userName}"}},
  "events": {
    "create": {"method": "POST", "path": "/v2/users", "id": {"header": "X-User-Id"}, "body": {"login": "userName", "title": "title", "display": "displayName"}},
    "update": {"method": "PUT", "path": "/v2/users/{id}", "send": "all", "body": {"login": "userName", "title": "title", "display": "displayName"}},
    "deactivate": {"method": "POST", "path": "/v2/users/{id}/disable"},
    "reactivate": {"method": "POST", "path": "/v2/users/{id}/enable"}
  }}}`

// TestAdoptedAccountOfAnotherShape: the same with an app whose create gives its id in a
// header, whose update is a PUT of everything and whose state is set by calls of their own,
// and whose lookup answers from an index that shows the new state (the account holds the
// old one): the account is brought in line all the same; an attempt that failed after the
// create (its deactivation answered 503 after it acted) left an account whose state
// nothing proves, and the retry of an active user reactivates it.
func TestAdoptedAccountOfAnotherShape(t *testing.T) {
	app := &realignApp{users: map[string]map[string]any{}, failOn: map[string]string{}}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, realignMapping)})

	t.Run("another title, inactive, a lookup that shows the new title", func(t *testing.T) {
		app.set(func(a *realignApp) { a.noID = 1 })
		if res := r.create(scim.UserType, `{"userName":"ada@contoso.example","active":true,"title":"A","displayName":"Ada"}`); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("first attempt: %+v (%v)", res, res.Err)
		}
		app.set(func(a *realignApp) { a.cached = map[string]any{"title": "B", "display": "Ada"} })
		defer app.set(func(a *realignApp) { a.cached = nil })
		res := r.create(scim.UserType, `{"userName":"ada@contoso.example","active":false,"title":"B","displayName":"Ada"}`)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		native := r.nativeID(scim.UserType, res.ID)
		acc, posts, _ := app.user(native)
		if posts != 1 || acc["title"] != "B" || acc["display"] != "Ada" || acc["enabled"] != false {
			t.Fatalf("account %s: %v (creates %d)", native, acc, posts)
		}
		rec := r.last()
		if got := callsOf(rec); !slices.Contains(got, "PUT /v2/users/"+native) || !slices.Contains(got, "POST /v2/users/"+native+"/disable") ||
			!strings.Contains(reasonsOf(rec), "updated") {
			t.Fatalf("record: calls %v, reasons %q", got, reasonsOf(rec))
		}
	})

	t.Run("an attempt that failed after the create", func(t *testing.T) {
		app.set(func(a *realignApp) { a.failOn["POST /disable"] = "503" })
		if res := r.create(scim.UserType, `{"userName":"bob@contoso.example","active":false,"title":"A"}`); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("first attempt: %+v (%v)", res, res.Err)
		}
		res := r.create(scim.UserType, `{"userName":"bob@contoso.example","active":true,"title":"A"}`)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		native := r.nativeID(scim.UserType, res.ID)
		if acc, posts, _ := app.user(native); posts != 2 || acc["enabled"] != true || acc["title"] != "A" {
			t.Fatalf("account %s: %v (creates %d)", native, acc, posts)
		}
	})

	t.Run("an adopting attempt that failed after the account", func(t *testing.T) {
		// The first attempt (active) loses its answer; the second (inactive) adopts, sends
		// the same create body (it cannot carry the state), and its deactivation acts and
		// answers 503; the third (active again) cannot go by the first attempt's calls.
		app.set(func(a *realignApp) { a.noID = 1 })
		if res := r.create(scim.UserType, `{"userName":"dee@contoso.example","active":true,"title":"A"}`); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("first attempt: %+v (%v)", res, res.Err)
		}
		app.set(func(a *realignApp) { a.failOn["POST /disable"] = "503" })
		if res := r.create(scim.UserType, `{"userName":"dee@contoso.example","active":false,"title":"A"}`); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("second attempt: %+v (%v)", res, res.Err)
		}
		res := r.create(scim.UserType, `{"userName":"dee@contoso.example","active":true,"title":"A"}`)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		native := r.nativeID(scim.UserType, res.ID)
		if acc, _, _ := app.user(native); acc["enabled"] != true || acc["title"] != "A" {
			t.Fatalf("account %s: %v", native, acc)
		}
	})

	t.Run("the same state", func(t *testing.T) {
		app.set(func(a *realignApp) { a.noID = 1 })
		body := `{"userName":"cy@contoso.example","active":true,"title":"A"}`
		if res := r.create(scim.UserType, body); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("first attempt: %+v (%v)", res, res.Err)
		}
		_, _, calls := app.user("")
		res := r.create(scim.UserType, body)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if _, _, after := app.user(""); !slices.Equal(after[len(calls):], []string{"GET /v2/users"}) {
			t.Fatalf("calls: %v", after[len(calls):])
		}
	})
}

// TestQueuedAdoptionAsSent: a queued create whose delivery lost its answer is delivered
// again by the worker, which adopts the account; the delivery sends the state the first
// attempt sent, so nothing but the lookup is called.
func TestQueuedAdoptionAsSent(t *testing.T) {
	app, srv := newNativeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	app.set(func(a *nativeApp) { a.createThen = "drop" })
	id := r.mustCreate(scim.UserType, user("ada@contoso.example", `,"title":"A"`))
	r.settle()
	native := r.nativeID(scim.UserType, id)
	if got := app.callLog(); !slices.Equal(got, []string{"POST /accounts", "GET /accounts"}) || native == "" {
		t.Fatalf("calls %v, mapped %q", got, native)
	}
	if acc := app.account(native); acc["title"] != "A" {
		t.Fatalf("account: %v", acc)
	}
	if rec := r.last(); !strings.Contains(reasonsOf(rec), "adopted account "+native) || strings.Contains(reasonsOf(rec), "updated") {
		t.Fatalf("record: %q", reasonsOf(rec))
	}
}

// TestAdoptedAccountKeepsWhatThePolicyDrops: bringing an adopted account in line sends
// every attribute the update maps but those the policy's drop_attributes keeps from the
// app: the app's own value of such a field is not cleared.
func TestAdoptedAccountKeepsWhatThePolicyDrops(t *testing.T) {
	app, srv := newNativeApp(t)
	pol := writePolicy(t, `package scimgate

decision := {"allow": true, "drop_attributes": ["title"]}
`)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false), policy: pol})
	app.set(func(a *nativeApp) { a.createThen = "drop" })
	if res := r.create(scim.UserType, user("ada@contoso.example", `,"title":"A"`)); res.Status != http.StatusServiceUnavailable {
		t.Fatalf("first attempt: %+v (%v)", res, res.Err)
	}
	app.set(func(a *nativeApp) {
		for _, acc := range a.accounts {
			acc["title"] = "the app's own"
		}
	})
	res := r.create(scim.UserType, `{"userName":"ada@contoso.example","active":false,"title":"B"}`)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	native := r.nativeID(scim.UserType, res.ID)
	if acc := app.account(native); acc["title"] != "the app's own" || acc["enabled"] != false {
		t.Fatalf("account %s: %v", native, acc)
	}
	if got := callsOf(r.last()); !slices.Contains(got, "PATCH /accounts/"+native) {
		t.Fatalf("not brought in line: %v", got)
	}
}
