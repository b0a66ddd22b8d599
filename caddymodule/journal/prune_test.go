package journal

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
)

func TestPruneByCount(t *testing.T) {
	db, _ := openDB(t)
	pub, priv := testKey()
	j := openJournal(t, db, Options{MaxRecords: 10, SigningKey: priv})
	for i := 0; i < 30; i += 5 {
		appendN(t, j, i, 5)
		if _, err := j.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := j.Prune(context.Background(), time.Now())
	if err != nil || removed != 20 {
		t.Fatalf("removed %d, %v", removed, err)
	}
	entries := allEntries(t, db, "main")
	if len(entries) != 11 || entries[0].Record.Seq != 21 {
		t.Fatalf("%d records from %d", len(entries), entries[0].Record.Seq)
	}
	last := entries[len(entries)-1].Record
	if last.Action != change.ActionPrune || string(last.Changes[0].Value) != "20" || string(last.Changes[1].Value) != "21" {
		t.Fatalf("prune record %+v", last)
	}
	rep, err := j.Verify(context.Background(), pub)
	wantOK(t, rep, err)
	if rep.FirstSeq != 21 || rep.Records != 11 || rep.Checkpoints != 3 { // 20 (checks the anchor), 25, 30
		t.Fatalf("report %+v", rep)
	}
	// Within the slack nothing more is removed: the prune record does not start a new run.
	if removed, err := j.Prune(context.Background(), time.Now()); err != nil || removed != 0 {
		t.Fatalf("second run removed %d, %v", removed, err)
	}
	var buf bytes.Buffer
	if _, err := j.Export(context.Background(), &buf, Query{}, FormatJSONL); err != nil {
		t.Fatal(err)
	}
	jr, err := VerifyJSONL(context.Background(), &buf, pub)
	wantOK(t, jr, err)
	if jr.FirstSeq != 21 {
		t.Fatalf("export starts at %d", jr.FirstSeq)
	}
}

func TestPruneByAge(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{MaxAge: time.Hour})
	appendN(t, j, 0, 12) // one minute apart from baseTime
	now := baseTime.Add(time.Hour + 5*time.Minute + 30*time.Second)
	removed, err := j.Prune(context.Background(), now)
	if err != nil || removed != 6 { // records at minutes 0..5 are older than an hour
		t.Fatalf("removed %d, %v", removed, err)
	}
	rep, err := j.Verify(context.Background(), nil)
	wantOK(t, rep, err)
	if rep.FirstSeq != 7 || rep.Records != 7 {
		t.Fatalf("report %+v", rep)
	}
	// Everything old: the chain continues from the anchor.
	removed, err = j.Prune(context.Background(), time.Now().Add(2*time.Hour))
	if err != nil || removed != 7 {
		t.Fatalf("removed %d, %v", removed, err)
	}
	rep, err = j.Verify(context.Background(), nil)
	wantOK(t, rep, err)
	if rep.FirstSeq != 14 || rep.Records != 1 {
		t.Fatalf("report %+v", rep)
	}
}

func TestPruneDetectsFrontDeletion(t *testing.T) {
	db, path := openDB(t)
	j := openJournal(t, db, Options{MaxRecords: 5})
	appendN(t, j, 0, 20)
	if _, err := j.Prune(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	j.Close()
	db.Close()
	mutateFile(t, path, "main", func(b kv.Bucket) error {
		return b.Bucket(bucketRecords).Delete(u64(16))
	})
	rep, err := VerifyFileJournal(context.Background(), path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, KindDeleted, 16)
}

func TestPruneOff(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	appendN(t, j, 0, 3)
	if n, err := j.Prune(context.Background(), time.Now().Add(1000*time.Hour)); n != 0 || err != nil {
		t.Fatal(n, err)
	}
}

func TestPruneLargeRun(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{MaxRecords: 100})
	for i := 0; i < prunePage+500; i += 5000 {
		appendN(t, j, i, min(5000, prunePage+500-i))
	}
	removed, err := j.Prune(context.Background(), time.Now())
	if err != nil || removed != prunePage+400 {
		t.Fatalf("removed %d, %v", removed, err)
	}
	rep, err := j.Verify(context.Background(), nil)
	wantOK(t, rep, err)
	if rep.Records != 101 {
		t.Fatalf("report %+v", rep)
	}
}

func TestPruneOnTimer(t *testing.T) {
	db, _ := openDB(t)
	got, on := checkpointSink()
	j := openJournal(t, db, Options{MaxRecords: 5, CheckpointInterval: 5 * time.Millisecond, OnCheckpoint: on})
	appendN(t, j, 0, 30)
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := j.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.FirstSeq > 1 {
			if info.Records != 6 || info.FirstSeq != 26 {
				t.Fatalf("info %+v", info)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention did not run on the timer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitCheckpoint(t, got)
	rep, err := j.Verify(context.Background(), nil)
	wantOK(t, rep, err)
}
