package outbox

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// groupByScan is how group chose a ready task's companions before byRes: a scan of every
// task queued after it, collecting the other resources' creates and deletes on the way.
// TestGroupMatchesScan checks the index against it.
func groupByScan(entries []*entry, i int, live, stuck map[string]bool, scheduled func(*entry) bool, now time.Time) (group []*entry, wait bool) {
	e := entries[i]
	group = []*entry{e}
	between := map[string]bool{}
	for _, f := range entries[i+1:] {
		if len(group) == maxCoalesce {
			break
		}
		if f.resource != e.resource {
			if !f.dead && f.made {
				between[f.resource] = true
			}
			continue
		}
		if f.dead || f.inFlight || !scheduled(f) || f.notBefore.After(now) {
			break
		}
		if slices.ContainsFunc(f.refs, func(r string) bool { return r != e.resource && live[r] }) {
			urgent := slices.ContainsFunc(group, func(g *entry) bool { return g.urgent }) || f.urgent
			wait = !urgent && !slices.ContainsFunc(f.refs, func(r string) bool { return stuck[r] })
			break
		}
		if slices.ContainsFunc(f.refs, func(r string) bool { return between[r] }) {
			break
		}
		group = append(group, f)
	}
	return group, wait
}

// checkIndex fails unless byRes holds exactly the entries, by resource, in order.
func checkIndex(t *testing.T, w *Worker) {
	t.Helper()
	n := 0
	for res, list := range w.byRes {
		if len(list) == 0 {
			t.Fatalf("byRes[%s] is empty", res)
		}
		for k, e := range list {
			if e.resource != res || k > 0 && list[k-1].seq >= e.seq {
				t.Fatalf("byRes[%s][%d] = seq %d of %s", res, k, e.seq, e.resource)
			}
			if i, found := seqIndex(w.entries, e.seq); !found || w.entries[i] != e {
				t.Fatalf("byRes[%s] holds seq %d, entries do not", res, e.seq)
			}
		}
		n += len(list)
	}
	if n != len(w.entries) {
		t.Fatalf("byRes holds %d entries, entries %d", n, len(w.entries))
	}
}

// TestGroupMatchesScan: on random outboxes (few resources, so that tasks of one resource
// interleave with creates, deletes, dead letters and references of others), group through
// the per-resource index picks the same tasks and the same wait as a scan of every later
// task, and the index stays equal to the entries through adds out of order and removals.
func TestGroupMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 5000))
	now := time.Now()
	for round := range 300 {
		w := &Worker{coalesce: maxCoalesce}
		nres := 2 + rng.IntN(6)
		res := func() string { return fmt.Sprintf("r%d", rng.IntN(nres)) }
		seqs := rng.Perm(5 + rng.IntN(150)) // added out of order, as a resync and the inbox may
		for _, s := range seqs {
			e := &entry{seq: uint64(s + 1), resource: res(), made: rng.IntN(3) == 0, dead: rng.IntN(12) == 0,
				inFlight: rng.IntN(15) == 0, urgent: rng.IntN(20) == 0}
			for range rng.IntN(3) {
				e.refs = append(e.refs, res())
			}
			if rng.IntN(10) == 0 {
				e.notBefore = now.Add(time.Minute)
			}
			w.add(e)
			w.add(&entry{seq: e.seq, resource: "duplicate"}) // already there: ignored
		}
		for range rng.IntN(len(seqs) / 3) {
			w.remove(uint64(rng.IntN(len(seqs)) + 1))
		}
		w.remove(uint64(len(seqs) + 10)) // not there
		checkIndex(t, w)
		scheduled := func(e *entry) bool { return e.seq%7 != 3 }
		live, stuck := map[string]bool{}, map[string]bool{}
		for i, e := range w.entries {
			want, wantWait := groupByScan(w.entries, i, live, stuck, scheduled, now)
			got, gotWait := w.group(i, live, stuck, scheduled, now)
			if !slices.Equal(got, want) || gotWait != wantWait {
				t.Fatalf("round %d, task %d: group %v wait %v, the scan %v wait %v", round, e.seq, seqsOf(got), gotWait, seqsOf(want), wantWait)
			}
			if e.dead {
				stuck[e.resource] = true
			} else if e.made {
				live[e.resource] = true
			}
		}
		w.reindex()
		checkIndex(t, w)
	}
}

func seqsOf(es []*entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.seq
	}
	return out
}

// TestCoalesceLimit: a delivery coalesces up to maxCoalesce tasks on bbolt and fewer on a
// store with a transaction limit, so that its commit fits (etcd's 128 operations).
func TestCoalesceLimit(t *testing.T) {
	if got := coalesceLimit(0); got != maxCoalesce {
		t.Errorf("no limit: %d, want %d", got, maxCoalesce)
	}
	if got := coalesceLimit(128); got < 1 || 16+6*got > 128 {
		t.Errorf("etcd's 128 operations: %d tasks, whose commit needs up to %d", got, 16+6*got)
	}
	if got := coalesceLimit(10); got != 1 {
		t.Errorf("a tiny limit: %d, want 1", got)
	}
}
