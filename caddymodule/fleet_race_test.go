package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
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
