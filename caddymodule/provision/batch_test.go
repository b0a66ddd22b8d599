package provision

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
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Tests of batch creates in queued delivery, against bulkApp, a real HTTP app on loopback
// of another shape than the demo app: string keys, a bulk import that takes a bare list
// and answers a bare list in reverse order (so only matching by value pairs results with
// items), refusals per item, and answers that prove nothing.

// bulkApp is a people directory with a bulk import.
type bulkApp struct {
	mu     sync.Mutex
	next   int
	people map[string]string // handle (lower case) -> key
	posts  map[string]int    // handle -> creates received (single or in a batch)
	calls  []string
	// mode is what the next imports do: "" answer; "html" a sign-in page with 200 (nothing
	// created); "proxy404" a proxy's 404 page (nothing created); "500"; "429" (with
	// Retry-After); "400" the app refuses the whole batch; "fewer" create every item but
	// leave the last out of the answer; "drop" create every item and close the connection.
	mode string
}

func newBulkApp(t *testing.T) (*bulkApp, *httptest.Server) {
	a := &bulkApp{people: map[string]string{}, posts: map[string]int{}}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv
}

func (a *bulkApp) set(mode string) {
	a.mu.Lock()
	a.mode = mode
	a.mu.Unlock()
}

// create makes a person, or says why not; a.mu is held.
func (a *bulkApp) create(handle string) (key, failure string) {
	h := strings.ToLower(handle)
	a.posts[h]++
	if h == "" {
		return "", "a handle is required"
	}
	if _, ok := a.people[h]; ok {
		return "", "handle " + handle + " is already in use"
	}
	a.next++
	key = fmt.Sprintf("p-%03d", a.next)
	a.people[h] = key
	return key, ""
}

func (a *bulkApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, r.Method+" "+r.URL.Path)
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/people:import":
		a.importPeople(w, body, answer)
	case r.Method == http.MethodPost && r.URL.Path == "/v2/people":
		var in struct{ Handle string }
		_ = json.Unmarshal(body, &in)
		key, failure := a.create(in.Handle)
		if failure != "" {
			answer(http.StatusConflict, map[string]any{"failure": failure})
			return
		}
		answer(http.StatusCreated, map[string]any{"key": key})
	case r.Method == http.MethodGet && r.URL.Path == "/v2/people":
		found := []any{}
		if key, ok := a.people[strings.ToLower(r.URL.Query().Get("handle"))]; ok {
			found = append(found, map[string]any{"key": key})
		}
		answer(http.StatusOK, map[string]any{"people": found})
	default:
		answer(http.StatusNotFound, map[string]any{"failure": "no route"})
	}
}

