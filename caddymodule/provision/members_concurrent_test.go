package provision

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// TestMemberLocks: which changes lock members one by one (a group PATCH that only adds and
// removes the members it names) and which lock the whole resource.
func TestMemberLocks(t *testing.T) {
	_, srv := newNativeApp(t)
	immediate := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	queuedTarget := newTarget(t, srv.URL, false)
	queuedTarget.Delivery = outbox.Settings{Mode: outbox.Queued}
	queued := newRig(t, rigOptions{target: queuedTarget})
	alone := newRig(t, rigOptions{})
	cases := []struct {
		name    string
		eng     *Engine
		typ     string
		ifMatch string
		ops     string
		want    []string
	}{
		{"add one", immediate.eng, scim.GroupType, "", `[{"op":"Add","path":"members","value":[{"value":"u2"}]}]`, []string{"u2"}},
		{"adds and removes, sorted", immediate.eng, scim.GroupType, "",
			`[{"op":"Add","path":"members","value":[{"value":"u9"},{"value":"u1"}]},{"op":"Remove","path":"members","value":[{"value":"u5"}]}]`,
			[]string{"u1", "u5", "u9"}},
		{"remove by filter", immediate.eng, scim.GroupType, "", `[{"op":"remove","path":"members[value eq \"u3\"]"}]`, []string{"u3"}},
		{"merge replace adds", immediate.eng, scim.GroupType, "", `[{"op":"replace","path":"members","value":[{"value":"u4"}]}]`, []string{"u4"}},
		{"no target", alone.eng, scim.GroupType, "", `[{"op":"add","path":"members","value":[{"value":"u2"}]}]`, []string{"u2"}},
		{"remove all", immediate.eng, scim.GroupType, "", `[{"op":"remove","path":"members"}]`, nil},
		{"rename", immediate.eng, scim.GroupType, "", `[{"op":"replace","path":"displayName","value":"New"}]`, nil},
		{"members and a rename", immediate.eng, scim.GroupType, "",
			`[{"op":"add","path":"members","value":[{"value":"u2"}]},{"op":"replace","path":"displayName","value":"New"}]`, nil},
		{"path-less add", immediate.eng, scim.GroupType, "", `[{"op":"add","value":{"members":[{"value":"u2"}]}}]`, nil},
		{"If-Match", immediate.eng, scim.GroupType, `W/"3"`, `[{"op":"add","path":"members","value":[{"value":"u2"}]}]`, nil},
		{"a user", immediate.eng, scim.UserType, "", `[{"op":"replace","path":"displayName","value":"New"}]`, nil},
		{"queued delivery", queued.eng, scim.GroupType, "", `[{"op":"add","path":"members","value":[{"value":"u2"}]}]`, nil},
		{"a member id the patch refuses", immediate.eng, scim.GroupType, "", `[{"op":"add","path":"members","value":[{"display":"no value"}]}]`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := c.eng.newJob(testReq, &Op{Action: change.ActionPatch, Type: c.typ, ID: "g1", IfMatch: c.ifMatch, Patch: patchOps(t, c.ops)})
			if got := c.eng.memberLocks(j); !slices.Equal(got, c.want) {
				t.Errorf("memberLocks = %q, want %q", got, c.want)
			}
		})
	}
}

// gatedApp is a nativeApp whose member calls (PUT and DELETE /roles/{id}/holders/{member})
// wait until want of them are in flight at once, or until a bound passes (then each answers
// 503: the changes were serialised).
type gatedApp struct {
	*nativeApp
	want     int32
	inFlight atomic.Int32
	open     chan struct{}
	once     sync.Once
}

func (a *gatedApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "/holders/") {
		a.nativeApp.ServeHTTP(w, r)
		return
	}
	if a.inFlight.Add(1) >= a.want {
		a.once.Do(func() { close(a.open) })
	}
	select {
	case <-a.open:
		a.nativeApp.ServeHTTP(w, r)
	case <-time.After(10 * time.Second):
		http.Error(w, `{"message":"member calls did not overlap"}`, http.StatusServiceUnavailable)
	}
}

