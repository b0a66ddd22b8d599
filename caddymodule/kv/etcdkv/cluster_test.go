package etcdkv_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/kv/kvtest"
)

func increment(tx kv.Tx) error {
	b, err := tx.CreateBucketIfNotExists([]byte("counter"))
	if err != nil {
		return err
	}
	var n uint64
	if v := b.Get([]byte("n")); v != nil {
		n = binary.BigEndian.Uint64(v)
	}
	return b.Put([]byte("n"), binary.BigEndian.AppendUint64(nil, n+1))
}

func counter(t *testing.T, db kv.DB) uint64 {
	t.Helper()
	var n uint64
	if err := db.View(func(tx kv.Tx) error {
		if b := tx.Bucket([]byte("counter")); b != nil {
			if v := b.Get([]byte("n")); v != nil {
				n = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNoLostUpdates: two gateways on one cluster increment one counter from many goroutines,
// with Update and Batch; every increment counts.
func TestNoLostUpdates(t *testing.T) {
	c := etcdtest.Start(t, 3)
	prefix := freshPrefix()
	a, b := open(t, c.Endpoints(), prefix), open(t, c.Endpoints(), prefix)
	const goroutines, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, 4*goroutines*each)
	for _, db := range []*etcdkv.DB{a, b} {
		for g := range goroutines {
			wg.Go(func() {
				for range each {
					var err error
					if g%2 == 0 {
						err = db.Update(increment)
					} else {
						err = db.Batch(increment)
					}
					if err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		failed++
		t.Error(err)
	}
	want := uint64(2*goroutines*each - failed)
	if got := counter(t, a); got != want {
		t.Errorf("counter on A = %d, want %d", got, want)
	}
	if got := counter(t, b); got != want {
		t.Errorf("counter on B = %d, want %d", got, want)
	}
}

// TestReadYourWritesAcrossGateways: a View on B right after an Update on A returned sees it.
func TestReadYourWritesAcrossGateways(t *testing.T) {
	c := etcdtest.Start(t, 3)
	prefix := freshPrefix()
	a, b := open(t, c.Endpoints(), prefix), open(t, c.Endpoints(), prefix)
	for i := range 50 {
		writer, reader := a, b
		if i%2 == 1 {
			writer, reader = b, a
		}
		if err := writer.Update(increment); err != nil {
			t.Fatal(err)
		}
		if got := counter(t, reader); got != uint64(2*i+1) {
			t.Fatalf("after write %d the other gateway read %d", 2*i+1, got)
		}
		// An Update that only reads must not act on a stale cache either.
		if err := writer.Update(increment); err != nil {
			t.Fatal(err)
		}
		var got uint64
		if err := reader.Update(func(tx kv.Tx) error {
			got = binary.BigEndian.Uint64(tx.Bucket([]byte("counter")).Get([]byte("n")))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got != uint64(2*i+2) {
			t.Fatalf("after write %d a read-only Update on the other gateway read %d", 2*i+2, got)
		}
	}
}

// TestChangedAcrossGateways: B's Changed fires for A's commit, and the change is in B's cache.
func TestChangedAcrossGateways(t *testing.T) {
	c := etcdtest.Start(t, 1)
	prefix := freshPrefix()
	a := open(t, c.Endpoints(), prefix)
	b := open(t, c.Endpoints(), prefix, func(cfg *etcdkv.Config) { cfg.Serializable = true })
	for i := range 5 {
		ch := b.Changed()
		if err := a.Update(increment); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Fatal("B's Changed did not fire for A's commit")
		}
		// B reads its cache without a barrier: the notification means the change is in it.
		if got := counter(t, b); got != uint64(i+1) {
			t.Fatalf("B's cache after Changed holds %d, want %d", got, i+1)
		}
	}
}

// TestQuorumLoss: with one member of three stopped, writes go on; with two stopped, Update
// and View fail with ErrUnavailable (never success); when a member returns, both work again.
func TestQuorumLoss(t *testing.T) {
	c := etcdtest.Start(t, 3)
	db := open(t, c.Endpoints(), freshPrefix(), func(cfg *etcdkv.Config) {
		cfg.CommitTimeout = 2 * time.Second
		cfg.BarrierTimeout = 2 * time.Second
	})
	if err := db.Update(increment); err != nil {
		t.Fatal(err)
	}
	c.Stop(2)
	acked := uint64(1)
	if err := retry(t, func() error { return db.Update(increment) }); err != nil {
		t.Fatalf("Update with one member of three stopped: %v", err)
	}
	acked++
	c.Stop(1)
	for i := range 3 {
		err := db.Update(increment)
		if err == nil {
			t.Fatalf("Update %d without quorum reported success", i)
		}
		if !errors.Is(err, kv.ErrUnavailable) {
			t.Errorf("Update without quorum: %v, want ErrUnavailable", err)
		}
		err = db.View(func(kv.Tx) error { return nil })
		if !errors.Is(err, kv.ErrUnavailable) {
			t.Errorf("View without quorum: %v, want ErrUnavailable", err)
		}
	}
	c.Restart(1)
	if err := retry(t, func() error { return db.Update(increment) }); err != nil {
		t.Fatalf("Update after quorum returned: %v", err)
	}
	acked++
	// An Update that failed without quorum may or may not have been stored (the contract
	// allows it for the commit in flight), but nothing acknowledged is lost.
	if got := counter(t, db); got < acked {
		t.Errorf("counter = %d, want at least the %d acknowledged increments", got, acked)
	}
}

// retry calls fn until it succeeds or fails with something other than ErrUnavailable, at
// most 30 times (a member or the client may take a while to notice a stop or a restart).
func retry(t *testing.T, fn func() error) error {
	t.Helper()
	var err error
	for range 30 {
		if err = fn(); !errors.Is(err, kv.ErrUnavailable) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// TestCompactionReload: B's watch is cut off while A writes and etcd compacts the history B
// would need; B reloads its cache and sees A's writes, deletes included.
func TestCompactionReload(t *testing.T) {
	c := etcdtest.Start(t, 3)
	prefix := freshPrefix()
	a := open(t, c.Endpoints()[:1], prefix)
	reloads := &countingCore{Core: zapcore.NewNopCore(), msg: "the watch fell behind a compaction; reloading the cache"}
	b := open(t, c.Endpoints()[2:], prefix, func(cfg *etcdkv.Config) { // only member 2
		cfg.Logger = zap.New(reloads)
	})
	if err := a.Update(func(tx kv.Tx) error {
		bk, _ := tx.CreateBucketIfNotExists([]byte("x"))
		return bk.Put([]byte("gone"), []byte("soon"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.View(func(kv.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	c.Stop(2)
	for range 5 {
		if err := a.Update(increment); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Update(func(tx kv.Tx) error { return tx.Bucket([]byte("x")).Delete([]byte("gone")) }); err != nil {
		t.Fatal(err)
	}
	c.Compact()
	c.Restart(2)
	var got uint64
	var gone []byte
	err := retry(t, func() error {
		return b.View(func(tx kv.Tx) error {
			if bk := tx.Bucket([]byte("counter")); bk != nil {
				got = binary.BigEndian.Uint64(bk.Get([]byte("n")))
			}
			gone = tx.Bucket([]byte("x")).Get([]byte("gone"))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != 5 || gone != nil {
		t.Errorf("B after the compaction: counter %d (want 5), deleted key %q (want none)", got, gone)
	}
	if reloads.n.Load() == 0 {
		t.Error("B caught up without meeting the compaction: the test did not test the reload")
	}
}

// countingCore counts log entries with one message.
type countingCore struct {
	zapcore.Core
	msg string
	n   atomic.Int64
}

func (c *countingCore) Enabled(zapcore.Level) bool        { return true }
func (c *countingCore) With([]zapcore.Field) zapcore.Core { return c }
func (c *countingCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Message == c.msg {
		c.n.Add(1)
	}
	return ce
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []etcdkv.Config{
		{Prefix: "/p/"},
		{Endpoints: []string{"http://127.0.0.1:1"}, Prefix: "/no-slash"},
		{Endpoints: []string{"http://127.0.0.1:1"}},
	} {
		if _, err := etcdkv.Open(ctx, cfg); err == nil {
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
	_, err := etcdkv.Open(ctx, etcdkv.Config{
		Endpoints: []string{"http://127.0.0.1:1"}, Prefix: "/p/", LoadTimeout: time.Second,
		Password: "secret",
	})
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("Open with etcd down: %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the password: %v", err)
	}
}

func TestString(t *testing.T) {
	c := etcdtest.Start(t, 1)
	db := open(t, c.Endpoints(), "/s/", func(cfg *etcdkv.Config) { cfg.Password = "secret" })
	want := fmt.Sprintf("etcd %s prefix /s/", c.Endpoints()[0])
	if db.String() != want || !db.Shared() {
		t.Errorf("String = %q, Shared = %v", db.String(), db.Shared())
	}
}

// TestCopyFromBolt: `store copy` moves a bbolt store into etcd in transactions within etcd's
// limits, and back.
func TestCopyFromBolt(t *testing.T) {
	c := etcdtest.Start(t, 1)
	src, err := kv.OpenBolt(filepath.Join(t.TempDir(), "src.db"), kv.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Update(func(tx kv.Tx) error {
		for i := range 3 {
			b, _ := tx.CreateBucketIfNotExists(fmt.Appendf(nil, "top%d", i))
			_ = b.SetSequence(uint64(1000 + i))
			nb, _ := b.CreateBucketIfNotExists([]byte("nested"))
			for j := range 300 { // one bbolt transaction far over etcd's 128 operations
				_ = b.Put(fmt.Appendf(nil, "k%04d", j), make([]byte, 100))
				_ = nb.Put(fmt.Appendf(nil, "n%04d", j), []byte("v"))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := kvtest.Dump(t, src)
	dst := open(t, c.Endpoints(), freshPrefix())
	if err := kv.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if got := kvtest.Dump(t, dst); !maps.Equal(got, want) {
		t.Errorf("copied into etcd: %d entries, want %d", len(got), len(want))
	}
	back, err := kv.OpenBolt(filepath.Join(t.TempDir(), "back.db"), kv.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if err := kv.Copy(back, dst); err != nil {
		t.Fatal(err)
	}
	if got := kvtest.Dump(t, back); !maps.Equal(got, want) {
		t.Errorf("copied back: %d entries, want %d", len(got), len(want))
	}
}

// TestConflictRerunsFn: when another gateway commits between the snapshot and the commit, fn
// runs again on the newer data (without sending the doomed transaction when the cache shows
// the other commit already); a gateway that keeps losing fails with ErrConflict and writes
// nothing.
func TestConflictRerunsFn(t *testing.T) {
	c := etcdtest.Start(t, 1)
	prefix := freshPrefix()
	a := open(t, c.Endpoints(), prefix, func(cfg *etcdkv.Config) { cfg.MaxRetries = 3 })
	b := open(t, c.Endpoints(), prefix)
	runs := 0
	err := a.Update(func(tx kv.Tx) error {
		runs++
		if runs == 1 { // B commits while A's transaction is open
			if err := b.Update(increment); err != nil {
				t.Fatal(err)
			}
			// and A's cache shows it (a View waits for that) before A commits
			if err := a.View(func(kv.Tx) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		return increment(tx)
	})
	if err != nil || runs != 2 {
		t.Fatalf("Update: %v after %d runs, want success after 2", err, runs)
	}
	if got := counter(t, b); got != 2 {
		t.Errorf("counter = %d, want 2 (B's increment and A's rerun on top of it)", got)
	}
	if st := a.Stats(); st.Commits != 1 || st.Lost != 0 || st.Seen != 1 {
		t.Errorf("A's stats %+v: want one commit and one transaction not sent (its cache showed B's commit)", st)
	}
	before := a.Stats()

	runs = 0
	err = a.Update(func(tx kv.Tx) error {
		runs++
		if err := b.Update(increment); err != nil { // B wins every time
			t.Fatal(err)
		}
		bk, _ := tx.CreateBucketIfNotExists([]byte("loser"))
		return bk.Put([]byte("k"), []byte("v"))
	})
	if !errors.Is(err, kv.ErrConflict) || runs != 4 {
		t.Errorf("Update that always loses: %v after %d runs, want ErrConflict after 4", err, runs)
	}
	if st := a.Stats(); st.Commits != before.Commits || st.Lost+st.Seen-before.Lost-before.Seen != 4 {
		t.Errorf("A's stats %+v after %+v: want four more conflicts (sent and lost, or seen) and no commit", st, before)
	}
	if err := b.View(func(tx kv.Tx) error {
		if tx.Bucket([]byte("loser")) != nil {
			t.Error("the losing transaction's write is stored")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestLeaderStopDuringWrites: the leader stops while two gateways write: writes go on through
// the new leader, a write that failed is reported unavailable (stored or not), and every
// acknowledged write is kept.
func TestLeaderStopDuringWrites(t *testing.T) {
	const maxWrites = 100000 // bounds the writers if the test goes wrong
	c := etcdtest.Start(t, 3)
	prefix := freshPrefix()
	dbs := []*etcdkv.DB{open(t, c.Endpoints(), prefix), open(t, c.Endpoints(), prefix)}
	var acked, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			db := dbs[g%2]
			for range maxWrites / 8 {
				select {
				case <-stop:
					return
				default:
				}
				err := db.Batch(increment)
				switch {
				case err == nil:
					acked.Add(1)
				case errors.Is(err, kv.ErrUnavailable):
					failed.Add(1)
				default:
					t.Errorf("write failed with %v, want success or ErrUnavailable", err)
					return
				}
			}
		})
	}
	for acked.Load() < 50 && acked.Load()+failed.Load() < maxWrites {
		time.Sleep(5 * time.Millisecond)
	}
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	c.Stop(leader) // etcd hands leadership over first
	before := acked.Load()
	for acked.Load() < before+50 && acked.Load()+failed.Load() < maxWrites {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if acked.Load() < before+50 {
		t.Errorf("only %d writes acknowledged after the leader stopped", acked.Load()-before)
	}
	got := int64(counter(t, dbs[0]))
	if got < acked.Load() || got > acked.Load()+failed.Load() {
		t.Errorf("counter = %d; %d writes acknowledged, %d failed", got, acked.Load(), failed.Load())
	}
	t.Logf("%d acknowledged, %d unavailable; counter %d", acked.Load(), failed.Load(), got)
}
