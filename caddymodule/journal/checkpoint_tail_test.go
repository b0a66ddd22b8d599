package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// rewriteOne replaces record seq by edit(record) with its stored hash recomputed (and the
// head's, when it is the head), leaving the records after it as they were.
func rewriteOne(b kv.Bucket, seq uint64, edit func(*Record)) error {
	prev, _, _ := splitValue(getRecord(b, seq-1))
	var r Record
	if err := json.Unmarshal(getRecord(b, seq)[32:], &r); err != nil {
		return err
	}
	edit(&r)
	raw, _ := json.Marshal(&r)
	h := chainHash(prev, seq, raw)
	if head, _, _ := readHead(b); head == seq {
		if err := b.Put(keyHead, append(u64(seq), h[:]...)); err != nil {
			return err
		}
	}
	return putRecord(b, seq, append(h[:], raw...))
}

// buildTailFile writes records 1..30 with signed checkpoints at 10 and 20, and closes it.
func buildTailFile(t *testing.T) string {
	t.Helper()
	db, path := openDB(t)
	_, priv := testKey()
	j := openJournal(t, db, Options{SigningKey: priv, KeyID: "k1"})
	for _, start := range []int{0, 10} {
		appendN(t, j, start, 10)
		if _, err := j.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, j, 20, 10)
	j.Close()
	db.Close()
	return path
}

// reopen opens the journal of the bbolt file at path with the test key; closing the
// journal closes the file too.
func reopen(t *testing.T, path string, opts Options) *Journal {
	t.Helper()
	db, err := kv.OpenBolt(path, kv.BoltOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, priv := testKey()
	opts.SigningKey, opts.KeyID = priv, "k1"
	return openJournal(t, db, opts)
}

func latestCheckpoint(t *testing.T, j *Journal) uint64 {
	t.Helper()
	info, err := j.Info()
	if err != nil || info.LatestCheckpoint == nil {
		t.Fatalf("latest checkpoint: %+v %v", info, err)
	}
	return info.LatestCheckpoint.Seq
}

// TestCheckpointRefusesEditedTail: a store file edited while no gateway ran is not signed.
// Before, the next checkpoint signed whatever head was stored, and with it lent the key's
// word to the edited records.
func TestCheckpointRefusesEditedTail(t *testing.T) {
	denied := func(r *Record) { r.Outcome = change.Denied }
	tests := []struct {
		name   string
		mutate func(b kv.Bucket) error
		from   uint64 // the checkpoint the check starts from
		kind   string
		seq    uint64
	}{
		{"delete the newest checkpoint, rewrite a record after the one left", func(b kv.Bucket) error {
			if err := b.Bucket(bucketCheckpoints).Delete(u64(20)); err != nil {
				return err
			}
			return rewriteOne(b, 15, denied)
		}, 10, KindModified, 15},
		{"rewrite a record after the newest checkpoint", func(b kv.Bucket) error {
			return rewriteOne(b, 25, denied)
		}, 20, KindModified, 25},
		{"rewrite covered records and recompute the whole chain", func(b kv.Bucket) error {
			return rewriteFrom(b, 15, denied)
		}, 20, KindCheckpointMismatch, 20},
		{"delete a record after the newest checkpoint", func(b kv.Bucket) error {
			return b.Bucket(bucketRecords).Delete(u64(23))
		}, 20, KindDeleted, 23},
		{"cut the tail without moving the head", func(b kv.Bucket) error {
			return b.Bucket(bucketRecords).Delete(u64(30))
		}, 20, KindTruncated, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := buildTailFile(t)
			mutateFile(t, path, "main", tt.mutate)
			core, logs := observer.New(zap.InfoLevel)
			j := reopen(t, path, Options{Logger: zap.New(core)})
			before := latestCheckpoint(t, j)

			cp, err := j.Checkpoint()
			var te *TailError
			if !errors.As(err, &te) || !errors.Is(err, ErrTailUnverified) {
				t.Fatalf("checkpoint of the edited journal: %+v %v", cp, err)
			}
			if te.From != tt.from || te.Problem.Kind != tt.kind || te.Problem.Seq != tt.seq {
				t.Fatalf("refusal %+v, want %s at %d from checkpoint %d", te, tt.kind, tt.seq, tt.from)
			}
			if after := latestCheckpoint(t, j); after != before {
				t.Fatalf("a checkpoint was written at %d", after)
			}

			// The checkpoint job reports it as it starts, naming the record.
			j.Close()
			j.DB().Close()
			j = reopen(t, path, Options{CheckpointEvery: 1000, Logger: zap.New(core)})
			var lines []observer.LoggedEntry
			for deadline := time.Now().Add(5 * time.Second); len(lines) == 0 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
				lines = logs.FilterMessageSnippet("refusing to sign journal checkpoints").All()
			}
			if len(lines) == 0 {
				t.Fatal("the checkpoint job did not report the edited records")
			}
			f := lines[0].ContextMap()
			if f["first_bad_seq"] != tt.seq || f["kind"] != tt.kind || f["checkpoint_seq"] != tt.from {
				t.Fatalf("log line %v", f)
			}
			if after := latestCheckpoint(t, j); after != before {
				t.Fatalf("a checkpoint was written at %d", after)
			}
		})
	}
}

