package provision

import (
	"maps"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// TestSeedStatsCountsWhatTheJournalLetThrough: the counts a restart rebuilds from the
// journal (seedStats) are the last hour's changes let through to the engine's target:
// applied, dry run and queued records; not another target's, not a denial, a failure, a
// skip or an intent, not a reconcile's or a delivery's (the queued request counted its
// change), not a record older than the hour; a request applied in parts counts each of its
// events once; a deactivation the policy sent instead of the change counts as one.
func TestSeedStatsCountsWhatTheJournalLetThrough(t *testing.T) {
	r := newRig(t, rigOptions{target: newTarget(t, "http://127.0.0.1:1", true)})
	name := r.eng.targetName()
	now := time.Now().UTC()
	ev := func(e ...change.Event) []change.Event { return e }
	recs := []journal.Record{
		// counted
		{Time: now.Add(-time.Minute), Target: name, Action: change.ActionCreate, Outcome: change.Applied, Events: ev(change.Create)},
		{Time: now.Add(-50 * time.Minute), Target: name, Action: change.ActionPatch, Outcome: change.DryRun, Events: ev(change.Update, change.Deactivate)},
		{Time: now.Add(-2 * time.Minute), Target: name, Action: change.ActionPatch, Outcome: change.Queued, Events: ev(change.Deactivate)},
		// a deactivation the policy sent instead of the change counts as one
		{Time: now, Target: name, Action: change.ActionPatch, ResourceType: scim.UserType, Outcome: change.Applied, Events: ev(change.Rename), Decision: &journal.Decision{Allow: true, Deactivate: true}},
		{Time: now, Target: name, RequestID: "big", Part: &journal.Part{Index: 0, Count: 2}, Action: change.ActionPatch, Outcome: change.Applied, Events: ev(change.AddMembers)},
		{Time: now, Target: name, RequestID: "big", Part: &journal.Part{Index: 1, Count: 2}, Action: change.ActionPatch, Outcome: change.Applied, Events: ev(change.AddMembers, change.RemoveMembers)},
		// not counted
		{Time: now, Target: "another", Action: change.ActionCreate, Outcome: change.Applied, Events: ev(change.Create)},
		{Time: now, Target: name, Action: change.ActionDelete, Outcome: change.Denied, Events: ev(change.Delete)},
		{Time: now, Target: name, Action: change.ActionDelete, Outcome: change.Failed, Events: ev(change.Delete)},
		{Time: now, Target: name, Action: change.ActionDelete, Outcome: change.Skipped, Events: ev(change.Delete)},
		{Time: now, Target: name, Action: change.ActionDelete, Outcome: change.Pending, Events: ev(change.Delete)},
		{Time: now, Target: name, Action: change.ActionReconcile, Outcome: change.Applied, Events: ev(change.Delete)},
		{Time: now, Target: name, Action: change.ActionDeliver, Outcome: change.Applied, Events: ev(change.Deactivate)},
		{Time: now.Add(-2 * time.Hour), Target: name, Action: change.ActionDelete, Outcome: change.Applied, Events: ev(change.Delete)},
	}
	for i := range recs {
		if err := r.store.Update(func(tx *store.Tx) error { return r.j.Append(tx.KV(), &recs[i]) }); err != nil {
			t.Fatal(err)
		}
	}
	seeded, err := r.eng.seedStats()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"create": 1, "update": 1, "deactivate": 3, "rename": 1, "add_members": 1, "remove_members": 1}
	got := statsNow(t, seeded)
	maps.DeleteFunc(got, func(_ string, n int64) bool { return n == 0 })
	if !maps.Equal(got, want) {
		t.Errorf("seeded counts %v, want %v", got, want)
	}
}
