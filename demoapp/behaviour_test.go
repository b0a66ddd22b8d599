package demoapp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// tickingClock returns a clock that advances one second per call.
func tickingClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

func setClock(a *App, c func() time.Time) {
	a.state.mu.Lock()
	a.state.now = c
	a.state.mu.Unlock()
}

func TestCreateAccountShape(t *testing.T) {
	a := newTestApp(t)
	rec := must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"ada@contoso.example",
		"person":{"first":"Ada","last":"Lovelace","display":"Ada Lovelace"},
		"contact":{"mail":"ada@contoso.example","phone":"+44 20 7946 0000"},
		"org":{"dept":"R&D","title":"Analyst","employee_no":"E-1"},"locked":true}`)
	want := `{"id":1,"login":"ada@contoso.example","person":{"first":"Ada","last":"Lovelace","display":"Ada Lovelace"},` +
		`"contact":{"mail":"ada@contoso.example","phone":"+44 20 7946 0000"},` +
		`"org":{"dept":"R&D","title":"Analyst","employee_no":"E-1","manager_id":null},"locked":true,` +
		`"created_at":"2025-03-01T12:00:00.000Z","updated_at":"2025-03-01T12:00:00.000Z"}` + "\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
	if loc := rec.Header().Get("Location"); loc != "/api/v1/accounts/1" {
		t.Errorf("Location %q", loc)
	}
	got := decode[Account](t, must(t, a, 200, "GET", "/api/v1/accounts/1", ""))
	if got.Login != "ada@contoso.example" || got.Contact.Phone != "+44 20 7946 0000" || !got.Locked {
		t.Errorf("GET returned %+v", got)
	}
	second := decode[Account](t, must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"grace@contoso.example","org":{"manager_id":1}}`))
	if second.ID != 2 || second.Org.ManagerID == nil || *second.Org.ManagerID != 1 || second.Locked {
		t.Errorf("second account %+v", second)
	}
}

