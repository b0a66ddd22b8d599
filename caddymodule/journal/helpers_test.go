package journal

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// openDB opens a bbolt file in t.TempDir with the store's batch delay.
func openDB(t testing.TB) (kv.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "scimgate.db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.MaxBatchDelay = time.Millisecond
	t.Cleanup(func() { db.Close() })
	return kv.NewBolt(db), path
}

func openJournal(t testing.TB, db kv.DB, opts Options) *Journal {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "main"
	}
	j, err := Open(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// testKey is a fixed signing key, so failures reproduce.
func testKey() (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed([]byte("scimgate-journal-test-seed-32byt"))
	return priv.Public().(ed25519.PublicKey), priv
}

var baseTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// sampleRecord is a realistic record: User records for even i, Group records for odd i.
func sampleRecord(i int) *Record {
	r := &Record{
		Time:      baseTime.Add(time.Duration(i) * time.Minute),
		RequestID: fmt.Sprintf("req-%06d", i),
		Client:    "entra",
		Action:    "patch",
		Outcome:   change.Applied,
		Status:    200,
		Decision:  &Decision{Allow: true, Reasons: []string{"in scope"}},
		Backend:   &BackendCall{Method: "PUT", URL: "https://app.example/api/users/42", Status: 200, DurationMS: 12, Attempts: 1},
	}
	if i%2 == 0 {
		r.ResourceType = "User"
		r.SCIMID = fmt.Sprintf("0d6b1b7e-5f6c-4a3e-9a51-%012d", i)
		r.NativeID = fmt.Sprint(1000 + i)
		r.Subject = fmt.Sprintf("user%d@contoso.example", i)
		r.Events = []change.Event{"update"}
		r.Changes = []Change{
			{Path: "displayName", Op: "replace", Value: json.RawMessage(fmt.Sprintf(`"User %d"`, i))},
			{Path: `emails[type eq "work"].value`, Op: "replace", Value: json.RawMessage(fmt.Sprintf(`"user%d@contoso.example"`, i))},
			{Path: "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", Op: "replace", Value: json.RawMessage(`"Sales"`)},
		}
	} else {
		r.ResourceType = "Group"
		r.SCIMID = fmt.Sprintf("7a1f2c3d-0000-4000-8000-%012d", i)
		r.Subject = fmt.Sprintf("Group %d", i)
		r.Events = []change.Event{"add_members"}
		r.Changes = []Change{{Path: "members", Op: "add", Value: json.RawMessage(`[{"value":"0d6b1b7e"}]`)}}
	}
	return r
}

// appendN appends records start..start+n-1 in one write transaction.
func appendN(t testing.TB, j *Journal, start, n int) {
	t.Helper()
	err := j.db.Update(func(tx kv.Tx) error {
		for i := start; i < start+n; i++ {
			if err := j.Append(tx, sampleRecord(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// allEntries reads every stored record.
func allEntries(t testing.TB, db kv.DB, name string) []Entry {
	t.Helper()
	var out []Entry
	err := db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, []byte(name))
		if err != nil {
			return err
		}
		out, err = readEntries(b.Bucket(bucketRecords), 0, ^uint64(0), 1<<30)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mutateFile opens a closed journal's file directly, as an attacker would, and runs fn on
// the journal's bucket.
func mutateFile(t *testing.T, path, name string, fn func(b kv.Bucket) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = kv.NewBolt(db).Update(func(tx kv.Tx) error {
		b, err := journalBucket(tx, []byte(name))
		if err != nil {
			return err
		}
		return fn(b)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// wantProblem checks a report's first problem.
func wantProblem(t *testing.T, rep *Report, kind string, seq uint64) {
	t.Helper()
	if rep.OK || rep.FirstBad == nil {
		t.Fatalf("verification passed (%+v), want %s at %d", rep, kind, seq)
	}
	if rep.FirstBad.Kind != kind || rep.FirstBad.Seq != seq {
		t.Fatalf("first problem = %v, want %s at %d", rep.FirstBad, kind, seq)
	}
}

func wantOK(t *testing.T, rep *Report, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("verification failed: %v", rep.FirstBad)
	}
}