// TestMemberChangesOfOneGroupOverlap: two PATCHes of one group that add different members
// make their native calls at the same time (the app answers neither until both are in
// flight); with the group locked whole the second would wait for the first, which the app
// refuses after its bound.
func TestMemberChangesOfOneGroupOverlap(t *testing.T) {
	native, _ := newNativeApp(t)
	app := &gatedApp{nativeApp: native, want: 2, open: make(chan struct{})}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	target := newTarget(t, srv.URL, false)
	target.Client = patientClient(t, srv.URL)
	r := newRig(t, rigOptions{target: target})
	u1 := r.mustCreate(scim.UserType, user("overlap1@contoso.example"))
	u2 := r.mustCreate(scim.UserType, user("overlap2@contoso.example"))
	g := r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Overlap"}`)
	var wg sync.WaitGroup
	results := make([]*Result, 2)
	for i, u := range []string{u1, u2} {
		wg.Go(func() {
			results[i] = r.eng.Apply(testReq, &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: g,
				Patch: patchOps(t, `[{"op":"Add","path":"members","value":[{"value":"`+u+`"}]}]`), Status: http.StatusNoContent})
		})
	}
	wg.Wait()
	for i, res := range results {
		if res.Err != nil {
			t.Fatalf("PATCH %d: %v", i, res.Err)
		}
	}
	if got, want := r.members(g), sortedSet([]string{u1, u2}); !slices.Equal(got, want) {
		t.Errorf("members = %q, want %q", got, want)
	}
	if v := groupVersion(t, r, g); v != 3 {
		t.Errorf("group version = %d after a create and two member changes, want 3", v)
	}
}