func TestPatchMergeSemantics(t *testing.T) {
	a := newTestApp(t)
	seed(t, a)
	setClock(a, tickingClock())
	must(t, a, 200, "PATCH", "/api/v1/accounts/2", `{"person":{"first":"Grace","last":"Hopper"},"contact":{"mail":"g@contoso.example","phone":"1"},"org":{"dept":"Navy"}}`)
	cases := []struct {
		name, patch string
		check       func(Account) bool
	}{
		{"nested merge keeps siblings", `{"person":{"display":"Grace H."}}`, func(x Account) bool {
			return x.Person == Person{First: "Grace", Last: "Hopper", Display: "Grace H."} && x.Contact.Mail == "g@contoso.example"
		}},
		{"null clears a field", `{"contact":{"phone":null}}`, func(x Account) bool {
			return x.Contact == Contact{Mail: "g@contoso.example"}
		}},
		{"null clears an object", `{"person":null}`, func(x Account) bool { return x.Person == Person{} && x.Org.Dept == "Navy" }},
		{"manager null clears the reference", `{"org":{"manager_id":null}}`, func(x Account) bool {
			return x.Org.ManagerID == nil && x.Org.Dept == "Navy"
		}},
		{"manager set", `{"org":{"manager_id":1}}`, func(x Account) bool { return x.Org.ManagerID != nil && *x.Org.ManagerID == 1 }},
		{"empty patch changes nothing", `{}`, func(x Account) bool { return x.Login == "grace@contoso.example" && x.Org.Dept == "Navy" }},
		{"login change", `{"login":"grace.hopper@contoso.example"}`, func(x Account) bool { return x.Login == "grace.hopper@contoso.example" }},
	}
	prev := decode[Account](t, must(t, a, 200, "GET", "/api/v1/accounts/2", ""))
	for _, tc := range cases {
		got := decode[Account](t, must(t, a, 200, "PATCH", "/api/v1/accounts/2", tc.patch))
		if !tc.check(got) {
			t.Errorf("%s: got %+v", tc.name, got)
		}
		if got.CreatedAt != prev.CreatedAt || got.UpdatedAt <= prev.UpdatedAt || got.Locked != prev.Locked {
			t.Errorf("%s: timestamps/lock not kept: before %+v after %+v", tc.name, prev, got)
		}
		if stored := decode[Account](t, must(t, a, 200, "GET", "/api/v1/accounts/2", "")); !reflect.DeepEqual(stored, got) {
			t.Errorf("%s: GET %+v differs from PATCH response %+v", tc.name, stored, got)
		}
		prev = got
	}
	// The old login is free again, the new one is taken.
	must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"grace@contoso.example"}`)
	must(t, a, 409, "POST", "/api/v1/accounts", `{"login":"Grace.Hopper@contoso.example"}`)
}

func TestFailedUpdateChangesNothing(t *testing.T) {
	a := newTestApp(t)
	seed(t, a)
	// The dumps without the call count, which the failed writes raise.
	state := func() string {
		snap := decode[Snapshot](t, must(t, a, 200, "GET", "/api/v1/_state", ""))
		snap.Calls = 0
		b, err := json.Marshal(snap)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := state()
	for _, p := range []string{`{"login":"grace@contoso.example","person":{"first":"X"}}`, `{"person":{"first":"X"},"org":{"manager_id":50}}`, `{"person":{"first":"X"},"contact":{"mail":"bad"}}`} {
		if rec := do(t, a, "PATCH", "/api/v1/accounts/1", p); rec.Code < 400 {
			t.Fatalf("%s: status %d", p, rec.Code)
		}
	}
	do(t, a, "PATCH", "/api/v1/teams/1", `{"name":"sales","description":"X"}`)
	do(t, a, "POST", "/api/v1/teams/2/members:batch", `{"add":[2,99]}`)
	if after := state(); after != before {
		t.Errorf("failed writes changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

func TestPutReplacesWritableFields(t *testing.T) {
	a := newTestApp(t)
	must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"a@contoso.example","person":{"first":"A"},"contact":{"mail":"a@contoso.example"},"locked":true}`)
	got := decode[Account](t, must(t, a, 200, "PUT", "/api/v1/accounts/1", `{"login":"b@contoso.example","org":{"title":"Boss"}}`))
	if got.Login != "b@contoso.example" || got.Person != (Person{}) || got.Contact != (Contact{}) || got.Org.Title != "Boss" || !got.Locked {
		t.Errorf("PUT result %+v", got)
	}
}

func TestLockUnlockIdempotent(t *testing.T) {
	a := newTestApp(t)
	seed(t, a)
	setClock(a, tickingClock())
	steps := []struct {
		path          string
		locked, moved bool
	}{
		{"/api/v1/accounts/1/unlock", false, false}, // already unlocked
		{"/api/v1/accounts/1/lock", true, true},
		{"/api/v1/accounts/1/lock", true, false},
		{"/api/v1/accounts/1/unlock", false, true},
		{"/api/v1/accounts/1/unlock", false, false},
	}
	prev := decode[Account](t, must(t, a, 200, "GET", "/api/v1/accounts/1", ""))
	for i, s := range steps {
		got := decode[Account](t, must(t, a, 200, "POST", s.path, ""))
		if got.Locked != s.locked || (got.UpdatedAt != prev.UpdatedAt) != s.moved {
			t.Errorf("step %d %s: locked %v updated_at %s (before %s)", i, s.path, got.Locked, got.UpdatedAt, prev.UpdatedAt)
		}
		prev = got
	}
	// A body is tolerated and ignored: clients differ in what they send with an action.
	must(t, a, 200, "POST", "/api/v1/accounts/1/lock", `{}`)
}

