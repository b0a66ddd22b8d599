package caddymodule

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/demoapp"
)

// The fleet tests (issue 20, item 5): three gateway processes on one three-member etcd
// cluster, in front of one app. The rig is in fleet_rig_test.go.

// fleetExpect is the directory a workload should leave: users by SCIM id, groups' members.
type fleetExpect struct {
	mu      sync.Mutex
	users   map[string]fleetUserView // live users
	deleted map[string]string        // SCIM id -> userName
	groups  map[string]fleetGroup    // by SCIM id
}

type fleetGroup struct {
	name    string
	members map[string]bool // SCIM ids
}

// TestFleetEntraTrafficConsistent spreads Entra's traffic over three gateways at once:
// creates through one gateway, updates, deactivations and deletions of the same users
// through the others (read-your-writes across the fleet), and member additions to the
// same groups from every gateway concurrently. Every request answers 2xx; afterwards
// every gateway lists the same directory, the app holds exactly that (one create call per
// account), and the journal verifies as one chain with one applied record per change.
func TestFleetEntraTrafficConsistent(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and three gateway processes")
	}
	f := startFleet(t, 3, "")
	exp := &fleetExpect{users: map[string]fleetUserView{}, deleted: map[string]string{}, groups: map[string]fleetGroup{}}
	var requests int
	var reqMu sync.Mutex
	must := func(gw int, method, path, body string, want ...int) fleetResp {
		t.Helper()
		r := f.do(gw, method, path, body)
		reqMu.Lock()
		requests++
		reqMu.Unlock()
		if r.err != nil || !slices.Contains(want, r.status) {
			t.Errorf("%s %s through gateway %d: %d %v %s", method, path, gw, r.status, r.err, r.body)
		}
		return r
	}

	// One group per gateway, created through it.
	var groupIDs []string
	for gw := range 3 {
		name := fmt.Sprintf("Fleet Team %d", gw)
		r := must(gw, http.MethodPost, "/Groups", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":%q}`, name), http.StatusCreated)
		if t.Failed() {
			t.FailNow()
		}
		groupIDs = append(groupIDs, r.id())
		exp.groups[r.id()] = fleetGroup{name: name, members: map[string]bool{}}
	}

	// Workers: each gateway has three; each worker creates its users through its gateway,
	// then updates them through the next gateway, adds them to a group through the one
	// after, deactivates every third and deletes every fifth through yet another.
	const workersPerGateway, usersPerWorker = 3, 8
	var wg sync.WaitGroup
	for gw := range 3 {
		for w := range workersPerGateway {
			wg.Go(func() {
				for k := range usersPerWorker {
					name := fmt.Sprintf("fleet-g%d-w%d-%d@contoso.example", gw, w, k)
					r := must(gw, http.MethodPost, "/Users", fleetUser(name, "new"), http.StatusCreated)
					id := r.id()
					if id == "" {
						return
					}
					u := fleetUserView{ID: id, UserName: name, Active: true, Title: "new"}
					next := (gw + 1 + k) % 3
					title := fmt.Sprintf("title-%d", k)
					must(next, http.MethodPatch, "/Users/"+id, fleetPatch("title", fmt.Sprintf("%q", title)), http.StatusOK, http.StatusNoContent)
					u.Title = title
					group := groupIDs[(gw+w+k)%3]
					must((next+1)%3, http.MethodPatch, "/Groups/"+group,
						fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"value":%q}]}]}`, id),
						http.StatusOK, http.StatusNoContent)
					deleted := false
					switch {
					case k%5 == 4:
						must((next+2)%3, http.MethodDelete, "/Users/"+id, "", http.StatusNoContent)
						deleted = true
					case k%3 == 2:
						must((next+2)%3, http.MethodPatch, "/Users/"+id, fleetPatch("active", "false"), http.StatusOK, http.StatusNoContent)
						u.Active = false
					}
					exp.mu.Lock()
					if deleted {
						exp.deleted[id] = name
					} else {
						exp.users[id] = u
						exp.groups[group].members[id] = true
					}
					exp.mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	f.checkConsistent(t, exp)
	t.Logf("%d requests over 3 gateways; %d users, %d deleted", requests, len(exp.users), len(exp.deleted))
}

// checkConsistent checks that every gateway answers the expected directory, that the app
// holds it (one create per account), and that the journal is one chain with one applied
// create per user and one applied delete per deleted user.
func (f *fleet) checkConsistent(t *testing.T, exp *fleetExpect) {
	t.Helper()
	var first map[string]fleetUserView
	for gw := range f.gws {
		got, err := f.listUsers(gw)
		if err != nil {
			t.Fatal(err)
		}
		if gw == 0 {
			first = got
		} else if !maps.Equal(first, got) {
			t.Fatalf("gateway %d lists another directory than gateway 0 (%d users, %d)", gw, len(got), len(first))
		}
		for id, g := range exp.groups {
			r := f.do(gw, http.MethodGet, "/Groups/"+id, "")
			var grp struct {
				Members []struct{ Value string }
			}
			if r.status != http.StatusOK || json.Unmarshal(r.body, &grp) != nil {
				t.Fatalf("group %s through gateway %d: %d %s", id, gw, r.status, r.body)
			}
			var members []string
			for _, m := range grp.Members {
				members = append(members, m.Value)
			}
			slices.Sort(members)
			if want := slices.Sorted(maps.Keys(g.members)); !slices.Equal(members, want) {
				t.Fatalf("group %q through gateway %d has members %v, want %v", g.name, gw, members, want)
			}
		}
	}
	if !maps.Equal(first, exp.users) {
		for id, u := range exp.users {
			if first[id] != u {
				t.Errorf("user %s: directory has %+v, want %+v", id, first[id], u)
			}
		}
		t.Fatalf("the directory has %d users, want %d", len(first), len(exp.users))
	}

	st := f.app.state(t)
	byLogin := map[string]demoapp.Account{}
	byID := map[int64]string{}
	for _, a := range st.Accounts {
		byLogin[strings.ToLower(a.Login)] = a
		byID[a.ID] = strings.ToLower(a.Login)
	}
	for _, u := range exp.users {
		a, ok := byLogin[strings.ToLower(u.UserName)]
		switch {
		case !ok:
			t.Errorf("the app has no account for %s", u.UserName)
		case a.Locked == u.Active:
			t.Errorf("account %s locked=%v, user active=%v", u.UserName, a.Locked, u.Active)
		case a.Org.Title != u.Title:
			t.Errorf("account %s title %q, want %q", u.UserName, a.Org.Title, u.Title)
		}
		if n := f.app.createCount(u.UserName); n != 1 {
			t.Errorf("the app received %d creates for %s, want 1", n, u.UserName)
		}
	}
	for _, name := range exp.deleted {
		if _, ok := byLogin[strings.ToLower(name)]; ok {
			t.Errorf("the app still has deleted user %s", name)
		}
		if n := f.app.createCount(name); n != 1 {
			t.Errorf("the app received %d creates for %s, want 1", n, name)
		}
	}
	if len(st.Accounts) != len(exp.users) {
		t.Errorf("the app has %d accounts, want %d", len(st.Accounts), len(exp.users))
	}
	teamMembers := map[string][]string{}
	teamName := map[int64]string{}
	for _, tm := range st.Teams {
		teamName[tm.ID] = tm.Name
	}
	for _, m := range st.Memberships {
		teamMembers[teamName[m.TeamID]] = append(teamMembers[teamName[m.TeamID]], byID[m.AccountID])
	}
	for _, g := range exp.groups {
		var want []string
		for id := range g.members {
			want = append(want, strings.ToLower(exp.users[id].UserName))
		}
		slices.Sort(want)
		got := teamMembers[g.name]
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("team %q has members %v in the app, want %v", g.name, got, want)
		}
	}

	fj := verifyJournal(t, f.backup())
	applied := fj.applied()
	for id := range exp.users {
		if applied["create"][id] != 1 {
			t.Errorf("user %s has %d applied create records, want 1", id, applied["create"][id])
		}
	}
	for id := range exp.deleted {
		if applied["create"][id] != 1 || applied["delete"][id] != 1 {
			t.Errorf("deleted user %s has %d create and %d delete records, want 1 each", id, applied["create"][id], applied["delete"][id])
		}
	}
	t.Logf("journal: one chain of %d records (seq %d..%d)", fj.report.Records, fj.report.FirstSeq, fj.report.LastSeq)
}
