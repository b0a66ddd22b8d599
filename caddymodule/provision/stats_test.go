package provision

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/store"
)

func TestEventWindowCountsTheLastHour(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 30, 0, time.UTC)
	w := &eventWindow{now: func() time.Time { return now }}
	w.add(now.Add(-59*time.Minute), now, []change.Event{"delete"}, 1)
	w.add(now.Add(-61*time.Minute), now, []change.Event{"delete"}, 1) // outside the window: ignored
	w.add(now.Add(-10*time.Minute), now, []change.Event{"deactivate", "update", "no-such-event"}, 1)
	got := w.lastHour(now)
	if got["delete"] != 1 || got["deactivate"] != 1 || got["update"] != 1 || got["create"] != 0 {
		t.Errorf("lastHour = %v", got)
	}
	for _, ev := range change.Events {
		if _, ok := got[string(ev)]; !ok {
			t.Errorf("event %s missing from the stats", ev)
		}
	}
	// Counts expire a minute at a time, an hour after they happened.
	later := now.Add(45 * time.Minute)
	if got := w.lastHour(later); got["delete"] != 0 || got["deactivate"] != 1 {
		t.Errorf("45 minutes later: %v", got)
	}
	if got := w.lastHour(now.Add(2 * time.Hour)); got["deactivate"] != 0 {
		t.Errorf("two hours later: %v", got)
	}
}

// newWindows returns a fresh window of each kind (in memory; in a store of its own) on the
// clock now, for the tests that hold for both.
func newWindows(t *testing.T, now func() time.Time) map[string]eventCounter {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "stats.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return map[string]eventCounter{
		"memory": &eventWindow{now: now},
		"store":  &storeWindow{store: s, target: "native", now: now, logger: zap.NewNop()},
	}
}

// mustReserve reserves events in w.
func mustReserve(t *testing.T, w eventCounter, events ...change.Event) (map[string]int64, func()) {
	t.Helper()
	before, release, err := w.reserve(events)
	if err != nil {
		t.Fatal(err)
	}
	return before, release
}

func TestEventWindowReservations(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for kind, w := range newWindows(t, func() time.Time { return now }) {
		t.Run(kind, func(t *testing.T) {
			before, release := mustReserve(t, w, "delete")
			if before["delete"] != 0 || len(before) != len(change.Events) {
				t.Errorf("first reservation saw %v", before)
			}
			second, release2 := mustReserve(t, w, "delete", "no-such-event")
			if second["delete"] != 1 {
				t.Errorf("second reservation saw %d deletions, want the first's", second["delete"])
			}
			release()
			release() // a second release is harmless
			if got, _ := mustReserve(t, w); got["delete"] != 1 {
				t.Errorf("after releasing one: %d, want 1", got["delete"])
			}
			release2()
			if got, _ := mustReserve(t, w); got["delete"] != 0 || got["no-such-event"] != 0 {
				t.Errorf("after releasing both: %v", got)
			}
		})
	}
}

// TestEventWindowConcurrentReservations: concurrent reservations see each other, so a
// brake of n lets exactly n through however many arrive at once (the refused ones release
// their count, so later ones may see the same count again, never a lower one).
func TestEventWindowConcurrentReservations(t *testing.T) {
	for kind, w := range newWindows(t, time.Now) {
		t.Run(kind, func(t *testing.T) {
			const n, limit = 64, 10
			var wg sync.WaitGroup
			var mu sync.Mutex
			seen := map[int64]bool{}
			passed := 0
			for range n {
				wg.Go(func() {
					before, release, err := w.reserve([]change.Event{"deactivate"})
					if err != nil {
						t.Error(err)
						return
					}
					c := before["deactivate"]
					mu.Lock()
					defer mu.Unlock()
					if c >= limit {
						release()
						return
					}
					if seen[c] {
						t.Errorf("two changes let through saw count %d", c)
					}
					seen[c] = true
					passed++
				})
			}
			wg.Wait()
			if passed != limit {
				t.Errorf("%d passed a brake of %d", passed, limit)
			}
		})
	}
}

// lastHour sums the counts of the last hour at now.
func (w *eventWindow) lastHour(now time.Time) map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sumLocked(now)
}

// BenchmarkStatsReserveRelease compares what a decided change costs each window: a
// reservation and its release (the path of a refused or failed change; an allowed one
// pays the reservation alone). serial is one request at a time; parallel is many, where
// the store window's writes share commits (group commit).
func BenchmarkStatsReserveRelease(b *testing.B) {
	events := []change.Event{change.Update, change.Deactivate}
	for _, kind := range []string{"memory", "store"} {
		newWindow := func(b *testing.B) eventCounter {
			if kind == "memory" {
				return &eventWindow{now: time.Now}
			}
			s, err := store.Open(filepath.Join(b.TempDir(), "stats.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return &storeWindow{store: s, target: "native", now: time.Now, logger: zap.NewNop()}
		}
		b.Run(kind+"/serial", func(b *testing.B) {
			w := newWindow(b)
			for b.Loop() {
				_, release, err := w.reserve(events)
				if err != nil {
					b.Fatal(err)
				}
				release()
			}
		})
		b.Run(kind+"/parallel", func(b *testing.B) {
			w := newWindow(b)
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, release, err := w.reserve(events)
					if err != nil {
						b.Error(err)
						return
					}
					release()
				}
			})
		})
	}
}