func TestLookupByLogin(t *testing.T) {
	a := newTestApp(t)
	seed(t, a)
	cases := []struct {
		query string
		ids   []int64
	}{
		{"login=ada@contoso.example", []int64{1}},
		{"login=ADA%40CONTOSO.EXAMPLE", []int64{1}},
		{"login=ada", nil},
		{"login=nobody@contoso.example", nil},
		{"login=grace@contoso.example&limit=1", []int64{2}},
		{"login=grace@contoso.example&cursor=" + encodeCursor("accounts", 2), nil},
	}
	for _, tc := range cases {
		page := decode[Page[Account]](t, must(t, a, 200, "GET", "/api/v1/accounts?"+tc.query, ""))
		var ids []int64
		for _, x := range page.Items {
			ids = append(ids, x.ID)
		}
		if !slices.Equal(ids, tc.ids) || page.NextCursor != nil || page.Items == nil {
			t.Errorf("%s: ids %v next %v items %v, want %v", tc.query, ids, page.NextCursor, page.Items, tc.ids)
		}
	}
	teams := decode[Page[Team]](t, must(t, a, 200, "GET", "/api/v1/teams?name=ENGINEERING", ""))
	if len(teams.Items) != 1 || teams.Items[0].ID != 1 || teams.Items[0].MemberCount != 1 {
		t.Errorf("team lookup %+v", teams)
	}
}

// walk follows next_cursor from path until the last page and returns the ids seen.
func walk[T any](t *testing.T, a *App, path string, idOf func(T) int64) ([]int64, int) {
	t.Helper()
	var ids []int64
	pages := 0
	next := path
	for {
		page := decode[Page[T]](t, must(t, a, 200, "GET", next, ""))
		pages++
		for _, x := range page.Items {
			ids = append(ids, idOf(x))
		}
		if page.NextCursor == nil {
			return ids, pages
		}
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		next = path + sep + "cursor=" + *page.NextCursor
	}
}

func TestPaginationWalksEverything(t *testing.T) {
	a := newTestApp(t)
	const n = 125
	for i := 1; i <= n; i++ {
		must(t, a, 201, "POST", "/api/v1/accounts", fmt.Sprintf(`{"login":"u%03d@contoso.example"}`, i))
	}
	for _, id := range []int{3, 50, 124} { // holes must not disturb the walk
		must(t, a, 204, "DELETE", fmt.Sprintf("/api/v1/accounts/%d", id), "")
	}
	accountID := func(x Account) int64 { return x.ID }
	cases := []struct {
		path  string
		pages int
	}{
		{"/api/v1/accounts?limit=10", 13},
		{"/api/v1/accounts?limit=61", 2},
		{"/api/v1/accounts?limit=60", 3},
		{"/api/v1/accounts?limit=122", 1}, // exactly one full page: no empty trailing page
		{"/api/v1/accounts", 3},           // default 50
		{"/api/v1/accounts?limit=200", 1},
	}
	var want []int64
	for i := int64(1); i <= n; i++ {
		if i != 3 && i != 50 && i != 124 {
			want = append(want, i)
		}
	}
	for _, tc := range cases {
		ids, pages := walk(t, a, tc.path, accountID)
		if !slices.Equal(ids, want) || pages != tc.pages {
			t.Errorf("%s: %d pages (want %d), ids %v", tc.path, pages, tc.pages, ids)
		}
	}

	// Members of a team, added in reverse order, are listed in account id order.
	must(t, a, 201, "POST", "/api/v1/teams", `{"name":"All"}`)
	for i := len(want) - 1; i >= 0; i-- {
		must(t, a, 204, "PUT", fmt.Sprintf("/api/v1/teams/1/members/%d", want[i]), "")
	}
	ids, pages := walk(t, a, "/api/v1/teams/1/members?limit=7", func(m Member) int64 { return m.AccountID })
	if !slices.Equal(ids, want) || pages != 18 {
		t.Errorf("members: %d pages, ids %v", pages, ids)
	}

	for i := 2; i <= 30; i++ {
		must(t, a, 201, "POST", "/api/v1/teams", fmt.Sprintf(`{"name":"T%d"}`, i))
	}
	ids, _ = walk(t, a, "/api/v1/teams?limit=4", func(x Team) int64 { return x.ID })
	if len(ids) != 30 || !slices.IsSorted(ids) {
		t.Errorf("teams: %v", ids)
	}
}

