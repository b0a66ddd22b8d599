package provision

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Tests of the name index pass (indexNames): tasks a release before the name index queued
// (a delete with no index entry, a create of its name with no WaitsFor) are brought into it
// before the target's worker starts, once per store.

// asOldRelease makes the target's outbox what a release before the name index wrote: the
// tasks without WaitsFor, no index entry, no record that the pass ran (the keys of the
// store's layout, written directly: that release had no API for them).
func (r *rig) asOldRelease() { r.t.Helper(); asOldRelease(r.t, r.store) }

func asOldRelease(t testing.TB, st *store.Store) {
	t.Helper()
	prefix := []byte("native\x00")
	var tasks []*outbox.Task
	var keys [][2][]byte // bucket, key
	err := st.View(func(tx *store.Tx) error {
		for _, name := range []string{"outboxName", "outboxNameOf"} {
			c := tx.KV().Bucket([]byte(name)).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				keys = append(keys, [2][]byte{[]byte(name), slices.Clone(k)})
			}
		}
		return tx.Tasks("native", 0, func(s store.Task) (bool, error) {
			tk, err := outbox.Decode(s.Seq, s.Data)
			tasks = append(tasks, tk)
			return err == nil, err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	// One key a transaction: the rig's store may bound them (rigOptions.limit).
	for _, tk := range tasks {
		tk.WaitsFor = nil
		data, err := tk.Encode()
		if err == nil {
			err = st.Update(func(tx *store.Tx) error { return tx.UpdateTask("native", tk.Seq, data) })
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	keys = append(keys, [2][]byte{[]byte("meta"), []byte("outboxNames\x00native")})
	for _, k := range keys {
		if err := st.Update(func(tx *store.Tx) error { return tx.KV().Bucket(k[0]).Delete(k[1]) }); err != nil {
			t.Fatal(err)
		}
	}
}

// staleEntry leaves in the index an entry of a task that is gone, as a rolled-back release
// leaves one when it delivers an indexed task (it deletes the task's own keys only), and
// returns the task's number.
func (r *rig) staleEntry(resource, name string) uint64 {
	r.t.Helper()
	return staleEntry(r.t, r.store, resource, name)
}

func staleEntry(t testing.TB, st *store.Store, resource, name string) uint64 {
	t.Helper()
	var seq uint64
	err := st.Update(func(tx *store.Tx) error {
		var err error
		if seq, err = tx.Enqueue("native", resource, []byte(`{}`)); err != nil {
			return err
		}
		if err := tx.NoteNameFreed("native", seq, resource, scim.UserType, name); err != nil {
			return err
		}
		key := binary.BigEndian.AppendUint64([]byte("native\x00"), seq)
		if err := tx.KV().Bucket([]byte("outbox")).Delete(key); err != nil {
			return err
		}
		return tx.KV().Bucket([]byte("outboxRes")).Delete(binary.BigEndian.AppendUint64([]byte("native\x00"+resource+"\x00"), seq))
	})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// restart stops the rig's gateway and starts it again on the same store, with target (a
// new process: its own shared state).
func (r *rig) restart(target *Target) {
	r.t.Helper()
	r.share.Close()
	r.share = NewShared(nil)
	r.t.Cleanup(r.share.Close)
	r.eng = r.build(rigOptions{target: target})
}

// freedBy lists the resources whose tasks the index says free name.
func (r *rig) freedBy(name string) []string { return freedBy(r.store, name) }

func freedBy(st *store.Store, name string) []string {
	var out []string
	_ = st.View(func(tx *store.Tx) error {
		return tx.NameFreedBy("native", scim.UserType, name, func(_ uint64, res string) error {
			out = append(out, res)
			return nil
		})
	})
	return out
}

// indexKeys counts the target's entries in the index's two buckets.
func (r *rig) indexKeys() int { return indexKeys(r.store) }

func indexKeys(st *store.Store) int {
	n := 0
	_ = st.View(func(tx *store.Tx) error {
		for _, name := range []string{"outboxName", "outboxNameOf"} {
			c := tx.KV().Bucket([]byte(name)).Cursor()
			for k, _ := c.Seek([]byte("native\x00")); k != nil && bytes.HasPrefix(k, []byte("native\x00")); k, _ = c.Next() {
				n++
			}
		}
		return nil
	})
	return n
}

// TestOldTasksIndexedAtStart: a store an earlier release left with A's delete queued and
// B's create of A's userName queued behind it, neither in the name index (and an entry of
// a task that is gone). When the gateway starts, B's create waits for A's delete, which
// the app is unavailable for a while (without the pass, B's create reached the app first:
// 409, a dead letter), the app gets the delete, then the create; the stale entry is gone,
// and the pass does not run again.
func TestOldTasksIndexedAtStart(t *testing.T) {
	app, srv := newNativeApp(t)
	app.set(func(a *nativeApp) { a.unique = true })
	s := withMode(outbox.Queued)
	s.DeprovisionQueued = true
	target := newTarget(t, srv.URL, false)
	target.Delivery = s
	r := newRig(t, rigOptions{target: target})
	a := r.mustCreate(scim.UserType, user("alice@contoso.example"))
	r.settle()
	old := r.nativeID(scim.UserType, a)
	if err := r.eng.Worker().Pause("test"); err != nil {
		t.Fatal(err)
	}
	if res := r.deleteAs("del-a", scim.UserType, a); res.Err != nil {
		t.Fatalf("delete of A: %+v", res)
	}
	b := r.mustCreate(scim.UserType, user("Alice@contoso.example"))
	r.asOldRelease()
	if got := r.freedBy("alice@contoso.example"); len(got) != 0 {
		t.Fatalf("the old release's store has index entries: %v", got)
	}
	stale := r.staleEntry("ghost", "ghost@contoso.example")
	if r.indexKeys() != 2 {
		t.Fatalf("the stale entry: %d keys", r.indexKeys())
	}

	r.restart(target)
	if got := r.freedBy("alice@contoso.example"); len(got) != 1 || got[0] != a {
		t.Fatalf("A's delete in the index after the start: %v", got)
	}
	if n := r.indexKeys(); n != 2 {
		t.Fatalf("the index holds %d keys, want A's delete's 2 (the stale entry of task %d removed)", n, stale)
	}
	var bTask *outbox.Task
	for _, tk := range r.tasks() {
		if tk.ID == b {
			bTask = tk
		}
	}
	if bTask == nil || len(bTask.WaitsFor) != 1 || bTask.WaitsFor[0] != a {
		t.Fatalf("B's create after the start: %+v", bTask)
	}

	app.set(func(x *nativeApp) { x.fail["DELETE /accounts/"+old] = http.StatusServiceUnavailable })
	if err := r.eng.Worker().Resume("test"); err != nil {
		t.Fatal(err)
	}
	r.waitFor("failed attempts of A's delete", func() bool { return r.failures(a) >= 2 })
	if v := r.taskView(b); v.State != "waiting" || v.Task.Attempts != 0 || !strings.Contains(v.Reason, a) {
		t.Fatalf("B's create while A's delete fails: %s, %d attempts, %q; calls %v", v.State, v.Task.Attempts, v.Reason, app.callLog())
	}
	app.set(func(x *nativeApp) { delete(x.fail, "DELETE /accounts/"+old) })
	r.settle()
	calls := app.callLog()
	del, post := slices.Index(calls, "DELETE /accounts/"+old), callIndex(calls, "POST /accounts", slices.Index(calls, "DELETE /accounts/"+old))
	mine := r.nativeID(scim.UserType, b)
	if tasks := r.tasks(); len(tasks) != 0 || mine == "" || mine == old || del < 0 || post < 0 || r.failures(b) != 0 {
		t.Fatalf("tasks %+v, B maps to %q (A's was %q), B's failures %d; calls %v", tasks, mine, old, r.failures(b), calls)
	}
	if r.indexKeys() != 0 {
		t.Fatalf("%d index keys left after delivery", r.indexKeys())
	}

	// Once per store: the pass finds its version and does nothing, however the index is.
	r.asOldRelease()
	_ = r.store.Update(func(tx *store.Tx) error { return tx.SetOutboxNamesVersion("native", nameIndexVersion) })
	r.staleEntry("ghost", "ghost@contoso.example")
	r.restart(target)
	if n := r.indexKeys(); n != 2 {
		t.Fatalf("a second start changed the index: %d keys", n)
	}
	if st, err := r.eng.indexNames(); err != nil || st.txns != 0 || st.tasks != 0 {
		t.Fatalf("the pass again: %+v, %v", st, err)
	}
	r.verify()
}

// TestOldTasksIndexedInParts: on a store whose transactions hold few writes (as etcd's
// do), the pass indexes many tasks in transactions that each fit, and every create waits
// for the delete of its name.
func TestOldTasksIndexedInParts(t *testing.T) {
	app, srv := newNativeApp(t)
	app.set(func(a *nativeApp) { a.unique = true })
	s := withMode(outbox.Queued)
	s.DeprovisionQueued = true
	target := newTarget(t, srv.URL, false)
	target.Delivery = s
	const limit, n = 40, 20
	r := newRig(t, rigOptions{target: target, limit: limit})
	olds := make([]string, n)
	for i := range olds {
		olds[i] = r.mustCreate(scim.UserType, user(fmt.Sprintf("u%d@contoso.example", i)))
	}
	r.settle()
	if err := r.eng.Worker().Pause("test"); err != nil {
		t.Fatal(err)
	}
	news := make([]string, n)
	for i := range olds {
		if res := r.deleteAs(fmt.Sprintf("del-%d", i), scim.UserType, olds[i]); res.Err != nil {
			t.Fatal(res.Err)
		}
		news[i] = r.mustCreate(scim.UserType, user(fmt.Sprintf("u%d@contoso.example", i)))
	}
	r.asOldRelease()
	r.restart(target)
	if r.limited.Largest() > limit {
		t.Fatalf("a transaction wrote %d keys (limit %d)", r.limited.Largest(), limit)
	}
	waits := map[string][]string{}
	for _, tk := range r.tasks() {
		waits[tk.ID] = tk.WaitsFor
	}
	for i := range olds {
		if got := r.freedBy(fmt.Sprintf("u%d@contoso.example", i)); len(got) != 1 || got[0] != olds[i] {
			t.Errorf("u%d's delete in the index: %v", i, got)
		}
		if w := waits[news[i]]; len(w) != 1 || w[0] != olds[i] {
			t.Errorf("u%d's create waits for %v, want %s", i, w, olds[i])
		}
	}
	if err := r.eng.Worker().Resume("test"); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if tasks := r.tasks(); len(tasks) != 0 {
		t.Fatalf("left in the outbox: %+v; calls %v", tasks, app.callLog())
	}
}

// TestOldTasksIndexedByAFleet: three gateways of a fleet on etcd start at once on a store
// an earlier release left with A's delete and B's create of A's userName queued, not in
// the name index (and an entry of a task gone): their passes race, each transaction reads
// again what it writes, so A's delete is indexed once, B's create waits for A alone, the
// stale entry is gone, and the app gets A's delete before B's create.
func TestOldTasksIndexedByAFleet(t *testing.T) {
	c := etcdtest.Start(t, 1)
	app, srv := newNativeApp(t)
	app.set(func(a *nativeApp) { a.unique = true })
	const prefix = "/fleet-names/"
	newTarget := func() *Target {
		target := newTarget(t, srv.URL, false)
		target.Delivery = withMode(outbox.Queued)
		target.Delivery.DeprovisionQueued = true
		return target
	}
	// The earlier release's gateway: A created and delivered; then, paused, A's delete and
	// B's create are queued.
	g0, _, _ := openElectedGateway(t, c.Endpoints(), prefix, 2*time.Second)
	e0, err := New(Config{Store: g0.store, Journal: g0.j, Shared: g0.share, Target: newTarget(), SharedStore: true})
	if err != nil {
		t.Fatal(err)
	}
	res := createThrough(t, e0, "create-a", "alice@contoso.example")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	a := res.ID
	var old string
	for i := 0; old == ""; i++ {
		if i == 2000 {
			t.Fatalf("A's create was not delivered: %v", app.callLog())
		}
		time.Sleep(5 * time.Millisecond)
		_ = g0.store.View(func(tx *store.Tx) error { old, _ = tx.NativeID("native/"+scim.UserType, a); return nil })
	}
	if err := e0.Worker().Pause("test"); err != nil {
		t.Fatal(err)
	}
	if res := e0.Apply(Request{ID: "del-a", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: a, Status: http.StatusNoContent}); res.Err != nil {
		t.Fatal(res.Err)
	}
	res = createThrough(t, e0, "create-b", "alice@contoso.example")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	b := res.ID
	g0.share.Close()
	asOldRelease(t, g0.store)
	staleEntry(t, g0.store, "ghost", "ghost@contoso.example")

	app.set(func(x *nativeApp) { x.fail["DELETE /accounts/"+old] = http.StatusServiceUnavailable })
	engines := make([]*Engine, 3)
	errs := make([]error, len(engines))
	var wg sync.WaitGroup
	for i := range engines {
		g, _, _ := openElectedGateway(t, c.Endpoints(), prefix, 2*time.Second)
		wg.Go(func() {
			engines[i], errs[i] = New(Config{Store: g.store, Journal: g.j, Shared: g.share, Target: newTarget(), SharedStore: true})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := g0.store
	if got := freedBy(st, "alice@contoso.example"); len(got) != 1 || got[0] != a {
		t.Fatalf("A's delete in the index: %v", got)
	}
	if n := indexKeys(st); n != 2 {
		t.Fatalf("the index holds %d keys, want A's delete's 2", n)
	}
	var version uint64
	var waits []string
	_ = st.View(func(tx *store.Tx) error {
		version = tx.OutboxNamesVersion("native")
		return tx.TasksOf("native", b, func(s store.Task) error {
			tk, err := outbox.Decode(s.Seq, s.Data)
			if err == nil {
				waits = tk.WaitsFor
			}
			return err
		})
	})
	if version != nameIndexVersion || len(waits) != 1 || waits[0] != a {
		t.Fatalf("after the starts: version %d, B's create waits for %v", version, waits)
	}
	if err := engines[0].Worker().Resume("test"); err != nil {
		t.Fatal(err)
	}
	failures := func() int {
		n := 0
		_ = scanRecords(engines[0].journal, journal.Query{SCIMID: a}, func(rec *journal.Record) {
			if rec.Action == change.ActionDeliver && rec.Outcome == change.Failed {
				n++
			}
		})
		return n
	}
	for i := 0; failures() < 2; i++ {
		if i == 2000 {
			t.Fatalf("A's delete was not tried: %v", app.callLog())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if calls := app.callLog(); callIndex(calls, "POST /accounts", 1) >= 0 { // the first: A's create
		t.Fatalf("B's create was sent while A's delete fails: %v", app.callLog())
	}
	app.set(func(x *nativeApp) { delete(x.fail, "DELETE /accounts/"+old) })
	var mine string
	for i := 0; mine == ""; i++ {
		if i == 2000 {
			t.Fatalf("B's create was not delivered: %v", app.callLog())
		}
		time.Sleep(5 * time.Millisecond)
		_ = st.View(func(tx *store.Tx) error { mine, _ = tx.NativeID("native/"+scim.UserType, b); return nil })
	}
	calls := app.callLog()
	del := slices.Index(calls, "DELETE /accounts/"+old)
	if mine == old || del < 0 || callIndex(calls, "POST /accounts", del) < 0 || app.accountCount() != 1 {
		t.Fatalf("B maps to %q (A's was %q), %d accounts; calls %v", mine, old, app.accountCount(), calls)
	}
}
