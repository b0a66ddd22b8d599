package etcdkv

import (
	"context"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

func openStale(t *testing.T, endpoints []string, stale time.Duration) *DB {
	t.Helper()
	db, err := Open(context.Background(), Config{Endpoints: endpoints, Prefix: "/stale/", MaxStaleness: stale})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func putKey(t *testing.T, db *DB, k string) {
	t.Helper()
	if err := db.Update(func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte(k), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
}

// holds reports whether a read with view finds key k.
func holds(t *testing.T, view func(func(kv.Tx) error) error, k string) bool {
	t.Helper()
	found := false
	if err := view(func(tx kv.Tx) error {
		if b := tx.Bucket([]byte("b")); b != nil {
			found = b.Get([]byte(k)) != nil
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// lag makes db's cache look as if its watch were behind: the snapshot reads start from is
// old until release, which publishes the current one again. The watch publishes nothing
// meanwhile as long as nobody writes.
func lag(db *DB, old *snapshot) (release func()) {
	current := db.snap.Load()
	db.snap.Store(old)
	return func() {
		db.snap.Store(current)
		db.applied.Notify()
	}
}

// waitRev waits until db's cache has applied rev.
func waitRev(t *testing.T, db *DB, rev int64) {
	t.Helper()
	if _, err := db.waitApplied(rev, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestViewRecentBoundsWhatItMisses: with MaxStaleness, ViewRecent runs on the cache without
// a linearizable read while one sent within MaxStaleness showed nothing the cache lacks,
// so it may miss another gateway's newer commit (the cache lagging behind); it never
// misses its own gateway's commits, nor, once that read is older than MaxStaleness, any
// commit acknowledged before it began (it reads the head again and waits for the cache).
// View is linearizable whatever MaxStaleness is.
func TestViewRecentBoundsWhatItMisses(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a, b := openStale(t, c.Endpoints(), 0), openStale(t, c.Endpoints(), time.Hour)

	putKey(t, a, "k0")
	if !holds(t, b.ViewRecent, "k0") {
		t.Fatal("B's first ViewRecent, without any linearizable read yet, missed A's commit")
	}
	if n := b.Stats().Barriers; n != 1 {
		t.Fatalf("B's first ViewRecent sent %d linearizable reads, want 1", n)
	}
	old := b.snap.Load()

	// A commits; B's watch lags. Within MaxStaleness B may answer without it, at no cost.
	putKey(t, a, "k1")
	waitRev(t, b, a.own.Load())
	release := lag(b, old)
	if holds(t, b.ViewRecent, "k1") {
		t.Fatal("ViewRecent within MaxStaleness waited for a commit it may miss")
	}
	if n := b.Stats().Barriers; n != 1 {
		t.Fatalf("ViewRecent within MaxStaleness sent a linearizable read (%d in all)", n)
	}
	// View is linearizable: it waits for the cache to show A's commit.
	time.AfterFunc(100*time.Millisecond, release)
	if !holds(t, b.View, "k1") {
		t.Fatal("View missed a commit acknowledged before it began")
	}

	// B's own commit: ViewRecent waits for the cache to show it, without a round trip,
	// though the linearizable read it relies on is older than the commit.
	before := b.snap.Load()
	putKey(t, b, "k2")
	release = lag(b, before)
	time.AfterFunc(100*time.Millisecond, release)
	if !holds(t, b.ViewRecent, "k2") {
		t.Fatal("ViewRecent missed its own gateway's commit")
	}
	barriers := b.Stats().Barriers

	// Past MaxStaleness (as if the hour had gone by), ViewRecent reads the head again and
	// sees every commit acknowledged before it began.
	putKey(t, a, "k3")
	waitRev(t, b, a.own.Load())
	f := b.fresh.Load()
	b.fresh.Store(&freshness{sent: f.sent.Add(-2 * time.Hour), head: f.head})
	release = lag(b, old)
	time.AfterFunc(100*time.Millisecond, release)
	if !holds(t, b.ViewRecent, "k3") {
		t.Fatal("ViewRecent past MaxStaleness missed a commit acknowledged before it began")
	}
	if n := b.Stats().Barriers; n != barriers+1 {
		t.Fatalf("ViewRecent past MaxStaleness sent %d linearizable reads, want 1", n-barriers)
	}
}

// TestViewRecentWithoutMaxStalenessIsView: without MaxStaleness every ViewRecent sends its
// linearizable read, as View does.
func TestViewRecentWithoutMaxStalenessIsView(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a, b := openStale(t, c.Endpoints(), 0), openStale(t, c.Endpoints(), 0)
	for i := range 5 {
		k := string(rune('a' + i))
		putKey(t, a, k)
		if !holds(t, b.ViewRecent, k) {
			t.Fatalf("ViewRecent missed A's commit %d", i)
		}
	}
	if n := b.Stats().Barriers; n != 5 {
		t.Fatalf("5 ViewRecents sent %d linearizable reads, want 5", n)
	}
}
