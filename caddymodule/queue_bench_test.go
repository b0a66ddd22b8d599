package caddymodule

// Benchmarks of queued delivery (issue 14), through the real handler with a real app on
// loopback, reported as ratios against a baseline measured in the same run:
//
//	BenchmarkQueuedVsImmediate  Entra-facing creates at concurrency 8 against an app that
//	                            answers in 200 ms: queued vs immediate throughput, and the
//	                            queued write's p99 against a lookup's p99
//
// go test -run '^$' -bench 'Queued' -benchtime 1x ./caddymodule/
//
// The drain of a burst against an app limited to 5 calls/s is measured by
// `go run ./cmd/gatewaybench drain` (a real Caddy, the demo app behind a rate limit).

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/google/uuid"
	"go.etcd.io/bbolt"

	"github.com/scimgate/scimgate/caddymodule/store"
)

const benchQueueMapping = `{"version": 1, "users": {"events": {
  "create": {"method": "POST", "path": "/accounts", "id": "id", "body": {"login": {"from": "userName"}}}}}}`

// benchQueueGateway is a gateway whose target is the app at url, delivering in mode.
func benchQueueGateway(b *testing.B, url, mode string, mutate func(*TargetConfig)) *Handler {
	b.Helper()
	mapFile := filepath.Join(b.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(benchQueueMapping), 0o600); err != nil {
		b.Fatal(err)
	}
	return newTestGateway(b, func(g *Handler) {
		g.Target = &TargetConfig{Name: "bench-" + mode, URL: url, Mapping: mapFile, Delivery: mode,
			Timeout: caddy.Duration(10 * time.Second), MaxConcurrent: 64, MaxRetries: -1}
		if mutate != nil {
			mutate(g.Target)
		}
	})
}

// benchConcurrent runs n calls of op from conc goroutines and returns the throughput and
// every call's latency, sorted.
func benchConcurrent(b *testing.B, conc, n int, op func(i int) error) (perSec float64, lat []time.Duration) {
	b.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				t0 := time.Now()
				if err := op(i); err != nil {
					failed.Store(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	return float64(n) / time.Since(start).Seconds(), lat
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, int(float64(len(lat))*p))]
}

// BenchmarkQueuedVsImmediate: with an app that answers in 200 ms, Entra-facing creates at
// concurrency 8 run at least 10 times faster queued than immediate, with a p99 within 2 ms
// of a lookup's (the targets; the numbers are reported, not asserted).
func BenchmarkQueuedVsImmediate(b *testing.B) {
	var accounts atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": %d}`, accounts.Add(1))
	}))
	defer app.Close()
	const conc = 8
	for range b.N {
		imm := benchQueueGateway(b, app.URL, "immediate", nil)
		q := benchQueueGateway(b, app.URL, "queued", nil)
		create := func(g *Handler, tag string) func(int) error {
			return func(i int) error {
				_, err := benchDo(g, http.MethodPost, "/scim/v2/Users", benchUserBody(tag, i), http.StatusCreated)
				return err
			}
		}
		immRate, immLat := benchConcurrent(b, conc, 80, create(imm, "imm"))
		qRate, qLat := benchConcurrent(b, conc, 2000, create(q, "q"))
		_, lookLat := benchConcurrent(b, conc, 2000, func(i int) error {
			_, err := benchDo(q, http.MethodGet, "/scim/v2/Users?filter=userName+eq+%22"+benchUserName("q", i)+"%22", nil, http.StatusOK)
			return err
		})
		// What a queued write costs beyond its durable commit: the same creates with the
		// worker paused (no delivery commits share the disk), and a bare bbolt group commit
		// (db.Batch) of a stored user's size at the same concurrency, on the same disk.
		paused := benchQueueGateway(b, app.URL, "queued", nil)
		if err := paused.engine.Worker().Pause("bench"); err != nil {
			b.Fatal(err)
		}
		_, pausedLat := benchConcurrent(b, conc, 2000, create(paused, "p"))
		db, bucket := benchBareBolt(b)
		value := bytes.Repeat([]byte{'x'}, benchStoredUserSize(b))
		_, commitLat := benchConcurrent(b, conc, 2000, func(int) error {
			key := []byte(uuid.NewString())
			return db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put(key, value) })
		})
		// The same value committed through the gateway's own group commit (the store's,
		// without bbolt's timer: a lone write commits at once) into a bucket of its own in a
		// fresh store file on the same disk: what one durable commit costs a write here.
		st := benchBareStore(b)
		storePut := func() error {
			key := []byte(uuid.NewString())
			return st.Update(func(tx *store.Tx) error { return tx.KV().Bucket(benchBareBucket).Put(key, value) })
		}
		_, storeLat := benchConcurrent(b, conc, 2000, func(int) error { return storePut() })
		// The floor of a durable write that reads first: the same lookups, each followed by
		// such a commit, at the same concurrency. A queued create does at least that (its
		// lookups of the name and the id map, then its commit, fsynced before it answers),
		// so its p99 over a lookup's cannot go far below this floor's over lookup_p99.
		_, floorLat := benchConcurrent(b, conc, 2000, func(i int) error {
			if _, err := benchDo(q, http.MethodGet, "/scim/v2/Users?filter=userName+eq+%22"+benchUserName("q", i)+"%22", nil, http.StatusOK); err != nil {
				return err
			}
			return storePut()
		})
		b.ReportMetric(float64(pct(storeLat, .50).Microseconds())/1000, "store_commit_p50_ms")
		b.ReportMetric(float64(pct(storeLat, .99).Microseconds())/1000, "store_commit_p99_ms")
		b.ReportMetric(float64(pct(floorLat, .99).Microseconds())/1000, "lookup_then_commit_p99_ms")
		b.ReportMetric(float64(pct(pausedLat, .99).Microseconds())/1000, "queued_paused_p99_ms")
		b.ReportMetric(float64(pct(commitLat, .99).Microseconds())/1000, "bolt_commit_p99_ms")
		b.ReportMetric(float64(pct(commitLat, .50).Microseconds())/1000, "bolt_commit_p50_ms")
		b.ReportMetric(float64(pct(pausedLat, .50).Microseconds())/1000, "queued_paused_p50_ms")
		b.ReportMetric(immRate, "immediate_writes/s")
		b.ReportMetric(qRate, "queued_writes/s")
		b.ReportMetric(qRate/immRate, "queued/immediate")
		b.ReportMetric(float64(pct(immLat, .99).Microseconds())/1000, "immediate_p99_ms")
		b.ReportMetric(float64(pct(qLat, .99).Microseconds())/1000, "queued_p99_ms")
		b.ReportMetric(float64(pct(lookLat, .99).Microseconds())/1000, "lookup_p99_ms")
		b.ReportMetric(float64(pct(qLat, .50).Microseconds())/1000, "queued_p50_ms")
	}
}

// benchBareBucket is the bucket of benchBareStore's values.
var benchBareBucket = []byte("bare")

// benchBareStore opens a fresh store file (the gateway's group commit, no gateway) with
// the bucket benchBareBucket, made before anything is measured.
func benchBareStore(b *testing.B) *store.Store {
	b.Helper()
	st, err := store.Open(filepath.Join(b.TempDir(), "bare-store.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	err = st.Update(func(tx *store.Tx) error {
		_, err := tx.KV().CreateBucketIfNotExists(benchBareBucket)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return st
}
