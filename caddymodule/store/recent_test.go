package store

import (
	"errors"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// laggingDB is a shared DB whose ViewRecent reads an older copy (a cache whose watch is
// behind), as etcd's read_staleness allows; View reads the current one.
type laggingDB struct {
	kv.DB
	old kv.DB
}

func (d laggingDB) ViewRecent(fn func(kv.Tx) error) error { return d.old.View(fn) }

// TestViewRecentFoundReadsAMissAgain: a read that finds nothing on a snapshot that may be
// stale runs again on the current one, so a resource another gateway has just created is
// never answered as missing; a read that finds something runs once, on the cheap snapshot;
// on a store without stale reads a miss is not read twice.
func TestViewRecentFoundReadsAMissAgain(t *testing.T) {
	cur, old := openTest(t), openTest(t)
	s, err := New(laggingDB{DB: cur.DB(), old: old.DB()})
	if err != nil {
		t.Fatal(err)
	}
	put(t, old, user("u1", "old@contoso.example"))
	put(t, s, user("u1", "old@contoso.example"), user("u2", "new@contoso.example"))

	find := func(s *Store, id string) (found bool, runs int) {
		t.Helper()
		if err := s.ViewRecentFound(func(tx *Tx) (bool, error) {
			runs++
			_, err := tx.Get("User", id)
			if errors.Is(err, ErrNotFound) {
				return false, nil
			}
			found = err == nil
			return found, err
		}); err != nil {
			t.Fatal(err)
		}
		return found, runs
	}
	if _, err := func() (r *Record, err error) {
		err = s.ViewRecent(func(tx *Tx) error { r, err = tx.Get("User", "u2"); return err })
		return
	}(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the lagging snapshot holds u2 (%v): the test shows nothing", err)
	}
	if found, runs := find(s, "u2"); !found || runs != 2 {
		t.Fatalf("a miss on the stale snapshot: found %v after %d runs, want found after 2", found, runs)
	}
	if found, runs := find(s, "u1"); !found || runs != 1 {
		t.Fatalf("a hit on the stale snapshot: found %v after %d runs, want found after 1", found, runs)
	}
	if found, runs := find(s, "u3"); found || runs != 2 {
		t.Fatalf("a real miss: found %v after %d runs, want missing after 2", found, runs)
	}
	if found, runs := find(cur, "u3"); found || runs != 1 {
		t.Fatalf("a miss on a store without stale reads: found %v after %d runs, want missing after 1", found, runs)
	}
	boom := errors.New("boom")
	runs := 0
	if err := s.ViewRecentFound(func(*Tx) (bool, error) { runs++; return false, boom }); !errors.Is(err, boom) || runs != 1 {
		t.Fatalf("an error: %v after %d runs, want boom after 1", err, runs)
	}
}
