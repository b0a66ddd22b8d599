package provision

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// BenchmarkFleetCreateDecide measures a create's decision (decideView) on a gateway alone
// and on a shared store with open intents of other names in flight: the check for another
// request's create of the same name reads the target's open intents, so it costs what they
// are, not the journal's length.
func BenchmarkFleetCreateDecide(b *testing.B) {
	_, srv := newNativeApp(b)
	for _, c := range []struct {
		fleet bool
		open  int
	}{{false, 0}, {true, 0}, {true, 32}, {true, 256}} {
		b.Run(fmt.Sprintf("fleet=%v/open=%d", c.fleet, c.open), func(b *testing.B) {
			r := newRig(b, rigOptions{})
			if err := r.store.Update(func(tx *store.Tx) error { // a journal of some length, every intent closed
				for i := range 1000 {
					id := fmt.Sprintf("done-%d", i)
					for _, o := range []change.Outcome{change.Pending, change.Applied} {
						rec := &journal.Record{RequestID: id, Target: "native", Action: change.ActionCreate, ResourceType: scim.UserType,
							Subject: fmt.Sprintf("d%d@contoso.example", i), Outcome: o}
						if err := r.j.Append(tx.KV(), rec); err != nil {
							return err
						}
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			for i := range c.open {
				r.appendIntent(fmt.Sprintf("open-%d", i), fmt.Sprintf("o%d@contoso.example", i), time.Time{})
			}
			target := newTarget(b, srv.URL, false)
			var eng *Engine
			if c.fleet {
				eng = r.fleetGateway(target, nil)
			} else {
				eng = r.build(rigOptions{target: target})
			}
			op := &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(b, scim.UserType, user("ada@contoso.example")), Status: http.StatusCreated}
			b.ResetTimer()
			for range b.N {
				if _, err := eng.decideView(eng.newJob(Request{ID: "req"}, op)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
