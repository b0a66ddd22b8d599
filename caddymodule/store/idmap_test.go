package store

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
)

func TestIDMap(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Update(func(tx *Tx) error {
		must(tx.SetNativeID("demo", "u1", "17"))
		must(tx.SetNativeID("other", "u1", "abc")) // targets are separate
		must(tx.SetNativeID("demo", "u1", "17"))   // idempotent (db.Batch reruns)
		if err := tx.SetNativeID("demo", "u2", "17"); !errors.Is(err, ErrIDInUse) {
			t.Fatalf("native id mapped twice: %v", err)
		}
		return nil
	}))
	must(s.View(func(tx *Tx) error {
		if n, err := tx.NativeID("demo", "u1"); err != nil || n != "17" {
			t.Fatalf("NativeID = %q, %v", n, err)
		}
		if id, err := scimIDOf(tx, "demo", "17"); err != nil || id != "u1" {
			t.Fatalf("scimIDOf = %q, %v", id, err)
		}
		if _, err := tx.NativeID("demo", "u2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unmapped id: %v", err)
		}
		if err := tx.SetNativeID("demo", "u3", "1"); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("write in View: %v", err)
		}
		return nil
	}))
	must(s.Update(func(tx *Tx) error {
		must(tx.SetNativeID("demo", "u1", "18")) // remap drops the old reverse entry
		if _, err := scimIDOf(tx, "demo", "17"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old native id still mapped: %v", err)
		}
		must(tx.DeleteNativeID("demo", "u1"))
		must(tx.DeleteNativeID("demo", "u1"))
		if _, err := scimIDOf(tx, "demo", "18"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("reverse entry left after delete: %v", err)
		}
		if n, err := tx.NativeID("other", "u1"); err != nil || n != "abc" {
			t.Fatalf("other target touched: %q %v", n, err)
		}
		if err := tx.SetNativeID("demo", "", "1"); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("empty SCIM id: %v", err)
		}
		return nil
	}))
}

// scimIDOf reads the reverse map: the SCIM id mapped to nativeID in target, or
// ErrNotFound. Outside SetNativeID's uniqueness check nothing looks native ids up; the tests
// do, to check that SetNativeID and DeleteNativeID keep the reverse map in step.
func scimIDOf(tx *Tx, target, nativeID string) (string, error) {
	v := tx.bucket(bucketIDMapRev).Get(joinKey(target, nativeID))
	if v == nil {
		return "", ErrNotFound
	}
	return string(v), nil
}

func TestMarks(t *testing.T) {
	s := openTest(t)
	mustUpdate(t, s, func(tx *Tx) error {
		if got := tx.Mark("demo/User", "u1"); got != change.MarkNone {
			t.Errorf("Mark before any = %q", got)
		}
		if err := tx.SetMark("demo/User", "u1", change.MarkSkipped); err != nil {
			return err
		}
		return tx.SetMark("other/User", "u1", change.MarkDeactivated)
	})
	err := s.View(func(tx *Tx) error {
		if got := tx.Mark("demo/User", "u1"); got != change.MarkSkipped {
			t.Errorf("Mark = %q, want %q", got, change.MarkSkipped)
		}
		if got := tx.Mark("other/User", "u1"); got != change.MarkDeactivated {
			t.Errorf("other target's Mark = %q, want %q", got, change.MarkDeactivated)
		}
		if err := tx.SetMark("demo/User", "u1", change.MarkNone); err == nil {
			t.Error("SetMark in a read transaction succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.SetMark("demo/User", "u1", change.MarkNone) })
	_ = s.View(func(tx *Tx) error {
		if got := tx.Mark("demo/User", "u1"); got != change.MarkNone {
			t.Errorf("Mark after clearing = %q", got)
		}
		return nil
	})
}
