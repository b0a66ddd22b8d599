package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// retrying sends a request as Entra does: again after a 503 or 429 (bounded, with a short
// pause instead of the Retry-After), and returns the last answer.
func (f *gwFleet) retrying(gw int, method, path, body string) fleetResp {
	var r fleetResp
	for range 100 {
		r = f.do(gw, method, path, body)
		if r.err == nil && r.status != http.StatusServiceUnavailable && r.status != http.StatusTooManyRequests {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// TestFleetConcurrentChangesOfOneUser: Entra's changes of one user arrive through three
// gateways at once (each retried on 503, as Entra does): every PATCH ends answered, and the
// app ends with the title the directory holds. Then a delete through one gateway races
// updates through the others: the user ends gone from the directory and the app alike.
func TestFleetConcurrentChangesOfOneUser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and three gateway processes")
	}
	f := startFleet(t, 3, "")
	const name = "race@contoso.example"
	r := f.do(0, http.MethodPost, "/Users", fleetUser(name, "start"))
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %v %s", r.status, r.err, r.body)
	}
	id := r.id()
	var wg sync.WaitGroup
	for gw := range 3 {
		wg.Go(func() {
			for i := range 15 {
				r := f.retrying(gw, http.MethodPatch, "/Users/"+id, fleetPatch("title", fmt.Sprintf(`"gw%d-%d"`, gw, i)))
				if r.status != http.StatusOK && r.status != http.StatusNoContent {
					t.Errorf("PATCH through gateway %d: %d %v %s", gw, r.status, r.err, r.body)
					return
				}
			}
		})
	}
	wg.Wait()
	users, err := f.listUsers(1)
	if err != nil {
		t.Fatal(err)
	}
	title := users[id].Title
	var inApp string
	found := 0
	for _, acc := range f.app.state(t).Accounts {
		if strings.EqualFold(acc.Login, name) {
			inApp = acc.Org.Title
			found++
		}
	}
	if found != 1 || inApp != title {
		t.Fatalf("the directory's title is %q, the app holds %d accounts of %s with title %q", title, found, name, inApp)
	}

	// A delete through gateway 0 while gateways 1 and 2 update.
	for gw := 1; gw < 3; gw++ {
		wg.Go(func() {
			for i := range 10 {
				r := f.retrying(gw, http.MethodPatch, "/Users/"+id, fleetPatch("title", fmt.Sprintf(`"late-gw%d-%d"`, gw, i)))
				if r.status == http.StatusNotFound {
					return
				}
				if r.status != http.StatusOK && r.status != http.StatusNoContent {
					t.Errorf("PATCH through gateway %d during the delete: %d %v %s", gw, r.status, r.err, r.body)
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	if r := f.retrying(0, http.MethodDelete, "/Users/"+id, ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %v %s", r.status, r.err, r.body)
	}
	wg.Wait()
	if r := f.do(2, http.MethodGet, "/Users/"+id, ""); r.status != http.StatusNotFound {
		t.Fatalf("GET after the delete: %d %s", r.status, r.body)
	}
	for _, acc := range f.app.state(t).Accounts {
		if strings.EqualFold(acc.Login, name) {
			t.Fatalf("the app still holds %s after its delete: %+v", name, acc)
		}
	}
	verifyJournal(t, f.backup())
}

// TestFleetMemberChangesOfOneGroup: Entra's member changes of one group arrive through
// three gateways at once: disjoint adds, then removes through one gateway racing re-adds of
// the same members through another. The app's team ends with the members the directory
// lists.
func TestFleetMemberChangesOfOneGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and three gateway processes")
	}
	f := startFleet(t, 3, "")
	const teamName = "Race Team"
	r := f.do(0, http.MethodPost, "/Groups", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":%q}`, teamName))
	if r.status != http.StatusCreated {
		t.Fatalf("group create: %d %v %s", r.status, r.err, r.body)
	}
	gid := r.id()
	ids := make([]string, 30)
	login := map[string]string{}
	for i := range ids {
		name := fmt.Sprintf("member-%d@contoso.example", i)
		r := f.do(i%3, http.MethodPost, "/Users", fleetUser(name, "t"))
		if r.status != http.StatusCreated {
			t.Fatalf("user create: %d %v %s", r.status, r.err, r.body)
		}
		ids[i] = r.id()
		login[r.id()] = name
	}
	member := func(op, id string) string {
		if op == "Remove" {
			return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"members[value eq \"%s\"]"}]}`, id)
		}
		return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"value":%q}]}]}`, id)
	}
	patch := func(gw int, op, id string) {
		r := f.retrying(gw, http.MethodPatch, "/Groups/"+gid, member(op, id))
		if r.status != http.StatusOK && r.status != http.StatusNoContent {
			t.Errorf("%s member through gateway %d: %d %v %s", op, gw, r.status, r.err, r.body)
		}
	}
	var wg sync.WaitGroup
	for gw := range 3 {
		wg.Go(func() {
			for i := gw; i < len(ids); i += 3 {
				patch(gw, "Add", ids[i])
			}
		})
	}
	wg.Wait()
	wg.Go(func() {
		for i := range 10 {
			patch(0, "Remove", ids[i])
		}
	})
	wg.Go(func() {
		for i := range 10 {
			patch(1, "Add", ids[i])
		}
	})
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var want []string
	for _, id := range f.listGroups(t, 2)[teamName] {
		want = append(want, login[id])
	}
	st := f.app.state(t)
	byID := map[int64]string{}
	for _, a := range st.Accounts {
		byID[a.ID] = strings.ToLower(a.Login)
	}
	var team int64
	for _, tm := range st.Teams {
		if tm.Name == teamName {
			team = tm.ID
		}
	}
	var got []string
	for _, m := range st.Memberships {
		if m.TeamID == team {
			got = append(got, byID[m.AccountID])
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("the app's team has %d members, the directory's group %d:\napp %v\ndirectory %v", len(got), len(want), got, want)
	}
	verifyJournal(t, f.backup())
}

// TestFleetGatewaysStartTogether: three gateways started at once on an empty store create
// its layout once between them (their transactions race on the head's compare), and serve
// one directory and one journal chain.
func TestFleetGatewaysStartTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and three gateway processes")
	}
	f := startFleetOf(t, 3, &gwFleet{together: true}, false)
	for gw := range 3 {
		name := fmt.Sprintf("together-%d@contoso.example", gw)
		if r := f.do(gw, http.MethodPost, "/Users", fleetUser(name, "t")); r.status != http.StatusCreated {
			t.Fatalf("create through gateway %d: %d %v %s", gw, r.status, r.err, r.body)
		}
	}
	for gw := range 3 {
		users, err := f.listUsers(gw)
		if err != nil || len(users) != 3 {
			t.Fatalf("gateway %d lists %d users (%v)", gw, len(users), err)
		}
	}
	fj := verifyJournal(t, f.backup())
	if fj.report.FirstSeq != 1 {
		t.Fatalf("the journal starts at %d", fj.report.FirstSeq)
	}
}

