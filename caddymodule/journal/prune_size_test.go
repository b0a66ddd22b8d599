package journal

import (
	"context"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// sizeOf reads the journal's size accounting and recomputes it from the stored records.
func sizeOf(t *testing.T, db kv.DB, name string) (kept, actual uint64) {
	t.Helper()
	err := db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, []byte(name))
		if err != nil {
			return err
		}
		kept = storedBytes(b)
		return b.Bucket(bucketRecords).ForEach(func(_, v []byte) error { actual += uint64(len(v)); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return kept, actual
}

func TestPruneBySize(t *testing.T) {
	db, _ := openDB(t)
	pub, priv := testKey()
	j := openJournal(t, db, Options{SigningKey: priv})
	appendN(t, j, 0, 40)
	total, actual := sizeOf(t, db, "main")
	if total == 0 || total != actual {
		t.Fatalf("size accounting %d, stored %d", total, actual)
	}
	perRecord := total / 40
	_ = j.Close()
	j = openJournal(t, db, Options{SigningKey: priv, MaxBytes: perRecord * 10}) // about ten records
	removed, err := j.Prune(context.Background(), time.Now())
	if err != nil || removed < 25 || removed > 35 {
		t.Fatalf("removed %d, %v", removed, err)
	}
	kept, actual := sizeOf(t, db, "main")
	if kept != actual {
		t.Fatalf("size accounting %d after pruning, stored %d", kept, actual)
	}
	entries := allEntries(t, db, "main")
	if last := entries[len(entries)-1].Record; last.Action != change.ActionPrune {
		t.Fatalf("no prune record: %+v", last)
	}
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	rep, err := j.Verify(context.Background(), pub)
	wantOK(t, rep, err)
	if rep.FirstSeq != removed+1 {
		t.Fatalf("first kept %d, removed %d", rep.FirstSeq, removed)
	}
	// Within the slack the prune record does not start another run.
	if n, err := j.Prune(context.Background(), time.Now()); err != nil || n != 0 {
		t.Fatalf("second run removed %d, %v", n, err)
	}
}

// TestSizeAccountingOfOlderJournals: a journal written before size accounting gets its size
// counted when it is opened.
func TestSizeAccountingOfOlderJournals(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	appendN(t, j, 0, 12)
	_ = j.Close()
	if err := db.Update(func(tx kv.Tx) error {
		b, err := journalBucket(tx, []byte("main"))
		if err != nil {
			return err
		}
		return b.Delete(keyBytes)
	}); err != nil {
		t.Fatal(err)
	}
	openJournal(t, db, Options{})
	if kept, actual := sizeOf(t, db, "main"); kept != actual || kept == 0 {
		t.Fatalf("size %d, stored %d", kept, actual)
	}
}
