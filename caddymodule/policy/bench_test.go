package policy

import (
	"context"
	"sync"
	"testing"
	"time"
)

// BenchmarkDecideTrivial is the baseline: OPA's cost for a policy that does nothing.
func BenchmarkDecideTrivial(b *testing.B) {
	e := load(b, Options{Dir: "testdata/trivial"})
	benchDecide(b, e, userPatchInput(b))
}

// BenchmarkDecideShipped measures the policies the repository ships, on the two most
// common Entra writes. The x_trivial metric is the cost relative to BenchmarkDecideTrivial
// measured in the same process (the target is at most 20).
func BenchmarkDecideShipped(b *testing.B) {
	e, err := Load(Options{Dir: "../../policies"})
	if err != nil {
		b.Skipf("shipped policies do not load (yet): %v", err)
	}
	b.Cleanup(func() { _ = e.Close() })
	for _, c := range []struct {
		name  string
		input func(testing.TB) *Input
	}{{"user_update", userPatchInput}, {"group_add_members", groupAddInput}} {
		b.Run(c.name, func(b *testing.B) {
			benchDecide(b, e, c.input(b))
			baseline := trivialNsPerOp(b)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseline, "x_trivial")
		})
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

func benchDecide(b *testing.B, e *Engine, in *Input) {
	ctx := context.Background()
	if _, err := e.Decide(ctx, in); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Decide(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}
