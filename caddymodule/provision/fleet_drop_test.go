package provision

import (
	"errors"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// TestFleetDropOfATaskInFlight: on etcd, an operator drops (or retries) a queued create
// through the gateway that does not deliver the outbox while the one that does is making
// its call. That gateway has no index of the outbox to see the attempt in: the task's open
// intent says it is being delivered, and the drop is refused (409, as through the
// delivering gateway) instead of removing the task under the call, whose account the
// directory would then never map.
func TestFleetDropOfATaskInFlight(t *testing.T) {
	c := etcdtest.Start(t, 1)
	app, srv := newNativeApp(t)
	const prefix = "/fleet-drop/"
	entered, release := make(chan struct{}), make(chan struct{})
	app.set(func(a *nativeApp) {
		a.beforeCreate = func() {
			close(entered)
			<-release
		}
	})
	var engines []*Engine
	for range 2 {
		g, _, _ := openElectedGateway(t, c.Endpoints(), prefix, 2*time.Second)
		target := newTarget(t, srv.URL, false)
		target.Delivery = withMode(outbox.Queued)
		eng, err := New(Config{Store: g.store, Journal: g.j, Shared: g.share, Target: target, SharedStore: true})
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, eng)
	}
	res := createThrough(t, engines[0], "req-q", "ada@contoso.example")
	if res.Err != nil {
		t.Fatalf("queued create: %+v", res.Err)
	}
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("no gateway delivered the create")
	}
	holder, other := engines[0], engines[1]
	if !holder.Worker().Holding() {
		holder, other = other, holder
	}
	if other.Worker().Holding() {
		t.Fatal("both gateways deliver the outbox")
	}
	views, err := other.Worker().List(outbox.Filter{})
	if err != nil || len(views) != 1 {
		t.Fatalf("the task: %+v %v", views, err)
	}
	seq := views[0].Seq
	for name, eng := range map[string]*Engine{"delivering": holder, "other": other} {
		if err := eng.Worker().Drop(seq, "ops"); !errors.Is(err, outbox.ErrConflict) {
			t.Errorf("drop through the %s gateway while the create is delivered: %v, want a conflict", name, err)
		}
	}
	close(release)
	var native string
	for i := 0; native == "" || other.Worker().Stats().Pending != 0; i++ {
		if i == 2000 {
			t.Fatalf("the create was not recorded: native %q, outbox %+v", native, other.Worker().Stats())
		}
		time.Sleep(5 * time.Millisecond)
		_ = holder.store.View(func(tx *store.Tx) error { native, _ = tx.NativeID("native/"+scim.UserType, res.ID); return nil })
	}
	if native != "acct-0001" || app.accountCount() != 1 {
		t.Fatalf("the directory maps %q; the app has %d accounts", native, app.accountCount())
	}
	for _, eng := range engines {
		recs, err := eng.journal.OpenIntents("native")
		if err != nil || len(recs) != 0 {
			t.Fatalf("open intents: %+v %v", recs, err)
		}
	}
	// Once delivered, the drop finds no task.
	if err := other.Worker().Drop(seq, "ops"); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("drop of the delivered task: %v", err)
	}
}
