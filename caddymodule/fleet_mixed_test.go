package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// outboxLen is how many tasks the fleet's outbox holds for target (read at the head).
func (f *gwFleet) outboxLen(target string) int {
	f.t.Helper()
	db, err := etcdkv.Open(context.Background(), etcdkv.Config{Endpoints: f.etcd.Endpoints(), Prefix: fleetPrefix})
	if err != nil {
		f.t.Fatalf("opening the fleet's store: %v", err)
	}
	defer db.Close()
	st, err := store.New(db)
	if err != nil {
		f.t.Fatal(err)
	}
	n := 0
	if err := st.View(func(tx *store.Tx) error {
		return tx.Tasks(target, 0, func(store.Task) (bool, error) { n++; return true, nil })
	}); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// waitOutboxEmpty waits (bounded) until the fleet's outbox of target is delivered.
func (f *gwFleet) waitOutboxEmpty(target string) {
	f.t.Helper()
	for range 240 {
		if f.outboxLen(target) == 0 {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	f.t.Fatalf("the outbox of %s still holds %d tasks after a minute", target, f.outboxLen(target))
}

// teamMembers is the logins the app's team name holds, sorted.
func (a *fleetApp) teamMembers(t testing.TB, name string) []string {
	t.Helper()
	st := a.state(t)
	byID := map[int64]string{}
	for _, acc := range st.Accounts {
		byID[acc.ID] = strings.ToLower(acc.Login)
	}
	var team int64
	for _, tm := range st.Teams {
		if tm.Name == name {
			team = tm.ID
		}
	}
	got := []string{}
	for _, m := range st.Memberships {
		if m.TeamID == team {
			got = append(got, byID[m.AccountID])
		}
	}
	slices.Sort(got)
	return got
}

// groupMemberPatch is Entra's PATCH adding (op Add) or removing (op Remove) one member.
func groupMemberPatch(op, id string) string {
	if op == "Remove" {
		return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"members[value eq \"%s\"]"}]}`, id)
	}
	return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"value":%q}]}]}`, id)
}

// TestFleetMixedDeliveryMembers: during a rolling config change one gateway delivers the
// target at once and another queues it (same target name, one outbox). Member adds and
// removes of one group go through both at once, the same members through both: once the
// outbox is delivered, the app's team holds the members the directory's group lists.
func TestFleetMixedDeliveryMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and two gateway processes")
	}
	f := startFleetOf(t, 2, &gwFleet{deliveries: []string{"", "queued"}}, false)
	const teamName = "Mixed Team"
	r := f.do(0, http.MethodPost, "/Groups", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":%q}`, teamName))
	if r.status != http.StatusCreated {
		t.Fatalf("group create: %d %v %s", r.status, r.err, r.body)
	}
	gid := r.id()
	ids := make([]string, 12)
	login := map[string]string{}
	for i := range ids {
		name := fmt.Sprintf("mixed-%d@contoso.example", i)
		r := f.do(0, http.MethodPost, "/Users", fleetUser(name, "t"))
		if r.status != http.StatusCreated {
			t.Fatalf("user create: %d %v %s", r.status, r.err, r.body)
		}
		ids[i] = r.id()
		login[r.id()] = name
	}
	patch := func(gw int, op, id string) {
		r := f.retrying(gw, http.MethodPatch, "/Groups/"+gid, groupMemberPatch(op, id))
		if r.status != http.StatusOK && r.status != http.StatusNoContent {
			t.Errorf("%s member through gateway %d: %d %v %s", op, gw, r.status, r.err, r.body)
		}
	}
	// Each gateway adds and removes every member, in opposite orders and phases: the
	// same member's changes meet through both gateways.
	var wg sync.WaitGroup
	for round := range 6 {
		for gw := range 2 {
			wg.Go(func() {
				for k := range ids {
					i := k
					if gw == 1 {
						i = len(ids) - 1 - k
					}
					op := "Add"
					if (round+gw+i)%2 == 1 {
						op = "Remove"
					}
					patch(gw, op, ids[i])
				}
			})
		}
		wg.Wait()
	}
	if t.Failed() {
		t.FailNow()
	}
	f.waitOutboxEmpty("demo")
	want := []string{}
	for _, id := range f.listGroups(t, 0)[teamName] {
		want = append(want, login[id])
	}
	slices.Sort(want)
	if other := f.listGroups(t, 1)[teamName]; len(other) != len(want) {
		t.Fatalf("the gateways list %d and %d members", len(want), len(other))
	}
	if got := f.app.teamMembers(t, teamName); !slices.Equal(got, want) {
		fj := verifyJournal(t, f.backup())
		for _, rec := range fj.records {
			if rec.SCIMID != gid {
				continue
			}
			var calls []string
			for _, c := range rec.Calls {
				calls = append(calls, c.Method+" "+c.URL)
			}
			var ch []string
			for _, c := range rec.Changes {
				ch = append(ch, c.Path+"="+string(c.Value))
			}
			t.Logf("%d %s %s %s %s %v %v calls=%v err=%s", rec.Seq, rec.Gateway, rec.RequestID, rec.Action, rec.Outcome, rec.Events, ch, calls, rec.Error)
		}
		t.Fatalf("the app's team has %d members, the directory's group %d:\napp %v\ndirectory %v", len(got), len(want), got, want)
	}
	verifyJournal(t, f.backup())
}
