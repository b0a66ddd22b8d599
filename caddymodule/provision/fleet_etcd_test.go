package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/fleet"
	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// etcdGateway is a gateway of a fleet on etcd as a process would be: its own connection
// (and cache) to the cluster, its own store and journal handles on it, its own shared state.
type etcdGateway struct {
	store *store.Store
	j     *journal.Journal
	share *Shared
}

func openEtcdGateway(t *testing.T, endpoints []string, prefix string) *etcdGateway {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := etcdkv.Open(ctx, etcdkv.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.New(db)
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(db, journal.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	g := &etcdGateway{store: s, j: j, share: NewShared(nil)}
	t.Cleanup(func() {
		g.share.Close()
		_ = j.Close()
		_ = s.Close()
	})
	return g
}

// TestFleetOnEtcd: on a real etcd, three gateways starting at once on a journal with the
// stale intents of a gateway that died close each exactly once (their transactions race
// and rerun on the head's compare-and-swap), the chain verifies as one, and Entra's retry
// of the dead gateway's create through another gateway adopts the account its call made.
func TestFleetOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	app, srv := newNativeApp(t)
	target := newTarget(t, srv.URL, false)
	gws := make([]*etcdGateway, 3)
	for i := range gws {
		gws[i] = openEtcdGateway(t, c.Endpoints(), "/fleet-recover/")
	}
	old := time.Now().Add(-time.Hour)
	const n = 10
	err := gws[0].store.Update(func(tx *store.Tx) error {
		for i := range n {
			name := fmt.Sprintf("u%d@contoso.example", i)
			if i == 0 {
				name = "ada@contoso.example"
			}
			in := &journal.Record{RequestID: fmt.Sprintf("dead-%d", i), Client: "entra", Target: "native", Action: change.ActionCreate, Time: old,
				ResourceType: scim.UserType, SCIMID: fmt.Sprintf("lost-%d", i), Subject: name, Events: []change.Event{change.Create}, Outcome: change.Pending}
			if err := gws[0].j.Append(tx.KV(), in); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	app.accounts["acct-0042"] = map[string]any{"login": "ada@contoso.example"} // the dead gateway's call made it

	engines := make([]*Engine, len(gws))
	errs := make([]error, len(gws))
	var wg sync.WaitGroup
	for i, g := range gws {
		wg.Go(func() {
			engines[i], errs[i] = New(Config{Store: g.store, Journal: g.j, Shared: g.share, Target: target, SharedStore: true})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	reconciled := map[string]int{}
	if err := scanRecords(gws[1].j, journal.Query{}, func(rec *journal.Record) {
		if rec.Action == change.ActionReconcile {
			reconciled[rec.RequestID]++
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(reconciled) != n {
		t.Fatalf("%d of %d stale intents reconciled: %v", len(reconciled), n, reconciled)
	}
	for req, k := range reconciled {
		if k != 1 {
			t.Errorf("%s reconciled %d times", req, k)
		}
	}
	if open, err := gws[2].j.OpenIntents("native"); err != nil || len(open) != 0 {
		t.Fatalf("open after recovery: %v, %v", open, err)
	}

	res := engines[2].Apply(Request{ID: "retry", Client: "entra"},
		&Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("ada@contoso.example")), Status: http.StatusCreated})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	var native string
	_ = gws[1].store.View(func(tx *store.Tx) error { native, _ = tx.NativeID("native/"+scim.UserType, res.ID); return nil })
	if native != "acct-0042" || app.posts() != 0 || app.accountCount() != 1 {
		t.Fatalf("the retry: native id %q, %d creates sent, %d accounts", native, app.posts(), app.accountCount())
	}
	rep, err := gws[0].j.Verify(context.Background(), nil)
	if err != nil || !rep.OK {
		t.Fatalf("journal verify: %+v, %v", rep, err)
	}
}

// pauseAuth is the app's credential, applied right before each call: its first Apply
// blocks until released, as a gateway paused (SIGSTOP, a frozen VM, cut off from etcd)
// between journaling a change's intent and sending its call.
type pauseAuth struct {
	once     sync.Once
	entered  chan struct{}
	released chan struct{}
}

func (a *pauseAuth) Apply(ctx context.Context, req *http.Request) (func() bool, error) {
	first := false
	a.once.Do(func() { first = true })
	if first {
		close(a.entered)
		<-a.released
	}
	req.Header.Set("X-Api-Key", "k")
	return nil, nil
}

// openElectedGateway is openEtcdGateway with an etcd elector (lease TTL ttl) on the
// gateway's own connection, as a gateway of a fleet has: its intents name its lease.
func openElectedGateway(t *testing.T, endpoints []string, prefix string, ttl time.Duration) (*etcdGateway, *fleet.Etcd, *etcdkv.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := etcdkv.Open(ctx, etcdkv.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.New(db)
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(db, journal.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	el, err := fleet.NewEtcd(db.Client(), fleet.ElectionPrefix(prefix), fleet.EtcdOptions{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	g := &etcdGateway{store: s, j: j, share: NewShared(el)}
	t.Cleanup(func() {
		g.share.Close()
		_ = el.Close()
		_ = j.Close()
		_ = s.Close()
	})
	return g, el, db
}

// TestFleetPausedGatewayMakesNoCall: gateway A journals a create's intent (naming its
// lease) and then stalls before its call, past its lease (a SIGSTOP, a frozen VM, a
// partition from etcd). Entra's retry through gateway B finds the intent's lease gone,
// closes it, looks the account up (none) and creates it. When A resumes it must not send
// its create: its lease, which its intent named and B relied on, is gone. The app ends with
// one account, the one the directory maps.
func TestFleetPausedGatewayMakesNoCall(t *testing.T) {
	c := etcdtest.Start(t, 1)
	app, srv := newNativeApp(t)
	const prefix = "/fleet-pause/"
	ga, ela, dba := openElectedGateway(t, c.Endpoints(), prefix, 2*time.Second)
	gb, _, _ := openElectedGateway(t, c.Endpoints(), prefix, 2*time.Second)

	targetA := newTarget(t, srv.URL, false)
	auth := &pauseAuth{entered: make(chan struct{}), released: make(chan struct{})}
	ca, err := legacy.New(legacy.Options{BaseURL: srv.URL, Timeout: 5 * time.Second, MaxRetries: -1, CircuitFailures: -1, Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ca.CloseIdleConnections)
	targetA.Client = ca
	engA, err := New(Config{Store: ga.store, Journal: ga.j, Shared: ga.share, Target: targetA, SharedStore: true})
	if err != nil {
		t.Fatal(err)
	}
	engB, err := New(Config{Store: gb.store, Journal: gb.j, Shared: gb.share, Target: newTarget(t, srv.URL, false), SharedStore: true})
	if err != nil {
		t.Fatal(err)
	}

	const name = "ada@contoso.example"
	resA := make(chan *Result, 1)
	go func() { resA <- createThrough(t, engA, "req-a", name) }()
	select {
	case <-auth.entered:
	case r := <-resA:
		t.Fatalf("gateway A's create ended without a call: %d %+v", r.Status, r.Err)
	case <-time.After(30 * time.Second):
		t.Fatal("gateway A never reached its call")
	}
	// A is paused past its lease: the lease expires on the server (revoked here rather
	// than waited for) and A's own keepalive finds it gone.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	owner, err := ela.Owner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := strconv.ParseInt(owner, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dba.Client().Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if now, err := ela.Owner(ctx); err == nil && now != owner {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway A never noticed that its lease was gone")
		}
	}

	res := createThrough(t, engB, "req-b", name)
	if res.Err != nil {
		t.Fatalf("Entra's retry through gateway B: %d %+v", res.Status, res.Err)
	}
	close(auth.released)
	var ra *Result
	select {
	case ra = <-resA:
	case <-time.After(30 * time.Second):
		t.Fatal("gateway A's create never ended")
	}
	if ra.Err == nil || ra.Status != http.StatusServiceUnavailable {
		t.Errorf("gateway A's create after its lease was gone answered %d %+v, want 503", ra.Status, ra.Err)
	}
	if n := app.accountCount(); n != 1 || app.posts() != 1 {
		t.Fatalf("the app holds %d accounts after %d creates (calls %v); want 1 and 1", n, app.posts(), app.callLog())
	}
	var native string
	if err := gb.store.View(func(tx *store.Tx) error {
		native, err = tx.NativeID("native/"+scim.UserType, res.ID)
		return err
	}); err != nil || native != "acct-0001" {
		t.Fatalf("the directory maps %s to %q (%v)", res.ID, native, err)
	}
}

// TestFleetOvertakenChangeIsNotCommitted: gateway A's PATCH has reached the app (title A)
// when A stalls before its commit, past its lease. Entra's next PATCH through gateway B
// finds A's intent without a live owner, goes through (the app: title B) and commits. When
// A resumes, committing its change on top of B's would leave the directory with A's title
// and the app with B's: A answers 503 instead, and Entra's retry through A applies it on
// top in both.
func TestFleetOvertakenChangeIsNotCommitted(t *testing.T) {
	c := etcdtest.Start(t, 1)
	app, srv := newNativeApp(t)
	held, heldSrv := newHeldApp(t, app, "PATCH /accounts/")
	const prefix = "/fleet-overtaken/"
	ga, ela, dba := openElectedGateway(t, c.Endpoints(), prefix, 2*time.Second)
	gb, _, _ := openElectedGateway(t, c.Endpoints(), prefix, 2*time.Second)
	// A waits for the app's answer as long as it takes.
	engA, err := New(Config{Store: ga.store, Journal: ga.j, Shared: ga.share, Target: patientTarget(t, heldSrv.URL), SharedStore: true})
	if err != nil {
		t.Fatal(err)
	}
	engB, err := New(Config{Store: gb.store, Journal: gb.j, Shared: gb.share, Target: newTarget(t, srv.URL, false), SharedStore: true})
	if err != nil {
		t.Fatal(err)
	}
	created := createThrough(t, engB, "create", "ada@contoso.example")
	if created.Err != nil {
		t.Fatal(created.Err)
	}
	id := created.ID
	var native string
	if err := gb.store.View(func(tx *store.Tx) error {
		native, err = tx.NativeID("native/"+scim.UserType, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	resA := make(chan *Result, 1)
	go func() {
		resA <- patchThrough(t, engA, "patch-a", id, `[{"op":"replace","path":"title","value":"from A"}]`)
	}()
	waitOrFail(t, held.acted, "gateway A's PATCH reaching the app")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	owner, err := ela.Owner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := strconv.ParseInt(owner, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dba.Client().Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if now, err := ela.Owner(ctx); err == nil && now != owner {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway A never noticed that its lease was gone")
		}
	}
	if res := patchThrough(t, engB, "patch-b", id, `[{"op":"replace","path":"title","value":"from B"}]`); res.Err != nil {
		t.Fatalf("gateway B's PATCH once A's lease was gone: %d %+v", res.Status, res.Err)
	}
	held.release()
	var ra *Result
	select {
	case ra = <-resA:
	case <-time.After(20 * time.Second):
		t.Fatal("gateway A's PATCH never ended")
	}
	title := func() string {
		var rec *store.Record
		if err := gb.store.View(func(tx *store.Tx) error {
			var err error
			rec, err = tx.Get(scim.UserType, id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var doc struct{ Title string }
		_ = json.Unmarshal(rec.Doc, &doc)
		return doc.Title
	}
	if got, inApp := title(), app.accountOf(native)["title"]; got != inApp {
		t.Fatalf("after gateway A's late commit (%d %+v) the directory's title is %q, the app's %v", ra.Status, ra.Err, got, inApp)
	}
	if ra.Err == nil {
		return
	}
	if ra.Status != http.StatusServiceUnavailable {
		t.Fatalf("gateway A's overtaken PATCH answered %d %+v, want 503", ra.Status, ra.Err)
	}
	if res := patchThrough(t, engA, "patch-a", id, `[{"op":"replace","path":"title","value":"from A"}]`); res.Err != nil {
		t.Fatalf("Entra's retry through A: %d %+v", res.Status, res.Err)
	}
	if got, inApp := title(), app.accountOf(native)["title"]; got != "from A" || inApp != "from A" {
		t.Fatalf("after Entra's retry the directory's title is %q, the app's %v", got, inApp)
	}
}