// TestCheckpointVerifiesTail: an untouched journal still checkpoints, after a restart too,
// and the job names the records the new run inherits without a checkpoint.
func TestCheckpointVerifiesTail(t *testing.T) {
	pub, _ := testKey()
	path := buildTailFile(t)
	core, logs := observer.New(zap.InfoLevel)
	j := reopen(t, path, Options{CheckpointEvery: 1000, Logger: zap.New(core)})
	var lines []observer.LoggedEntry
	for deadline := time.Now().Add(5 * time.Second); len(lines) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		lines = logs.FilterMessageSnippet("records since the newest checkpoint verify").All()
	}
	if len(lines) != 1 {
		t.Fatalf("%d start-up lines", len(lines))
	}
	if f := lines[0].ContextMap(); f["from_seq"] != uint64(21) || f["head"] != uint64(30) || f["checkpoint_seq"] != uint64(20) {
		t.Fatalf("start-up line %v", f)
	}
	if n := logs.FilterMessageSnippet("refusing").Len(); n != 0 {
		t.Fatalf("%d refusals of an untouched journal", n)
	}
	cp, err := j.Checkpoint()
	if err != nil || cp.Seq != 30 {
		t.Fatalf("checkpoint %+v %v", cp, err)
	}
	rep, err := j.Verify(context.Background(), pub)
	wantOK(t, rep, err)
	if rep.CheckpointSeq != 30 {
		t.Fatalf("report %+v", rep)
	}
}

// TestCheckpointAfterPrune: the check starts from what retention keeps: the newest
// checkpoint it kept, the one of the last record it removed (which checks the anchor's
// hash), or the anchor when it dropped every checkpoint.
func TestCheckpointAfterPrune(t *testing.T) {
	pub, priv := testKey()
	for _, at := range []uint64{5, 12, 15} {
		t.Run(fmt.Sprint("checkpoint at ", at), func(t *testing.T) {
			db, _ := openDB(t)
			j := openJournal(t, db, Options{SigningKey: priv, KeyID: "k1", MaxRecords: 8})
			appendN(t, j, 0, int(at))
			if _, err := j.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			appendN(t, j, int(at), 20-int(at))
			if n, err := j.Prune(context.Background(), time.Now()); err != nil || n != 12 {
				t.Fatalf("pruned %d: %v", n, err)
			}
			appendN(t, j, 20, 3) // the prune record is 21
			cp, err := j.Checkpoint()
			if err != nil || cp.Seq != 24 {
				t.Fatalf("checkpoint after the prune: %+v %v", cp, err)
			}
			rep, err := j.Verify(context.Background(), pub)
			wantOK(t, rep, err)
		})
	}
}

// TestCheckpointRefusalNamesRecord: the error says where and what.
func TestCheckpointRefusalNamesRecord(t *testing.T) {
	path := buildTailFile(t)
	mutateFile(t, path, "main", func(b kv.Bucket) error { return rewriteOne(b, 25, func(r *Record) { r.Subject = "mallory" }) })
	j := reopen(t, path, Options{})
	_, err := j.Checkpoint()
	if err == nil || !strings.Contains(err.Error(), "checkpoint 20") || !strings.Contains(err.Error(), "seq 25: modified") {
		t.Fatalf("error %v", err)
	}
}
