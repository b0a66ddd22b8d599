package etcdkv_test

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
)

// backends opens the stores the benchmarks compare: bbolt, and etcdkv on a three-member
// in-process cluster (on this machine's disk and cores), with and without the View barrier.
func backends(b *testing.B) []struct {
	name string
	db   kv.DB
} {
	bolt, err := kv.OpenBolt(filepath.Join(b.TempDir(), "bench.db"), kv.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bolt.Close() })
	c := etcdtest.Start(b, 3)
	prefix := freshPrefix()
	return []struct {
		name string
		db   kv.DB
	}{
		{"bolt", bolt},
		{"etcd", open(b, c.Endpoints(), prefix)},
		{"etcd-serializable", open(b, c.Endpoints(), prefix, func(cfg *etcdkv.Config) { cfg.Serializable = true })},
	}
}

func put(i uint64) func(kv.Tx) error {
	return func(tx kv.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte("bench"))
		if err != nil {
			return err
		}
		return bk.Put(binary.BigEndian.AppendUint64(nil, i%1024), []byte("a small value of some forty bytes......"))
	}
}

// BenchmarkUpdate commits one small transaction at a time.
func BenchmarkUpdate(b *testing.B) {
	for _, be := range backends(b)[:2] {
		b.Run(be.name, func(b *testing.B) {
			for i := range b.N {
				if err := be.db.Update(put(uint64(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBatch32 has 32 goroutines commit small transactions through Batch.
func BenchmarkBatch32(b *testing.B) { bench32(b, kv.DB.Batch) }

// BenchmarkUpdate32 has 32 goroutines commit small transactions through Update (one commit
// each, one at a time per process).
func BenchmarkUpdate32(b *testing.B) { bench32(b, kv.DB.Update) }

// bench32 has 32 goroutines commit small transactions through commit on each backend.
func bench32(b *testing.B, commit func(kv.DB, func(kv.Tx) error) error) {
	for _, be := range backends(b)[:2] {
		b.Run(be.name, func(b *testing.B) {
			var n atomic.Uint64
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := commit(be.db, put(n.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkFleetBatch32 has 32 goroutines spread over two or three gateways (DBs on one
// cluster and prefix) commit through Batch: the gateways' commits conflict on the head and
// run again. It reports, per write, the commits, the transactions that lost the race at etcd
// (each a Raft round) and those not sent because the cache had shown the loss already.
func BenchmarkFleetBatch32(b *testing.B) {
	c := etcdtest.Start(b, 3)
	for _, gateways := range []int{2, 3} {
		b.Run(fmt.Sprintf("gateways=%d", gateways), func(b *testing.B) {
			prefix := freshPrefix()
			dbs := make([]*etcdkv.DB, gateways)
			for i := range dbs {
				dbs[i] = open(b, c.Endpoints(), prefix)
			}
			var n, g atomic.Uint64
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				db := dbs[g.Add(1)%uint64(gateways)]
				for pb.Next() {
					if err := db.Batch(put(n.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			var sum etcdkv.Stats
			for _, db := range dbs {
				st := db.Stats()
				sum.Commits += st.Commits
				sum.Lost += st.Lost
				sum.Seen += st.Seen
			}
			b.ReportMetric(float64(sum.Commits)/float64(b.N), "commits/op")
			b.ReportMetric(float64(sum.Lost)/float64(b.N), "lost/op")
			b.ReportMetric(float64(sum.Seen)/float64(b.N), "seen/op")
		})
	}
}

// BenchmarkView reads one key, one View at a time and from 32 goroutines.
func BenchmarkView(b *testing.B) {
	for _, be := range backends(b) {
		if err := be.db.Update(put(7)); err != nil {
			b.Fatal(err)
		}
		read := func(tx kv.Tx) error {
			if tx.Bucket([]byte("bench")).Get(binary.BigEndian.AppendUint64(nil, 7)) == nil {
				b.Error("key missing")
			}
			return nil
		}
		b.Run(be.name, func(b *testing.B) {
			for range b.N {
				if err := be.db.View(read); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(be.name+"-parallel32", func(b *testing.B) {
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := be.db.View(read); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
