package store

import (
	"fmt"
	"testing"
	"time"
)

// TestRetired: a retired account is found, with its resource, for RetiredFor after its
// delete and not after; a target's entries are its own; retiring the same id again moves
// it; and each retirement removes an expired entry, so the index holds no more than the
// deletes of one RetiredFor.
func TestRetired(t *testing.T) {
	s := openTest(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	retire := func(target, native, id string, at time.Time) {
		t.Helper()
		mustUpdate(t, s, func(tx *Tx) error {
			return tx.RetireNativeID(target, native, RetiredAccount{SCIMID: id, Name: "alice@contoso.example", At: at})
		})
	}
	retired := func(target, native string, now time.Time) (RetiredAccount, bool) {
		t.Helper()
		var who RetiredAccount
		var ok bool
		if err := s.View(func(tx *Tx) (err error) { who, ok, err = tx.Retired(target, native, now); return err }); err != nil {
			t.Fatal(err)
		}
		return who, ok
	}
	entries := func() (n int) {
		t.Helper()
		_ = s.View(func(tx *Tx) error {
			return tx.bucket(bucketRetiredAt).ForEach(func(_, _ []byte) error { n++; return nil })
		})
		return n
	}

	retire("demo/User", "17", "u1", t0)
	if who, ok := retired("demo/User", "17", t0.Add(RetiredFor-time.Second)); !ok || who.SCIMID != "u1" || who.Name != "alice@contoso.example" || !who.At.Equal(t0) {
		t.Fatalf("retired just before RetiredFor: %+v %v", who, ok)
	}
	if _, ok := retired("demo/User", "17", t0.Add(RetiredFor)); ok {
		t.Fatal("still retired after RetiredFor")
	}
	if _, ok := retired("other/User", "17", t0); ok {
		t.Fatal("another target's account is retired")
	}

	// The same id retired again (a later resource's account): the newer entry, one in all.
	retire("demo/User", "17", "u2", t0.Add(time.Hour))
	if who, ok := retired("demo/User", "17", t0.Add(2*time.Hour)); !ok || who.SCIMID != "u2" || entries() != 1 {
		t.Fatalf("retired again: %+v %v, %d entries", who, ok, entries())
	}

	// Deletes well after RetiredFor each remove one expired entry.
	for i := range 5 {
		retire("demo/User", fmt.Sprint(100+i), "old", t0.Add(2*time.Hour))
	}
	later := t0.Add(RetiredFor + 3*time.Hour)
	for i := range 6 {
		retire("demo/User", fmt.Sprint(200+i), "new", later)
	}
	if n := entries(); n != 6 {
		t.Fatalf("%d entries after 6 deletes past the 6 expired ones, want the 6 new ones", n)
	}
	if _, ok := retired("demo/User", "200", later); !ok {
		t.Fatal("a new entry is gone")
	}
}
