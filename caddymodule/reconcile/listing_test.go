package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// listApp is an app not of the demo app's shape: accounts at /accounts whose ids are JSON
// values of its choosing (numbers past 2^53, strings that differ only in case), a lookup by
// login, a deactivation, and a listing that each test answers as it likes (list).
type listApp struct {
	mu       sync.Mutex
	accounts []map[string]any // in creation order; "id" is a json.RawMessage
	nextID   func(n int) json.RawMessage
	// list answers GET /accounts without login=; accounts is a copy of the app's.
	list func(w http.ResponseWriter, r *http.Request, accounts []map[string]any)
	// onCreate, when set, sees a create after the app made the account; true drops the
	// connection instead of answering (the answer is lost).
	onCreate    func() bool
	creates     int
	deactivated []string
}

func newListApp(t *testing.T) (*listApp, string) {
	a := &listApp{nextID: func(n int) json.RawMessage { return json.RawMessage(strconv.Itoa(n)) }}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv.URL
}

// add makes an account in the app behind the gateway's back and returns its id.
func (a *listApp) add(login string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addLocked(login)
}

func (a *listApp) addLocked(login string) string {
	id := a.nextID(len(a.accounts) + 1)
	a.accounts = append(a.accounts, map[string]any{"id": id, "login": login, "active": true})
	return strings.Trim(string(id), `"`)
}

func (a *listApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/accounts":
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		login, _ := in["login"].(string)
		a.creates++
		id := a.addLocked(login)
		drop := a.onCreate != nil && a.onCreate()
		a.mu.Unlock()
		if drop {
			panic(http.ErrAbortHandler) // the app made the account; its answer is lost
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": %s}`, a.rawID(id))
	case r.Method == http.MethodGet && r.URL.Path == "/accounts" && r.URL.Query().Has("login"):
		items := []map[string]any{}
		for _, acc := range a.accounts {
			if strings.EqualFold(acc["login"].(string), r.URL.Query().Get("login")) {
				items = append(items, acc)
			}
		}
		a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
	case r.Method == http.MethodGet && r.URL.Path == "/accounts":
		accounts := make([]map[string]any, len(a.accounts))
		for i, acc := range a.accounts {
			accounts[i] = map[string]any{"id": acc["id"], "login": acc["login"], "active": acc["active"]}
		}
		list := a.list
		a.mu.Unlock()
		list(w, r, accounts)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/deactivate"):
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/accounts/"), "/deactivate")
		a.deactivated = append(a.deactivated, id)
		for _, acc := range a.accounts {
			if strings.Trim(string(acc["id"].(json.RawMessage)), `"`) == id {
				acc["active"] = false
			}
		}
		a.mu.Unlock()
		fmt.Fprint(w, `{}`)
	default:
		a.mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error": "no such thing"}`)
	}
}

// rawID is the JSON of the account with id id (as the app created it).
func (a *listApp) rawID(id string) string {
	for _, acc := range a.accounts {
		if raw := acc["id"].(json.RawMessage); strings.Trim(string(raw), `"`) == id {
			return string(raw)
		}
	}
	return strconv.Quote(id)
}

// stats returns the creates the app received and the accounts it deactivated.
func (a *listApp) stats() (int, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creates, append([]string(nil), a.deactivated...)
}

// pageOf writes accounts[from:from+n] (bounded) under "items", with extra keys.
func pageOf(w http.ResponseWriter, accounts []map[string]any, from, n int, extra map[string]any) {
	body := map[string]any{}
	for k, v := range extra {
		body[k] = v
	}
	from = min(max(from, 0), len(accounts))
	body["items"] = accounts[from:min(from+n, len(accounts))]
	_ = json.NewEncoder(w).Encode(body)
}

// listMapping is a users mapping of listApp whose list follows paging (JSON).
func listMapping(paging string) string {
	return `{"version": 1, "users": {
	"lookup": {"method": "GET", "path": "/accounts?login={userName}", "items": "items", "id": "id", "match": {"login": "{userName}"}},
	"list": {"method": "GET", "path": "/accounts", "items": "items", "id": "id", "paging": ` + paging + `},
	"events": {
		"create": {"method": "POST", "path": "/accounts", "id": "id", "body": {"login": "userName", "active": "active"}},
		"deactivate": {"method": "POST", "path": "/accounts/{id}/deactivate", "idempotent": true}}}}`
}

