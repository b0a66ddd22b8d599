package store

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestReportsKeepNewest: reports get increasing ids, the oldest beyond keep go with their
// summaries, a failing build stores nothing, and the id map is read in reverse.
func TestReportsKeepNewest(t *testing.T) {
	s := openTest(t)
	put := func(keep int) (uint64, error) {
		var id uint64
		err := s.Update(func(tx *Tx) error {
			var err error
			id, err = tx.PutReport(keep, func(id uint64) ([]byte, []byte, error) {
				return []byte(fmt.Sprintf("sum %d", id)), []byte(fmt.Sprintf("report %d", id)), nil
			})
			return err
		})
		return id, err
	}
	for i := 1; i <= 4; i++ {
		if id, err := put(3); err != nil || id != uint64(i) {
			t.Fatalf("put %d: id %d, %v", i, id, err)
		}
	}
	var ids []uint64
	err := s.View(func(tx *Tx) error {
		if _, err := tx.Report(1); !errors.Is(err, ErrNotFound) {
			t.Errorf("report 1: %v, want gone", err)
		}
		if r, err := tx.Report(4); err != nil || string(r) != "report 4" {
			t.Errorf("report 4: %q %v", r, err)
		}
		return tx.ReportSummaries(func(id uint64, sum []byte) bool {
			if string(sum) != fmt.Sprintf("sum %d", id) {
				t.Errorf("summary %d: %q", id, sum)
			}
			ids = append(ids, id)
			return true
		})
	})
	if err != nil || fmt.Sprint(ids) != "[4 3 2]" {
		t.Fatalf("summaries %v %v", ids, err)
	}
	boom := errors.New("boom")
	err = s.Update(func(tx *Tx) error {
		_, err := tx.PutReport(3, func(uint64) ([]byte, []byte, error) { return nil, nil, boom })
		return err
	})
	if !errors.Is(err, boom) {
		t.Errorf("a failing build: %v", err)
	}

	if err := s.Update(func(tx *Tx) error { return tx.SetNativeID("app/User", "s1", "n1") }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if id, err := tx.SCIMIDOf("app/User", "n1"); err != nil || id != "s1" {
			t.Errorf("SCIMIDOf n1: %q %v", id, err)
		}
		if _, err := tx.SCIMIDOf("app/User", "n2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("SCIMIDOf n2: %v", err)
		}
		return nil
	})
}

// TestLargeReportIsCompressed: a report of 10,000 findings (about 1.5 MB of JSON) is stored
// in well under what one etcd transaction may carry, reads back whole, and a report stored
// before compression reads back as it was.
func TestLargeReportIsCompressed(t *testing.T) {
	s := openTest(t)
	var b strings.Builder
	b.WriteString(`{"findings":[`)
	for i := range 10_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"kind":"drift","resource_type":"User","scim_id":"%08d-0000-4000-8000-000000000000","native_id":"%d","attribute":"title","directory":"Engineer","app":"Manager"}`, i, i)
	}
	b.WriteString(`]}`)
	report := []byte(b.String())
	var id uint64
	err := s.Update(func(tx *Tx) error {
		var err error
		id, err = tx.PutReport(5, func(uint64) ([]byte, []byte, error) { return []byte(`{}`), report, nil })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		stored := tx.bucket(bucketReports).Get(encodeUint64(id))
		if len(stored) > len(report)/5 || len(stored) > 512<<10 {
			t.Errorf("a %d-byte report is stored in %d bytes", len(report), len(stored))
		}
		got, err := tx.Report(id)
		if err != nil || !bytes.Equal(got, report) {
			t.Errorf("read back %d bytes (err %v), want the %d stored", len(got), err, len(report))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	old := []byte(`{"findings":[]}`)
	if err := s.Update(func(tx *Tx) error { return tx.bucket(bucketReports).Put(encodeUint64(id+1), old) }); err != nil {
		t.Fatal(err)
	}
	if err := s.View(func(tx *Tx) error {
		got, err := tx.Report(id + 1)
		if err != nil || !bytes.Equal(got, old) {
			t.Errorf("an uncompressed report read back as %q (err %v)", got, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
