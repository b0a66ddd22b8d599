package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
)

// BenchmarkFailover measures how long a job waits for another gateway after its holder
// dies (its etcd connection closed without resigning, as kill -9 leaves it): the lease
// TTL at most, plus etcd's expiry check and the campaign. Run with -benchtime=Nx: each
// iteration takes about a TTL.
func BenchmarkFailover(b *testing.B) {
	for _, ttl := range []time.Duration{2 * time.Second, DefaultTTL} {
		b.Run(ttl.String(), func(b *testing.B) {
			te := etcdtest.Start(b, 1)
			var total, worst time.Duration
			for i := range b.N {
				job := "outbox/bench" + string(rune('a'+i%26))
				cliA := te.Client()
				a, err := NewEtcd(cliA, "/bench/e/", EtcdOptions{TTL: ttl, ID: "a"})
				if err != nil {
					b.Fatal(err)
				}
				bb, err := NewEtcd(te.Client(), "/bench/e/", EtcdOptions{TTL: ttl, ID: "b"})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*ttl+30*time.Second)
				held := make(chan struct{})
				go a.Run(ctx, job, func(ctx context.Context) { close(held); <-ctx.Done() })
				<-held
				took := make(chan time.Time, 1)
				go bb.Run(ctx, job, func(ctx context.Context) { took <- time.Now(); <-ctx.Done() })
				time.Sleep(200 * time.Millisecond) // b waits behind a
				killed := time.Now()
				cliA.Close()
				select {
				case at := <-took:
					d := at.Sub(killed)
					total += d
					worst = max(worst, d)
				case <-ctx.Done():
					b.Fatal("no failover")
				}
				cancel()
				a.Close()
				bb.Close()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/failover")
			b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
		})
	}
}

// BenchmarkCheck measures the guard a deliverer checks before each call, on a held job.
func BenchmarkCheck(b *testing.B) {
	te := etcdtest.Start(b, 1)
	e, err := NewEtcd(te.Client(), "/bench/e/", EtcdOptions{TTL: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := make(chan context.Context)
	go e.Run(ctx, "outbox/bench", func(ctx context.Context) { held <- ctx; <-ctx.Done() })
	wctx := <-held

	for b.Loop() {
		if Check(wctx) != nil || !e.Holding("outbox/bench") {
			b.Fatal("lost the job")
		}
	}
}
