package journal

import (
	"slices"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// appendAsBeforeIndex appends recs to journal name in db as a release from before the
// open-intent index (2026-11-27) did after a rollback: the record, the head and the size,
// and nothing of the index.
func appendAsBeforeIndex(t *testing.T, db kv.DB, j *Journal, recs ...*Record) {
	t.Helper()
	err := db.Update(func(tx kv.Tx) error {
		b, err := journalBucket(tx, j.name)
		if err != nil {
			return err
		}
		for _, r := range recs {
			p, err := j.Prepare(r)
			if err != nil {
				return err
			}
			seq, prev, err := headOf(b)
			if err != nil {
				return err
			}
			seq++
			val, err := p.encode(make([]byte, 32), seq, prev, time.Now().UTC())
			if err != nil {
				return err
			}
			h := chainHash(prev, seq, val[32:])
			copy(val, h[:])
			if err := b.Bucket(bucketRecords).Put(u64(seq), val); err != nil {
				return err
			}
			if err := b.Put(keyHead, append(u64(seq), h[:]...)); err != nil {
				return err
			}
			if err := b.Put(keyBytes, u64(storedBytes(b)+uint64(len(val)))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOpenIndexAfterRollback: an operator upgrades, rolls back to a release without the
// open-intent index, and upgrades again. The older binary appended records without indexing
// them: an intent it left open (it was killed before the outcome) must be open after the
// upgrade (its create is adopted, not made twice), and the intent this binary had left open
// and the older one completed must not be.
func TestOpenIndexAfterRollback(t *testing.T) {
	db, _ := openDB(t)
	j, err := Open(db, Options{Name: "main"})
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, j, intent("app", "done"), outcomeOf("app", "done", change.Applied), intent("app", "left-open"))
	if got := openRequests(t, j, "app"); !slices.Equal(got, []string{"left-open"}) {
		t.Fatalf("before the rollback: open %v", got)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	// The older release runs on the file: it completes the open intent, then is killed
	// during a change of its own.
	old, err := Open(db, Options{Name: "main"}) // only to encode records as the file's journal does
	if err != nil {
		t.Fatal(err)
	}
	appendAsBeforeIndex(t, db, old, outcomeOf("app", "left-open", change.Failed),
		&Record{Target: "app", RequestID: "old-create", Action: change.ActionCreate, Outcome: change.Pending, Subject: "alice@contoso.example"},
		&Record{Action: change.ActionGet, Outcome: change.Applied})
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	j2 := openJournal(t, db, Options{Name: "main"})
	if got := openRequests(t, j2, "app"); !slices.Equal(got, []string{"old-create"}) {
		t.Errorf("after the upgrade again: open intents %v, want [old-create]", got)
	}
	// Appends after the catch-up keep the index, and a later open does not redo it wrongly.
	appendRecords(t, j2, outcomeOf("app", "old-create", change.Applied), intent("app", "new"))
	if err := j2.Close(); err != nil {
		t.Fatal(err)
	}
	j3 := openJournal(t, db, Options{Name: "main"})
	if got := openRequests(t, j3, "app"); !slices.Equal(got, []string{"new"}) {
		t.Errorf("after a restart: open intents %v, want [new]", got)
	}
}
