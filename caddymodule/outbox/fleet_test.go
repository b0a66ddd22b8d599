package outbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/fleet"
	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// sharedBolt is a bbolt store that says it is shared, as an etcd store does: two workers
// on it in one process stand for two gateways on one directory.
type sharedBolt struct{ *kv.Bolt }

func (sharedBolt) Shared() bool { return true }

// lateWatch is a shared bbolt store whose commits by other gateways reach this process
// late: as an etcd watch that has not yet delivered them, it does not say when the store
// changed (only a read of the store shows what others committed).
type lateWatch struct{ sharedBolt }

func (lateWatch) Changed() <-chan struct{} { return nil }

// appLog is the legacy app of the test: it records every delivery it is sent.
type appLog struct {
	mu    sync.Mutex
	calls map[uint64]int       // task -> deliveries
	order []uint64             // the tasks delivered, in the order the app got them
	by    map[string]int       // gateway -> deliveries
	first map[string]time.Time // gateway -> its first delivery
}

// gateway delivers tasks as the engine does: one call to the app (a short pause), then
// the task's removal committed; like the legacy client, it makes no call for a job this
// gateway no longer holds.
type gateway struct {
	name  string
	store *store.Store
	app   *appLog
}

func (g *gateway) Deliver(ctx context.Context, tasks []*Task) Report {
	if err := fleet.Check(ctx); err != nil {
		return Report{NextAttempt: time.Now().Add(time.Second)}
	}
	g.app.mu.Lock()
	for _, t := range tasks {
		g.app.calls[t.Seq]++
		g.app.order = append(g.app.order, t.Seq)
	}
	g.app.by[g.name] += len(tasks)
	if _, ok := g.app.first[g.name]; !ok {
		g.app.first[g.name] = time.Now()
	}
	g.app.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	err := g.store.Update(func(tx *store.Tx) error {
		for _, t := range tasks {
			if err := tx.DeleteTask("app", t.Seq); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return Report{Done: true} // another gateway delivered it: counted above
	}
	if err != nil {
		return Report{NextAttempt: time.Now().Add(10 * time.Millisecond)}
	}
	return Report{Done: true}
}

func (g *gateway) RecordAction(*store.Tx, Action) error { return nil }

func (g *gateway) Attempts(context.Context, *Task) ([]journal.Record, error) { return nil, nil }

// fleetGateway is one gateway of a fleet test: its etcd client, elector and worker.
type fleetGateway struct {
	cli interface{ Close() error }
	el  *fleet.Etcd
	w   *Worker
}

// startFleet starts two gateways' outbox workers for target "app" on one shared store.
func startFleet(t *testing.T) (*store.Store, *appLog, []*fleetGateway) {
	t.Helper()
	return startFleetOn(t, func(b *kv.Bolt) kv.DB { return sharedBolt{b} })
}

// startFleetOn is startFleet on the shared store wrap makes of a bbolt file.
func startFleetOn(t *testing.T, wrap func(*kv.Bolt) kv.DB) (*store.Store, *appLog, []*fleetGateway) {
	t.Helper()
	te := etcdtest.Start(t, 1)
	bolt, err := kv.OpenBolt(filepath.Join(t.TempDir(), "gw.db"), kv.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(wrap(bolt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	app := &appLog{calls: map[uint64]int{}, by: map[string]int{}, first: map[string]time.Time{}}
	var gws []*fleetGateway
	for _, name := range []string{"a", "b"} {
		cli := te.Client()
		el, err := fleet.NewEtcd(cli, "/scimgate/test/e/", fleet.EtcdOptions{TTL: 2 * time.Second, ID: name})
		if err != nil {
			t.Fatal(err)
		}
		w, err := Start("app", st, &gateway{name: name, store: st, app: app}, Settings{MaxConcurrent: 4}, el, nil)
		if err != nil {
			t.Fatal(err)
		}
		gws = append(gws, &fleetGateway{cli: cli, el: el, w: w})
		t.Cleanup(func() { w.Stop(); el.Close() })
	}
	return st, app, gws
}

// holderOf waits until one gateway holds the outbox and returns it and the other.
func holderOf(t *testing.T, gws []*fleetGateway) (holder, other *fleetGateway) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for i, g := range gws {
			if g.w.Holding() {
				return g, gws[1-i]
			}
		}
	}
	t.Fatal("no gateway holds the outbox")
	return nil, nil
}

// Two gateways sharing a store deliver its outbox through one worker at a time: every task
// is delivered exactly once, whichever gateway queued it, also across the death of the
// gateway that delivered first.
func TestWorkersOfAFleetDeliverEachTaskOnce(t *testing.T) {
	st, app, gws := startFleet(t)
	queued := 0
	enqueue := func(n int) {
		t.Helper()
		for i := range n {
			g := gws[queued%2] // Entra's requests reach either gateway
			task := &Task{RequestID: fmt.Sprintf("r%d", queued), Action: change.ActionPatch, Type: "User",
				ID: fmt.Sprintf("u%d", queued%7), Queued: time.Now(), After: []byte(`{}`), Before: []byte(`{}`)}
			enqueueTask(t, st, task)
			g.w.Queued(task) // only the gateway that queued it is told
			queued++
			if i%10 == 9 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	pending := func() int {
		n := 0
		if err := st.View(func(tx *store.Tx) error {
			return tx.Tasks("app", 0, func(store.Task) (bool, error) { n++; return true, nil })
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitEmpty := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); pending() > 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d tasks still queued after 30s", what, pending())
			}
		}
	}

	enqueue(100)
	waitEmpty("both gateways up")
	holder, other := holderOf(t, gws)
	if other.w.Holding() {
		t.Fatal("both gateways hold the outbox")
	}
	// The holder dies (its etcd connection closed without resigning): the other takes
	// over when its lease expires, with what both gateways queued meanwhile.
	died := time.Now()
	holder.cli.Close()
	enqueue(100)
	waitEmpty("after the holder died")
	app.mu.Lock()
	defer app.mu.Unlock()
	t.Logf("failover: the other gateway made its first delivery %s and its last %s after the holder died (lease TTL 2s)",
		app.first[other.el.ID()].Sub(died).Round(time.Millisecond), time.Since(died).Round(time.Millisecond))
	if !other.w.Holding() || holder.w.Holding() {
		t.Error("the surviving gateway does not hold the outbox")
	}
	for seq := uint64(1); seq <= uint64(queued); seq++ {
		if n := app.calls[seq]; n != 1 {
			t.Errorf("task %d was delivered %d times", seq, n)
		}
	}
	if len(app.calls) != queued {
		t.Errorf("the app got %d tasks, want %d", len(app.calls), queued)
	}
	t.Logf("deliveries by gateway: %v", app.by)
}

// An operator's retry and drop made through the gateway that does not deliver reach the
// one that does.
func TestFleetOperatorActionsThroughEitherGateway(t *testing.T) {
	st, app, gws := startFleet(t)
	holder, other := holderOf(t, gws)
	var seqs []uint64
	for i := range 2 {
		task := &Task{RequestID: fmt.Sprintf("r%d", i), Action: change.ActionPatch, Type: "User", ID: fmt.Sprintf("u%d", i),
			Queued: time.Now(), After: []byte(`{}`), Before: []byte(`{}`), Dead: true, Attempts: 1, LastError: "rejected"}
		enqueueTask(t, st, task)
		seqs = append(seqs, task.Seq)
	}
	// The holder picks the dead letters up from the store.
	for deadline := time.Now().Add(10 * time.Second); holder.w.Stats().Dead != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the holder knows of %d dead letters, want 2", holder.w.Stats().Dead)
		}
	}
	if err := other.w.Retry(seqs[0], "op"); err != nil {
		t.Fatalf("retry through the other gateway: %v", err)
	}
	if err := other.w.Drop(seqs[1], "op"); err != nil {
		t.Fatalf("drop through the other gateway: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s := holder.w.Stats()
		if s.Pending == 0 && s.Dead == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holder still has %+v", s)
		}
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if app.calls[seqs[0]] != 1 || app.calls[seqs[1]] != 0 {
		t.Errorf("deliveries: retried task %d times, dropped task %d times; want 1, 0", app.calls[seqs[0]], app.calls[seqs[1]])
	}
	if err := other.w.Drop(seqs[0], "op"); !errors.Is(err, ErrNotFound) {
		t.Errorf("dropping a delivered task: %v, want ErrNotFound", err)
	}
}

// Every gateway of a fleet answers an operator alike: the one that does not deliver the
// outbox (it has no index of it) counts what the store holds, shows each task's state
// (held behind a dead letter), and says the target is paused when an operator paused it
// through the other; a resume through it reaches the holder.
func TestFleetCountsAndPauseOnEitherGateway(t *testing.T) {
	st, _, gws := startFleet(t)
	holder, other := holderOf(t, gws)
	if err := holder.w.Pause("op"); err != nil {
		t.Fatal(err)
	}
	queueDeadAndHeld(t, st)
	want := Stats{Pending: 2, Held: 1, Dead: 1, Paused: true}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s := holder.w.Stats()
		s.Oldest = time.Time{}
		if s == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holder counts %+v, want %+v", s, want)
		}
	}
	s := other.w.Stats()
	if s.Oldest.IsZero() {
		t.Error("the other gateway has no oldest task")
	}
	if s.Oldest = (time.Time{}); s != want {
		t.Errorf("the other gateway counts %+v, want %+v (as the holder does)", s, want)
	}
	for _, g := range []*fleetGateway{holder, other} {
		views, err := g.w.List(Filter{})
		if err != nil {
			t.Fatal(err)
		}
		var states []string
		for _, v := range views {
			states = append(states, fmt.Sprintf("%s%d", v.State, v.Behind))
		}
		if got := fmt.Sprint(states); got != fmt.Sprintf("[dead0 held%d pending0]", views[0].Seq) {
			t.Errorf("states listed through the %s: %s", map[bool]string{true: "holder", false: "other gateway"}[g == holder], got)
		}
	}
	if err := other.w.Resume("op"); err != nil {
		t.Fatal(err)
	}
	if other.w.Stats().Paused {
		t.Error("the gateway that resumed still says paused")
	}
	for deadline := time.Now().Add(10 * time.Second); holder.w.Stats().Paused; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the holder is still paused after the resume through the other gateway")
		}
	}
}