// TestFleetCompactionWhilePaused: a gateway is paused (SIGSTOP) while the others write and
// etcd compacts the history its watch would resume from. Resumed, it answers with the
// others' writes at once (never its stale cache: they are older than read_staleness), and
// writes through it go on.
func TestFleetCompactionWhilePaused(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and three gateway processes")
	}
	f := startFleetOf(t, 2, &gwFleet{readStaleness: 300 * time.Millisecond}, false)
	r := f.do(0, http.MethodPost, "/Users", fleetUser("paused-reader@contoso.example", "before"))
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %v %s", r.status, r.err, r.body)
	}
	id := r.id()
	if r := f.do(1, http.MethodGet, "/Users/"+id, ""); r.status != http.StatusOK {
		t.Fatalf("GET through gateway 1: %d %s", r.status, r.body)
	}
	pid := f.pid(1)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	for i := range 5 {
		if r := f.do(0, http.MethodPatch, "/Users/"+id, fleetPatch("title", fmt.Sprintf(`"while-paused-%d"`, i))); r.status != http.StatusOK && r.status != http.StatusNoContent {
			t.Fatalf("PATCH through gateway 0: %d %v %s", r.status, r.err, r.body)
		}
	}
	created := f.do(0, http.MethodPost, "/Users", fleetUser("created-while-paused@contoso.example", "t"))
	if created.status != http.StatusCreated {
		t.Fatalf("create through gateway 0: %d %s", created.status, created.body)
	}
	f.etcd.Compact()
	// Paused longer than read_staleness after those writes: the resumed gateway may not
	// answer from the cache it had (its last linearizable read is older than the bound).
	time.Sleep(time.Second)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	r = f.do(1, http.MethodGet, "/Users/"+id, "")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"while-paused-4"`) {
		t.Fatalf("gateway 1 resumed after a compaction answers %d %s; want the title written while it was paused", r.status, r.body)
	}
	if r := f.do(1, http.MethodGet, "/Users?filter="+fleetQuery(`userName eq "created-while-paused@contoso.example"`), ""); r.status != http.StatusOK || !strings.Contains(string(r.body), `"totalResults":1`) {
		t.Fatalf("gateway 1's filter for a user created while it was paused: %d %s", r.status, r.body)
	}
	if r := f.retrying(1, http.MethodPatch, "/Users/"+id, fleetPatch("title", `"after"`)); r.status != http.StatusOK && r.status != http.StatusNoContent {
		t.Fatalf("PATCH through the resumed gateway: %d %v %s", r.status, r.err, r.body)
	}
	time.Sleep(400 * time.Millisecond) // past read_staleness: gateway 0 sees gateway 1's write
	if r := f.do(0, http.MethodGet, "/Users/"+id, ""); !strings.Contains(string(r.body), `"after"`) {
		t.Fatalf("gateway 0 after the resumed gateway's PATCH: %d %s", r.status, r.body)
	}
}
