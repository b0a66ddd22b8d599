package journal

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// TestScanSelectsWhatExportSelects: for every kind of query, Scan calls fn with exactly the
// records the JSONL export holds, in order, with the stored record (its own seq inside).
func TestScanSelectsWhatExportSelects(t *testing.T) {
	j := exportJournal(t, 30)
	r := sampleRecord(4)
	r.Outcome, r.Time = change.Denied, baseTime.Add(time.Hour)
	if err := j.db.Update(func(tx kv.Tx) error { return j.Append(tx, r) }); err != nil {
		t.Fatal(err)
	}
	for _, q := range []Query{
		{},
		{FromSeq: 5, ToSeq: 8},
		{FromSeq: 29},
		{FromSeq: 40},
		{FromTime: baseTime.Add(2 * time.Minute), ToTime: baseTime.Add(5 * time.Minute)},
		{SCIMID: r.SCIMID},
		{Subject: "USER4@contoso.example"},
		{Outcome: change.Denied},
		{Subject: "user4@contoso.example", ToSeq: 30},
		{SCIMID: "none"},
	} {
		out, _ := export(t, j, q, FormatJSONL)
		var want []string
		for l := range strings.SplitSeq(string(out), "\n") {
			if rec := gjson.Get(l, "record"); rec.Exists() {
				want = append(want, rec.Raw)
			}
		}
		var got []string
		err := j.Scan(context.Background(), q, func(seq uint64, raw []byte) error {
			if s := gjson.GetBytes(raw, "seq").Uint(); s != seq {
				t.Errorf("%+v: fn got seq %d with record %d", q, seq, s)
			}
			got = append(got, string(raw))
			return nil
		})
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%+v: scanned %d records (%v), export holds %d", q, len(got), err, len(want))
		}
	}
}

// TestScanPagesStopsAndPrunes: a scan crosses its read transactions' pages without losing
// or repeating a record, stops at fn's first error and returns it, and starts where a
// pruned journal now starts.
func TestScanPagesStopsAndPrunes(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{MaxRecords: 100})
	total := 2*exportPage + 7
	for i := 0; i < total; i += 5000 {
		appendN(t, j, i, min(5000, total-i))
	}
	var seqs []uint64
	if err := j.Scan(context.Background(), Query{}, func(seq uint64, _ []byte) error {
		seqs = append(seqs, seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != total || seqs[0] != 1 || seqs[len(seqs)-1] != uint64(total) || !slices.IsSorted(seqs) {
		t.Fatalf("scanned %d records (%d..%d), want 1..%d in order", len(seqs), seqs[0], seqs[len(seqs)-1], total)
	}

	stop := errors.New("enough")
	n := 0
	err := j.Scan(context.Background(), Query{}, func(uint64, []byte) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("fn's error after %d calls: %v, want %v after 3", n, err, stop)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := j.Scan(ctx, Query{}, func(uint64, []byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled scan: %v", err)
	}

	if _, err := j.Prune(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	seqs = seqs[:0]
	if err := j.Scan(context.Background(), Query{}, func(seq uint64, _ []byte) error {
		seqs = append(seqs, seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 101 || seqs[0] != uint64(total-99) { // the last 100 and the prune record
		t.Errorf("after pruning: %d records from %d", len(seqs), seqs[0])
	}
}
