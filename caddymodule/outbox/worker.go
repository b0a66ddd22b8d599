package outbox

import (
	"context"
	"errors"
	"hash/crc32"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/fleet"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Deliverer makes one delivery attempt of a task and commits what it did: the task's
// removal (delivered) or its new state (Settings.Fail), with the attempt's journal record,
// in one transaction. It also journals what operators do to the outbox, and reads a task's
// attempts back from the journal. The engine is the Deliverer.
type Deliverer interface {
	// Deliver delivers consecutive tasks of one resource (one, or several to coalesce)
	// as one change.
	Deliver(ctx context.Context, tasks []*Task) Report
	// RecordAction appends the journal record of an operator's action in tx.
	RecordAction(tx *store.Tx, a Action) error
	// Attempts returns the journal records of t's delivery attempts, oldest first.
	Attempts(ctx context.Context, t *Task) ([]journal.Record, error)
}

// BatchDeliverer is a Deliverer that can also deliver the creates of several resources of
// one type in one call (the mapping's create_batch, in queued delivery).
type BatchDeliverer interface {
	// BatchSize is how many creates of resourceType one batch carries: 0 or 1 when they go
	// one by one.
	BatchSize(resourceType string) int
	// DeliverBatch delivers groups of tasks, each the consecutive tasks of one resource
	// starting with its create (as Deliver takes them), the creates in batch calls, and
	// reports on each group as Deliver would.
	DeliverBatch(ctx context.Context, groups [][]*Task) []Report
}

// Action is an operator's action on a target's outbox, for the journal.
type Action struct {
	Kind change.Action // retry, drop, pause, resume
	By   string        // who did it
	Task *Task         // the task (nil for pause and resume)
}

// Report is what one attempt left behind.
type Report struct {
	// Done: the task is gone from the outbox (delivered).
	Done bool
	// Dead: the task is a dead letter; its resource's later tasks wait behind it.
	Dead bool
	// NextAttempt is when the task may be tried again (when neither Done nor Dead).
	NextAttempt time.Time
	// Outage: the app was unavailable, so no task of the target is tried before
	// NextAttempt (one probe at a time instead of every task hammering a down app).
	Outage bool
	// Delivered is how many of the tasks handed over were delivered when Done and fewer
	// than all (0: all).
	Delivered int
	// AppUp: the app answered the attempt's calls as an app that is up does (it took the
	// change, or refused it with its own answer). An attempt started no earlier than one
	// that failed with an Outage shows that the failure was the task's own (an app that
	// answers 500 to one account's data), not the app's: the target is not held for it.
	AppUp bool
}

// maxCoalesce bounds how many tasks one delivery coalesces.
const maxCoalesce = 100

// coalesceLimit is maxCoalesce, or fewer on a store whose transactions hold at most limit
// operations (etcd: 128): the delivery's commit deletes each task (two keys, and two more
// for a task that frees a name: store NoteNameFreed) and appends its record (the record,
// the open-intent entry), besides the journal's head and size and what the change writes
// of the account (its id map entry, mark, role and progress, and a deleted account's
// retirement, store.RetireNativeID: at most 10 in all).
func coalesceLimit(limit int) int {
	if limit <= 0 {
		return maxCoalesce
	}
	return max(1, min(maxCoalesce, (limit-16)/6))
}

// Worker delivers one target's outbox: tasks of one resource one at a time in the order
// they were queued, tasks of different resources in parallel up to MaxConcurrent, a task
// that refers to other resources (members, a manager) after their queued creates and
// deletes (see group for how a create waits to be coalesced with its references). It keeps
// an index of the outbox in memory (the resource, references and state of each task),
// loaded from the store when it starts and kept up to date by Queued and its own attempts;
// each attempt reads the task itself from the store.
//
// On a store that other gateways write too (kv.DB.Shared), the worker delivers only while
// its gateway holds the job "outbox/<target>" (fleet.Elector): it loads its index when it
// becomes the holder, resyncs it with the store when another gateway commits (tasks they
// queued, an operator's retry or drop made through them), makes every call under the
// term's context (cancelled, and fleet.Check failing, as soon as the job is lost), and
// drops its index when the term ends. On a store of its own it always holds the job.
type Worker struct {
	target string
	store  *store.Store
	logger *zap.Logger
	now    func() time.Time
	el     fleet.Elector
	shared bool // other gateways write the store (kv.DB.Shared)

	// holding: a term of the job runs (always, with a store of its own).
	holding atomic.Bool
	// indexed: on a shared store, the index has been read from the store in this term;
	// until then the counts and listings read the store, as a gateway that does not hold
	// the job does (the holder's empty index would say the outbox is empty).
	indexed atomic.Bool
	// resyncDue: an attempt found a task the index lacks (errIndexBehind); the index is read
	// from the store again before the next dispatch.
	resyncDue atomic.Bool

	mu      sync.Mutex
	d       Deliverer
	s       Settings
	entries []*entry // by sequence number
	// byRes indexes entries by resource, each in sequence order: grouping a ready task with
	// its resource's later ones visits those only, not every task queued after it (a burst
	// of creates of distinct resources made that quadratic in the queue's depth).
	byRes       map[string][]*entry
	inflight    int
	outageUntil time.Time // no attempt before this: the app was unavailable
	outageFrom  time.Time // when the attempt that set outageUntil started
	outageBy    *entry    // the task whose attempt set outageUntil
	upSince     time.Time // when the latest attempt that found the app up (Report.AppUp) started
	coalesce    int       // the most tasks one delivery coalesces (coalesceLimit)
	paused      bool      // by an operator (kept in the store)
	pauseGen    uint64    // counts this process's Pause and Resume: a resync read before one does not undo it

	// inbox holds the tasks Queued was told about, until the worker takes them into
	// entries under mu: Entra's requests never wait for a dispatch scan.
	inboxMu sync.Mutex
	inbox   []*entry

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
}

// entry is what the worker knows of one task.
type entry struct {
	seq      uint64
	resource string
	refs     []string
	// waitsFor: resources whose tasks queued before this one free the name it takes in
	// the app (Task.WaitsFor): it waits for all of those, dead letters included.
	waitsFor  []string
	dead      bool
	inFlight  bool
	notBefore time.Time
	queued    time.Time
	urgent    bool
	// made: the task creates or deletes its resource, what a reference to the resource
	// waits for (an update of a member or a manager does not hold their references).
	made bool
	// deletes: the task deletes its resource, which must wait for every earlier task that
	// refers to the resource (a group's member add must reach the app before the member's
	// delete).
	deletes bool
	// creates: the task creates its resource (of type typ); one never tried (tried false)
	// may go in a batch create with other resources' (BatchDeliverer).
	creates bool
	typ     string
	tried   bool
	// lone: the task failed while the app answered other tasks' attempts started no
	// earlier (Report.AppUp): its failures are its own and do not hold the target.
	lone bool
	// sum is the checksum of the stored task the entry was read from (0: not read from the
	// store), so that a resync decodes only the tasks that changed.
	sum uint32
}

func entryOf(t *Task) *entry {
	return &entry{seq: t.Seq, resource: t.ID, refs: t.Refs, waitsFor: t.WaitsFor, dead: t.Dead, notBefore: t.NextAttempt, queued: t.Queued, urgent: t.Urgent,
		made: isNull(t.Before) || isNull(t.After), deletes: isNull(t.After),
		creates: isNull(t.Before) && !isNull(t.After), typ: t.Type, tried: t.Attempts > 0}
}

func isNull(raw []byte) bool { return len(raw) == 0 || string(raw) == "null" }

// Start loads target's outbox from st and starts delivering it through d, while this
// gateway holds the target's job in el (nil: st is this process's alone, fleet.Solo).
func Start(target string, st *store.Store, d Deliverer, s Settings, el fleet.Elector, logger *zap.Logger) (*Worker, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if el == nil {
		el = fleet.NewSolo()
	}
	w := &Worker{target: target, store: st, logger: logger, now: time.Now, el: el, shared: st.DB().Shared(),
		d: d, s: s.WithDefaults(), wake: make(chan struct{}, 1), done: make(chan struct{}),
		coalesce: coalesceLimit(kv.TxnOpsLimit(st.DB()))}
	if err := fleet.CheckJob(w.job()); err != nil {
		return nil, err
	}
	err := st.View(func(tx *store.Tx) error {
		w.paused = tx.OutboxPaused(target)
		if w.shared {
			return nil // the holder loads the index when its term starts
		}
		return tx.Tasks(target, 0, func(st store.Task) (bool, error) {
			t, err := Decode(st.Seq, st.Data)
			if err != nil {
				return false, err
			}
			w.entries = append(w.entries, entryOf(t))
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	w.reindex()
	w.ctx, w.cancel = context.WithCancel(context.Background())
	running.add(w)
	go w.run()
	return w, nil
}

// job is the fleet job of the worker: delivering its target's outbox.
func (w *Worker) job() string { return "outbox/" + w.target }

// Holding reports whether this gateway delivers the target's outbox now (always, on a
// store of its own).
func (w *Worker) Holding() bool { return w.holding.Load() && w.el.Holding(w.job()) }

// Target is the name of the worker's target.
func (w *Worker) Target() string { return w.target }

// StorePath is the file of the store the worker delivers from.
func (w *Worker) StorePath() string { return w.store.DB().String() }

// Configure makes later attempts use d and s (a reloaded configuration).
func (w *Worker) Configure(d Deliverer, s Settings) {
	w.mu.Lock()
	w.d, w.s = d, s.WithDefaults()
	w.mu.Unlock()
	w.poke()
}

// Settings returns the settings in force.
func (w *Worker) Settings() Settings {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.s
}

// Queued tells the worker about a task just committed to the outbox. A worker that does
// not hold the job forgets it: the holder finds it in the store.
func (w *Worker) Queued(t *Task) {
	if w.shared && !w.holding.Load() {
		return
	}
	w.inboxMu.Lock()
	w.inbox = append(w.inbox, entryOf(t))
	w.inboxMu.Unlock()
	w.poke()
}

// takeInbox moves the tasks Queued was told about into entries, in order; w.mu is held.
func (w *Worker) takeInbox() {
	w.inboxMu.Lock()
	in := w.inbox
	w.inbox = nil
	w.inboxMu.Unlock()
	for _, e := range in {
		w.add(e)
	}
}

// add puts e in entries and byRes, in sequence order, unless a task of its sequence number
// is there already (a resync read it from the store); w.mu is held.
func (w *Worker) add(e *entry) {
	if n := len(w.entries); n == 0 || w.entries[n-1].seq < e.seq {
		w.entries = append(w.entries, e) // the usual case: the newest task
	} else {
		i, found := seqIndex(w.entries, e.seq)
		if found {
			return
		}
		w.entries = slices.Insert(w.entries, i, e)
	}
	if w.byRes == nil {
		w.byRes = map[string][]*entry{}
	}
	list := w.byRes[e.resource]
	if n := len(list); n == 0 || list[n-1].seq < e.seq {
		w.byRes[e.resource] = append(list, e)
		return
	}
	i, _ := seqIndex(list, e.seq)
	w.byRes[e.resource] = slices.Insert(list, i, e)
}

// reindex rebuilds byRes from entries; w.mu is held (or the worker not yet started).
func (w *Worker) reindex() {
	w.byRes = make(map[string][]*entry, len(w.entries))
	for _, e := range w.entries {
		w.byRes[e.resource] = append(w.byRes[e.resource], e)
	}
}

// seqIndex finds seq in entries sorted by sequence number (slices.BinarySearchFunc).
func seqIndex(entries []*entry, seq uint64) (int, bool) {
	return slices.BinarySearchFunc(entries, seq, func(x *entry, seq uint64) int { return cmpSeq(x.seq, seq) })
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Stop stops the worker and waits for the attempts in flight (their calls are cancelled).
func (w *Worker) Stop() {
	running.remove(w)
	w.cancel()
	<-w.done
}

// Stats is a count of a target's outbox.
type Stats struct {
	// Pending tasks are still to be delivered, Held of them wait behind a dead letter of
	// their resource, or of a resource whose task frees the name they take in the app
	// (Task.WaitsFor); InFlight are being delivered.
	Pending, Held, InFlight int
	// Dead letters wait for an operator to retry or drop them.
	Dead int
	// Oldest is when the oldest pending task was queued (zero without one).
	Oldest time.Time
	// Paused: an operator paused the deliveries.
	Paused bool
}

// Stats counts the tasks in the outbox. A gateway of a fleet that does not deliver the
// target's outbox now has no index of it: it counts what the store holds (none in flight,
// as far as it knows), and says whether the target is paused as the store does, so that
// every gateway answers an operator (and its metrics) alike.
func (w *Worker) Stats() Stats {
	if entries, paused, ok := w.stored(); ok {
		return statsOf(entries, paused)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.takeInbox()
	return statsOf(w.entries, w.paused)
}

// stored reads the outbox from the store when this gateway's index is not the outbox (a
// shared store, another gateway holding the job, or this one's term not yet having read
// it): the entries of its tasks, in order, and whether it is paused. ok is false on the
// holder once its index is read, or when the store cannot be read (logged; the caller
// uses its index, empty on a gateway that is not the holder).
func (w *Worker) stored() (entries []*entry, paused, ok bool) {
	if !w.shared || w.Holding() && w.indexed.Load() {
		return nil, false, false
	}
	err := w.store.View(func(tx *store.Tx) error {
		paused = tx.OutboxPaused(w.target)
		return tx.Tasks(w.target, 0, func(st store.Task) (bool, error) {
			t, err := Decode(st.Seq, st.Data)
			if err != nil {
				return false, err
			}
			entries = append(entries, entryOf(t))
			return true, nil
		})
	})
	if err != nil {
		w.logger.Warn("reading the outbox for its counts failed", zap.String("target", w.target), zap.Error(err))
		return nil, false, false
	}
	return entries, paused, true
}

// statsOf counts entries, in sequence order.
func statsOf(entries []*entry, paused bool) Stats {
	s := Stats{Paused: paused}
	stuck := map[string]bool{} // resources with a dead letter, or held behind another's
	for _, e := range entries {
		switch {
		case e.dead:
			s.Dead++
			stuck[e.resource] = true
		case stuck[e.resource] || slices.ContainsFunc(e.waitsFor, func(r string) bool { return stuck[r] }):
			stuck[e.resource] = true
			s.Pending++
			s.Held++
		default:
			s.Pending++
		}
		if e.inFlight {
			s.InFlight++
		}
		if !e.dead && (s.Oldest.IsZero() || e.queued.Before(s.Oldest)) {
			s.Oldest = e.queued
		}
	}
	return s
}

func (w *Worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Worker) run() {
	defer close(w.done)
	if err := w.el.Run(w.ctx, w.job(), w.serve); err != nil && w.ctx.Err() == nil {
		w.logger.Error("the outbox worker stopped", zap.String("target", w.target), zap.Error(err))
	}
}

// testHookTermStarts, when set, runs as a term of the job starts, before the index is read.
var testHookTermStarts func()

// resyncMin is the shortest time between two resyncs of the index with a shared store:
// every commit of any gateway (this one's deliveries too) asks for one.
const resyncMin = 500 * time.Millisecond

// serve delivers while this gateway holds the job; ctx ends when the term does. The
// attempts of a term end before serve returns (their next calls fail fleet.Check at once),
// so this gateway never campaigns again with calls of an earlier term in flight.
func (w *Worker) serve(ctx context.Context) {
	w.holding.Store(true)
	if testHookTermStarts != nil {
		testHookTermStarts()
	}
	defer func() {
		w.wg.Wait()
		w.holding.Store(false)
		if w.shared {
			w.dropIndex()
		}
	}()
	var pending, lastSync time.Time // pending: when a resync is due (zero: none)
	if w.shared {
		w.inboxMu.Lock()
		w.inbox = nil // what the store holds is read next
		w.inboxMu.Unlock()
		pending = time.Now()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var changed <-chan struct{}
		if w.shared && pending.IsZero() {
			changed = w.store.DB().Changed()
		}
		if w.resyncDue.Swap(false) {
			pending = time.Now()
		}
		if !pending.IsZero() && !time.Now().Before(pending) {
			changed = w.store.DB().Changed() // before reading: a commit during the read is not missed
			if err := w.resync(); err != nil {
				w.logger.Error("reading the outbox failed; trying again", zap.String("target", w.target), zap.Error(err))
			}
			lastSync, pending = time.Now(), time.Time{}
		}
		next := w.dispatch(ctx)
		if !pending.IsZero() && (next.IsZero() || pending.Before(next)) {
			next = pending
		}
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C:
		case <-changed:
			pending = time.Now()
			if due := lastSync.Add(resyncMin); due.After(pending) {
				pending = due
			}
		}
	}
}

// resync makes the index match the store: tasks other gateways queued, and what operators
// did through them (retry, drop, pause). Tasks being delivered keep their entries, and so do
// tasks Queued told about after the store was read.
func (w *Worker) resync() error {
	w.mu.Lock()
	sums := make(map[uint64]uint32, len(w.entries))
	for _, e := range w.entries {
		sums[e.seq] = e.sum
	}
	gen := w.pauseGen
	w.mu.Unlock()
	type read struct {
		seq uint64
		sum uint32
		e   *entry // nil: unchanged since the index read it
	}
	var stored []read
	var paused bool
	var last uint64 // the newest task queued when the store was read
	err := w.store.View(func(tx *store.Tx) error {
		paused = tx.OutboxPaused(w.target)
		last = tx.OutboxSeq()
		return tx.Tasks(w.target, 0, func(st store.Task) (bool, error) {
			r := read{seq: st.Seq, sum: crc32.ChecksumIEEE(st.Data)}
			if old, ok := sums[st.Seq]; !ok || old != r.sum || r.sum == 0 {
				t, err := Decode(st.Seq, st.Data)
				if err != nil {
					return false, err
				}
				r.e = entryOf(t)
				r.e.sum = r.sum
			}
			stored = append(stored, r)
			return true, nil
		})
	})
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.takeInbox()
	if w.pauseGen == gen {
		w.paused = paused
	}
	cur := make(map[uint64]*entry, len(w.entries))
	for _, e := range w.entries {
		cur[e.seq] = e
	}
	out := make([]*entry, 0, len(stored))
	for _, r := range stored {
		c := cur[r.seq]
		delete(cur, r.seq)
		switch {
		case c != nil && (c.inFlight || c.sum == r.sum):
			out = append(out, c)
		case r.e != nil:
			out = append(out, r.e)
		}
		// else: unchanged when read, and removed from the index since (delivered)
	}
	for _, c := range cur {
		if c.inFlight || c.seq > last {
			out = append(out, c) // its attempt ends it; or queued after the read
		}
	}
	slices.SortFunc(out, func(a, b *entry) int { return cmpSeq(a.seq, b.seq) })
	w.entries = out
	w.reindex()
	w.indexed.Store(true)
	return nil
}

// dropIndex forgets the index when a term ends: the next holder keeps its own, and this
// gateway reloads the store if it is elected again.
func (w *Worker) dropIndex() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inboxMu.Lock()
	w.inbox = nil
	w.inboxMu.Unlock()
	w.entries, w.byRes = nil, nil
	w.indexed.Store(false)
}

// dispatch starts every task that may go now, and returns when it should look again
// (zero: when something changes).
func (w *Worker) dispatch(ctx context.Context) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.takeInbox()
	now := w.now()
	if w.paused {
		return time.Time{}
	}
	if now.Before(w.outageUntil) {
		return w.outageUntil
	}
	if w.inflight >= w.s.MaxConcurrent {
		return time.Time{} // an attempt that ends looks again
	}
	var wakeAt time.Time
	sched := w.s.Schedule
	open := sched.Open(now)
	urgent := map[string]bool{} // resources with an urgent task: theirs go outside the schedule
	if sched.Every > 0 || len(sched.Windows) > 0 {
		for _, e := range w.entries {
			if e.urgent && !e.dead {
				urgent[e.resource] = true
			}
		}
	}
	// Resources with a task in flight, and those a task in flight refers to: a task that
	// refers to one of the first, or of one of the second, waits until that attempt ends.
	// Each delivery reads the other's account (a member's, a group's) before its calls and
	// acts on what it found at its commit: a group's member add leaves out a member without
	// an account, for the member's create to send the membership, and that create leaves
	// out a group whose task is still queued, for the task to send it. Delivered at once
	// (a user without an account, whose update makes it: its create dropped, or the user
	// out of scope until then; a dead create retried while the group goes), neither sends
	// it.
	busy, busyRef := map[string]bool{}, map[string]bool{}
	setBusy := func(e *entry) {
		busy[e.resource] = true
		for _, r := range e.refs {
			busyRef[r] = true
		}
	}
	if w.inflight > 0 {
		for _, e := range w.entries {
			if e.inFlight {
				setBusy(e)
			}
		}
	}
	touchesBusy := func(e *entry) bool {
		return busyRef[e.resource] || slices.ContainsFunc(e.refs, func(r string) bool { return r != e.resource && busy[r] })
	}
	held := map[string]bool{}       // resources with an earlier task (their later ones wait)
	referenced := map[string]bool{} // resources an earlier task that is not dead refers to (their delete waits)
	live := map[string]bool{}       // resources with an earlier create or delete that is not dead (references wait)
	stuck := map[string]bool{}      // resources with a dead letter (their later tasks wait for an operator)
	inSchedule := func(e *entry) bool { return urgent[e.resource] || open && sched.Due(e.queued, now) }
	bd, _ := w.d.(BatchDeliverer)
	batches := map[string]*batch{} // open batch creates, by resource type
	defer func() {
		for _, b := range batches {
			w.launchBatch(ctx, b, bd, now)
		}
	}()
	for i, e := range w.entries {
		full := w.inflight >= w.s.MaxConcurrent
		if full && len(batches) == 0 {
			break
		}
		waits := held[e.resource] || slices.ContainsFunc(e.refs, func(r string) bool { return live[r] }) ||
			e.deletes && referenced[e.resource] || touchesBusy(e) || w.nameHeld(e) != nil
		scheduled := inSchedule(e)
		if !scheduled && !e.dead && (wakeAt.IsZero() || sched.Next(now).Before(wakeAt)) {
			wakeAt = sched.Next(now)
		}
		ready := !e.dead && !e.inFlight && !waits && scheduled && !e.notBefore.After(now)
		held[e.resource] = true
		if !e.dead {
			for _, r := range e.refs {
				referenced[r] = true
			}
		}
		if e.dead {
			stuck[e.resource] = true
		} else if e.made {
			live[e.resource] = true
		}
		if !ready {
			if !e.dead && !e.inFlight && !waits && scheduled && (wakeAt.IsZero() || e.notBefore.Before(wakeAt)) {
				wakeAt = e.notBefore
			}
			continue
		}
		size := batchSize(bd, e)
		b := batches[e.typ]
		if full && (size < 2 || b == nil) {
			continue // every slot is taken: only a create that joins an open batch goes
		}
		group, wait := w.group(i, live, stuck, inSchedule, now)
		if j := slices.IndexFunc(group, func(g *entry) bool { return g.deletes && g != e && w.referencedBefore(g.resource, g.seq) }); j > 0 {
			group = group[:j] // a delete that a task before it refers to waits for that task
		}
		if wait {
			continue // the task whose reference waits joins it once that is delivered
		}
		if j := slices.IndexFunc(group, touchesBusy); j > 0 {
			group = group[:j] // a later task that refers to a resource in flight waits for it
		}
		for _, g := range group {
			g.inFlight = true
			setBusy(g)
		}
		if size > 1 {
			if b == nil {
				b = &batch{size: size}
				batches[e.typ] = b
				w.inflight++ // a batch is one attempt
			}
			b.groups = append(b.groups, group)
			if len(b.groups) >= b.size {
				w.launchBatch(ctx, b, bd, now)
				delete(batches, e.typ)
			}
			continue
		}
		w.inflight++
		w.wg.Add(1)
		go w.attempt(ctx, group, w.d, now)
	}
	return wakeAt
}

// batch is a batch create being filled by dispatch: groups of tasks of different resources
// of one type, each starting with its create, up to size.
type batch struct {
	size   int
	groups [][]*entry
}

// batchSize is how many creates the batch e may join carries (0: e goes alone): e creates
// its resource, was never tried (a failed attempt goes alone: it may need a lookup, and a
// rejection must name its change), and the Deliverer batches creates of its type.
func batchSize(bd BatchDeliverer, e *entry) int {
	if bd == nil || !e.creates || e.tried || e.typ == "" {
		return 0
	}
	return bd.BatchSize(e.typ)
}

// launchBatch starts the attempt of a batch dispatch filled (counted in inflight already),
// started at now; w.mu is held.
func (w *Worker) launchBatch(ctx context.Context, b *batch, bd BatchDeliverer, now time.Time) {
	w.wg.Add(1)
	if len(b.groups) == 1 {
		go w.attempt(ctx, b.groups[0], w.d, now)
		return
	}
	go w.attemptBatch(ctx, b.groups, bd, now)
}

// group is the ready task at index i with the tasks of its resource after it that may be
// coalesced with it: each ready too, its references not waiting for a task before it
// (live holds the resources with a create or delete before i; byRes says which have one
// between), up to maxCoalesce. It visits the resource's own tasks only (byRes).
//
// wait: a later task of the resource refers to a resource whose pending task comes before
// task i (a user's manager link whose manager's create is still queued, a group's member
// adds whose members' creates are), so the whole group waits for it and is then delivered
// as one change (a create with its manager, a group's create with its members) instead of
// going now and leaving the later task to a call of its own. A task only ever waits for an
// earlier one (which cannot wait for it in turn), never for one stuck behind a dead letter,
// and never when the resource has an urgent task (a deprovisioning does not wait).
func (w *Worker) group(i int, live, stuck map[string]bool, scheduled func(*entry) bool, now time.Time) (group []*entry, wait bool) {
	e := w.entries[i]
	group = []*entry{e}
	own := w.byRes[e.resource]
	j, _ := seqIndex(own, e.seq)
	for _, f := range own[j+1:] { // the resource's later tasks, in order
		if len(group) == w.coalesce {
			break
		}
		if f.dead || f.inFlight || !scheduled(f) || f.notBefore.After(now) {
			break
		}
		if slices.ContainsFunc(f.refs, func(r string) bool { return r != e.resource && live[r] }) {
			urgent := slices.ContainsFunc(group, func(g *entry) bool { return g.urgent }) || f.urgent
			wait = !urgent && !slices.ContainsFunc(f.refs, func(r string) bool { return stuck[r] })
			break
		}
		if slices.ContainsFunc(f.refs, func(r string) bool { return r != e.resource && w.madeBetween(r, e.seq, f.seq) }) {
			break
		}
		if w.nameHeld(f) != nil {
			break // a rename to a name another resource's task frees first waits for it
		}
		group = append(group, f)
	}
	return group, wait
}

// nameHeld returns the first task still in the outbox, queued before e, of a resource
// that frees the name e takes (entry.waitsFor), or nil: e waits for it; w.mu is held.
func (w *Worker) nameHeld(e *entry) *entry {
	for _, r := range e.waitsFor {
		if list := w.byRes[r]; r != e.resource && len(list) > 0 && list[0].seq < e.seq {
			return list[0]
		}
	}
	return nil
}

// madeBetween reports whether resource r has a create or delete that is not dead queued
// after task from and before task to: a task of another resource that refers to r goes
// after it, so it cannot join a group delivered before it.
func (w *Worker) madeBetween(r string, from, to uint64) bool {
	list := w.byRes[r]
	k, _ := seqIndex(list, from+1)
	for _, x := range list[k:] {
		if x.seq >= to {
			break
		}
		if !x.dead && x.made {
			return true
		}
	}
	return false
}

// attempt makes one delivery attempt of a group of tasks (see group), started at started.
func (w *Worker) attempt(ctx context.Context, group []*entry, d Deliverer, started time.Time) {
	defer w.wg.Done()
	n, rep, err := w.deliver(ctx, group, d)
	w.mu.Lock()
	w.inflight--
	w.settle(group, n, rep, err, started)
	w.mu.Unlock()
	w.poke()
}

// attemptBatch makes one attempt of a batch create: the groups' tasks are read, and those
// still to deliver go to DeliverBatch together.
func (w *Worker) attemptBatch(ctx context.Context, groups [][]*entry, d BatchDeliverer, started time.Time) {
	defer w.wg.Done()
	type outcome struct {
		n    int
		rep  Report
		err  error
		sent bool // handed to DeliverBatch
	}
	outs := make([]outcome, len(groups))
	var send [][]*Task
	var at []int
	for i, g := range groups {
		tasks, n, rep, err := w.read(g)
		outs[i] = outcome{n: n, err: err}
		switch {
		case err != nil:
		case rep != nil:
			outs[i].rep = *rep
		default:
			outs[i].sent = true
			send = append(send, tasks)
			at = append(at, i)
		}
	}
	if len(send) > 0 {
		if err := fleet.Check(ctx); err != nil {
			for _, i := range at {
				outs[i] = outcome{err: err}
			}
		} else {
			reps := d.DeliverBatch(ctx, send)
			for k, i := range at {
				outs[i].rep = reps[k]
			}
		}
	}
	w.mu.Lock()
	w.inflight--
	for i, g := range groups {
		w.settle(g, outs[i].n, outs[i].rep, outs[i].err, started)
	}
	w.mu.Unlock()
	w.poke()
}

// settle records what an attempt of group started at started did (n of its tasks handed
// over); w.mu is held.
func (w *Worker) settle(group []*entry, n int, rep Report, err error, started time.Time) {
	e := group[0]
	for _, g := range group {
		g.inFlight = false
	}
	if err == nil && rep.AppUp {
		w.appUp(started)
	}
	switch {
	case errors.Is(err, fleet.ErrNotHolder):
		// Another gateway delivers the outbox now: the task is left to it.
	case errors.Is(err, errIndexBehind):
		// The store holds an earlier task of the resource: the next dispatch, after a
		// resync, holds this one behind it.
		w.resyncDue.Store(true)
	case err != nil:
		// The task could not be read: try again later rather than lose it.
		w.logger.Error("reading a task of the outbox failed", zap.String("target", w.target), zap.Uint64("seq", e.seq), zap.Error(err))
		e.notBefore = w.now().Add(w.s.MinBackoff)
	case rep.Done:
		if rep.Delivered > 0 && rep.Delivered < n {
			n = rep.Delivered
		}
		for _, g := range group[:n] {
			w.remove(g.seq)
		}
	case rep.Dead:
		e.dead, e.tried = true, true
	default:
		e.notBefore, e.tried = rep.NextAttempt, true
		if !rep.Outage || e.lone {
			break
		}
		if !w.upSince.Before(started) {
			e.lone = true // the app answered an attempt started no earlier: the failure is the task's
			break
		}
		if rep.NextAttempt.After(w.outageUntil) {
			w.outageUntil, w.outageFrom, w.outageBy = rep.NextAttempt, started, e
		}
	}
}

// appUp notes an attempt started at started that found the app up: a hold of the target
// set by a failure of an attempt started no later ends, and that task's failures no longer
// hold it (one account the app answers 500 for would otherwise hold every other change of
// the target back, each time it is tried, for as long as it is retried); w.mu is held.
func (w *Worker) appUp(started time.Time) {
	if started.After(w.upSince) {
		w.upSince = started
	}
	if w.outageUntil.IsZero() || started.Before(w.outageFrom) {
		return
	}
	if w.outageBy != nil {
		w.outageBy.lone = true
	}
	w.outageUntil, w.outageFrom, w.outageBy = time.Time{}, time.Time{}, nil
}

// deliver reads the group's tasks and delivers those that may be coalesced with the
// first; n is how many that was. It makes no attempt once the job is lost
// (fleet.ErrNotHolder).
func (w *Worker) deliver(ctx context.Context, group []*entry, d Deliverer) (n int, rep Report, err error) {
	tasks, n, done, err := w.read(group)
	if err != nil {
		return 0, Report{}, err
	}
	if done != nil {
		return n, *done, nil
	}
	if err := fleet.Check(ctx); err != nil {
		return 0, Report{}, err
	}
	return n, d.Deliver(ctx, tasks), nil
}

// read reads the group's tasks that may be coalesced with the first (n of them). done is
// set when there is nothing to deliver: the task was dropped meanwhile, or is dead.
func (w *Worker) read(group []*entry) (tasks []*Task, n int, done *Report, err error) {
	err = w.store.View(func(tx *store.Tx) error {
		for _, e := range group {
			st, err := tx.Task(w.target, e.seq)
			if err != nil {
				return err
			}
			t, err := Decode(st.Seq, st.Data)
			if err != nil {
				return err
			}
			if len(tasks) > 0 && !Coalescible(tasks[0], t) {
				break
			}
			tasks = append(tasks, t)
		}
		if w.shared {
			var err error
			tasks, err = w.knownPrefix(tx, tasks)
			return err
		}
		return nil
	})
	if errors.Is(err, errIndexBehind) {
		return nil, 0, nil, err
	}
	if errors.Is(err, store.ErrNotFound) && len(group) == 1 {
		return nil, 1, &Report{Done: true}, nil // dropped meanwhile
	}
	if err != nil {
		return nil, 0, nil, err
	}
	if tasks[0].Dead {
		return nil, 1, &Report{Dead: true}, nil
	}
	return tasks, len(tasks), nil, nil
}

// errIndexBehind: the store holds a task of a resource, queued through another gateway,
// that the index does not yet know of and that goes before the task dispatched: the
// attempt waits for a resync.
var errIndexBehind = errors.New("the outbox index lacks a task another gateway queued")

// knownPrefix checks, on a shared store, that the tasks read for one attempt (a resource's
// tasks in order) are its first tasks in the store, none between them: the index learns of
// another gateway's tasks only when it next reads the store, while this gateway's own are
// added at once (Queued), so a task this gateway queued behind another gateway's task of the
// same resource (its change held by the outbox) could otherwise go first, or be coalesced
// over it, and the app apply the two in the opposite order to the directory's. Task numbers
// follow the commit order, so the tasks a read finds before the first are all there is.
// It returns the tasks up to the first one another task of the resource comes before, or
// errIndexBehind when that is the first. tx is the read's transaction.
func (w *Worker) knownPrefix(tx *store.Tx, tasks []*Task) ([]*Task, error) {
	if len(tasks) == 0 {
		return tasks, nil
	}
	n := 0
	stop := errors.New("stop")
	err := tx.TasksOf(w.target, tasks[0].ID, func(st store.Task) error {
		if n < len(tasks) && st.Seq == tasks[n].Seq {
			n++
			return nil
		}
		return stop
	})
	switch {
	case err != nil && !errors.Is(err, stop):
		return nil, err
	case n == 0:
		return nil, errIndexBehind
	}
	return tasks[:n], nil
}

// remove forgets task seq (delivered or dropped).
func (w *Worker) remove(seq uint64) {
	i, found := seqIndex(w.entries, seq)
	if !found {
		return
	}
	e := w.entries[i]
	w.entries = slices.Delete(w.entries, i, i+1)
	list := w.byRes[e.resource]
	if k, found := seqIndex(list, seq); found {
		list = slices.Delete(list, k, k+1)
	}
	if len(list) == 0 {
		delete(w.byRes, e.resource)
	} else {
		w.byRes[e.resource] = list
	}
}

// referencedBefore reports whether a task before seq that is not dead refers to res: a
// delete of res coalesced into a group waits for it. It is asked only of a delete in a
// group, so its scan is rare.
func (w *Worker) referencedBefore(res string, seq uint64) bool {
	end, _ := seqIndex(w.entries, seq)
	for _, f := range w.entries[:end] {
		if !f.dead && slices.Contains(f.refs, res) {
			return true
		}
	}
	return false
}
