package journal

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// A prepared record is stored byte for byte as encoding the final record would store it,
// whether it brings its own time or takes the append time, at any sequence number.
func TestPreparedEncodingIsTheRecords(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	withTime := sampleRecord(4)
	stamped := sampleRecord(5)
	stamped.Time = time.Time{}
	odd := sampleRecord(6)
	odd.Time = time.Time{}
	odd.Error = `quotes " and \ and <html> & unicode é` + "\u2028"
	odd.Changes = []Change{{Path: `emails[type eq "work"].value`, Op: "replace", Value: json.RawMessage(`"a@b.example"`)}}
	before := time.Now().UTC()
	for _, r := range []*Record{withTime, stamped, odd} {
		p, err := j.Prepare(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx kv.Tx) error { return j.AppendPrepared(tx, p) }); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, j, 10, 120) // sequence numbers of several digits
	p, err := j.Prepare(sampleRecord(999))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx kv.Tx) error { return j.AppendPrepared(tx, p) }); err != nil {
		t.Fatal(err)
	}
	entries := allEntries(t, db, "main")
	for _, e := range entries {
		want, err := json.Marshal(e.Record)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.Raw, want) {
			t.Fatalf("record %d stored as\n%s\nencoding it gives\n%s", e.Record.Seq, e.Raw, want)
		}
	}
	if got := entries[0].Record.Time; !got.Equal(withTime.Time) {
		t.Errorf("a record's own time became %v, want %v", got, withTime.Time)
	}
	for _, e := range entries[1:3] {
		if tm := e.Record.Time; tm.Before(before) || tm.After(time.Now()) || tm.Location() != time.UTC {
			t.Errorf("record %d: time %v is not the append time in UTC", e.Record.Seq, tm)
		}
	}
	if entries[2].Record.Error != odd.Error {
		t.Errorf("error text = %q", entries[2].Record.Error)
	}
	if last := entries[len(entries)-1].Record; last.Seq != 124 || last.RequestID != "req-000999" {
		t.Errorf("last record: seq %d request %s", last.Seq, last.RequestID)
	}
	rep, err := j.Verify(context.Background(), nil)
	wantOK(t, rep, err)
}

// A record too large even without its change values is refused when it is prepared,
// counting what appending adds to it.
func TestPrepareTooLarge(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	r := sampleRecord(2)
	r.Error = strings.Repeat("x", MaxRecordBytes)
	if _, err := j.Prepare(r); err == nil || !strings.Contains(err.Error(), "even without change values") {
		t.Fatalf("err = %v", err)
	}
	r = sampleRecord(2)
	r.Changes = []Change{{Path: "description", Op: "replace", Value: json.RawMessage(`"` + strings.Repeat("y", MaxRecordBytes) + `"`)}}
	p, err := j.Prepare(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx kv.Tx) error { return j.AppendPrepared(tx, p) }); err != nil {
		t.Fatal(err)
	}
	e := allEntries(t, db, "main")[0]
	if len(e.Raw) > MaxRecordBytes || !e.Record.Changes[0].Truncated {
		t.Errorf("stored %d bytes, truncated %v", len(e.Raw), e.Record.Changes[0].Truncated)
	}
}
