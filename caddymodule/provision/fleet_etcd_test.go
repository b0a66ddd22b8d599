package provision

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
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
