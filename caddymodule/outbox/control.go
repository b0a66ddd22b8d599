package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// What operators do to an outbox (the admin API and the CLI): list tasks, show one with
// its attempts, send a dead letter again, drop a task, pause and resume the deliveries.
// Every change is journaled with who did it, in the transaction that makes it.

// ErrNotFound: no such task.
var ErrNotFound = errors.New("outbox: no such task")

// ErrConflict: the task cannot take the action now (it is being delivered, or a retry of a
// task that is not a dead letter).
var ErrConflict = errors.New("outbox: conflict")

// registry lists the workers of this process, for the admin routes and the metrics.
type registry struct {
	sync.Mutex
	workers map[*Worker]bool
}

var running = &registry{workers: map[*Worker]bool{}}

func (r *registry) add(w *Worker) {
	r.Lock()
	defer r.Unlock()
	r.workers[w] = true
}

func (r *registry) remove(w *Worker) {
	r.Lock()
	defer r.Unlock()
	delete(r.workers, w)
}

// Running returns the workers of this process, by target name (then store).
func Running() []*Worker {
	running.Lock()
	out := make([]*Worker, 0, len(running.workers))
	for w := range running.workers {
		out = append(out, w)
	}
	running.Unlock()
	slices.SortFunc(out, func(a, b *Worker) int {
		if c := strings.Compare(a.target, b.target); c != 0 {
			return c
		}
		return strings.Compare(a.StorePath(), b.StorePath())
	})
	return out
}

// View is a task as operators see it.
type View struct {
	Seq  uint64 `json:"seq"`
	Task *Task  `json:"task"`
	// State is pending, in_flight, waiting (behind another task of its resource or of
	// a resource it refers to), held (behind a dead letter of its resource, or of a
	// resource whose task frees the name it takes) or dead.
	State string `json:"state"`
	// Behind is the dead letter a held task waits behind.
	Behind uint64 `json:"behind,omitempty"`
	// Reason says why a task that takes a name waits or is held: the task of another
	// resource that frees the name in the app first (Task.WaitsFor).
	Reason string `json:"reason,omitempty"`
	// Attempts are the journal records of its delivery attempts (Show only).
	Attempts []journal.Record `json:"attempts,omitempty"`
}

// Filter selects tasks: by state ("" for all, pending for every task still to deliver,
// dead), and by resource id.
type Filter struct {
	State    string
	Resource string
	// Limit bounds the list (default and maximum 1000).
	Limit int
}

// MaxList bounds a listing.
const MaxList = 1000

// List returns the tasks f selects, oldest first.
func (w *Worker) List(f Filter) ([]View, error) {
	if f.State != "" && f.State != "pending" && f.State != "dead" {
		return nil, fmt.Errorf("state %q: want pending or dead", f.State)
	}
	if f.Limit <= 0 || f.Limit > MaxList {
		f.Limit = MaxList
	}
	states := w.states()
	var out []View
	err := w.store.View(func(tx *store.Tx) error {
		return tx.Tasks(w.target, 0, func(st store.Task) (bool, error) {
			if f.Resource != "" && st.Resource != f.Resource {
				return true, nil
			}
			t, err := Decode(st.Seq, st.Data)
			if err != nil {
				return false, err
			}
			v := View{Seq: t.Seq, Task: t}
			v.State, v.Behind, v.Reason = states.of(t)
			if (f.State == "dead") != (v.State == "dead") && f.State != "" {
				return true, nil
			}
			out = append(out, v)
			return len(out) < f.Limit, nil
		})
	})
	return out, err
}

// Show returns task seq with its attempts.
func (w *Worker) Show(ctx context.Context, seq uint64) (View, error) {
	t, err := w.load(seq)
	if err != nil {
		return View{}, err
	}
	v := View{Seq: seq, Task: t}
	v.State, v.Behind, v.Reason = w.states().of(t)
	w.mu.Lock()
	d := w.d
	w.mu.Unlock()
	v.Attempts, err = d.Attempts(ctx, t)
	return v, err
}

// Retry sends dead letter seq again (its resource's later tasks follow it).
func (w *Worker) Retry(seq uint64, by string) error {
	return w.act(seq, change.ActionRetry, by, func(tx *store.Tx, t *Task) error {
		if !t.Dead {
			return fmt.Errorf("%w: task %d is not a dead letter", ErrConflict, seq)
		}
		t.Dead, t.NextAttempt = false, time.Time{}
		t.Failing = time.Time{} // it has max_age again
		data, err := t.Encode()
		if err != nil {
			return err
		}
		return tx.UpdateTask(w.target, seq, data)
	}, func(e *entry) { e.dead, e.notBefore = false, time.Time{} })
}

// Drop removes task seq from the outbox: the app never gets that change.
func (w *Worker) Drop(seq uint64, by string) error {
	return w.act(seq, change.ActionDrop, by, func(tx *store.Tx, _ *Task) error {
		return tx.DeleteTask(w.target, seq)
	}, func(e *entry) { w.remove(e.seq) })
}

