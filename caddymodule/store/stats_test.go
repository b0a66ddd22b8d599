package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
)

// minute0 is a Unix minute in 2026.
const minute0 = 29_400_000

func addStats(t *testing.T, s *Store, target string, minute int64, delta map[string]int64) {
	t.Helper()
	mustUpdate(t, s, func(tx *Tx) error { return tx.AddStats(target, minute, delta) })
}

func sumStats(t *testing.T, s *Store, target string, minute int64) map[string]int64 {
	t.Helper()
	var sum map[string]int64
	if err := s.View(func(tx *Tx) (err error) {
		sum, err = tx.SumStats(target, minute)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return sum
}

// statsMinutes lists the minutes target has a key for.
func statsMinutes(t *testing.T, s *Store, target string) []int64 {
	t.Helper()
	var out []int64
	_ = s.View(func(tx *Tx) error {
		prefix := statsKey(target, 0)[:len(target)+1]
		c := tx.bucket(bucketStats).Cursor()
		for k, _ := c.Seek(prefix); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
			out = append(out, int64(binary.BigEndian.Uint64(k[len(prefix):])))
		}
		return nil
	})
	return out
}

// TestStatsSumTheLastHour: the sum covers the hour ending at the minute (and one minute
// ahead, for clocks a little behind), per target; the empty target is the gateway's own.
func TestStatsSumTheLastHour(t *testing.T) {
	s := openTest(t)
	addStats(t, s, "app", minute0-StatsMinutes, map[string]int64{"delete": 100}) // just out of the hour
	addStats(t, s, "app", minute0-StatsMinutes+1, map[string]int64{"delete": 1}) // the hour's first minute
	addStats(t, s, "app", minute0, map[string]int64{"delete": 2, "deactivate": 1})
	addStats(t, s, "app", minute0, map[string]int64{"deactivate": 3})
	addStats(t, s, "app", minute0+1, map[string]int64{"create": 4}) // a clock a minute ahead
	addStats(t, s, "ap", minute0, map[string]int64{"delete": 7})    // another target
	addStats(t, s, "", minute0, map[string]int64{"update": 9})      // the gateway's own directory
	want := map[string]int64{"delete": 3, "deactivate": 4, "create": 4}
	if got := sumStats(t, s, "app", minute0); !maps.Equal(got, want) {
		t.Errorf("app's hour = %v, want %v", got, want)
	}
	addStats(t, s, "ahead", minute0, map[string]int64{"create": 1})
	addStats(t, s, "ahead", minute0+2, map[string]int64{"create": 50}) // too far ahead
	if got := sumStats(t, s, "ahead", minute0); !maps.Equal(got, map[string]int64{"create": 1}) {
		t.Errorf("a minute two ahead is counted: %v", got)
	}
	if got := sumStats(t, s, "ap", minute0); !maps.Equal(got, map[string]int64{"delete": 7}) {
		t.Errorf("ap's hour = %v", got)
	}
	if got := sumStats(t, s, "", minute0); !maps.Equal(got, map[string]int64{"update": 9}) {
		t.Errorf("own directory's hour = %v", got)
	}
	// An hour later, only what came after minute0 is left.
	if got := sumStats(t, s, "app", minute0+StatsMinutes); !maps.Equal(got, map[string]int64{"create": 4}) {
		t.Errorf("an hour later = %v", got)
	}
	if got := sumStats(t, s, "nobody", minute0); len(got) != 0 {
		t.Errorf("a target without counts: %v", got)
	}
}

// TestStatsExpire: minutes that left the hour (and the skew minute a clock behind still
// counts) are deleted by later additions, a bounded number per call, so a target never holds
// much more than an hour of keys.
func TestStatsExpire(t *testing.T) {
	s := openTest(t)
	const kept = StatsMinutes + StatsSkewMinutes
	for m := int64(0); m < 3*StatsMinutes; m++ {
		addStats(t, s, "app", minute0+m, map[string]int64{"deactivate": 1})
		if n := len(statsMinutes(t, s, "app")); n > kept+statsExpireBatch {
			t.Fatalf("after minute %d the target holds %d minutes", m, n)
		}
	}
	last := int64(minute0 + 3*StatsMinutes - 1)
	got := statsMinutes(t, s, "app")
	if len(got) != kept || got[0] != last-kept+1 {
		t.Errorf("kept %d minutes from %d, want %d from %d", len(got), got[0], kept, last-kept+1)
	}
	if sum := sumStats(t, s, "app", last); sum["deactivate"] != StatsMinutes {
		t.Errorf("the last hour counts %d", sum["deactivate"])
	}
	// After a quiet day, each addition deletes a few of the old minutes, not all at once.
	next := last + 24*60
	addStats(t, s, "app", next, map[string]int64{"delete": 1})
	if n := len(statsMinutes(t, s, "app")); n != kept+1-statsExpireBatch {
		t.Errorf("one addition after a quiet day left %d minutes, want %d", n, kept+1-statsExpireBatch)
	}
	for range StatsMinutes {
		addStats(t, s, "app", next, map[string]int64{"delete": 1})
	}
	if got := statsMinutes(t, s, "app"); len(got) != 1 || got[0] != next {
		t.Errorf("minutes left: %v", got)
	}
	if sum := sumStats(t, s, "app", next); !maps.Equal(sum, map[string]int64{"delete": StatsMinutes + 1}) {
		t.Errorf("sum after the quiet day: %v", sum)
	}
	// Another target's old minutes are not touched.
	addStats(t, s, "other", minute0, map[string]int64{"delete": 1})
	addStats(t, s, "app", next+1, map[string]int64{"delete": 1})
	if got := statsMinutes(t, s, "other"); len(got) != 1 {
		t.Errorf("another target's minutes: %v", got)
	}
}

// TestStatsRelease: negative counts take a reservation back; a count never falls below
// zero, a minute left empty is deleted, and taking back from a minute already gone writes
// nothing.
func TestStatsRelease(t *testing.T) {
	s := openTest(t)
	addStats(t, s, "app", minute0, map[string]int64{"delete": 2, "deactivate": 1})
	addStats(t, s, "app", minute0, map[string]int64{"delete": -1})
	if got := sumStats(t, s, "app", minute0); !maps.Equal(got, map[string]int64{"delete": 1, "deactivate": 1}) {
		t.Errorf("after one release: %v", got)
	}
	addStats(t, s, "app", minute0, map[string]int64{"delete": -5, "deactivate": -1})
	if got := sumStats(t, s, "app", minute0); len(got) != 0 {
		t.Errorf("after releasing everything: %v", got)
	}
	if got := statsMinutes(t, s, "app"); len(got) != 0 {
		t.Errorf("an empty minute is kept: %v", got)
	}
	addStats(t, s, "app", minute0-5, map[string]int64{"delete": -1})
	if got := statsMinutes(t, s, "app"); len(got) != 0 {
		t.Errorf("a release of a minute already gone wrote %v", got)
	}
}

// TestStatsBadInput: what cannot be a key is refused with ErrInvalidKey, writes in a read
// transaction with ErrReadOnly, and a corrupt value with ErrCorrupt; nothing panics.
func TestStatsBadInput(t *testing.T) {
	s := openTest(t)
	for _, c := range []struct {
		target string
		minute int64
		delta  map[string]int64
	}{
		{"a\x00b", minute0, map[string]int64{"delete": 1}},
		{"app", -1, map[string]int64{"delete": 1}},
		{"app", maxStatsMinute + 1, map[string]int64{"delete": 1}},
		{"app", minute0, map[string]int64{"": 1}},
		{"app", minute0, map[string]int64{"de\x00lete": 1}},
	} {
		err := s.Update(func(tx *Tx) error { return tx.AddStats(c.target, c.minute, c.delta) })
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("AddStats(%q, %d, %v) = %v, want ErrInvalidKey", c.target, c.minute, c.delta, err)
		}
	}
	err := s.View(func(tx *Tx) error { return tx.AddStats("app", minute0, map[string]int64{"delete": 1}) })
	if !errors.Is(err, ErrReadOnly) {
		t.Errorf("AddStats in View = %v", err)
	}
	err = s.View(func(tx *Tx) error { _, err := tx.SumStats("a\x00b", minute0); return err })
	if !errors.Is(err, ErrInvalidKey) {
		t.Errorf("SumStats of a bad target = %v", err)
	}
	for _, v := range [][]byte{{5, 'a'}, {1, 'a'}, {1, 'a', 0xff}, {0, 1}} {
		mustUpdate(t, s, func(tx *Tx) error { return tx.bucket(bucketStats).Put(statsKey("bad", minute0), v) })
		err = s.View(func(tx *Tx) error { _, err := tx.SumStats("bad", minute0); return err })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("SumStats over %x = %v, want ErrCorrupt", v, err)
		}
		err = s.Update(func(tx *Tx) error { return tx.AddStats("bad", minute0, map[string]int64{"delete": 1}) })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("AddStats over %x = %v, want ErrCorrupt", v, err)
		}
	}
}