// importPeople is the bulk import; a.mu is held.
func (a *bulkApp) importPeople(w http.ResponseWriter, body []byte, answer func(int, any)) {
	switch a.mode {
	case "html":
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Sign in to continue</body></html>")
		return
	case "proxy404":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "<html><body>404 Not Found</body><hr>nginx</html>")
		return
	case "500":
		answer(http.StatusInternalServerError, map[string]any{"failure": "database unavailable"})
		return
	case "429":
		w.Header().Set("Retry-After", "1")
		answer(http.StatusTooManyRequests, map[string]any{"failure": "slow down"})
		return
	case "400":
		answer(http.StatusBadRequest, map[string]any{"failure": "imports are closed today"})
		return
	}
	var in []struct {
		Handle string `json:"handle"`
		Title  string `json:"title"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		answer(http.StatusBadRequest, map[string]any{"failure": "not a list"})
		return
	}
	out := make([]any, 0, len(in))
	for _, p := range in {
		key, failure := a.create(p.Handle)
		if failure != "" {
			out = append(out, map[string]any{"handle": p.Handle, "failure": failure})
		} else {
			out = append(out, map[string]any{"handle": p.Handle, "key": key})
		}
	}
	slices.Reverse(out) // results in another order than the items: only a match pairs them
	switch a.mode {
	case "fewer":
		out = out[1:] // the last item sent (first in the reversed list) is left out
	case "drop":
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		_ = conn.Close()
		return
	}
	answer(http.StatusOK, out)
}

// count returns how many calls of method and path the app answered.
func (a *bulkApp) count(call string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if c == call {
			n++
		}
	}
	return n
}

// keyOf returns the key of handle ("" without one).
func (a *bulkApp) keyOf(handle string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.people[strings.ToLower(handle)]
}

const bulkMapping = `{
  "version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/v2/people?handle={userName}", "id": "people.0.key"},
    "events": {
      "create": {"method": "POST", "path": "/v2/people", "id": "key", "body": {"handle": {"from": "userName", "required": true}, "title": "title"}}
    },
    "create_batch": {"method": "POST", "path": "/v2/people:import", "batch_size": 4, "body_items": "", "items": "",
      "id": "key", "match": {"handle": "{userName}"}, "item_error": "failure"}
  }
}`

// bulkRig is a rig on bulkApp in queued delivery, paused, so that the creates the test
// makes are all ready when it resumes.
func bulkRig(t *testing.T, url string) *rig {
	t.Helper()
	target := newMappedTarget(t, url, bulkMapping)
	target.Delivery = withMode(outbox.Queued)
	r := newRig(t, rigOptions{target: target})
	if err := r.eng.Worker().Pause("test"); err != nil {
		t.Fatal(err)
	}
	return r
}

// queueUsers creates the users (queued) and returns their SCIM ids by name.
func queueUsers(r *rig, names ...string) map[string]string {
	ids := map[string]string{}
	for _, n := range names {
		ids[n] = r.mustCreate(scim.UserType, user(n, `,"title":"T"`))
	}
	return ids
}

// TestBatchCreateMatchedByValue: ready creates go in batch calls of batch_size; results
// answered in another order are paired with their items by value; an item the app refuses
// is a dead letter with what the app said of it, the others are delivered, each with its
// record; the id map holds the app's string keys.
func TestBatchCreateMatchedByValue(t *testing.T) {
	app, srv := newBulkApp(t)
	app.mu.Lock()
	app.create("taken@contoso.example") // made in the app before, not by the gateway
	app.mu.Unlock()
	r := bulkRig(t, srv.URL)
	names := []string{"a1@contoso.example", "a2@contoso.example", "taken@contoso.example", "a3@contoso.example", "a4@contoso.example", "a5@contoso.example"}
	ids := queueUsers(r, names...)
	if err := r.eng.Worker().Resume("test"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if n := app.count("POST /v2/people:import"); n != 2 {
		t.Errorf("%d batch calls for 6 creates with batch_size 4, want 2 (%v)", n, app.calls)
	}
	if n := app.count("POST /v2/people"); n != 0 {
		t.Errorf("%d single creates, want none", n)
	}
	for _, n := range names {
		got := r.nativeID(scim.UserType, ids[n])
		if n == "taken@contoso.example" {
			if got != "" {
				t.Errorf("the refused item has native id %q", got)
			}
			continue
		}
		if got == "" || got != app.keyOf(n) {
			t.Errorf("%s: native id %q, the app's key %q", n, got, app.keyOf(n))
		}
	}
	tasks := r.tasks()
	if len(tasks) != 1 || !tasks[0].Dead || tasks[0].ID != ids["taken@contoso.example"] || !strings.Contains(tasks[0].LastError, "handle taken@contoso.example is already in use") {
		t.Fatalf("the outbox holds %+v, want the refused create as a dead letter saying why", tasks)
	}
	delivered := 0
	for _, rec := range r.records() {
		if rec.Outcome == change.Delivered {
			delivered++
			if rec.Backend == nil || rec.Backend.URL != "/v2/people:import" || rec.NativeID == "" {
				t.Errorf("a delivery record does not name the batch call and the id: %+v", rec)
			}
		}
	}
	if delivered != 5 {
		t.Errorf("%d delivery records, want 5", delivered)
	}
	r.verify()
}

// TestBatchCreateUnproven: an answer that proves nothing for some or every item (a sign-in
// page with 200, a proxy's 404, an answer that leaves an item out, a lost answer, an app
// that fails or asks to wait) acknowledges none of them; the items are retried with
// backoff, on their own, each looked up first where the app may have made it, and every
// account exists once in the app when the app answers again. The app's own refusal of the
// whole batch retries each item at once on its own.
func TestBatchCreateUnproven(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		created bool // the app makes the items although its answer does not say so
		lookups bool // each item is looked up before it is sent again
	}{
		{"html", false, true},
		{"proxy404", false, true},
		{"500", false, true},
		{"429", false, false},
		{"400", false, false},
		{"fewer", true, true},
		{"drop", true, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			app, srv := newBulkApp(t)
			app.set(tc.mode)
			r := bulkRig(t, srv.URL)
			names := []string{"b1@contoso.example", "b2@contoso.example", "b3@contoso.example"}
			ids := queueUsers(r, names...)
			if err := r.eng.Worker().Resume("test"); err != nil {
				t.Fatal(err)
			}
			// The first attempt fails (for "fewer", for the item left out); then the app
			// answers normally again.
			for i := 0; app.count("POST /v2/people:import") == 0; i++ {
				if i == 2000 {
					t.Fatal("no batch call")
				}
				r.eng.Worker().Stats()
				waitShort()
			}
			app.set("")
			r.settle()
			if n := app.count("POST /v2/people:import"); n != 1 {
				t.Errorf("%d batch calls, want 1: the retries go on their own", n)
			}
			for _, n := range names {
				if got := r.nativeID(scim.UserType, ids[n]); got == "" || got != app.keyOf(n) {
					t.Errorf("%s: native id %q, the app's key %q", n, got, app.keyOf(n))
				}
				app.mu.Lock()
				posts := app.posts[n]
				app.mu.Unlock()
				if posts != 1 {
					t.Errorf("%s reached the app %d times, want once", n, posts)
				}
			}
			if tasks := r.tasks(); len(tasks) != 0 {
				t.Errorf("tasks left: %+v", tasks)
			}
			singles, lookups := app.count("POST /v2/people"), app.count("GET /v2/people")
			wantSingles := 3
			switch {
			case tc.mode == "fewer":
				wantSingles = 0 // two were acknowledged, the third adopted
			case tc.created:
				wantSingles = 0
			}
			if singles != wantSingles {
				t.Errorf("%d single creates after the batch, want %d", singles, wantSingles)
			}
			switch {
			case tc.mode == "fewer" && lookups != 1:
				t.Errorf("%d lookups, want 1 (the item the answer left out)", lookups)
			case tc.mode != "fewer" && tc.lookups && lookups != 3:
				t.Errorf("%d lookups, want 3", lookups)
			case !tc.lookups && lookups != 0:
				t.Errorf("%d lookups, want none (the app did not act)", lookups)
			}
			failed := 0
			for _, rec := range r.records() {
				if rec.Outcome == change.Failed {
					failed++
					if rec.Backend == nil || rec.Backend.URL != "/v2/people:import" || rec.Error == "" {
						t.Errorf("a failed attempt's record does not say what the batch call did: %+v", rec)
					}
				}
			}
			if wantFailed := map[bool]int{true: 1, false: 3}[tc.mode == "fewer"]; failed != wantFailed {
				t.Errorf("%d failed attempts journaled, want %d", failed, wantFailed)
			}
			r.verify()
		})
	}
}

// TestBatchCreateByPosition: without "match", results pair with items by position; an
// answer in another order would pair them wrongly, so the app here answers in order.
func TestBatchCreateByPosition(t *testing.T) {
	var mu sync.Mutex
	next := 0
	byHandle := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		var in struct {
			Data struct{ People []struct{ Handle string } }
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		var res []string
		for _, p := range in.Data.People {
			next++
			byHandle[p.Handle] = fmt.Sprintf("k%d", next)
			res = append(res, fmt.Sprintf(`{"ok":true,"person":{"key":%q}}`, byHandle[p.Handle]))
		}
		fmt.Fprintf(w, `{"outcome":{"items":[%s]}}`, strings.Join(res, ","))
	}))
	t.Cleanup(srv.Close)
	target := newMappedTarget(t, srv.URL, `{"version": 1, "users": {
	    "lookup": {"method": "GET", "path": "/v2/people?handle={userName}", "id": "people.0.key"},
	    "events": {"create": {"method": "POST", "path": "/v2/people", "id": "key", "body": {"handle": "userName"}}},
	    "create_batch": {"method": "POST", "path": "/v2/bulk", "body_items": "data.people", "items": "outcome.items", "id": "person.key"}}}`)
	target.Delivery = withMode(outbox.Queued)
	r := newRig(t, rigOptions{target: target})
	if err := r.eng.Worker().Pause("test"); err != nil {
		t.Fatal(err)
	}
	ids := queueUsers(r, "c1@contoso.example", "c2@contoso.example", "c3@contoso.example")
	if err := r.eng.Worker().Resume("test"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	for n, id := range ids {
		mu.Lock()
		want := byHandle[n]
		mu.Unlock()
		if got := r.nativeID(scim.UserType, id); got == "" || got != want {
			t.Errorf("%s: native id %q, want %q", n, got, want)
		}
	}
	if next != 3 {
		t.Errorf("%d accounts made, want 3", next)
	}
}

// TestBatchCreateOnlyQueued: the batch call is made in queued delivery only; immediate
// delivery sends each create on its own.
func TestBatchCreateOnlyQueued(t *testing.T) {
	app, srv := newBulkApp(t)
	target := newMappedTarget(t, srv.URL, bulkMapping)
	r := newRig(t, rigOptions{target: target})
	queueUsers(r, "d1@contoso.example", "d2@contoso.example")
	if app.count("POST /v2/people") != 2 || app.count("POST /v2/people:import") != 0 {
		t.Errorf("immediate delivery: %v", app.calls)
	}
	if r.eng.BatchSize(scim.UserType) != 0 {
		t.Error("BatchSize is not 0 in immediate delivery")
	}
}

// waitShort is the pause of a bounded polling loop.
func waitShort() { time.Sleep(5 * time.Millisecond) }

// TestBatchCreateLarge: a batch of 40 creates is one call, even with max_concurrent 1 (a
// batch is one attempt, which the creates after the first join); its intents and outcomes
// are committed in as few transactions as the store takes (on etcd, several: 128
// operations each at most), and every item is delivered.
func TestBatchCreateLarge(t *testing.T) {
	app, srv := newBulkApp(t)
	target := newMappedTarget(t, srv.URL, strings.Replace(bulkMapping, `"batch_size": 4`, `"batch_size": 40`, 1))
	target.Delivery = withMode(outbox.Queued)
	target.Delivery.MaxConcurrent = 1
	r := newRig(t, rigOptions{target: target})
	if err := r.eng.Worker().Pause("test"); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 40 {
		names = append(names, fmt.Sprintf("e%02d@contoso.example", i))
	}
	ids := queueUsers(r, names...)
	if err := r.eng.Worker().Resume("test"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if n, single := app.count("POST /v2/people:import"), app.count("POST /v2/people"); n != 1 || single != 0 {
		t.Errorf("%d batch calls and %d single creates, want 1 and none", n, single)
	}
	for _, n := range names {
		if got := r.nativeID(scim.UserType, ids[n]); got == "" || got != app.keyOf(n) {
			t.Errorf("%s: native id %q, the app's key %q", n, got, app.keyOf(n))
		}
	}
	if tasks := r.tasks(); len(tasks) != 0 {
		t.Errorf("%d tasks left", len(tasks))
	}
	r.verify()
}
