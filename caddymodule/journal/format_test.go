package journal

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// setJournalFormat overwrites the format key of journal name in db, as a newer binary with
// a changed layout would have written it.
func setJournalFormat(t *testing.T, db kv.DB, name string, v uint64) {
	t.Helper()
	err := db.Update(func(tx kv.Tx) error {
		b, err := journalBucket(tx, []byte(name))
		if err != nil {
			return err
		}
		return b.Put(keyFormat, u64(v))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An operator who rolled back keeps the older binary's journal commands: on a journal a newer
// binary wrote in a format this one does not know, verify must not answer OK (it would vouch
// for records by rules they may no longer follow), export must not label them as this
// binary's format, and opening it must say what to do.
func TestNewerJournalFormatIsRefused(t *testing.T) {
	db, path := openDB(t)
	j, err := Open(db, Options{Name: "main"})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 0, 5)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	setJournalFormat(t, db, "main", FormatVersion+1)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	wantNewer := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s of a journal of format %d: no error", what, FormatVersion+1)
		}
		msg := err.Error()
		for _, want := range []string{"format 2", "newer", "scimgate"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not say %q", what, msg, want)
			}
		}
	}
	rep, err := VerifyFileJournal(context.Background(), path, "main")
	if err == nil {
		t.Errorf("verify answered %+v", rep)
	}
	wantNewer("verify", err)
	var out bytes.Buffer
	_, err = ExportFileJournal(context.Background(), path, "main", &out, Query{}, FormatJSONL)
	wantNewer("export", err)

	db2, err := kv.OpenBolt(path, kv.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	_, err = Open(db2, Options{Name: "main"})
	wantNewer("open", err)
	if err != nil && !strings.Contains(err.Error(), "backup") {
		t.Errorf("open: error %q does not point at the backup taken before the upgrade", err)
	}
}
