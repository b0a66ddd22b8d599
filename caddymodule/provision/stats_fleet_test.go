package provision

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// brakePolicy refuses a deactivation once limit deactivations were let through in the hour.
func brakePolicy(t testing.TB, limit int) *policy.Engine {
	return writePolicy(t, fmt.Sprintf(`package scimgate

default decision := {"allow": true}

decision := {"allow": false, "reasons": [sprintf("%%d deactivations in the last hour", [input.stats.last_hour.deactivate])]} if {
	"deactivate" in input.events
	input.stats.last_hour.deactivate >= %d
}
`, limit))
}

// gateway builds an engine on the rig's store as another gateway of a fleet would: its own
// shared state (locks, stats, outbox worker), the store shared.
func (r *rig) gateway(target *Target, pol *policy.Engine) *Engine {
	r.t.Helper()
	share := NewShared(nil)
	r.t.Cleanup(share.Close)
	eng, err := New(Config{Store: r.store, Journal: r.j, Shared: share, Target: target, Policy: pol, SharedStore: true})
	if err != nil {
		r.t.Fatal(err)
	}
	return eng
}

// storedStats is the store's count of the rig target's events in the hour.
func (r *rig) storedStats(ev change.Event) int64 {
	r.t.Helper()
	var n int64
	if err := r.store.View(func(tx *store.Tx) error {
		sum, err := tx.SumStats("native", time.Now().Unix()/60)
		n = sum[string(ev)]
		return err
	}); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// deactivate sends the PATCH that deactivates user id through eng.
func (r *rig) deactivate(eng *Engine, id string) *Result {
	return deactivateWith(eng, id, patchOps(r.t, `[{"op":"replace","path":"active","value":false}]`))
}

// deactivateWith is deactivate with the PATCH's operations parsed (tests' goroutines must
// not call t.Fatal).
func deactivateWith(eng *Engine, id string, ops []scim.PatchOp) *Result {
	return eng.Apply(testReq, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: id, Patch: ops, Status: http.StatusNoContent})
}

// TestFleetBrakeCountsEveryGateway: two gateways on one store (two engines, each with its
// own shared state) count their deactivations in the store, so a brake of limit lets
// exactly limit through when three times as many are sent at once through both, and the
// app is asked for exactly those (issue 20).
func TestFleetBrakeCountsEveryGateway(t *testing.T) {
	const limit = 10
	app, srv := newNativeApp(t)
	target := newTarget(t, srv.URL, false)
	r := newRig(t, rigOptions{target: target})
	ids := make([]string, 3*limit)
	for i := range ids {
		ids[i] = r.mustCreate(scim.UserType, user(fmt.Sprintf("u%02d@contoso.example", i)))
	}
	pol := brakePolicy(t, limit)
	gateways := []*Engine{r.gateway(target, pol), r.gateway(target, pol)}
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		passed            int
		braked            []string
		passedPerGateway  [2]int
		unexpectedAnswers []string
	)
	ops := make([][]scim.PatchOp, len(ids))
	for i := range ops {
		ops[i] = patchOps(t, `[{"op":"replace","path":"active","value":false}]`)
	}
	for i, id := range ids {
		wg.Go(func() {
			res := deactivateWith(gateways[i%2], id, ops[i])
			mu.Lock()
			defer mu.Unlock()
			switch {
			case res.Err == nil:
				passed++
				passedPerGateway[i%2]++
			case res.Status == http.StatusForbidden && strings.Contains(res.Err.Detail, "deactivations in the last hour"):
				braked = append(braked, id)
			default:
				unexpectedAnswers = append(unexpectedAnswers, fmt.Sprintf("%d %v", res.Status, res.Err))
			}
		})
	}
	wg.Wait()
	if len(unexpectedAnswers) > 0 {
		t.Fatalf("unexpected answers: %v", unexpectedAnswers)
	}
	if passed != limit || len(braked) != 2*limit {
		t.Fatalf("%d deactivations passed a brake of %d through two gateways (%v per gateway), %d braked", passed, limit, passedPerGateway, len(braked))
	}
	calls := 0
	for _, c := range app.callLog() {
		if strings.HasPrefix(c, "PATCH /accounts/") {
			calls++
		}
	}
	if calls != limit {
		t.Errorf("the app was asked for %d deactivations, want %d", calls, limit)
	}
	if got := r.storedStats(change.Deactivate); got != limit {
		t.Errorf("the store counts %d deactivations, want %d", got, limit)
	}
	// A third gateway joining the fleet sees the hour's count and brakes at once.
	if res := r.deactivate(r.gateway(target, pol), braked[0]); res.Status != http.StatusForbidden {
		t.Errorf("a gateway that joined later let a deactivation through: %+v", res)
	}
}