// TestStatsConcurrentReservations: reservations made as the engine makes them (one Update
// that sums the hour and counts the change; another that takes it back when the brake
// refuses) from many goroutines at once see each other: a brake of limit lets exactly limit
// through, each saw a different count, and the store ends up counting exactly those.
func TestStatsConcurrentReservations(t *testing.T) {
	s := openTest(t)
	const n, limit = 200, 25
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		seen   = map[int64]bool{}
		passed int
	)
	for range n {
		wg.Go(func() {
			var before int64
			err := s.Update(func(tx *Tx) error {
				sum, err := tx.SumStats("app", minute0)
				if err != nil {
					return err
				}
				before = sum["deactivate"]
				return tx.AddStats("app", minute0, map[string]int64{"deactivate": 1})
			})
			if err != nil {
				t.Error(err)
				return
			}
			if before >= limit {
				if err := s.Update(func(tx *Tx) error {
					return tx.AddStats("app", minute0, map[string]int64{"deactivate": -1})
				}); err != nil {
					t.Error(err)
				}
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[before] {
				t.Errorf("two reservations let through saw count %d", before)
			}
			seen[before] = true
			passed++
		})
	}
	wg.Wait()
	if passed != limit {
		t.Errorf("%d passed a brake of %d", passed, limit)
	}
	if got := sumStats(t, s, "app", minute0)["deactivate"]; got != limit {
		t.Errorf("the store counts %d, want %d", got, limit)
	}
}

// BenchmarkSumStatsFullHour is the read half of a reservation when every minute of the
// hour holds counts of every event: the bound of SumStats' work (no fsync).
func BenchmarkSumStatsFullHour(b *testing.B) {
	s := openTest(b)
	events := []string{"create", "update", "deactivate", "reactivate", "delete", "rename", "add_members", "remove_members"}
	delta := map[string]int64{}
	for _, ev := range events {
		delta[ev] = 3
	}
	if err := s.Update(func(tx *Tx) error {
		for m := int64(minute0 - StatsMinutes); m <= minute0+StatsSkewMinutes; m++ {
			if err := tx.AddStats("app", m, delta); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.View(func(tx *Tx) error {
			sum, err := tx.SumStats("app", minute0)
			if err == nil && sum["delete"] != 3*(StatsMinutes+StatsSkewMinutes) {
				err = fmt.Errorf("sum %v", sum)
			}
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
}
