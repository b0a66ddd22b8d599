package caddymodule

// Benchmarks of queued delivery (issue 14), through the real handler with a real app on
// loopback, reported as ratios against a baseline measured in the same run:
//
//	BenchmarkQueuedVsImmediate  Entra-facing creates at concurrency 8 against an app that
//	                            answers in 200 ms: queued vs immediate throughput, and the
//	                            queued write's p99 against a lookup's p99
//	BenchmarkQueuedDrain        a burst of queued creates against an app that allows 5
//	                            calls/s (and refuses more with 429): the rate it drains at
//
// go test -run '^$' -bench 'Queued' -benchtime 1x ./caddymodule/
// SCIMGATE_DRAIN_TASKS sets the drain burst (default 100; the figure is 5000, which
// takes 1,000 s at 5 calls/s).

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/google/uuid"
	"go.etcd.io/bbolt"
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

// BenchmarkQueuedDrain: a burst of queued creates against an app that allows 5 calls/s
// drains at that rate (±10%), and the app never has to refuse a call (429) because the
// gateway exceeded it (the targets; reported, not asserted).
func BenchmarkQueuedDrain(b *testing.B) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("SCIMGATE_DRAIN_TASKS")); err == nil && v > 0 {
		n = v
	}
	const rate = 5.0
	var (
		mu        sync.Mutex
		tokens    = 1.0
		last      = time.Now()
		refused   atomic.Int64
		served    atomic.Int64
		firstCall atomic.Int64
		lastCall  atomic.Int64
	)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now := time.Now()
		tokens = min(1, tokens+now.Sub(last).Seconds()*rate*1.02) // 2% slack for clock jitter
		last = now
		ok := tokens >= 1
		if ok {
			tokens--
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			refused.Add(1)
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"message":"rate limit"}}`)
			return
		}
		firstCall.CompareAndSwap(0, now.UnixNano())
		lastCall.Store(now.UnixNano())
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": %d}`, served.Add(1))
	}))
	defer app.Close()
	for range b.N {
		refused.Store(0)
		served.Store(0)
		firstCall.Store(0)
		g := benchQueueGateway(b, app.URL, "queued", func(tc *TargetConfig) { tc.RateLimit, tc.RateBurst = rate, 1 })
		w := g.engine.Worker()
		if err := w.Pause("bench"); err != nil {
			b.Fatal(err)
		}
		for i := range n {
			if _, err := benchDo(g, http.MethodPost, "/scim/v2/Users", benchUserBody("drain", i), http.StatusCreated); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Resume("bench"); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(time.Duration(float64(n)/rate*2+30) * time.Second)
		for served.Load() < int64(n) {
			if time.Now().After(deadline) {
				b.Fatalf("drained %d of %d; %+v", served.Load(), n, w.Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
		span := time.Duration(lastCall.Load() - firstCall.Load())
		b.ReportMetric(float64(n-1)/span.Seconds(), "calls/s")
		b.ReportMetric(float64(refused.Load()), "refused_429")
		if s := w.Stats(); s.Dead > 0 {
			b.Fatalf("dead letters: %+v", s)
		}
	}
}