func TestMemberBatch(t *testing.T) {
	a := newTestApp(t)
	for i := 1; i <= 5; i++ {
		must(t, a, 201, "POST", "/api/v1/accounts", fmt.Sprintf(`{"login":"u%d@x"}`, i))
	}
	must(t, a, 201, "POST", "/api/v1/teams", `{"name":"T"}`)
	steps := []struct {
		body string
		want batchResult
	}{
		{`{"add":[3,1,2,2]}`, batchResult{Added: 3, MemberCount: 3}},
		{`{"add":[1,4],"remove":[2,5]}`, batchResult{Added: 1, Removed: 1, MemberCount: 3}},
		{`{"remove":[2,5]}`, batchResult{MemberCount: 3}},
		{`{}`, batchResult{MemberCount: 3}},
		{`{"add":null,"remove":[1,3,4]}`, batchResult{Removed: 3, MemberCount: 0}},
	}
	for i, s := range steps {
		got := decode[batchResult](t, must(t, a, 200, "POST", "/api/v1/teams/1/members:batch", s.body))
		if got != s.want {
			t.Errorf("step %d %s: %+v, want %+v", i, s.body, got, s.want)
		}
	}
	must(t, a, 422, "POST", "/api/v1/teams/1/members:batch", `{"add":[1,6]}`)
	if snap := decode[Snapshot](t, must(t, a, 200, "GET", "/api/v1/_state", "")); len(snap.Memberships) != 0 {
		t.Errorf("a rejected batch added members: %+v", snap.Memberships)
	}
}

func TestDeleteCascades(t *testing.T) {
	a := newTestApp(t)
	seed(t, a)
	must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"third@x","org":{"manager_id":1}}`)
	must(t, a, 200, "POST", "/api/v1/teams/2/members:batch", `{"add":[1,2,3]}`)
	must(t, a, 204, "DELETE", "/api/v1/accounts/1", "")

	snap := decode[Snapshot](t, must(t, a, 200, "GET", "/api/v1/_state", ""))
	wantMemberships := []Membership{{TeamID: 2, AccountID: 2}, {TeamID: 2, AccountID: 3}}
	if !slices.Equal(snap.Memberships, wantMemberships) {
		t.Errorf("memberships %+v, want %+v", snap.Memberships, wantMemberships)
	}
	if snap.Teams[0].MemberCount != 0 || snap.Teams[1].MemberCount != 2 {
		t.Errorf("member counts %+v", snap.Teams)
	}
	for _, acc := range snap.Accounts {
		if acc.Org.ManagerID != nil {
			t.Errorf("account %d still managed by a deleted account", acc.ID)
		}
	}
	must(t, a, 404, "GET", "/api/v1/accounts/1", "")
	must(t, a, 404, "DELETE", "/api/v1/accounts/1", "")
	// ids are never reused; the login is free again.
	if acc := decode[Account](t, must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"ADA@contoso.example"}`)); acc.ID != 4 {
		t.Errorf("new id %d, want 4", acc.ID)
	}

	must(t, a, 204, "DELETE", "/api/v1/teams/2", "")
	snap = decode[Snapshot](t, must(t, a, 200, "GET", "/api/v1/_state", ""))
	if len(snap.Memberships) != 0 || len(snap.Teams) != 1 {
		t.Errorf("after deleting the team: %+v", snap)
	}
	must(t, a, 201, "POST", "/api/v1/teams", `{"name":"sales"}`) // name free again
	a.state.mu.RLock()
	defer a.state.mu.RUnlock()
	if a.state.memberships != 0 || len(a.state.teamsOf) != 0 {
		t.Errorf("indexes not cleaned: memberships %d teamsOf %v", a.state.memberships, a.state.teamsOf)
	}
}

