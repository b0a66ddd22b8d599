package journal

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// buildFile writes a journal of n records with a signed checkpoint at its head and closes it.
func buildFile(t *testing.T, n int) string {
	t.Helper()
	db, path := openDB(t)
	_, priv := testKey()
	j := openJournal(t, db, Options{SigningKey: priv, KeyID: "k1"})
	appendN(t, j, 0, n/2)
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	appendN(t, j, n/2, n-n/2)
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	db.Close()
	return path
}

func getRecord(b kv.Bucket, seq uint64) []byte {
	return bytes.Clone(b.Bucket(bucketRecords).Get(u64(seq)))
}

func putRecord(b kv.Bucket, seq uint64, v []byte) error {
	return b.Bucket(bucketRecords).Put(u64(seq), v)
}

// rewriteFrom replaces record seq by edit(record) and recomputes every stored hash and
// prev_hash after it, and the head: an attacker who knows the chain format.
func rewriteFrom(b kv.Bucket, seq uint64, edit func(*Record)) error {
	prevHash, _, _ := splitValue(b.Bucket(bucketRecords).Get(u64(seq - 1)))
	for s := seq; ; s++ {
		v := b.Bucket(bucketRecords).Get(u64(s))
		if v == nil {
			return b.Put(keyHead, append(u64(s-1), prevHash[:]...))
		}
		var r Record
		if err := json.Unmarshal(v[32:], &r); err != nil {
			return err
		}
		if s == seq {
			edit(&r)
		}
		r.PrevHash = hex.EncodeToString(prevHash[:])
		raw, _ := json.Marshal(&r)
		h := chainHash(prevHash, s, raw)
		if err := putRecord(b, s, append(h[:], raw...)); err != nil {
			return err
		}
		prevHash = h
	}
}

func TestTamperDetection(t *testing.T) {
	const n = 20
	pub, _ := testKey()
	tests := []struct {
		name   string
		mutate func(b kv.Bucket) error
		kind   string
		seq    uint64
	}{
		{"flip a byte in a record", func(b kv.Bucket) error {
			v := getRecord(b, 7)
			i := 32 + bytes.Index(v[32:], []byte("req-"))
			v[i] ^= 0x01
			return putRecord(b, 7, v)
		}, KindModified, 7},
		{"flip a byte in the last record", func(b kv.Bucket) error {
			v := getRecord(b, n)
			v[len(v)-3] ^= 0x20
			return putRecord(b, n, v)
		}, KindModified, n},
		{"flip a byte in a stored hash", func(b kv.Bucket) error {
			v := getRecord(b, 7)
			v[0] ^= 0x80
			return putRecord(b, 7, v)
		}, KindModified, 7},
		{"modify a record and fix its stored hash", func(b kv.Bucket) error {
			v := getRecord(b, 7)
			raw := bytes.Replace(v[32:], []byte(`"outcome":"applied"`), []byte(`"outcome":"denied"`), 1)
			h6, _, _ := splitValue(getRecord(b, 6))
			h := chainHash(h6, 7, raw)
			return putRecord(b, 7, append(h[:], raw...))
		}, KindModified, 7},
		{"delete a record", func(b kv.Bucket) error {
			return b.Bucket(bucketRecords).Delete(u64(7))
		}, KindDeleted, 7},
		{"delete the first record", func(b kv.Bucket) error {
			return b.Bucket(bucketRecords).Delete(u64(1))
		}, KindDeleted, 1},
		{"swap two records", func(b kv.Bucket) error {
			v7, v8 := getRecord(b, 7), getRecord(b, 8)
			if err := putRecord(b, 7, v8); err != nil {
				return err
			}
			return putRecord(b, 8, v7)
		}, KindReordered, 7},
		{"truncate the tail and roll the head back", func(b kv.Bucket) error {
			for s := uint64(n - 2); s <= n; s++ {
				if err := b.Bucket(bucketRecords).Delete(u64(s)); err != nil {
					return err
				}
			}
			h, _, _ := splitValue(getRecord(b, n-3))
			return b.Put(keyHead, append(u64(n-3), h[:]...))
		}, KindTruncated, n - 2},
		{"truncate the tail only", func(b kv.Bucket) error {
			return b.Bucket(bucketRecords).Delete(u64(n))
		}, KindTruncated, n},
		{"rewrite history and recompute the chain", func(b kv.Bucket) error {
			return rewriteFrom(b, 5, func(r *Record) { r.Outcome = change.Denied })
		}, KindCheckpointMismatch, n / 2},
		{"rewrite the records the last checkpoint covers", func(b kv.Bucket) error {
			return rewriteFrom(b, n-1, func(r *Record) { r.Subject = "mallory" })
		}, KindCheckpointMismatch, n},
		{"corrupt a checkpoint signature", func(b kv.Bucket) error {
			return editCheckpoint(b, n/2, func(cp *Checkpoint) { cp.Time = cp.Time.Add(1) })
		}, KindBadSignature, n / 2},
		{"strip a checkpoint signature", func(b kv.Bucket) error {
			return editCheckpoint(b, n, func(cp *Checkpoint) { cp.Signature = "" })
		}, KindBadSignature, n},
		{"records beyond the head", func(b kv.Bucket) error {
			h, _, _ := splitValue(getRecord(b, n-1))
			return b.Put(keyHead, append(u64(n-1), h[:]...))
		}, KindHeadMismatch, n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := buildFile(t, n)
			if rep, err := VerifyFileJournal(context.Background(), path, "", pub); err != nil || !rep.OK {
				t.Fatalf("untouched journal: %+v %v", rep, err)
			}
			mutateFile(t, path, "main", tt.mutate)
			rep, err := VerifyFileJournal(context.Background(), path, "", pub)
			if err != nil {
				t.Fatal(err)
			}
			wantProblem(t, rep, tt.kind, tt.seq)
		})
	}
}

func editCheckpoint(b kv.Bucket, seq uint64, edit func(*Checkpoint)) error {
	cb := b.Bucket(bucketCheckpoints)
	var cp Checkpoint
	if err := json.Unmarshal(cb.Get(u64(seq)), &cp); err != nil {
		return err
	}
	edit(&cp)
	v, _ := json.Marshal(cp)
	return cb.Put(u64(seq), v)
}
