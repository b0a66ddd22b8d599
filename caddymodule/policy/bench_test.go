package policy

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkDecideTrivial is the baseline: OPA's cost for a policy that does nothing.
func BenchmarkDecideTrivial(b *testing.B) {
	e := load(b, Options{Dir: "testdata/trivial"})
	benchDecide(b, e.Decide, userPatchInput(b))
}

// BenchmarkDecideShipped measures the policies the repository ships, on the most common
// Entra writes, with the live memo (as the gateway decides) and without it (every rule
// evaluated: name_without_live_memo). The x_trivial metric is the cost relative to
// BenchmarkDecideTrivial measured in the same process (the target is at most 20).
func BenchmarkDecideShipped(b *testing.B) {
	e, err := Load(Options{Dir: "../../policies"})
	if err != nil {
		b.Skipf("shipped policies do not load (yet): %v", err)
	}
	b.Cleanup(func() { _ = e.Close() })
	for _, c := range []struct {
		name  string
		input func(testing.TB) *Input
	}{{"user_create", userCreateInput}, {"user_update", userPatchInput}, {"group_add_members", groupAddInput}} {
		every := func(ctx context.Context, in *Input) (Decision, error) { return decideEvery(e, ctx, in) }
		for _, v := range []struct {
			suffix string
			decide func(context.Context, *Input) (Decision, error)
		}{{"", e.Decide}, {"_without_live_memo", every}} {
			b.Run(c.name+v.suffix, func(b *testing.B) {
				benchDecide(b, v.decide, c.input(b))
				baseline := trivialNsPerOp(b)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseline, "x_trivial")
			})
		}
	}
}

var (
	trivialOnce sync.Once
	trivialNs   float64
)

// trivialNsPerOp is the baseline for ratios: the trivial policy's cost per decision on the
// same input, timed once per process with a plain loop (testing.Benchmark cannot run inside
// a benchmark).
func trivialNsPerOp(b *testing.B) float64 {
	trivialOnce.Do(func() {
		e, err := Load(Options{Dir: "testdata/trivial"})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		in := userPatchInput(b)
		ctx := context.Background()
		const n = 20000
		start := time.Now()
		for range n {
			if _, err := e.Decide(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
		trivialNs = float64(time.Since(start).Nanoseconds()) / n
	})
	return trivialNs
}

// BenchmarkInputConversion isolates the per-request cost of building the input document.
func BenchmarkInputConversion(b *testing.B) {
	in := userPatchInput(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.astValue(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecide(b *testing.B, decide func(context.Context, *Input) (Decision, error), in *Input) {
	ctx := context.Background()
	if _, err := decide(ctx, in); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decide(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideParallel is the gateway under load (issue 17): 32 goroutines deciding
// user creates at once with the shipped policies and the default timeout, on however few
// cores the machine has. It reports the latency a caller sees (p50, p99, max: queueing for
// a core included) and how many decisions timed out; issue 17's target is none over
// 100,000 creates (-benchtime=100000x).
func BenchmarkDecideParallel(b *testing.B) {
	e, err := Load(Options{Dir: "../../policies"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	in := userCreateInput(b)
	ctx := context.Background()
	if _, err := e.Decide(ctx, in); err != nil {
		b.Fatal(err)
	}
	const concurrency = 32
	b.SetParallelism((concurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var (
		mu       sync.Mutex
		lat      []time.Duration
		timeouts int
	)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		var late int
		for pb.Next() {
			start := time.Now()
			_, err := e.Decide(ctx, in)
			mine = append(mine, time.Since(start))
			switch {
			case errors.Is(err, ErrTimeout):
				late++
			case err != nil:
				b.Error(err)
				return
			}
		}
		mu.Lock()
		lat, timeouts = append(lat, mine...), timeouts+late
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(at(0.5), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(at(1), "max-µs")
	b.ReportMetric(float64(timeouts), "timeouts")
}

// userCreateInput is the create Entra sends most: a new user, nothing before it.
func userCreateInput(t testing.TB) *Input {
	return &Input{
		Action:       "create",
		ResourceType: "User",
		Events:       []string{"create"},
		Client:       "entra",
		Target:       "demo",
		Resource:     readJSON(t, "testdata/input/user_after.json"),
		Changed:      []string{},
		Stats:        Stats{LastHour: map[string]int64{"create": 3, "update": 12}},
	}
}