// TestFleetStatsSeedOnce: a fleet starting on a store whose counts were kept in memory (a
// single gateway's, copied) takes the hour's counts from the journal once: gateways
// starting after the first find the store's counts and do not add the journal's again.
func TestFleetStatsSeedOnce(t *testing.T) {
	_, srv := newNativeApp(t)
	target := newTarget(t, srv.URL, false)
	r := newRig(t, rigOptions{target: target, policy: brakePolicy(t, 100)}) // counts in memory
	ids := make([]string, 5)
	for i := range ids {
		ids[i] = r.mustCreate(scim.UserType, user(fmt.Sprintf("u%d@contoso.example", i)))
	}
	for _, id := range ids[:3] {
		if res := r.deactivate(r.eng, id); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if got := r.storedStats(change.Deactivate); got != 0 {
		t.Fatalf("a single gateway counted %d in the store", got)
	}
	pol := brakePolicy(t, 4)
	first := r.gateway(target, pol)
	r.gateway(target, pol)
	if got := r.storedStats(change.Deactivate); got != 3 {
		t.Fatalf("after two gateways started the store counts %d deactivations, want the journal's 3", got)
	}
	if res := r.deactivate(first, ids[3]); res.Err != nil {
		t.Fatal(res.Err)
	}
	late := r.gateway(target, pol)
	if got := r.storedStats(change.Deactivate); got != 4 {
		t.Fatalf("a gateway starting later changed the count to %d, want 4", got)
	}
	if res := r.deactivate(late, ids[4]); res.Status != http.StatusForbidden || !strings.Contains(res.Err.Detail, "4 deactivations") {
		t.Fatalf("the brake of 4 did not hold on the late gateway: %+v", res)
	}
}

// TestFleetStatsFailClosed: when the store cannot count a change (a corrupt count here), the
// policy does not decide it: the change is answered as a storage error Entra retries, and
// the app is not called.
func TestFleetStatsFailClosed(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newTarget(t, srv.URL, false)
	r := newRig(t, rigOptions{target: target})
	id := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	eng := r.gateway(target, brakePolicy(t, 10))
	key := binary.BigEndian.AppendUint64([]byte("native\x00"), uint64(time.Now().Unix()/60))
	if err := r.store.Update(func(tx *store.Tx) error {
		return tx.KV().Bucket([]byte("stats")).Put(key, []byte{9, 'x'})
	}); err != nil {
		t.Fatal(err)
	}
	before := len(app.callLog())
	res := r.deactivate(eng, id)
	if res.Status != http.StatusServiceUnavailable || res.RetryAfter == 0 {
		t.Fatalf("a change the stats could not count: %+v", res)
	}
	if calls := app.callLog()[before:]; len(calls) != 0 {
		t.Fatalf("the app was called: %v", calls)
	}
	if rec := r.last(); rec.Outcome != change.Failed || rec.Decision != nil {
		t.Fatalf("journaled as %s with decision %+v", rec.Outcome, rec.Decision)
	}
}

// scopeExitPolicy sends the app a deactivation instead of a rename that takes a user out
// of contoso.example (as scoping's on_exit does), and refuses it once limit deactivations
// were let through in the hour (as the mass-deprovision brake does).
func scopeExitPolicy(t testing.TB, limit int) *policy.Engine {
	return writePolicy(t, fmt.Sprintf(`package scimgate

default decision := {"allow": true}

_leaves if {
	input.native_id != ""
	endswith(input.previous.userName, "@contoso.example")
	endswith(input.resource.userName, "@fabrikam.example")
}

decision := {"allow": true, "deactivate": true} if {
	_leaves
	input.stats.last_hour.deactivate < %[1]d
}

_deprovisions if _leaves

_deprovisions if "deactivate" in input.events

decision := {"allow": false, "reasons": [sprintf("%%d deactivations in the last hour", [input.stats.last_hour.deactivate])]} if {
	_deprovisions
	input.stats.last_hour.deactivate >= %[1]d
}
`, limit))
}

// TestBrakeCountsPolicyDeactivationsAtOnce: deactivations the policy asks for instead of
// the change count in the stats like deactivations Entra sends, and concurrent ones see
// each other: renames taking three times limit users out of scope at once, through one
// gateway (counts in memory) or two (counts in the store), deactivate exactly limit
// accounts, and a plain deactivation after them is braked.
func TestBrakeCountsPolicyDeactivationsAtOnce(t *testing.T) {
	const limit = 5
	for _, kind := range []string{"memory", "fleet"} {
		t.Run(kind, func(t *testing.T) {
			app, srv := newNativeApp(t)
			target := newTarget(t, srv.URL, false)
			pol := scopeExitPolicy(t, limit)
			r := newRig(t, rigOptions{target: target, policy: pol})
			ids := make([]string, 3*limit+1)
			for i := range ids {
				ids[i] = r.mustCreate(scim.UserType, user(fmt.Sprintf("u%02d@contoso.example", i)))
			}
			gateways := []*Engine{r.eng, r.eng}
			if kind == "fleet" {
				gateways = []*Engine{r.gateway(target, pol), r.gateway(target, pol)}
			}
			before := len(app.callLog())
			ops := make([][]scim.PatchOp, len(ids))
			for i := range ops {
				ops[i] = patchOps(t, fmt.Sprintf(`[{"op":"replace","path":"userName","value":"u%02d@fabrikam.example"}]`, i))
			}
			var (
				wg         sync.WaitGroup
				mu         sync.Mutex
				passed     int
				unexpected []string
			)
			for i, id := range ids[:3*limit] {
				wg.Go(func() {
					res := gateways[i%2].Apply(testReq, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: id, Patch: ops[i], Status: http.StatusOK})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case res.Err == nil:
						passed++
					case res.Status == http.StatusForbidden && strings.Contains(res.Err.Detail, "deactivations in the last hour"):
					default:
						unexpected = append(unexpected, fmt.Sprintf("%d %v", res.Status, res.Err))
					}
				})
			}
			wg.Wait()
			if len(unexpected) > 0 {
				t.Fatalf("unexpected answers: %v", unexpected)
			}
			if passed != limit {
				t.Errorf("%d users left scope past a brake of %d", passed, limit)
			}
			calls := 0
			for _, c := range app.callLog()[before:] {
				if strings.HasPrefix(c, "PATCH /accounts/") {
					calls++
				}
			}
			if calls != limit {
				t.Errorf("the app was asked for %d deactivations, want %d: %v", calls, limit, app.callLog()[before:])
			}
			if res := r.deactivate(gateways[0], ids[3*limit]); res.Status != http.StatusForbidden {
				t.Errorf("a deactivation after %d policy deactivations passed a brake of %d: %+v", limit, limit, res)
			}
		})
	}
}
