package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// bulkSeed gives the rig n users that are in the app exactly as the mapping creates them:
// each account is made by the mapping's create call (concurrently), and the directory's
// records and id map are written in batches, as the engine would have left them.
func (r *rig) bulkSeed(n int) {
	r.t.Helper()
	const workers, batch = 16, 1000
	for start := 0; start < n; start += batch {
		out := make([]seedAccount, min(batch, n-start))
		var wg sync.WaitGroup
		var next atomic.Int64
		var failed atomic.Value
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < len(out); i = int(next.Add(1) - 1) {
					m, err := r.seedOne(fmt.Sprintf("b%06d", start+i))
					if err != nil {
						failed.Store(err)
						return
					}
					out[i] = m
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			r.t.Fatal(err)
		}
		err := r.store.Update(func(tx *store.Tx) error {
			for _, m := range out {
				if err := tx.Put(m.rec); err != nil {
					return err
				}
				if err := tx.SetNativeID(r.target.IDMapKey(scim.UserType), m.rec.ID, m.native); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			r.t.Fatal(err)
		}
	}
}

// seedAccount is a user of the directory and its account's native id.
type seedAccount struct {
	rec    *store.Record
	native string
}

// seedOne makes one user's account through the mapping's create and returns its record.
func (r *rig) seedOne(name string) (seedAccount, error) {
	var out seedAccount
	id := fmt.Sprintf("00000000-0000-4000-8000-%012s", name[1:])
	doc := scim.Resource(user(name, "Engineer", true))
	p, err := scim.PrepareResource(scim.UserType, doc)
	if err != nil {
		return out, err
	}
	withID := scim.CloneResource(p.Doc)
	withID["id"] = id
	reqs, err := r.target.Mapping.Requests(mapping.Input{ResourceType: scim.UserType, Event: change.Create, Resource: withID})
	if err != nil {
		return out, err
	}
	h := reqs[0].Header.Clone()
	for k, v := range r.target.Headers {
		h[k] = v
	}
	resp, err := r.target.Client.Do(context.Background(), legacy.Request{Method: reqs[0].Method, Path: reqs[0].Path, Header: h, Body: reqs[0].Body, Expect: reqs[0].Expect})
	if err != nil {
		return out, err
	}
	if out.native, err = reqs[0].ID.Extract(resp.Header, resp.Body); err != nil {
		return out, err
	}
	stored := scim.WithoutWriteOnly(scim.UserType, p.Doc)
	data, err := json.Marshal(stored)
	if err != nil {
		return out, err
	}
	now := time.Now().UTC()
	out.rec = &store.Record{Type: scim.UserType, ID: id, Created: now, LastModified: now, Doc: data, Index: provision.IndexEntries(scim.UserType, stored)}
	return out, nil
}

// BenchmarkReconcile reconciles n clean accounts of the demo app (answering at once, on
// loopback, in this process) with a directory of the same n users, and reports accounts
// per second, and heap_peak_MB: in one more run, the largest growth of the live heap over
// the live heap before the run, measured by a collection after each batch on the run's
// own goroutine (so that nothing the run allocates while the collector marks counts as
// live). The demo app's own state, which grows with n, is in the baseline; what the
// reconcile keeps does not grow with it (the seen set's hashes past 8,192 are on disk):
// compare 10k with 100k.
func BenchmarkReconcile(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) {
			if testing.Short() && n > 10_000 {
				b.Skip("100,000 accounts take a minute to seed")
			}
			r := newRig(b)
			r.bulkSeed(n)
			rc := r.reconciler(Options{})
			check := func(rep *Report, err error) {
				if err != nil {
					b.Fatal(err)
				}
				if rep.Counts.Findings() != 0 || rep.Counts.AppUsers != n || rep.Counts.DirUsers != n {
					b.Fatalf("counts %+v", rep.Counts)
				}
			}
			b.ResetTimer()
			for range b.N {
				check(rc.Run(context.Background(), false, "bench"))
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "accounts/s")
			b.StopTimer()
			runtime.GC()
			base := heapLive()
			var peak uint64
			rc.batchDone = func() {
				runtime.GC()
				if h := heapLive(); h > base && h-base > peak {
					peak = h - base
				}
			}
			check(rc.Run(context.Background(), false, "bench"))
			rc.batchDone = nil
			b.ReportMetric(float64(peak)/(1<<20), "heap_peak_MB")
		})
	}
}

// heapLive is the live heap as of the last collection.
func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