// newListRig is a directory and engine whose target is app, through mapping m (JSON).
func newListRig(t *testing.T, url, m string) *rig {
	t.Helper()
	dir := t.TempDir()
	s := teststore.Open(t, dir)
	j, err := journal.Open(s.DB(), journal.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close(); _ = s.Close() })
	mapFile := filepath.Join(dir, "list.json")
	if err := os.WriteFile(mapFile, []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	mp, err := mapping.Load(mapFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := legacy.New(legacy.Options{BaseURL: url, Timeout: 5 * time.Second, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	r := &rig{t: t, store: s, j: j, shared: provision.NewShared(nil), target: &provision.Target{Name: "list", Mapping: mp, Client: c}}
	if r.eng, err = provision.New(provision.Config{Store: s, Journal: j, Shared: r.shared, Target: r.target}); err != nil {
		t.Fatal(err)
	}
	return r
}

// pageParam reads an integer query parameter (def when absent).
func pageParam(r *http.Request, name string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil {
		return v
	}
	return def
}

// seedListApp provisions five users into the app through the engine and adds one account
// behind the gateway's back (an orphan).
func seedListApp(t *testing.T, r *rig, app *listApp) {
	t.Helper()
	for i := range 5 {
		r.create(r.eng, scim.UserType, user(fmt.Sprintf("l%d", i), "Engineer", true))
	}
	app.add("stray@example.com")
}

// byPage answers page-number paging (page, per_page) over the accounts, 2 a page.
func byPage(w http.ResponseWriter, r *http.Request, accounts []map[string]any) {
	p := pageParam(r, "page", 1)
	pageOf(w, accounts, (p-1)*2, 2, nil)
}

const pagePaging = `{"type": "page", "param": "page", "size": 2, "size_param": "per_page", "max_pages": 20}`

// TestReconcileUntrustworthyListings: a listing that is not a complete, trustworthy
// picture of the app (a page without its list, a page that is no JSON, a proxy's 404,
// paging that loops or never ends) leaves the report incomplete, with a note naming the
// page and what was wrong, and --fix (orphans disable) then repairs nothing: no account
// is created, none deactivated.
func TestReconcileUntrustworthyListings(t *testing.T) {
	for _, tc := range []struct {
		name, paging string
		list         func(w http.ResponseWriter, r *http.Request, accounts []map[string]any)
		note         []string // what the report's notes must say
	}{
		{"items null", pagePaging, func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			if pageParam(r, "page", 1) == 2 {
				fmt.Fprint(w, `{"items": null}`)
				return
			}
			byPage(w, r, a)
		}, []string{"page 2", `"items" holds null, not a list`}},
		{"items missing", pagePaging, func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			if pageParam(r, "page", 1) == 2 {
				fmt.Fprint(w, `{"data": []}`)
				return
			}
			byPage(w, r, a)
		}, []string{"page 2", `no list at "items"`}},
		{"items an object", pagePaging, func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			if pageParam(r, "page", 1) == 2 {
				fmt.Fprint(w, `{"items": {"id": 3}}`)
				return
			}
			byPage(w, r, a)
		}, []string{"page 2", "not a list"}},
		{"items a string", `{"type": "cursor", "cursor": "next", "param": "cursor"}`, func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			if r.URL.Query().Get("cursor") == "b" {
				fmt.Fprint(w, `{"items": "none", "next": null}`)
				return
			}
			pageOf(w, a, 0, 2, map[string]any{"next": "b"})
		}, []string{"page 2", "not a list"}},
		{"an HTML page with 200", pagePaging, func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			if pageParam(r, "page", 1) == 2 {
				w.Header().Set("Content-Type", "text/html")
				fmt.Fprint(w, `<html><body>Please sign in</body></html>`)
				return
			}
			byPage(w, r, a)
		}, []string{"page 2", "an HTML page"}},
		{"a proxy 404 for page 3", pagePaging, func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			if pageParam(r, "page", 1) == 3 {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, `<html>Not Found</html>`)
				return
			}
			byPage(w, r, a)
		}, []string{"page 3", "404"}},
		{"a next link back to page 1", `{"type": "link", "max_pages": 20}`, func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			p := pageParam(r, "page", 1)
			next := fmt.Sprintf("/accounts?page=%d", p+1)
			if p == 3 {
				next = "/accounts" // the first page's own address
			}
			w.Header().Set("Link", "<"+next+`>; rel="next"`)
			pageOf(w, a, (p-1)*2, 2, nil)
		}, []string{"page 3: legacy: its next page is page 1 again"}},
		{"a cursor that comes back", `{"type": "cursor", "cursor": "next", "param": "cursor", "max_pages": 20}`, func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			next := map[string]string{"": "b", "b": "c", "c": "b"}[r.URL.Query().Get("cursor")]
			pageOf(w, a, 0, 2, map[string]any{"next": next})
		}, []string{"page 3: legacy: its next page is page 2 again"}},
		{"paging that never ends", `{"type": "cursor", "cursor": "next", "param": "cursor", "max_pages": 5}`, func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			n := pageParam(r, "cursor", 0)
			pageOf(w, a, n*2, 2, map[string]any{"next": strconv.Itoa(n + 1)})
		}, []string{"page 5: legacy: the listing has more pages than its max_pages (5)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, url := newListApp(t)
			app.list = byPage
			r := newListRig(t, url, listMapping(tc.paging))
			seedListApp(t, r, app)
			app.mu.Lock()
			app.list = tc.list
			app.mu.Unlock()
			created, _ := app.stats()
			rep, err := r.reconciler(Options{Orphans: OrphansDisable}).Run(context.Background(), true, "test")
			if err != nil {
				t.Fatal(err)
			}
			notes := strings.Join(rep.Notes, "\n")
			if strings.Contains(notes, "a second time") {
				t.Errorf("a listing that failed is said to have overlapped: %s", notes)
			}
			if rep.Complete || rep.Counts.Missing != 0 || rep.Counts.Fixed+rep.Counts.FixFailed != 0 {
				t.Errorf("complete %v, missing %d, fixed %d, failed %d; want an incomplete report that fixes nothing\nnotes: %s",
					rep.Complete, rep.Counts.Missing, rep.Counts.Fixed, rep.Counts.FixFailed, notes)
			}
			for _, want := range tc.note {
				if !strings.Contains(notes, want) {
					t.Errorf("notes do not say %q:\n%s", want, notes)
				}
			}
			if n, deactivated := app.stats(); n != created || len(deactivated) > 0 {
				t.Errorf("%d creates and deactivations %v sent from a listing that proves nothing", n-created, deactivated)
			}
		})
	}
}

