package provision

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// statsWindow is how far back the policy's stats look (input.stats.last_hour).
const statsWindow = time.Hour

// statsSlots divides the window: counts expire a minute at a time.
const statsSlots = store.StatsMinutes

// eventCounter keeps the counts of the changes a target let through in the last hour, per
// event: the policy's input.stats. eventWindow keeps them in memory (a gateway that owns its
// store: no extra write per change), storeWindow in the store (gateways sharing a store:
// each counts the others' changes).
type eventCounter interface {
	// reserve returns the counts of the last hour before this change and counts its
	// events, atomically with respect to other reservations; the returned release takes
	// them back (call it when the change is denied, skipped or fails; calls after the
	// first do nothing). An error means nothing was counted.
	reserve(events []change.Event) (before map[string]int64, release func(), err error)
}

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
func (w *eventWindow) reserve(events []change.Event) (map[string]int64, func(), error) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.sumLocked(now)
	w.addLocked(now, now, events, 1)
	var once sync.Once
	return before, func() {
		once.Do(func() { w.add(now, w.now(), events, -1) })
	}, nil
}

// minuteCounts are the counts of one minute of a window, by event name.
type minuteCounts struct {
	minute int64 // Unix minute
	counts map[string]int64
}

// minutes lists the window's minutes that hold counts at now.
func (w *eventWindow) minutes(now time.Time) []minuteCounts {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := now.Unix() / 60
	var out []minuteCounts
	for i := range w.slots {
		s := &w.slots[i]
		if s.minute <= cur-statsSlots || s.minute > cur {
			continue
		}
		m := minuteCounts{minute: s.minute, counts: map[string]int64{}}
		for j, n := range s.counts {
			if n > 0 {
				m.counts[string(change.Events[j])] = n
			}
		}
		if len(m.counts) > 0 {
			out = append(out, m)
		}
	}
	return out
}

// storeWindow counts in the store what eventWindow counts in memory, for gateways that share
// the store (a fleet): every gateway's reservation is one store write that sums the hour
// and counts the change in one transaction, so changes decided at once on different
// gateways see each other, and every gateway's brake counts the changes all of them let
// through. A release is another write.
type storeWindow struct {
	store  *store.Store
	target string
	now    func() time.Time
	logger *zap.Logger
}

// eventDelta is the change events make to the counts (sign 1 to count, -1 to take back);
// events the stats do not know are left out, as eventWindow leaves them out.
func eventDelta(events []change.Event, sign int64) map[string]int64 {
	d := make(map[string]int64, len(events))
	for _, ev := range events {
		if eventIndex(ev) >= 0 {
			d[string(ev)] += sign
		}
	}
	return d
}

// knownEvents returns sum with every event of change.Events (0 when absent) and nothing
// else: the store may hold events of a newer binary, which the policy is not shown.
func knownEvents(sum map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(change.Events))
	for _, ev := range change.Events {
		out[string(ev)] = sum[string(ev)]
	}
	return out
}

func (w *storeWindow) reserve(events []change.Event) (map[string]int64, func(), error) {
	minute := w.now().Unix() / 60
	delta := eventDelta(events, 1)
	var sum map[string]int64
	err := w.store.Update(func(tx *store.Tx) error {
		var err error
		if sum, err = tx.SumStats(w.target, minute); err != nil || len(delta) == 0 {
			return err
		}
		return tx.AddStats(w.target, minute, delta)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("counting the change in the policy's stats: %w", err)
	}
	var once sync.Once
	return knownEvents(sum), func() {
		once.Do(func() {
			if len(delta) == 0 {
				return
			}
			back := eventDelta(events, -1)
			err := w.store.Update(func(tx *store.Tx) error { return tx.AddStats(w.target, minute, back) })
			if err != nil {
				// The brake counts the change until its minute leaves the hour: stricter, never looser.
				w.logger.Warn("taking a change's count back from the policy's stats failed; it counts until it expires",
					zap.String("target", w.target), zap.Error(err))
			}
		})
	}, nil
}

// storeStats returns the window that counts the engine's target in the store. When the store
// holds no count of the target in the last hour, the journal's counts are copied into it
// first: a fleet starting on a store copied from a single gateway (whose counts were in
// memory), or a first config with a policy, keeps the brake's hour. The copy is written only
// if the store still holds no count when it is written, in the transaction that checks, so
// gateways starting together copy it once, and a change another gateway counted meanwhile
// is not counted twice (its reservation is in the store before its journal record).
func (e *Engine) storeStats() (eventCounter, error) {
	w := &storeWindow{store: e.store, target: e.targetName(), now: e.now, logger: e.logger}
	minute := e.now().Unix() / 60
	empty := func(tx *store.Tx) (bool, error) {
		sum, err := tx.SumStats(w.target, minute)
		return len(sum) == 0, err
	}
	var none bool
	if err := e.store.View(func(tx *store.Tx) (err error) {
		none, err = empty(tx)
		return err
	}); err != nil || !none {
		return w, err
	}
	mem, err := e.seedStats()
	if err != nil {
		return nil, err
	}
	minutes := mem.minutes(e.now())
	if len(minutes) == 0 {
		return w, nil
	}
	err = e.store.Update(func(tx *store.Tx) error {
		if none, err := empty(tx); err != nil || !none {
			return err
		}
		for _, m := range minutes {
			if err := tx.AddStats(w.target, m.minute, m.counts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copying the last hour's counts into the store: %w", err)
	}
	return w, nil
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
	err = e.journal.Scan(context.Background(), q, func(_ uint64, raw []byte) error {
		// A few fields of each record in one pass, not the whole record decoded: after an
		// initial sync the last hour holds every user's create.
		var target, action, outcome, requestID, when, typ string
		var evs gjson.Result
		var part, deactivates bool
		gjson.ParseBytes(raw).ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "target":
				target = v.Str
			case "action":
				action = v.Str
			case "outcome":
				outcome = v.Str
			case "request_id":
				requestID = v.Str
			case "time":
				when = v.Str
			case "events":
				evs = v
			case "part":
				part = v.IsObject()
			case "resource_type":
				typ = v.Str
			case "decision":
				deactivates = v.Get("deactivate").Bool()
			}
			return true
		})
		if a := change.Action(action); target != targetName || a == change.ActionReconcile || a == change.ActionDeliver {
			return nil // the queued request's own record counted the change
		}
		if o := change.Outcome(outcome); o != change.Applied && o != change.DryRun && o != change.Queued {
			return nil
		}
		at, err := time.Parse(time.RFC3339Nano, when)
		if err != nil {
			return nil // not a record this version wrote: it counted nothing
		}
		var events []change.Event
		evs.ForEach(func(_, ev gjson.Result) bool {
			events = append(events, change.Event(ev.Str))
			return true
		})
		if deactivates && typ == scim.UserType && !slices.Contains(events, change.Deactivate) && !slices.Contains(events, change.Delete) {
			// The policy sent a deactivation instead of the change (decidePolicy counted it).
			events = append(events, change.Deactivate)
		}
		if part {
			seen := parted[requestID]
			events = slices.DeleteFunc(events, func(ev change.Event) bool { return slices.Contains(seen, ev) })
			parted[requestID] = append(seen, events...)
		}
		w.add(at, now, events, 1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("counting the last hour's changes for the policy's stats: %w", err)
	}
	return w, nil
}