// The gateway that delivers the outbox learns of the tasks it queued itself at once, and of
// those other gateways queued when it next reads the store. A task it queued behind another
// gateway's task of the same resource (a group's member remove through one gateway, held
// behind a member add queued through the other) must still reach the app after that task,
// whenever its index learns of it: here the store never says it changed (lateWatch), and
// the earlier tasks of the resource are known only to the store.
func TestFleetTaskBehindAnotherGatewaysTask(t *testing.T) {
	st, app, gws := startFleetOn(t, func(b *kv.Bolt) kv.DB { return lateWatch{sharedBolt{b}} })
	holder, other := holderOf(t, gws)
	enqueue := func(g *fleetGateway, id string) uint64 {
		t.Helper()
		task := &Task{RequestID: fmt.Sprintf("r-%s-%d", id, time.Now().UnixNano()), Action: change.ActionPatch, Type: "Group", ID: id,
			Queued: time.Now(), After: []byte(`{}`), Before: []byte(`{}`)}
		enqueueTask(t, st, task)
		g.w.Queued(task)
		return task.Seq
	}
	delivered := func(seq uint64) bool {
		app.mu.Lock()
		defer app.mu.Unlock()
		return app.calls[seq] > 0
	}
	// The holder's term has begun and read the store: a task it queued is delivered.
	first := enqueue(holder, "g0")
	for deadline := time.Now().Add(10 * time.Second); !delivered(first); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the holder never delivered its own task")
		}
	}
	// g1's tasks, queued alternately through the other gateway and the holder.
	var seqs []uint64
	for i := range 4 {
		g := other
		if i%2 == 1 {
			g = holder
		}
		seqs = append(seqs, enqueue(g, "g1"))
	}
	last := seqs[len(seqs)-1]
	for deadline := time.Now().Add(10 * time.Second); !delivered(last); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the holder never delivered its last task")
		}
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	var got []uint64
	for _, seq := range app.order {
		if seq != first {
			got = append(got, seq)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(seqs) {
		t.Fatalf("the app got g1's tasks %v, queued as %v: a task went before an earlier task of its resource", got, seqs)
	}
}

// enqueueTask commits task to the outbox of target "app" and sets its sequence number.
func enqueueTask(t *testing.T, st *store.Store, task *Task) {
	t.Helper()
	data, err := task.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(tx *store.Tx) error {
		task.Seq, err = tx.Enqueue("app", task.ID, data)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// queueDeadAndHeld queues three tasks for target "app": u1's dead letter, u1's next task
// (held behind it) and u2's (pending).
func queueDeadAndHeld(t *testing.T, st *store.Store) {
	t.Helper()
	for i, id := range []string{"u1", "u1", "u2"} {
		task := &Task{RequestID: fmt.Sprintf("r%d", i), Action: change.ActionPatch, Type: "User", ID: id,
			Queued: time.Now(), After: []byte(`{}`), Before: []byte(`{}`), Dead: i == 0, Attempts: 1}
		enqueueTask(t, st, task)
	}
}

// A gateway that has just become the holder of a shared store's outbox has not yet read
// its index from the store: until it has, its counts and listings are the store's (here
// three tasks, one of them a dead letter), not the empty index's.
func TestNewHolderCountsBeforeItsIndexIsRead(t *testing.T) {
	te := etcdtest.Start(t, 1)
	bolt, err := kv.OpenBolt(filepath.Join(t.TempDir(), "gw.db"), kv.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(sharedBolt{bolt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Update(func(tx *store.Tx) error { return tx.SetOutboxPaused("app", true) }); err != nil {
		t.Fatal(err)
	}
	queueDeadAndHeld(t, st)
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookTermStarts = func() {
		once.Do(func() { close(started) })
		<-release
	}
	t.Cleanup(func() { testHookTermStarts = nil })
	el, err := fleet.NewEtcd(te.Client(), "/scimgate/test/h/", fleet.EtcdOptions{TTL: 2 * time.Second, ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	app := &appLog{calls: map[uint64]int{}, by: map[string]int{}, first: map[string]time.Time{}}
	w, err := Start("app", st, &gateway{name: "a", store: st, app: app}, Settings{MaxConcurrent: 4}, el, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { el.Close() })
	t.Cleanup(w.Stop)
	t.Cleanup(func() { once.Do(func() {}); close(release) })
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker's term did not start")
	}
	if !w.Holding() {
		t.Fatal("the worker whose term started does not say it holds the job")
	}
	want := Stats{Pending: 2, Held: 1, Dead: 1, Paused: true}
	s := w.Stats()
	if s.Oldest.IsZero() {
		t.Error("no oldest task")
	}
	if s.Oldest = (time.Time{}); s != want {
		t.Errorf("the new holder counts %+v before reading its index, want %+v", s, want)
	}
	views, err := w.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 3 {
		t.Errorf("the new holder lists %d tasks before reading its index, want 3", len(views))
	}
}