// TestReconcileAppCapsItsPageSize: an app that gives fewer accounts a page than the list
// asks for (per_page=4, and it caps pages at 2) has not ended its listing with its first
// short page: the reconcile reads on to the empty page, and reports the one orphan, not
// the accounts of the pages it did not read as missing (which --fix would create again).
func TestReconcileAppCapsItsPageSize(t *testing.T) {
	for _, paging := range []string{
		`{"type": "page", "param": "page", "size": 4, "size_param": "per_page"}`,
		`{"type": "offset", "param": "offset", "size": 4, "size_param": "limit"}`,
	} {
		app, url := newListApp(t)
		var asked []string
		app.list = func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			asked = append(asked, r.URL.RawQuery)
			if r.URL.Query().Has("offset") {
				pageOf(w, a, pageParam(r, "offset", 0), 2, nil)
				return
			}
			pageOf(w, a, (pageParam(r, "page", 1)-1)*2, 2, nil)
		}
		r := newListRig(t, url, listMapping(paging))
		seedListApp(t, r, app)
		created, _ := app.stats()
		rep, err := r.reconciler(Options{}).Run(context.Background(), true, "test")
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(rep); !rep.Complete || rep.Counts.AppUsers != 6 || !slices.Equal(got, []string{"orphaned User stray@example.com"}) {
			t.Errorf("%s: complete %v, %d users of the app, findings %v; want all 6 read and the orphan only (pages asked: %v)\nnotes %v",
				paging, rep.Complete, rep.Counts.AppUsers, got, asked, rep.Notes)
		}
		if n, _ := app.stats(); n != created {
			t.Errorf("%s: %d accounts created again", paging, n-created)
		}
	}
}