// act applies an operator's action to task seq: change in the store with the journal
// record, then the worker's index. A task being delivered is left alone (ErrConflict).
func (w *Worker) act(seq uint64, kind change.Action, by string, change func(*store.Tx, *Task) error, after func(*entry)) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.takeInbox()
	var e *entry
	if i := slices.IndexFunc(w.entries, func(e *entry) bool { return e.seq == seq }); i >= 0 {
		e = w.entries[i]
	} else if !w.shared {
		return fmt.Errorf("%w: %d", ErrNotFound, seq)
	}
	// On a shared store a task may be missing from the index (another gateway delivers the
	// outbox, or queued it since the last resync): the change goes to the store, and the
	// holder's worker picks it up when it resyncs (an attempt in flight there finds a
	// dropped task gone, and a retried one is tried again).
	if e != nil && e.inFlight {
		return fmt.Errorf("%w: task %d is being delivered; try again when the attempt ends", ErrConflict, seq)
	}
	err := w.store.Update(func(tx *store.Tx) error {
		st, err := tx.Task(w.target, seq)
		if err != nil {
			return err
		}
		t, err := Decode(st.Seq, st.Data)
		if err != nil {
			return err
		}
		if err := change(tx, t); err != nil {
			return err
		}
		return w.d.RecordAction(tx, Action{Kind: kind, By: by, Task: t})
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %d", ErrNotFound, seq)
	}
	if err != nil {
		return err
	}
	if e != nil {
		after(e)
	}
	w.pokeLocked()
	return nil
}

// Pause stops deliveries (attempts in flight finish) until Resume, across restarts.
func (w *Worker) Pause(by string) error { return w.setPaused(true, by) }

// Resume starts deliveries again after Pause.
func (w *Worker) Resume(by string) error { return w.setPaused(false, by) }

func (w *Worker) setPaused(paused bool, by string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	kind := change.ActionResume
	if paused {
		kind = change.ActionPause
	}
	err := w.store.Update(func(tx *store.Tx) error {
		if err := tx.SetOutboxPaused(w.target, paused); err != nil {
			return err
		}
		return w.d.RecordAction(tx, Action{Kind: kind, By: by})
	})
	if err != nil {
		return err
	}
	w.paused = paused
	w.pauseGen++
	w.pokeLocked()
	return nil
}

func (w *Worker) pokeLocked() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Worker) load(seq uint64) (*Task, error) {
	var t *Task
	err := w.store.View(func(tx *store.Tx) error {
		st, err := tx.Task(w.target, seq)
		if err != nil {
			return err
		}
		t, err = Decode(st.Seq, st.Data)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, seq)
	}
	return t, err
}

// taskStates is a snapshot of what the worker knows of each task, for listings.
type taskStates struct {
	inFlight map[uint64]bool
	behind   map[uint64]uint64 // held task -> the dead letter it waits behind
	waiting  map[uint64]bool
	// names: a task that waits for another resource's task to free the name it takes ->
	// that task (the first of the resource's), and that resource
	names map[uint64]nameWait
}

type nameWait struct {
	seq      uint64
	resource string
}

func (w *Worker) states() taskStates {
	if entries, _, ok := w.stored(); ok {
		return statesOf(entries) // another gateway delivers: what the store holds
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.takeInbox()
	return statesOf(w.entries)
}

// statesOf is the state of each of entries, in sequence order.
func statesOf(entries []*entry) taskStates {
	s := taskStates{inFlight: map[uint64]bool{}, behind: map[uint64]uint64{}, waiting: map[uint64]bool{}, names: map[uint64]nameWait{}}
	dead := map[string]uint64{}  // resource -> the dead letter its later tasks wait behind
	first := map[string]uint64{} // resource -> its first task
	for _, e := range entries {
		var nw nameWait
		for _, r := range e.waitsFor {
			if r == e.resource || first[r] == 0 {
				continue
			}
			if nw.seq == 0 || dead[r] != 0 && dead[nw.resource] == 0 {
				nw = nameWait{seq: first[r], resource: r}
			}
		}
		if nw.seq != 0 {
			s.names[e.seq] = nw
			if d := dead[nw.resource]; d != 0 && dead[e.resource] == 0 && !e.dead {
				dead[e.resource] = d // held behind the dead letter, and so are its later tasks
			}
		}
		switch {
		case e.inFlight:
			s.inFlight[e.seq] = true
		case e.dead:
		case dead[e.resource] != 0:
			s.behind[e.seq] = dead[e.resource]
		case first[e.resource] != 0 || nw.seq != 0:
			s.waiting[e.seq] = true
		}
		if e.dead && dead[e.resource] == 0 {
			dead[e.resource] = e.seq
		}
		if first[e.resource] == 0 {
			first[e.resource] = e.seq
		}
	}
	return s
}

func (s taskStates) of(t *Task) (state string, behind uint64, reason string) {
	if nw, ok := s.names[t.Seq]; ok && !t.Dead {
		reason = fmt.Sprintf("takes %s %q, which task %d of %s %s, queued before it, frees in the app (a delete, or a rename away from it): it goes after that resource's queued tasks",
			strings.ToLower(t.Type), t.Subject, nw.seq, strings.ToLower(t.Type), nw.resource)
		if d := s.behind[t.Seq]; d != 0 {
			reason += fmt.Sprintf(", held while task %d is a dead letter (retry or drop it)", d)
		}
	}
	switch {
	case t.Dead:
		return "dead", 0, ""
	case s.inFlight[t.Seq]:
		return "in_flight", 0, reason
	case s.behind[t.Seq] != 0:
		return "held", s.behind[t.Seq], reason
	case s.waiting[t.Seq]:
		return "waiting", 0, reason
	}
	return "pending", 0, reason
}
