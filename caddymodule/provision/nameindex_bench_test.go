package provision

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// BenchmarkIndexNames measures the name index pass on an outbox of 10,000 tasks an
// earlier release queued (5,000 deletes, each followed by a create of the deleted user's
// userName), none indexed: on a bbolt file, and on one whose transactions hold etcd's 128
// writes. Each iteration starts from a new store (not timed).
func BenchmarkIndexNames(b *testing.B) {
	const pairs = 5000
	for _, limit := range []int{0, 128} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			b.ReportAllocs()
			var txns int
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := b.TempDir()
				var st *store.Store
				if limit > 0 {
					st, _ = teststore.OpenLimited(b, dir, limit)
				} else {
					var err error
					if st, err = store.Open(filepath.Join(dir, "scimgate.db"), store.Options{}); err != nil {
						b.Fatal(err)
					}
				}
				queueOldTasks(b, st, pairs, limit)
				e := &Engine{store: st, target: &Target{Name: "native"}, logger: zap.NewNop()}
				b.StartTimer()
				s, err := e.indexNames()
				b.StopTimer()
				if err != nil || s.indexed != pairs || s.waits != pairs {
					b.Fatalf("the pass: %+v, %v", s, err)
				}
				txns = s.txns
				_ = st.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(txns), "txns/op")
		})
	}
}

// queueOldTasks queues pairs deletes and creates of their names as a release before the
// name index did: through the store, without index entries or WaitsFor.
func queueOldTasks(b *testing.B, st *store.Store, pairs, limit int) {
	b.Helper()
	doc := func(id, name string) json.RawMessage {
		raw, _ := json.Marshal(map[string]any{"schemas": []string{scim.UserSchema}, "id": id, "userName": name, "active": true})
		return raw
	}
	per := 500 // tasks a transaction: two keys each
	if limit > 0 {
		per = (limit - 8) / 2
	}
	for start := 0; start < pairs; start += per / 2 {
		err := st.Update(func(tx *store.Tx) error {
			for i := start; i < min(pairs, start+per/2); i++ {
				name := fmt.Sprintf("u%d@contoso.example", i)
				old, new := fmt.Sprintf("old-%d", i), fmt.Sprintf("new-%d", i)
				for _, t := range []*outbox.Task{
					{RequestID: "d" + old, Action: "delete", Type: scim.UserType, ID: old, Subject: name, Before: doc(old, name)},
					{RequestID: "c" + new, Action: "create", Type: scim.UserType, ID: new, Subject: name, After: doc(new, name)},
				} {
					data, err := t.Encode()
					if err != nil {
						return err
					}
					if _, err := tx.Enqueue("native", t.ID, data); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