// TestReconcileFixAfterALostAnswer: a repair's create that the app made but whose answer
// was lost leaves an account the directory does not link. The next reconcile lists it as an
// orphan and its user as missing; --fix with orphans disable links the account (the
// lookup finds it) and must not then deactivate it as the orphan it no longer is, nor make
// a second one.
func TestReconcileFixAfterALostAnswer(t *testing.T) {
	app, url := newListApp(t)
	app.list = byPage
	r := newListRig(t, url, listMapping(pagePaging))
	seedListApp(t, r, app)
	r.plain, _ = provision.New(provision.Config{Store: r.store, Journal: r.j, Shared: r.shared})
	late := r.create(r.plain, scim.UserType, user("late", "Engineer", true))
	app.mu.Lock()
	app.onCreate = func() bool { return true }
	app.mu.Unlock()
	rc := r.reconciler(Options{Orphans: OrphansDisable})
	rep, err := rc.Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.Missing != 1 || rep.Counts.FixFailed != 1 {
		t.Fatalf("first run: counts %+v, findings %v", rep.Counts, keys(rep))
	}
	app.mu.Lock()
	app.onCreate = nil
	app.mu.Unlock()
	created, _ := app.stats()
	rep, err = rc.Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	fixes := map[string]string{}
	for _, f := range rep.Findings {
		fixes[findingKey(f)] = f.Fix
	}
	if got := fixes["orphaned User late@example.com"]; !strings.Contains(got, "it is no orphan") {
		t.Errorf("the orphan that was linked: fix %q", got)
	}
	if n, deactivated := app.stats(); n != created || len(deactivated) != 1 || deactivated[0] != "6" {
		t.Errorf("second run: %d creates, deactivated %v; want none and the stray account (6) only", n-created, deactivated)
	}
	native := r.nativeID(scim.UserType, late)
	app.mu.Lock()
	for _, acc := range app.accounts {
		if acc["login"] == "late@example.com" && acc["active"] != true {
			t.Errorf("late's account %s was deactivated", native)
		}
	}
	app.mu.Unlock()
	if rep, err = rc.Run(context.Background(), false, "test"); err != nil || len(rep.Findings) != 1 {
		t.Errorf("third run: %v, findings %v; want the disabled stray only", err, keys(rep))
	}
}

// TestReconcileIDsOfOtherShapes: numeric ids past 2^53 (which a float would round onto
// each other) and ids that differ only in case (an app whose ids are case-sensitive) name
// distinct accounts: the one account the gateway never made is the only orphan, and --fix
// with orphans disable deactivates it alone.
func TestReconcileIDsOfOtherShapes(t *testing.T) {
	for name, nextID := range map[string]func(int) json.RawMessage{
		"past 2^53": func(n int) json.RawMessage { return json.RawMessage(strconv.Itoa(9007199254740992 + n)) },
		"case": func(n int) json.RawMessage {
			if n == 6 {
				return json.RawMessage(`"acc-a"`) // the stray: account 1's id in lower case
			}
			return json.RawMessage(fmt.Sprintf(`"ACC-%c"`, 'A'+n-1))
		},
	} {
		t.Run(name, func(t *testing.T) {
			app, url := newListApp(t)
			app.list, app.nextID = byPage, nextID
			r := newListRig(t, url, listMapping(pagePaging))
			seedListApp(t, r, app)
			stray := strings.Trim(string(nextID(6)), `"`)
			rep, err := r.reconciler(Options{Orphans: OrphansDisable}).Run(context.Background(), true, "test")
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(rep); !rep.Complete || rep.Counts.AppUsers != 6 || !slices.Equal(got, []string{"orphaned User stray@example.com"}) || rep.Findings[0].NativeID != stray {
				t.Errorf("complete %v, %d users of the app, findings %+v; want the stray %s only", rep.Complete, rep.Counts.AppUsers, rep.Findings, stray)
			}
			if _, deactivated := app.stats(); !slices.Equal(deactivated, []string{stray}) {
				t.Errorf("deactivated %v, want the stray %s only", deactivated, stray)
			}
		})
	}
}

