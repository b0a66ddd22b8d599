package provision

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
)

// statsWindow is how far back the policy's stats look (input.stats.last_hour).
const statsWindow = time.Hour

// statsSlots divides the window: counts expire a minute at a time.
const statsSlots = 60

// eventWindow counts the changes a target let through in the last hour, per event, for
// policies such as the mass-deprovision brake. Counts are reserved when the policy lets a
// change through, before the change reaches the app, and released if it then fails, so
// concurrent requests each see the others: 32 deletions arriving at once cannot all pass a
// brake of 10 because each saw 0.
type eventWindow struct {
	now   func() time.Time
	mu    sync.Mutex
	slots [statsSlots]eventSlot
}

// eventSlot holds the counts of one minute, per event in change.Events' order.
type eventSlot struct {
	minute int64 // Unix minute the counts belong to
	counts [len(change.Events)]int64
}

// eventIndex is the position of ev in change.Events, or -1.
func eventIndex(ev change.Event) int {
	for i, e := range change.Events {
		if e == ev {
			return i
		}
	}
	return -1
}

func (w *eventWindow) sumLocked(now time.Time) map[string]int64 {
	cur := now.Unix() / 60
	var sum [len(change.Events)]int64
	for i := range w.slots {
		s := &w.slots[i]
		if s.minute > cur-statsSlots && s.minute <= cur {
			for j, n := range s.counts {
				sum[j] += n
			}
		}
	}
	out := make(map[string]int64, len(change.Events))
	for i, e := range change.Events {
		out[string(e)] = sum[i]
	}
	return out
}

// add counts events at time at (delta 1 to count, -1 to take a reservation back). Times
// outside the window are ignored.
func (w *eventWindow) add(at, now time.Time, events []change.Event, delta int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.addLocked(at, now, events, delta)
}

func (w *eventWindow) addLocked(at, now time.Time, events []change.Event, delta int64) {
	m, cur := at.Unix()/60, now.Unix()/60
	if m <= cur-statsSlots || m > cur {
		return
	}
	s := &w.slots[m%statsSlots]
	if s.minute != m {
		if delta < 0 {
			return // the reservation's minute has already been recycled
		}
		*s = eventSlot{minute: m}
	}
	for _, ev := range events {
		if i := eventIndex(ev); i >= 0 {
			s.counts[i] += delta
			if s.counts[i] < 0 {
				s.counts[i] = 0
			}
		}
	}
}

// reserve returns the counts of the last hour before this change and counts its events;
// the returned release takes them back (call it when the change is denied, skipped or
// fails). Reading and counting happen under one lock, so concurrent changes see each other.
func (w *eventWindow) reserve(events []change.Event) (map[string]int64, func()) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.sumLocked(now)
	w.addLocked(now, now, events, 1)
	var once sync.Once
	return before, func() {
		once.Do(func() { w.add(now, w.now(), events, -1) })
	}
}

// statsSkew is how far before the hour the scan that seeds the stats starts looking: a
// record's time is taken when it is appended, and records whose time a caller set may be a
// little out of order.
const statsSkew = time.Minute

// seedStats returns a stats window holding the changes the journal shows were let through
// to the engine's target in the last hour, so that a restart does not reset a brake.
func (e *Engine) seedStats() (*eventWindow, error) {
	w := &eventWindow{now: e.now}
	info, err := e.journal.Info()
	if err != nil || info.LastSeq == 0 {
		return w, err
	}
	now := e.now()
	q := journal.Query{FromTime: now.Add(-statsWindow)}
	// Only the last hour is read: the search finds where it starts in the journal.
	if q.FromSeq, err = e.journal.SeqAtTime(q.FromTime.Add(-statsSkew)); err != nil {
		return nil, err
	}
	if q.FromSeq > info.LastSeq {
		return w, nil
	}
	targetName := e.targetName()
	// A request applied in parts was counted once, with its events, when the policy
	// decided it (decideWhole): each event counts once for all its parts.
	parted := map[string][]change.Event{}
	err = scanRecords(e.journal, q, func(r *journal.Record) {
		if r.Target != targetName || r.Action == change.ActionReconcile || r.Action == change.ActionDeliver {
			return // the queued request's own record counted the change
		}
		if r.Outcome != change.Applied && r.Outcome != change.DryRun && r.Outcome != change.Queued {
			return
		}
		events := r.Events
		if r.Part != nil {
			seen := parted[r.RequestID]
			events = slices.DeleteFunc(slices.Clone(events), func(ev change.Event) bool { return slices.Contains(seen, ev) })
			parted[r.RequestID] = append(seen, events...)
		}
		w.add(r.Time, now, events, 1)
	})
	if err != nil {
		return nil, fmt.Errorf("counting the last hour's changes for the policy's stats: %w", err)
	}
	return w, nil
}
