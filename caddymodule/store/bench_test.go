package store

import (
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// fixtureChunk is how many fixture writes share one transaction: large enough that building
// 100,000 fixtures takes a handful of commits, small enough to keep each commit's dirty pages
// modest.
const fixtureChunk = 10_000

// benchID spreads ids over the key space like the gateway's random UUIDs do, so benchmarks
// touch random pages rather than always appending at the end of the tree.
func benchID(prefix string, i int) string {
	h := uint64(i)*0x9E3779B97F4A7C15 ^ 0xD6E8FEB86659FD93
	return fmt.Sprintf("%s%016x-%d", prefix, h, i)
}

// benchUser is a user record of realistic size: an Entra user document of a few hundred bytes
// and the four indexes the gateway keeps.
func benchUser(i int) *Record {
	id := benchID("u", i)
	name := "user" + strconv.Itoa(i) + "@contoso.example"
	doc := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":%q,`+
		`"externalId":%q,"active":true,"displayName":"User %d","name":{"givenName":"User","familyName":"%d"},`+
		`"emails":[{"primary":true,"type":"work","value":%q}]}`, name, id, i, i, name)
	return &Record{
		Type: "User", ID: id, Doc: []byte(doc),
		Index: []IndexEntry{
			{Attr: "userName", Value: name, Unique: true},
			{Attr: "externalId", Value: id, Unique: true},
			{Attr: "displayName", Value: "User " + strconv.Itoa(i)},
			{Attr: "emails.value", Value: name},
		},
	}
}

// inChunks runs fn(tx, i) for i in [0, n), fixtureChunk calls per transaction.
func inChunks(b *testing.B, s *Store, n int, fn func(tx *Tx, i int) error) {
	b.Helper()
	for start := 0; start < n; start += fixtureChunk {
		err := s.Update(func(tx *Tx) error {
			for i := start; i < min(start+fixtureChunk, n); i++ {
				if err := fn(tx, i); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupUserName measures one read transaction with one userName lookup. The cost
// should grow with the depth of the B+tree (log n), so /100000 should be close to /1000.
func BenchmarkLookupUserName(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		s := openTest(b)
		inChunks(b, s, n, func(tx *Tx, i int) error { return tx.Put(benchUser(i)) })
		names := make([]string, n)
		for i := range names {
			names[i] = "USER" + strconv.Itoa(i) + "@Contoso.Example"
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i = (i + 7919) % n // a prime stride: visits names all over the tree
				err := s.View(func(tx *Tx) error {
					ids, err := tx.Lookup("User", "userName", names[i])
					if err == nil && len(ids) != 1 {
						err = fmt.Errorf("lookup %s: %v", names[i], ids)
					}
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAddMember measures adding one member to a group (and removing it again, so the
// group keeps its size) for an empty group and a group of 100,000 members. Operations share
// transactions of 1,000 so that the fsync of each commit, which is the same for both, does not
// hide the cost of the edge writes themselves; that cost must not grow with the group.
func BenchmarkAddMember(b *testing.B) {
	s := openTest(b)
	inChunks(b, s, 100_000, func(tx *Tx, i int) error {
		_, err := tx.AddMember("big", Member{ID: benchID("m", i), Type: "User", Display: "Member"})
		return err
	})
	for _, bc := range []struct{ name, group string }{{"empty", "empty"}, {"100000-members", "big"}} {
		b.Run(bc.name, func(b *testing.B) {
			const perTx = 1000
			next := 0
			for b.Loop() {
				if next%perTx == 0 {
					// Starting a transaction per perTx ops amortises its commit across them.
					err := s.Update(func(tx *Tx) error {
						for j := range perTx {
							id := benchID("new", next+j)
							if added, err := tx.AddMember(bc.group, Member{ID: id, Type: "User"}); err != nil || !added {
								return fmt.Errorf("AddMember %s: %v, %v", id, added, err)
							}
							if _, err := tx.RemoveMember(bc.group, id); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				next++
			}
		})
	}
}

// benchParallelism makes RunParallel use at least 32 goroutines, the concurrency the gateway
// sees when Entra and other clients write at once.
func benchParallelism() int {
	return (32 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
}

// BenchmarkPutParallel measures inserting users through Update from 32 goroutines: group
// commit should make commits/op well below 1.
func BenchmarkPutParallel(b *testing.B) {
	s := openTest(b)
	var seq atomic.Int64
	start := s.Commits()
	b.SetParallelism(benchParallelism())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := benchUser(int(seq.Add(1)))
			if err := s.Update(func(tx *Tx) error { return tx.Put(rec) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(s.Commits()-start)/float64(b.N), "commits/op")
}

// BenchmarkBareBoltBatchParallel is the baseline for BenchmarkPutParallel: the same record
// bytes written with a raw db.Batch Put, without indexes, counters or checks.
func BenchmarkBareBoltBatchParallel(b *testing.B) {
	s := openTest(b)
	db := s.DB()
	bucket := []byte("bare")
	if err := db.Update(func(tx kv.Tx) error { _, err := tx.CreateBucketIfNotExists(bucket); return err }); err != nil {
		b.Fatal(err)
	}
	var seq, commits atomic.Int64
	var hooked kv.Tx // guarded by bbolt's writer lock, as Store.hookedTx is
	b.SetParallelism(benchParallelism())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := benchUser(int(seq.Add(1)))
			rec.Version = 1
			key, val := []byte(rec.ID), encodeRecord(rec)
			err := db.Batch(func(tx kv.Tx) error {
				if hooked != tx {
					hooked = tx
					tx.OnCommit(func() { commits.Add(1) })
				}
				return tx.Bucket(bucket).Put(key, val)
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(commits.Load())/float64(b.N), "commits/op")
}
