package journal

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
)

var errRollBack = errors.New("roll back")

func appendRecords(t *testing.T, j *Journal, recs ...*Record) {
	t.Helper()
	err := j.db.Update(func(tx kv.Tx) error {
		for _, r := range recs {
			if err := j.Append(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func intent(target, req string) *Record {
	return &Record{Target: target, RequestID: req, Action: change.ActionPatch, Outcome: change.Pending}
}

func outcomeOf(target, req string, o change.Outcome) *Record {
	return &Record{Target: target, RequestID: req, Action: change.ActionPatch, Outcome: o}
}

func openRequests(t *testing.T, j *Journal, target string) []string {
	t.Helper()
	open, err := j.OpenIntents(target)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range open {
		if r.Outcome != change.Pending || r.Target != target {
			t.Errorf("OpenIntents returned a record that is not an intent of %s: %+v", target, r)
		}
		out = append(out, r.RequestID)
	}
	return out
}

// TestOpenIntents: an intent stays open until any later record of its request and target
// follows (an outcome of any kind, or the reconcile record that reports it); records
// without a target or request never touch the index; targets are kept apart; a rolled back
// transaction leaves the index as it was.
func TestOpenIntents(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	appendRecords(t, j,
		intent("app", "r1"), intent("app", "r2"), intent("app", "r3"), intent("other", "r1"),
		outcomeOf("app", "r1", change.Applied),
		&Record{Action: change.ActionPatch, Outcome: change.Applied, RequestID: "r2"}, // no target: not an outcome of app's r2
		outcomeOf("app", "r3", change.Failed),
		intent("app", "r4"),
		&Record{Target: "app", RequestID: "r4", Action: change.ActionReconcile, Outcome: change.Applied},
		intent("app", "r5"),
	)
	if got := openRequests(t, j, "app"); !slices.Equal(got, []string{"r2", "r5"}) {
		t.Errorf("open intents of app: %v, want [r2 r5]", got)
	}
	if got := openRequests(t, j, "other"); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("open intents of other: %v, want [r1]", got)
	}
	if got := openRequests(t, j, "ap"); len(got) != 0 {
		t.Errorf("a target's name prefix matched: %v", got)
	}

	// An outcome whose transaction rolls back does not close the intent.
	_ = j.db.Update(func(tx kv.Tx) error {
		if err := j.Append(tx, outcomeOf("app", "r5", change.Applied)); err != nil {
			t.Fatal(err)
		}
		return errRollBack // any error rolls back
	})
	if got := openRequests(t, j, "app"); !slices.Equal(got, []string{"r2", "r5"}) {
		t.Errorf("after a rolled back outcome: %v, want [r2 r5]", got)
	}
}

// TestOpenIndexBuiltForOlderJournals: a journal written before the index existed gets it
// built from its newest records when it is opened, once.
func TestOpenIndexBuiltForOlderJournals(t *testing.T) {
	db, _ := openDB(t)
	j, err := Open(db, Options{Name: "main"})
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, j, intent("app", "a"), intent("app", "b"), outcomeOf("app", "a", change.Applied))
	j.Close()
	// Make it look like a journal from before the index.
	err = db.Update(func(tx kv.Tx) error {
		b, err := journalBucket(tx, []byte("main"))
		if err != nil {
			return err
		}
		if err := b.DeleteBucket(bucketOpen); err != nil {
			return err
		}
		return b.Delete(keyOpenFormat)
	})
	if err != nil {
		t.Fatal(err)
	}
	j = openJournal(t, db, Options{Name: "main"})
	if got := openRequests(t, j, "app"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("rebuilt index: %v, want [b]", got)
	}
}

// TestSeqAtTime finds where a time falls in the journal, also across records retention
// removed, before the first record and after the last.
func TestSeqAtTime(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{MaxRecords: 70})
	at := func(i int) time.Time { return baseTime.Add(time.Duration(i) * time.Minute) }
	if seq, err := j.SeqAtTime(at(0)); err != nil || seq != 1 {
		t.Fatalf("empty journal: %d, %v; want 1", seq, err)
	}
	appendN(t, j, 0, 100) // record i+1 at baseTime + i minutes
	for _, tc := range []struct {
		t    time.Time
		want uint64
	}{
		{at(-5), 1},
		{at(0), 1},
		{at(0).Add(time.Second), 2},
		{at(42), 43},
		{at(99), 100},
		{at(100), 101},
	} {
		if got, err := j.SeqAtTime(tc.t); err != nil || got != tc.want {
			t.Errorf("SeqAtTime(%s) = %d, %v; want %d", tc.t.Format(time.TimeOnly), got, err, tc.want)
		}
	}
	// Retention removes the oldest 30 records (and journals a prune record, stamped now).
	if n, err := j.Prune(t.Context(), time.Now()); err != nil || n != 30 {
		t.Fatalf("pruned %d, %v; want 30", n, err)
	}
	for _, tc := range []struct {
		t    time.Time
		want uint64
	}{{at(0), 31}, {at(10), 31}, {at(30), 31}, {at(31), 32}, {at(70), 71}} {
		if got, err := j.SeqAtTime(tc.t); err != nil || got != tc.want {
			t.Errorf("after pruning: SeqAtTime(%s) = %d, %v; want %d", tc.t.Format(time.TimeOnly), got, err, tc.want)
		}
	}
}

// TestOpenIntentSeq: inside a transaction, an intent's entry says which record holds the
// request's open intent (the newest, when the request journaled another), and nothing once
// a later record of the request closed it; OpenIntentsMatching selects open intents by
// action, resource type, subject (case-insensitively) and not a request.
func TestOpenIntentSeq(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	first, again, other := intent("app", "r1"), intent("app", "r1"), intent("app", "r2")
	appendRecords(t, j, first, other, again)
	seqOf := func(req string) (uint64, bool) {
		t.Helper()
		var (
			seq uint64
			ok  bool
		)
		if err := db.View(func(tx kv.Tx) error {
			var err error
			seq, ok, err = j.OpenIntentSeq(tx, "app", req)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return seq, ok
	}
	if seq, ok := seqOf("r1"); !ok || seq != again.Seq {
		t.Fatalf("r1: seq %d open %v, want the newer intent %d", seq, ok, again.Seq)
	}
	if err := db.View(func(tx kv.Tx) error {
		in, err := j.OpenIntent(tx, "app", "r1")
		if err == nil && (in == nil || in.Seq != again.Seq || in.RequestID != "r1") {
			t.Errorf("OpenIntent(r1) = %+v, want record %d", in, again.Seq)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	appendRecords(t, j, outcomeOf("app", "r1", change.Applied))
	if seq, ok := seqOf("r1"); ok {
		t.Fatalf("r1 is still open at %d after its outcome", seq)
	}
	if _, ok := seqOf("nope"); ok {
		t.Fatal("a request that never journaled has an open intent")
	}
	matching := func(f IntentFilter) []string {
		t.Helper()
		var in []Record
		if err := db.View(func(tx kv.Tx) error {
			var err error
			in, err = j.OpenIntentsMatching(tx, "app", f)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range in {
			out = append(out, r.RequestID)
		}
		return out
	}
	creates := []*Record{
		{Target: "app", RequestID: "c1", Action: change.ActionCreate, ResourceType: "User", Subject: "Ada@x", Outcome: change.Pending},
		{Target: "app", RequestID: "c2", Action: change.ActionCreate, ResourceType: "Group", Subject: "ada@x", Outcome: change.Pending},
		{Target: "app", RequestID: "c3", Action: change.ActionCreate, ResourceType: "User", Subject: "bob@x", Outcome: change.Pending},
	}
	appendRecords(t, j, creates...)
	for _, tc := range []struct {
		f    IntentFilter
		want []string
	}{
		{IntentFilter{}, []string{"r2", "c1", "c2", "c3"}},
		{IntentFilter{Action: change.ActionCreate, ResourceType: "User", Subject: "ADA@X"}, []string{"c1"}},
		{IntentFilter{Action: change.ActionCreate, Subject: "ada@x"}, []string{"c1", "c2"}},
		{IntentFilter{Action: change.ActionCreate, ResourceType: "User", Subject: "ada@x", NotRequestID: "c1"}, nil},
		{IntentFilter{Action: change.ActionPatch}, []string{"r2"}},
	} {
		if got := matching(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("OpenIntentsMatching(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
}

// TestIntentOwner: an intent's owner is kept in the open index and read back by the
// methods that list open intents, and is not part of the record: not in its stored JSON
// (so not in its hash or any export).
func TestIntentOwner(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	owned := intent("app", "r1")
	owned.Owner = "694d9a3e1c5b2f01"
	appendRecords(t, j, owned, intent("app", "r2"))
	open, err := j.OpenIntents("app")
	if err != nil || len(open) != 2 || open[0].Owner != owned.Owner || open[1].Owner != "" {
		t.Fatalf("open intents %+v, %v: want r1 owned by %s, r2 by nobody", open, err, owned.Owner)
	}
	err = j.db.View(func(tx kv.Tx) error {
		in, err := j.OpenIntent(tx, "app", "r1")
		if err != nil || in == nil || in.Owner != owned.Owner {
			t.Errorf("OpenIntent: %+v, %v", in, err)
		}
		b, err := journalBucket(tx, j.name)
		if err != nil {
			return err
		}
		if stored := b.Bucket(bucketRecords).Get(u64(open[0].Seq)); bytes.Contains(stored, []byte(owned.Owner)) {
			t.Errorf("the owner is in the stored record: %s", stored)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, j, outcomeOf("app", "r1", change.Applied))
	if got := openRequests(t, j, "app"); !slices.Equal(got, []string{"r2"}) {
		t.Errorf("after r1's outcome: %v, want [r2]", got)
	}
	if _, err := j.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}