func TestStateAndReset(t *testing.T) {
	a := newTestApp(t)
	seed(t, a)
	first := must(t, a, 200, "GET", "/api/v1/_state", "").Body.String()
	if second := must(t, a, 200, "GET", "/api/v1/_state", "").Body.String(); first != second {
		t.Error("two dumps of the same state differ")
	}
	snap := decode[Snapshot](t, must(t, a, 200, "GET", "/api/v1/_state", ""))
	if len(snap.Accounts) != 2 || len(snap.Teams) != 2 || !slices.Equal(snap.Memberships, []Membership{{1, 1}}) {
		t.Errorf("snapshot %+v", snap)
	}
	must(t, a, 204, "POST", "/api/v1/_reset", "")
	if got := must(t, a, 200, "GET", "/api/v1/_state", "").Body.String(); got != `{"accounts":[],"teams":[],"memberships":[],"calls":0}`+"\n" {
		t.Errorf("after reset: %s", got)
	}
	if acc := decode[Account](t, must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"ada@contoso.example"}`)); acc.ID != 1 {
		t.Errorf("ids do not restart after reset: %d", acc.ID)
	}
}

func TestLimits(t *testing.T) {
	a := newTestApp(t, func(a *App) { a.MaxAccounts, a.MaxTeams, a.MaxMemberships = 3, 1, 4 })
	for i := 1; i <= 3; i++ {
		must(t, a, 201, "POST", "/api/v1/accounts", fmt.Sprintf(`{"login":"u%d@x"}`, i))
	}
	if code := errorCode(t, must(t, a, http.StatusInsufficientStorage, "POST", "/api/v1/accounts", `{"login":"u4@x"}`)); code != CodeLimitReached {
		t.Errorf("code %s", code)
	}
	must(t, a, 204, "DELETE", "/api/v1/accounts/3", "")
	must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"u4@x"}`) // room again

	must(t, a, 201, "POST", "/api/v1/teams", `{"name":"A"}`)
	must(t, a, 507, "POST", "/api/v1/teams", `{"name":"B"}`)

	must(t, a, 200, "POST", "/api/v1/teams/1/members:batch", `{"add":[1,2,4]}`)
	must(t, a, 204, "PUT", "/api/v1/teams/1/members/1", "") // already a member: no new membership
	must(t, a, 200, "POST", "/api/v1/teams/1/members:batch", `{"add":[1,2,4]}`)
	must(t, a, 204, "DELETE", "/api/v1/teams/1/members/4", "")
	must(t, a, 204, "PUT", "/api/v1/teams/1/members/4", "")
}

func TestMembershipLimitAcrossTeams(t *testing.T) {
	a := newTestApp(t, func(a *App) { a.MaxMemberships = 2 })
	must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"a@x"}`)
	must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"b@x"}`)
	must(t, a, 201, "POST", "/api/v1/teams", `{"name":"A"}`)
	must(t, a, 201, "POST", "/api/v1/teams", `{"name":"B"}`)
	must(t, a, 200, "POST", "/api/v1/teams/1/members:batch", `{"add":[1,2]}`)
	must(t, a, 507, "PUT", "/api/v1/teams/2/members/1", "")
	must(t, a, 507, "POST", "/api/v1/teams/2/members:batch", `{"add":[1]}`)
}

