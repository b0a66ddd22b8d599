package storecmd_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// BenchmarkCopy copies a store of 2,000 users (with their indexes, id map, memberships,
// outbox tasks and a 2,004-record journal) into a one-member local etcd and back to a
// file, verified both ways. It reports keys copied per second, per direction.
func BenchmarkCopy(b *testing.B) {
	c := etcdtest.Start(b, 1)
	dir := b.TempDir()
	src := filepath.Join(dir, "scimgate.db")
	seedN(b, src, 2000)
	db, err := kv.OpenBolt(src, kv.BoltOptions{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	keys := 0
	if err := db.View(func(tx kv.Tx) error {
		sum, err := kv.Summarize(tx)
		for _, n := range sum.Keys {
			keys += n
		}
		return err
	}); err != nil {
		b.Fatal(err)
	}
	db.Close()
	var in, out time.Duration
	b.ResetTimer()
	for i := range b.N {
		prefix := fmt.Sprintf("/bench%d/", i)
		start := time.Now()
		if code, o, err := run(b, "copy", "--from", src, "--to", "etcd", "--endpoints", c.Endpoints()[0], "--prefix", prefix); code != 0 {
			b.Fatalf("into etcd: %d %v %s", code, err, o)
		}
		in += time.Since(start)
		start = time.Now()
		back := filepath.Join(dir, fmt.Sprintf("back%d.db", i))
		if code, o, err := run(b, "copy", "--from", "etcd", "--endpoints", c.Endpoints()[0], "--prefix", prefix, "--to", back); code != 0 {
			b.Fatalf("from etcd: %d %v %s", code, err, o)
		}
		out += time.Since(start)
	}
	b.ReportMetric(float64(keys), "keys")
	b.ReportMetric(float64(keys)*float64(b.N)/in.Seconds(), "keys/s-into-etcd")
	b.ReportMetric(float64(keys)*float64(b.N)/out.Seconds(), "keys/s-from-etcd")
}
