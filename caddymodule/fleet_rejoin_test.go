package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestFleetEtcdMemberReplaced: an etcd member's disk dies and operators replace it (stop,
// MemberRemove, wipe, MemberAdd, start with initial-cluster-state existing, same client
// URL) while Entra's creates, member adds and reads go through three gateways with queued
// delivery: gateway 0 is configured with the replaced member only (its watch and its lease
// are on it), gateway 1 lists it first, gateway 2 last. No answer is a 500; a gateway that
// cannot reach etcd answers 503 and the request is retried through the next, as a load
// balancer does. Afterwards every acknowledged write is there through every gateway (their
// watch-fed copies agree, gateway 0's too), the app got each acknowledged create once and
// holds the group's members, the journal verifies as one chain with its checkpoints, and
// each fleet job has one candidate key per live gateway, all on live leases.
func TestFleetEtcdMemberReplaced(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and three gateway processes")
	}
	// The member replaced is the leader when the gateways start (etcd's leader moves to
	// another member when it is removed).
	f := &gwFleet{}
	victim := -1
	*f = gwFleet{
		delivery: "queued",
		endpointsOf: func(i int, all []string) []string {
			if victim < 0 {
				victim = max(f.etcd.Leader(), 0)
			}
			others := slices.Delete(slices.Clone(all), victim, victim+1)
			switch i {
			case 0:
				return []string{all[victim]}
			case 1:
				return append([]string{all[victim]}, others...)
			}
			return append(others, all[victim])
		},
		gatewayExtra: "\t\tjournal {\n\t\t\tcheckpoint_every 25\n\t\t}\n",
	}
	startFleetOf(t, 3, f, false)
	const teamName = "Rejoin Team"
	r := f.do(1, http.MethodPost, "/Groups", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":%q}`, teamName))
	if r.status != http.StatusCreated {
		t.Fatalf("group create: %d %v %s", r.status, r.err, r.body)
	}
	gid := r.id()

	var mu sync.Mutex
	acked := map[string]string{} // userName -> id
	members := map[string]bool{} // ids whose member add was acknowledged
	unavailable := make([]atomic.Int64, 3)
	// send sends one request through gateway gw, and through the next ones while the
	// answer is 503 or 429 (bounded).
	send := func(gw int, method, path, body string) fleetResp {
		var r fleetResp
		for attempt := range 30 {
			g := (gw + attempt) % 3
			r = f.do(g, method, path, body)
			if r.err == nil && r.status >= 500 && r.status != http.StatusServiceUnavailable {
				t.Errorf("%s %s through gateway %d: %d %s", method, path, g, r.status, r.body)
				return r
			}
			if r.err == nil && r.status != http.StatusServiceUnavailable && r.status != http.StatusTooManyRequests {
				return r
			}
			unavailable[g].Add(1)
			time.Sleep(50 * time.Millisecond)
		}
		return r
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := 0; i < 400 && !stop.Load(); i++ {
				gw := (w + i) % 3
				name := fmt.Sprintf("rejoin-w%d-%d@contoso.example", w, i)
				r := send(gw, http.MethodPost, "/Users", fleetUser(name, "t"))
				id := r.id()
				switch {
				case r.status == http.StatusCreated:
				case r.status == http.StatusConflict:
					// An attempt answered 503 committed after all: Entra's matching GET.
					g := send(gw, http.MethodGet, "/Users?filter="+fleetQuery(fmt.Sprintf("userName eq %q", name)), "")
					var page struct{ Resources []fleetUserView }
					if g.status != http.StatusOK || json.Unmarshal(g.body, &page) != nil || len(page.Resources) != 1 {
						t.Errorf("create of %s answered 409 but the filter finds %d %s", name, g.status, g.body)
						return
					}
					id = page.Resources[0].ID
				default:
					t.Errorf("create of %s: %d %v %s", name, r.status, r.err, r.body)
					return
				}
				mu.Lock()
				acked[name] = id
				mu.Unlock()
				if g := send(gw+1, http.MethodGet, "/Users/"+id, ""); g.status != http.StatusOK {
					t.Errorf("GET of acknowledged %s through gateway %d: %d %v %s", name, (gw+1)%3, g.status, g.err, g.body)
					return
				}
				if i%2 == 0 {
					p := send(gw+2, http.MethodPatch, "/Groups/"+gid, groupMemberPatch("Add", id))
					if p.status != http.StatusOK && p.status != http.StatusNoContent {
						t.Errorf("member add of %s: %d %v %s", name, p.status, p.err, p.body)
						return
					}
					mu.Lock()
					members[id] = true
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(time.Second)
	oldID, wasLeader := f.etcd.MemberIDs()[victim], f.etcd.Leader() == victim
	f.etcd.Remove(victim)
	t.Logf("member %d (%x, leader %v) removed and wiped", victim, oldID, wasLeader)
	time.Sleep(4 * time.Second) // past gateway 0's lease (lease_ttl 3s)
	f.etcd.Rejoin(victim)
	t.Logf("member %d rejoined as %x", victim, f.etcd.MemberIDs()[victim])
	// Gateway 0, whose one endpoint is the new member, takes writes again.
	var back fleetResp
	for range 60 {
		back = f.do(0, http.MethodPost, "/Users", fleetUser("rejoin-gw0@contoso.example", "t"))
		if back.status != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if back.status != http.StatusCreated {
		t.Errorf("a create through gateway 0 after the rejoin: %d %v %s", back.status, back.err, back.body)
	} else {
		mu.Lock()
		acked["rejoin-gw0@contoso.example"] = back.id()
		mu.Unlock()
	}
	time.Sleep(3 * time.Second)
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d creates acknowledged; 503s through each gateway: %d %d %d", len(acked),
		unavailable[0].Load(), unavailable[1].Load(), unavailable[2].Load())

	// Every gateway, gateway 0 (watch on the replaced member) too, reads every
	// acknowledged write, and all read the same directory.
	var lists []map[string]fleetUserView
	for gw := range 3 {
		users, err := f.listUsers(gw)
		if err != nil {
			t.Fatal(err)
		}
		for name, id := range acked {
			if u, ok := users[id]; !ok || !strings.EqualFold(u.UserName, name) {
				t.Errorf("gateway %d does not list acknowledged user %s (%s)", gw, name, id)
			}
		}
		lists = append(lists, users)
	}
	for gw := 1; gw < 3; gw++ {
		if len(lists[gw]) != len(lists[0]) {
			t.Errorf("gateway %d lists %d users, gateway 0 %d", gw, len(lists[gw]), len(lists[0]))
		}
	}
	group := f.listGroups(t, 0)[teamName]
	for gw := 1; gw < 3; gw++ {
		if other := f.listGroups(t, gw)[teamName]; !slices.Equal(other, group) {
			t.Errorf("gateway %d lists %d members, gateway 0 %d", gw, len(other), len(group))
		}
	}
	for id := range members {
		if !slices.Contains(group, id) {
			t.Errorf("acknowledged member %s is not in the group", id)
		}
	}

	// The app: each acknowledged create once, the group's members.
	f.waitOutboxEmpty("demo")
	for name := range acked {
		if n := f.app.createCount(name); n != 1 {
			t.Errorf("the app received %d creates of %s, want 1", n, name)
		}
	}
	var want []string
	for _, id := range group {
		want = append(want, strings.ToLower(lists[0][id].UserName))
	}
	slices.Sort(want)
	if got := f.app.teamMembers(t, teamName); !slices.Equal(got, want) {
		t.Errorf("the app's team has %d members, the directory's group %d", len(got), len(want))
	}

	fj := verifyJournal(t, f.backup())
	if fj.report.Checkpoints == 0 {
		t.Errorf("no checkpoint in %d records (checkpoint_every 25)", fj.report.Records)
	}

	// The fleet's elections: per job, one key per live gateway, each on a live lease.
	cli := f.etcd.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pfx := fleetPrefix + "e/"
	resp, err := cli.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	byJob := map[string][]string{}
	for _, kv := range resp.Kvs {
		key := strings.TrimPrefix(string(kv.Key), pfx)
		job := strings.TrimSuffix(key[:strings.LastIndex(key, "/")], "/")
		byJob[job] = append(byJob[job], string(kv.Value))
		ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil || ttl.TTL <= 0 {
			t.Errorf("election key %s (%s) is on lease %x, which is gone (%v)", kv.Key, kv.Value, kv.Lease, err)
		}
	}
	pids := map[string]bool{}
	for gw := range 3 {
		pids[strconv.Itoa(f.pid(gw))] = true
	}
	for _, job := range []string{"outbox/demo", "journal/" + DefaultJournalName + "/checkpoint"} {
		ids := byJob[job]
		if len(ids) != 3 {
			t.Errorf("job %s has %d candidates %v, want one per gateway", job, len(ids), ids)
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] || !pids[id[strings.LastIndex(id, ":")+1:]] {
				t.Errorf("job %s: candidate %s twice, or not a running gateway (%v)", job, id, ids)
			}
			seen[id] = true
		}
	}
	t.Logf("election jobs: %v", byJob)
}