func TestConcurrentCreates(t *testing.T) {
	a := newTestApp(t)
	const workers, each = 32, 25
	var wg sync.WaitGroup
	errs := make(chan string, workers*each)
	ids := make([][]int64, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				rec := do(t, a, "POST", "/api/v1/accounts", fmt.Sprintf(`{"login":"w%d-%d@x"}`, w, i))
				if rec.Code != 201 {
					errs <- rec.Body.String()
					continue
				}
				ids[w] = append(ids[w], decode[Account](t, rec).ID)
				// Readers and a racing duplicate interleave with the writers.
				do(t, a, "GET", "/api/v1/accounts?limit=5", "")
				if rec := do(t, a, "POST", "/api/v1/accounts", fmt.Sprintf(`{"login":"W%d-%d@X"}`, w, i)); rec.Code != 409 {
					errs <- "duplicate accepted: " + rec.Body.String()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	all := slices.Concat(ids...)
	slices.Sort(all)
	if len(slices.Compact(all)) != workers*each || all[0] != 1 || all[len(all)-1] != workers*each {
		t.Errorf("ids are not 1..%d without gaps or duplicates", workers*each)
	}
	snap := decode[Snapshot](t, must(t, a, 200, "GET", "/api/v1/_state", ""))
	if len(snap.Accounts) != workers*each {
		t.Errorf("%d accounts", len(snap.Accounts))
	}
}

func TestStateSharedByName(t *testing.T) {
	first := newTestApp(t)
	must(t, first, 201, "POST", "/api/v1/accounts", `{"login":"a@x"}`)
	second := newTestApp(t) // same test name, so the same state
	if got := decode[Snapshot](t, must(t, second, 200, "GET", "/api/v1/_state", "")); len(got.Accounts) != 1 {
		t.Errorf("second handler sees %d accounts", len(got.Accounts))
	}
	other := newTestApp(t, func(a *App) { a.Name = t.Name() + "-other" })
	if got := decode[Snapshot](t, must(t, other, 200, "GET", "/api/v1/_state", "")); len(got.Accounts) != 0 {
		t.Errorf("a differently named handler sees %d accounts", len(got.Accounts))
	}
}

// TestLatencyDelaysAnswers: with a latency the app answers no sooner than it says (a
// timer never fires early, so the lower bound is not a timing assertion), and a client
// that goes away while it waits gets nothing done: the request is never dispatched.
func TestLatencyDelaysAnswers(t *testing.T) {
	const d = 30 * time.Millisecond
	a := newTestApp(t, func(a *App) { a.Latency, a.LatencyMax = caddy.Duration(d), caddy.Duration(2*d) })
	for range 3 {
		start := time.Now()
		must(t, a, http.StatusOK, http.MethodGet, "/api/v1/accounts", "")
		if took := time.Since(start); took < d {
			t.Fatalf("answered after %v, before the latency of at least %v", took, d)
		}
	}

	slow := newTestApp(t, func(a *App) { a.Latency = caddy.Duration(time.Minute) })
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodPost, "/api/v1/accounts", strings.NewReader(`{"login":"gone@example.com","email":"gone@example.com"}`)).WithContext(ctx)
	req.Header.Set("X-Api-Key", testKey)
	req.Header.Set("Content-Type", "application/json")
	done := make(chan error, 1)
	go func() { done <- slow.ServeHTTP(httptest.NewRecorder(), req, &nextHandler{}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not stop when the client went away")
	}
	slow.Latency = 0
	if body := must(t, slow, http.StatusOK, http.MethodGet, "/api/v1/accounts", "").Body.String(); strings.Contains(body, "gone@example.com") {
		t.Errorf("a request whose client went away was carried out: %s", body)
	}
}

// TestStateCountsCalls: the dump counts every API call the app answered, refusals and
// unknown routes too, but neither the dumps nor the resets, and a reset restarts it.
func TestStateCountsCalls(t *testing.T) {
	a := newTestApp(t)
	seed(t, a) // 5 calls
	must(t, a, 404, "GET", "/api/v1/accounts/99", "")
	must(t, a, 409, "POST", "/api/v1/accounts", `{"login":"ada@contoso.example"}`)
	must(t, a, 404, "GET", "/api/v1/nothing", "")
	if rec := do(t, a, "GET", "/api/v1/_state", ""); rec.Code != 200 {
		t.Fatalf("state: %d", rec.Code)
	}
	if got := decode[Snapshot](t, must(t, a, 200, "GET", "/api/v1/_state", "")).Calls; got != 8 {
		t.Errorf("calls %d, want 8 (5 seeded, 3 refused)", got)
	}
	must(t, a, 204, "POST", "/api/v1/_reset", "")
	must(t, a, 201, "POST", "/api/v1/accounts", `{"login":"a@x"}`)
	if got := decode[Snapshot](t, must(t, a, 200, "GET", "/api/v1/_state", "")).Calls; got != 1 {
		t.Errorf("calls after a reset and one create: %d, want 1", got)
	}
}
