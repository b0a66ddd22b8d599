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
	"github.com/scimgate/scimgate/caddymodule/fleet/fleettest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// sharedBolt is a bbolt store that says it is shared, as an etcd store does: two workers
// on it in one process stand for two gateways on one directory.
type sharedBolt struct{ *kv.Bolt }

func (sharedBolt) Shared() bool { return true }

// appLog is the legacy app of the test: it records every delivery it is sent.
type appLog struct {
	mu    sync.Mutex
	calls map[uint64]int // task -> deliveries
	by    map[string]int // gateway -> deliveries
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
	}
	g.app.by[g.name] += len(tasks)
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

// Two gateways sharing a store deliver its outbox through one worker at a time: every task
// is delivered exactly once, whichever gateway queued it, also across the death of the
// gateway that delivered first.
func TestWorkersOfAFleetDeliverEachTaskOnce(t *testing.T) {
	te := fleettest.Start(t)
	bolt, err := kv.OpenBolt(filepath.Join(t.TempDir(), "gw.db"), kv.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(sharedBolt{bolt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	app := &appLog{calls: map[uint64]int{}, by: map[string]int{}}
	type gw struct {
		cli interface{ Close() error }
		el  *fleet.Etcd
		w   *Worker
	}
	var gws []*gw
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
		gws = append(gws, &gw{cli: cli, el: el, w: w})
		t.Cleanup(func() { w.Stop(); el.Close() })
	}
	queued := 0
	enqueue := func(n int) {
		t.Helper()
		for i := range n {
			g := gws[queued%2] // Entra's requests reach either gateway
			task := &Task{RequestID: fmt.Sprintf("r%d", queued), Action: change.ActionPatch, Type: "User",
				ID: fmt.Sprintf("u%d", queued%7), Queued: time.Now(), After: []byte(`{}`), Before: []byte(`{}`)}
			data, err := task.Encode()
			if err != nil {
				t.Fatal(err)
			}
			err = st.Update(func(tx *store.Tx) error {
				task.Seq, err = tx.Enqueue("app", task.ID, data)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
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
	var holder, other *gw
	for _, g := range gws {
		if g.w.Holding() {
			if holder != nil {
				t.Fatal("both gateways hold the outbox")
			}
			holder = g
		} else {
			other = g
		}
	}
	if holder == nil {
		t.Fatal("no gateway holds the outbox")
	}
	// The holder dies (its etcd connection closed without resigning): the other takes
	// over when its lease expires, with what both gateways queued meanwhile.
	died := time.Now()
	holder.cli.Close()
	enqueue(100)
	waitEmpty("after the holder died")
	t.Logf("the other gateway delivered the last task %s after the holder died", time.Since(died).Round(time.Millisecond))
	if !other.w.Holding() || holder.w.Holding() {
		t.Error("the surviving gateway does not hold the outbox")
	}
	app.mu.Lock()
	defer app.mu.Unlock()
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
