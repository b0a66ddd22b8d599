package provision

import (
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
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

func TestEventWindowReservations(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	w := &eventWindow{now: func() time.Time { return now }}
	before, release := w.reserve([]change.Event{"delete"})
	if before["delete"] != 0 {
		t.Errorf("first reservation saw %v", before)
	}
	second, release2 := w.reserve([]change.Event{"delete"})
	if second["delete"] != 1 {
		t.Errorf("second reservation saw %d deletions, want the first's", second["delete"])
	}
	release()
	release() // a second release is harmless
	if got := w.lastHour(now)["delete"]; got != 1 {
		t.Errorf("after releasing one: %d, want 1", got)
	}
	release2()
	if got := w.lastHour(now)["delete"]; got != 0 {
		t.Errorf("after releasing both: %d", got)
	}
}

// TestEventWindowConcurrentReservations: concurrent reservations see each other, so a
// brake of n lets exactly n through however many arrive at once (the refused ones release
// their count, so later ones may see the same count again, never a lower one).
func TestEventWindowConcurrentReservations(t *testing.T) {
	w := &eventWindow{now: time.Now}
	const n, limit = 64, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int64]bool{}
	passed := 0
	for range n {
		wg.Go(func() {
			before, release := w.reserve([]change.Event{"deactivate"})
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
}

// lastHour sums the counts of the last hour at now.
func (w *eventWindow) lastHour(now time.Time) map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sumLocked(now)
}