// TestReconcileTotalThatChanges: with the list's paging "total" (the app's count of every
// account, as its totalResults), a listing during which the app changed is known
// incomplete: here an account is deleted in the app after the first offset page, so the
// pages shift and the next account is on no page (it would be reported missing and, with
// no lookup to find it, made a second time). The report is incomplete, naming the page
// and the counts, and --fix creates nothing. So are pages that do not add up to the total.
func TestReconcileTotalThatChanges(t *testing.T) {
	const paging = `{"type": "offset", "param": "offset", "size": 2, "size_param": "limit", "total": "meta.total"}`
	noLookup := strings.Replace(listMapping(paging), `"lookup": {"method": "GET", "path": "/accounts?login={userName}", "items": "items", "id": "id", "match": {"login": "{userName}"}},`, "", 1)
	for name, tc := range map[string]struct {
		list func(w http.ResponseWriter, r *http.Request, a []map[string]any)
		note string
	}{
		"shrinks": {func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			off := pageParam(r, "offset", 0)
			if off > 0 {
				a = a[1:] // account 1 was deleted after page 1 was read
			}
			pageOf(w, a, off, 2, map[string]any{"meta": map[string]any{"total": len(a)}})
		}, "page 2: legacy: the app's count of all items went from 6 (page 1) to 5"},
		"does not add up": {func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			off := pageParam(r, "offset", 0)
			total := len(a)
			if off >= 2 {
				a = append(a[:2:2], a[3:]...) // account 3 is on no page
			}
			pageOf(w, a, off, 2, map[string]any{"meta": map[string]any{"total": total}})
		}, "page 3: legacy: it is the last, but the pages listed 5 items where the app counts 6"},
		"a page without it": {func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
			pageOf(w, a, pageParam(r, "offset", 0), 2, nil)
		}, `page 1: legacy: the page has no count of all items at "meta.total"`},
	} {
		t.Run(name, func(t *testing.T) {
			app, url := newListApp(t)
			app.list = func(w http.ResponseWriter, r *http.Request, a []map[string]any) {
				pageOf(w, a, pageParam(r, "offset", 0), 2, map[string]any{"meta": map[string]any{"total": len(a)}})
			}
			r := newListRig(t, url, noLookup)
			seedListApp(t, r, app)
			rc := r.reconciler(Options{Orphans: OrphansDisable})
			if rep, err := rc.Run(context.Background(), false, "test"); err != nil || !rep.Complete || len(rep.Findings) != 1 || rep.Counts.AppUsers != 6 {
				t.Fatalf("a listing that adds up: %v, %+v, findings %v, notes %v", err, rep.Counts, keys(rep), rep.Notes)
			}
			app.mu.Lock()
			app.list = tc.list
			app.mu.Unlock()
			created, _ := app.stats()
			rep, err := rc.Run(context.Background(), true, "test")
			if err != nil {
				t.Fatal(err)
			}
			notes := strings.Join(rep.Notes, "\n")
			if rep.Complete || rep.Counts.Missing != 0 || rep.Counts.Fixed+rep.Counts.FixFailed != 0 || !strings.Contains(notes, tc.note) {
				t.Errorf("complete %v, missing %d, fixed %d; notes:\n%s\nwant an incomplete report that fixes nothing, saying %q", rep.Complete, rep.Counts.Missing, rep.Counts.Fixed, notes, tc.note)
			}
			if n, deactivated := app.stats(); n != created || len(deactivated) > 0 {
				t.Errorf("%d creates and deactivations %v sent", n-created, deactivated)
			}
		})
	}
}
