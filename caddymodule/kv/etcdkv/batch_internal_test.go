package etcdkv

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// TestBatchSplitsGroupsOverTheLimit queues 32 Batch calls of 10 puts each behind a held
// write (320 operations, over etcd's 128): they commit in several groups, all succeed, and
// each group stays within the limit.
func TestBatchSplitsGroupsOverTheLimit(t *testing.T) {
	c := etcdtest.Start(t, 1)
	db, err := Open(context.Background(), Config{Endpoints: c.Endpoints(), Prefix: "/batch/"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	startRev := db.snap.Load().rev

	release := make(chan struct{})
	held := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = db.Update(func(tx kv.Tx) error {
			close(held)
			<-release
			_, err := tx.CreateBucketIfNotExists([]byte("b"))
			return err
		})
	})
	<-held
	const callers, puts = 32, 10
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			errs[i] = db.Batch(func(tx kv.Tx) error {
				b := tx.Bucket([]byte("b"))
				for j := range puts {
					if err := b.Put(fmt.Appendf(nil, "%02d-%d", i, j), []byte("v")); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	for range 1000 { // until every caller queued (bounded: 10s)
		db.batchMu.Lock()
		n := len(db.pending)
		db.batchMu.Unlock()
		if n == callers {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Batch %d: %v", i, err)
		}
	}
	// One revision per commit: the held Update, then the groups.
	commits := db.snap.Load().rev - startRev - 1
	if want := int64(callers * puts / (128 - 1)); commits <= want || commits >= callers {
		t.Errorf("32 Batch calls of %d puts took %d commits, want between %d and %d",
			puts, commits, want+1, callers-1)
	}
	err = db.View(func(tx kv.Tx) error {
		n := 0
		err := tx.Bucket([]byte("b")).ForEach(func(k, v []byte) error { n++; return nil })
		if n != callers*puts {
			t.Errorf("%d keys stored, want %d", n, callers*puts)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
