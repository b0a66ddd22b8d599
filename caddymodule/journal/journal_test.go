package journal

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

func TestAppendReadBack(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{Redact: []string{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"}})
	in := sampleRecord(2)
	in.Time = time.Date(2025, 3, 1, 13, 0, 0, 5, time.FixedZone("CET", 3600))
	in.Changes = append(in.Changes,
		Change{Path: "password", Op: "replace", Value: json.RawMessage(`"hunter2"`)},
		Change{Path: "employeeNumber", Op: "replace", Value: json.RawMessage(`"E-1"`)},
	)
	shared := in.Changes
	err := db.Batch(func(tx kv.Tx) error {
		if err := j.Append(tx, in); err != nil {
			return err
		}
		return j.Append(tx, sampleRecord(3))
	})
	if err != nil {
		t.Fatal(err)
	}
	if shared[3].Value == nil {
		t.Error("Append modified the caller's Changes slice")
	}
	got := allEntries(t, db, "main")
	if len(got) != 2 {
		t.Fatalf("%d records, want 2", len(got))
	}
	r := got[0].Record
	if r.Seq != 1 || r.Version != FormatVersion || r.PrevHash != strings.Repeat("0", 64) {
		t.Errorf("first record: seq %d v %d prev %s", r.Seq, r.Version, r.PrevHash)
	}
	if !r.Time.Equal(in.Time) || r.Time.Location() != time.UTC {
		t.Errorf("time = %v, want %v in UTC", r.Time, in.Time)
	}
	if r.Subject != in.Subject || r.SCIMID != in.SCIMID || r.Backend.URL != in.Backend.URL || !r.Decision.Allow {
		t.Errorf("fields lost: %+v", r)
	}
	for _, c := range r.Changes {
		redacted := c.Path == "password" || c.Path == "employeeNumber"
		if redacted != c.Redacted || redacted && c.Value != nil {
			t.Errorf("change %s: redacted=%v value=%s", c.Path, c.Redacted, c.Value)
		}
	}
	if strings.Contains(string(got[0].Raw), "hunter2") {
		t.Error("password stored")
	}
	want := chainHash([32]byte{}, 1, got[0].Raw)
	if got[0].Hash != want {
		t.Error("hash is not SHA-256(prev || seq || stored bytes)")
	}
	if got[1].Record.PrevHash != hex.EncodeToString(want[:]) {
		t.Error("second record does not link to the first")
	}
	err = db.View(func(tx kv.Tx) error {
		seq, h, err := j.Head(tx)
		if seq != 2 || h != got[1].Hash {
			t.Errorf("head = %d %x", seq, h)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentBatchChain(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	const writers, each = 32, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := sampleRecord(w*each + i)
				if err := db.Batch(func(tx kv.Tx) error { return j.Append(tx, r) }); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	entries := allEntries(t, db, "main")
	seen := map[string]bool{}
	for i, e := range entries {
		if e.Record.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i+1, e.Record.Seq)
		}
		if seen[e.Record.RequestID] {
			t.Fatalf("request %s journaled twice", e.Record.RequestID)
		}
		seen[e.Record.RequestID] = true
	}
	if len(entries) != writers*each {
		t.Fatalf("%d records, want %d", len(entries), writers*each)
	}
	rep, err := j.Verify(context.Background(), nil)
	wantOK(t, rep, err)
	if rep.Records != writers*each || rep.FirstSeq != 1 || rep.LastSeq != writers*each {
		t.Errorf("report %+v", rep)
	}
}

// TestBatchRerun: bbolt reruns a Batch function alone after it fails inside a shared
// transaction; the rolled-back first run must leave no record and no gap.
// TestBatchRerun: group commit reruns a transaction's functions after a failure; appending
// the same record (or the same Prepared) again gives one record with the chain intact.
func TestBatchRerun(t *testing.T) {
	for _, prepared := range []bool{false, true} {
		t.Run(fmt.Sprintf("prepared=%v", prepared), func(t *testing.T) {
			db, _ := openDB(t)
			j := openJournal(t, db, Options{})
			appendN(t, j, 0, 3)
			var calls atomic.Int32
			r := sampleRecord(10)
			r.Time = time.Time{}
			p, err := j.Prepare(sampleRecord(10))
			if err != nil {
				t.Fatal(err)
			}
			err = db.Batch(func(tx kv.Tx) error {
				var err error
				if prepared {
					err = j.AppendPrepared(tx, p)
				} else {
					err = j.Append(tx, r)
				}
				if err != nil {
					return err
				}
				if calls.Add(1) == 1 {
					return errors.New("transient")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if calls.Load() != 2 {
				t.Fatalf("function ran %d times, want 2", calls.Load())
			}
			entries := allEntries(t, db, "main")
			if len(entries) != 4 || entries[3].Record.RequestID != r.RequestID || entries[3].Record.Seq != 4 {
				t.Fatalf("got %d records, last %+v", len(entries), entries[len(entries)-1].Record)
			}
			rep, err := j.Verify(context.Background(), nil)
			wantOK(t, rep, err)
		})
	}
}

func TestAppendErrors(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	err := db.View(func(tx kv.Tx) error { return j.Append(tx, sampleRecord(1)) })
	if !errors.Is(err, ErrReadOnlyTx) {
		t.Errorf("read-only tx: %v", err)
	}
	bad := sampleRecord(1)
	bad.Changes = []Change{{Path: "x", Value: json.RawMessage(`{not json`)}}
	if err := db.Update(func(tx kv.Tx) error { return j.Append(tx, bad) }); err == nil {
		t.Error("invalid change value accepted")
	}
	big := sampleRecord(1)
	big.Changes = []Change{{Path: "members", Value: json.RawMessage(`"` + strings.Repeat("a", MaxRecordBytes) + `"`)}}
	if err := db.Update(func(tx kv.Tx) error { return j.Append(tx, big) }); err != nil {
		t.Fatal(err)
	}
	e := allEntries(t, db, "main")
	if len(e) != 1 || !e[0].Record.Changes[0].Truncated || len(e[0].Raw) > MaxRecordBytes {
		t.Errorf("oversized record not truncated: %d bytes", len(e[0].Raw))
	}
	j.Close()
	if err := db.Update(func(tx kv.Tx) error { return j.Append(tx, sampleRecord(2)) }); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
}

func TestOpenName(t *testing.T) {
	db, _ := openDB(t)
	for _, name := range []string{"", "a b", "x/y", strings.Repeat("n", 65), "é"} {
		if _, err := Open(db, Options{Name: name}); !errors.Is(err, ErrBadName) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	a := openJournal(t, db, Options{Name: "a"})
	openJournal(t, db, Options{Name: "b.2-x_y"})
	names, err := Journals(db)
	if err != nil || strings.Join(names, ",") != "a,b.2-x_y" {
		t.Errorf("Journals = %v, %v", names, err)
	}
	if a.Name() != "a" {
		t.Error(a.Name())
	}
}

func TestHashFilter(t *testing.T) {
	db, _ := openDB(t)
	a := openJournal(t, db, Options{Name: "a"})
	b := openJournal(t, db, Options{Name: "b"})
	const f = `userName eq "alice@contoso.example"`
	ha := a.HashFilter(f)
	if len(ha) != 64 || ha != a.HashFilter(f) || strings.Contains(ha, "alice") {
		t.Errorf("unstable or revealing hash %q", ha)
	}
	if ha == b.HashFilter(f) {
		t.Error("two journals share a filter hash")
	}
	if ha == a.HashFilter(f+" ") {
		t.Error("different filters share a hash")
	}
	a.Close()
	again := openJournal(t, db, Options{Name: "a"})
	if again.HashFilter(f) != ha {
		t.Error("filter hash changed across reopen")
	}
}

func TestVerifyWhileWriting(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{CheckpointEvery: 7})
	appendN(t, j, 0, 50)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 50; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := sampleRecord(i)
			if err := db.Batch(func(tx kv.Tx) error { return j.Append(tx, r) }); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 5 {
		rep, err := j.Verify(context.Background(), nil)
		wantOK(t, rep, err)
	}
	close(stop)
	wg.Wait()
}
