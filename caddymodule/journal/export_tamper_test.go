package journal

import (
	"bytes"
	"context"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// TestExportOfTamperedJournalDoesNotVerify: an export of a journal that does not verify
// must not verify either, whatever was done to the file: the export carries the damage
// (where the journal's head and checkpoints say the records end) so that an auditor who
// checks the export offline sees what `journal verify` of the file says.
func TestExportOfTamperedJournalDoesNotVerify(t *testing.T) {
	const n = 20
	pub, _ := testKey()
	tests := []struct {
		name   string
		q      Query
		mutate func(b kv.Bucket) error
		kind   string
		seq    uint64
	}{
		{"delete the last record", Query{}, func(b kv.Bucket) error {
			return b.Bucket(bucketRecords).Delete(u64(n))
		}, KindTruncated, n},
		{"delete the last records", Query{}, func(b kv.Bucket) error {
			for s := uint64(n - 3); s <= n; s++ {
				if err := b.Bucket(bucketRecords).Delete(u64(s)); err != nil {
					return err
				}
			}
			return nil
		}, KindTruncated, n - 3},
		{"truncate the tail and roll the head back", Query{}, func(b kv.Bucket) error {
			for s := uint64(n - 2); s <= n; s++ {
				if err := b.Bucket(bucketRecords).Delete(u64(s)); err != nil {
					return err
				}
			}
			h, _, _ := splitValue(getRecord(b, n-3))
			return b.Put(keyHead, append(u64(n-3), h[:]...))
		}, KindTruncated, n - 2},
		{"delete the first record", Query{}, func(b kv.Bucket) error {
			return b.Bucket(bucketRecords).Delete(u64(1))
		}, KindDeleted, 1},
		{"delete the first record of a range", Query{FromSeq: 5, ToSeq: 12}, func(b kv.Bucket) error {
			return b.Bucket(bucketRecords).Delete(u64(5))
		}, KindDeleted, 5},
		{"delete the last record of a range", Query{FromSeq: 5, ToSeq: 12}, func(b kv.Bucket) error {
			return b.Bucket(bucketRecords).Delete(u64(12))
		}, KindTruncated, 12},
		{"change the head's hash", Query{}, func(b kv.Bucket) error {
			return b.Put(keyHead, append(u64(n), make([]byte, 32)...))
		}, KindHeadMismatch, n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := buildFile(t, n)
			mutateFile(t, path, "main", tt.mutate)
			var buf bytes.Buffer
			if _, err := ExportFileJournal(context.Background(), path, "", &buf, tt.q, FormatJSONL); err != nil {
				t.Fatal(err)
			}
			rep, err := VerifyJSONL(context.Background(), bytes.NewReader(buf.Bytes()), pub)
			if err != nil {
				t.Fatalf("verifying the export: %v", err)
			}
			wantProblem(t, rep, tt.kind, tt.seq)
		})
	}
}

// TestGarbledCheckpoint: a stored checkpoint that does not decode is damage, named where
// it is: verify reports it (exit 65 in the CLI, not "could not check"), and the export
// still comes out, carrying it so that the export does not verify either.
func TestGarbledCheckpoint(t *testing.T) {
	const n = 20
	pub, _ := testKey()
	for _, garble := range map[string][]byte{"not JSON": []byte("{not json"), "another seq": []byte(`{"seq":3}`)} {
		path := buildFile(t, n)
		mutateFile(t, path, "main", func(b kv.Bucket) error {
			return b.Bucket(bucketCheckpoints).Put(u64(n/2), garble)
		})
		rep, err := VerifyFileJournal(context.Background(), path, "", pub)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		wantProblem(t, rep, KindMalformed, n/2)
		var buf bytes.Buffer
		if _, err := ExportFileJournal(context.Background(), path, "", &buf, Query{}, FormatJSONL); err != nil {
			t.Fatalf("export: %v", err)
		}
		rep, err = VerifyJSONL(context.Background(), bytes.NewReader(buf.Bytes()), pub)
		if err != nil {
			t.Fatal(err)
		}
		wantProblem(t, rep, KindMalformed, n/2)
	}
}