// TestMemberChangesConcurrent: many goroutines add and remove members of two groups,
// rename them, and delete one of them, all at once (run it with -race). Every change
// finishes (no two wait on each other), each answers success or, after the delete, 404,
// and in the end the directory, the app and the journal agree: the group's members are the
// app's holders of its role and what the journal's calls, replayed in sequence order, leave;
// its version counts its committed changes; its name is the last rename journaled.
func TestMemberChangesConcurrent(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	const nUsers, workers, perWorker = 12, 16, 12
	users := make([]string, nUsers)
	for i := range users {
		users[i] = r.mustCreate(scim.UserType, user(fmt.Sprintf("concurrent%d@contoso.example", i)))
	}
	groupBody := func(name string) string {
		return `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"` + name + `"}`
	}
	kept := r.mustCreate(scim.GroupType, groupBody("Kept"))
	doomed := r.mustCreate(scim.GroupType, groupBody("Doomed"))

	var renames atomic.Int32
	op := func(w, k int) (string, *Op) {
		g := kept
		if (w+k)%3 == 0 {
			g = doomed
		}
		u := users[(w*7+k*5)%nUsers]
		patch := func(ops string) *Op {
			return &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: g, Patch: patchOps(t, ops), Status: http.StatusNoContent}
		}
		switch {
		case g == doomed && w == 3 && k == perWorker/2:
			return g, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: g, Status: http.StatusNoContent}
		case k%5 == 4:
			return g, patch(fmt.Sprintf(`[{"op":"replace","path":"displayName","value":"Renamed %d"}]`, renames.Add(1)))
		case (w+k)%2 == 0:
			return g, patch(`[{"op":"Add","path":"members","value":[{"value":"` + u + `"}]}]`)
		default:
			return g, patch(`[{"op":"Remove","path":"members","value":[{"value":"` + u + `"}]}]`)
		}
	}
	errs := make(chan error, workers*perWorker)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := range perWorker {
				g, o := op(w, k)
				res := r.eng.Apply(testReq, o)
				if res.Err != nil && !(g == doomed && res.Status == http.StatusNotFound) {
					errs <- fmt.Errorf("worker %d change %d (%s of %s): %d %v", w, k, o.Action, g, res.Status, res.Err)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the changes did not finish: two of them wait on each other")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	recs := r.records()
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("journal out of order at %d: seq %d after %d", i, recs[i].Seq, recs[i-1].Seq)
		}
	}
	if err := r.store.View(func(tx *store.Tx) error { _, err := tx.Get(scim.GroupType, doomed); return err }); err == nil {
		t.Error("the deleted group is still in the directory")
	}

	role := r.nativeID(scim.GroupType, kept)
	replayed := map[string]bool{}
	var committed, lastRename int
	lastName := "Kept"
	for _, rec := range recs {
		if rec.SCIMID != kept || rec.Outcome != change.Applied || rec.Action != change.ActionPatch {
			continue
		}
		if len(rec.Events) > 0 {
			committed++
		}
		for _, c := range rec.Changes {
			if c.Path == "displayName" {
				lastName = strings.Trim(string(c.Value), `"`)
				lastRename++
			}
		}
		for _, call := range rec.Calls {
			u, err := url.Parse(call.URL)
			if err != nil {
				t.Fatal(err)
			}
			prefix := "/roles/" + role + "/holders/"
			if !strings.HasPrefix(u.Path, prefix) {
				continue
			}
			switch call.Method {
			case http.MethodPut:
				replayed[strings.TrimPrefix(u.Path, prefix)] = true
			case http.MethodDelete:
				delete(replayed, strings.TrimPrefix(u.Path, prefix))
			}
		}
	}
	var members, fromJournal, holders []string
	for _, m := range r.members(kept) {
		members = append(members, r.nativeID(scim.UserType, m))
	}
	for n := range replayed {
		fromJournal = append(fromJournal, n)
	}
	app.mu.Lock()
	for n := range app.roles[role] {
		holders = append(holders, n)
	}
	app.mu.Unlock()
	slices.Sort(members)
	slices.Sort(fromJournal)
	slices.Sort(holders)
	if len(members) == 0 {
		t.Fatal("the kept group has no members: the workload should leave some")
	}
	if !slices.Equal(members, holders) || !slices.Equal(members, fromJournal) {
		t.Errorf("members disagree:\n directory %q\n app       %q\n journal   %q", members, holders, fromJournal)
	}
	if v := groupVersion(t, r, kept); v != uint64(1+committed) {
		t.Errorf("group version = %d, want %d (its create and %d committed changes)", v, 1+committed, committed)
	}
	var name string
	if err := r.store.View(func(tx *store.Tx) error {
		rec, err := tx.Get(scim.GroupType, kept)
		if err == nil {
			doc, derr := DecodeDoc(rec)
			name, _ = doc["displayName"].(string)
			err = derr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if lastRename == 0 || name != lastName {
		t.Errorf("displayName = %q, want the last rename journaled, %q (%d renames)", name, lastName, lastRename)
	}
}

// groupVersion is the stored version of group id.
func groupVersion(t *testing.T, r *rig, id string) uint64 {
	t.Helper()
	var v uint64
	if err := r.store.View(func(tx *store.Tx) error {
		var err error
		v, err = tx.Version(scim.GroupType, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// patientClient is a client for url that waits long enough for gatedApp's bound.
func patientClient(t testing.TB, url string) *legacy.Client {
	t.Helper()
	c, err := legacy.New(legacy.Options{BaseURL: url, Timeout: 30 * time.Second, MaxRetries: -1, CircuitFailures: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// BenchmarkMemberAdd measures, in process with a target (the engine, the store with its
// fsyncs, and an app on loopback that answers at once), member changes of distinct members
// spread over 10 groups against user updates, both from 32 writers: issue 18 wants the
// first at 0.8x the second or better. With each group locked whole, at most 10 member
// changes were in flight (and shared a commit); with members locked one by one all 32 are.
// Each pair of group and member is added, then removed on the next pass, so every change
// changes something.
func BenchmarkMemberAdd(b *testing.B) {
	const groups, users, writers = 10, 200, 32
	_, srv := newNativeApp(b)
	target := newTarget(b, srv.URL, false)
	target.Client = patientClient(b, srv.URL)
	r := newRig(b, rigOptions{target: target})
	userIDs := make([]string, users)
	for i := range userIDs {
		userIDs[i] = r.mustCreate(scim.UserType, user(fmt.Sprintf("bench%d@contoso.example", i)))
	}
	groupIDs := make([]string, groups)
	for i := range groupIDs {
		groupIDs[i] = r.mustCreate(scim.GroupType, fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Bench %d"}`, i))
	}
	run := func(b *testing.B, op func(i int64) *Op) {
		var seq atomic.Int64
		start := r.store.Commits()
		b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if res := r.eng.Apply(testReq, op(seq.Add(1)-1)); res.Err != nil {
					b.Error(res.Err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(r.store.Commits()-start)/float64(b.N), "commits/op")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	}
	b.Run("kind=update", func(b *testing.B) {
		run(b, func(i int64) *Op {
			return &Op{Action: change.ActionPatch, Type: scim.UserType, ID: userIDs[i%users], Status: http.StatusNoContent,
				Patch: []scim.PatchOp{{Op: scim.PatchReplace, Path: &scim.Path{Attr: scim.AttrPath{Name: "title"}}, Value: fmt.Sprintf("Title %d", i)}}}
		})
	})
	b.Run("kind=member_add", func(b *testing.B) {
		run(b, func(i int64) *Op {
			pair, pass := i%(groups*users), i/(groups*users)
			verb := scim.PatchAdd
			if pass%2 == 1 {
				verb = scim.PatchRemove
			}
			return &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: groupIDs[pair%groups], Status: http.StatusNoContent,
				Patch: []scim.PatchOp{{Op: verb, Path: &scim.Path{Attr: scim.AttrPath{Name: "members"}},
					Value: []any{map[string]any{"value": userIDs[pair/groups]}}}}}
		})
	})
}
