package journal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/sjson"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// Tests of what an auditor who runs `journal verify --file X --public-key KEY` can rely
// on, against an attacker who can edit the export (or the backup) and knows the chain
// format, but does not hold the signing key.

// exportLines exports the journal of the bbolt file at path and splits it into lines.
func exportLines(t *testing.T, path string, q Query) []string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := ExportFileJournal(context.Background(), path, "", &buf, q, FormatJSONL); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

func joinLines(lines []string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

// forge rewrites an export as an attacker would: it keeps the lines keep accepts, applies
// edit to the records it names, recomputes every record's prev_hash and hash from the
// header's anchor on, and rewrites the end line to match, so that the chain holds and the
// counts agree.
func forge(t *testing.T, lines []string, keep func(line string) bool, edit map[uint64]func(*Record)) []string {
	t.Helper()
	out := []string{lines[0]}
	var hdr jsonlHeader
	if err := json.Unmarshal([]byte(lines[0]), &hdr); err != nil {
		t.Fatal(err)
	}
	prev, _ := decodeHash(hdr.Anchor.PrevHash)
	var n, last uint64
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, `{"end"`):
			continue
		case keep != nil && !keep(l):
			continue
		case !strings.HasPrefix(l, `{"seq"`):
			out = append(out, l)
			continue
		}
		var e struct {
			Seq    uint64          `json:"seq"`
			Record json.RawMessage `json:"record"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		var r Record
		if err := json.Unmarshal(e.Record, &r); err != nil {
			t.Fatal(err)
		}
		if f := edit[e.Seq]; f != nil {
			f(&r)
		}
		r.PrevHash = hex.EncodeToString(prev[:])
		raw, _ := json.Marshal(&r)
		h := chainHash(prev, r.Seq, raw)
		out = append(out, fmt.Sprintf(`{"seq":%d,"hash":"%x","record":%s}`, r.Seq, h, raw))
		prev, n, last = h, n+1, r.Seq
	}
	return append(out, fmt.Sprintf(`{"end":{"records":%d,"last_seq":%d,"last_hash":"%x"}}`, n, last, prev))
}

func noCheckpoints(l string) bool { return !strings.HasPrefix(l, `{"checkpoint"`) }

func verifyLines(t *testing.T, lines []string, o JSONLOptions) *Report {
	t.Helper()
	rep, err := VerifyJSONLWith(context.Background(), bytes.NewReader(joinLines(lines)), o)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

func mallory(r *Record) { r.Subject = "mallory@contoso.example" }

// TestNothingSignedVouches: with the signing key's public key given, records that no
// signed checkpoint covers do not verify as OK. Before, an export whose checkpoint lines
// were stripped (and whose records were rewritten with recomputed hashes) verified "OK ...
// no checkpoint", and so did a backup whose checkpoints were deleted.
func TestNothingSignedVouches(t *testing.T) {
	const n = 20
	pub, _ := testKey()
	path := buildFile(t, n)
	lines := exportLines(t, path, Query{})
	withKey := JSONLOptions{Keys: keysOf(pub)}

	t.Run("genuine export", func(t *testing.T) {
		rep := verifyLines(t, lines, withKey)
		wantOK(t, rep, nil)
		if rep.Vouched != n || rep.CheckpointTime == nil {
			t.Errorf("vouched %d (checkpoint time %v), want %d", rep.Vouched, rep.CheckpointTime, n)
		}
	})
	t.Run("checkpoints stripped", func(t *testing.T) {
		wantProblem(t, verifyLines(t, forge(t, lines, noCheckpoints, nil), withKey), KindUnvouched, 1)
	})
	t.Run("checkpoints stripped and a record rewritten", func(t *testing.T) {
		forged := forge(t, lines, noCheckpoints, map[uint64]func(*Record){5: mallory})
		rep := verifyLines(t, forged, withKey)
		wantProblem(t, rep, KindUnvouched, 1)
		if !strings.Contains(rep.FirstBad.Detail, "records 1 to 20") {
			t.Errorf("detail: %s", rep.FirstBad.Detail)
		}
		// Without a key nothing is claimed about signatures: the chain holds.
		rep = verifyLines(t, forged, JSONLOptions{})
		wantOK(t, rep, nil)
		if rep.Signed || rep.Vouched != 0 {
			t.Errorf("unsigned verification: %+v", rep)
		}
	})
	t.Run("the newest checkpoint stripped and the tail rewritten", func(t *testing.T) {
		// What no file can show (the newest checkpoints can be deleted): the report says
		// which records the newest signed checkpoint covers, and when it was signed.
		forged := forge(t, lines, func(l string) bool { return !strings.HasPrefix(l, fmt.Sprintf(`{"checkpoint":{"seq":%d,`, n)) },
			map[uint64]func(*Record){15: mallory})
		rep := verifyLines(t, forged, withKey)
		wantOK(t, rep, nil)
		if rep.Vouched != n/2 || rep.CheckpointSeq != n/2 || rep.CheckpointTime == nil {
			t.Errorf("report %+v", rep)
		}
	})
	t.Run("a range export without a checkpoint", func(t *testing.T) {
		wantProblem(t, verifyLines(t, exportLines(t, path, Query{FromSeq: 12, ToSeq: 15}), withKey), KindUnvouched, 12)
	})
	t.Run("backup with its checkpoints deleted", func(t *testing.T) {
		p := buildFile(t, n)
		mutateFile(t, p, "main", func(b kv.Bucket) error {
			if err := b.DeleteBucket(bucketCheckpoints); err != nil {
				return err
			}
			if _, err := b.CreateBucketIfNotExists(bucketCheckpoints); err != nil {
				return err
			}
			return rewriteFrom(b, 5, mallory)
		})
		rep, err := VerifyFileJournal(context.Background(), p, "", pub)
		if err != nil {
			t.Fatal(err)
		}
		wantProblem(t, rep, KindUnvouched, 1)
		rep, err = VerifyFileJournal(context.Background(), p, "")
		wantOK(t, rep, err)
	})
}

func keysOf(pub ...ed25519.PublicKey) []ed25519.PublicKey { return pub }

// TestFilteredFlagAloneExcusesNothing: the header's "filtered" flag is the file's word,
// which anyone can edit. Before, setting it on an unfiltered export whose middle records
// were deleted made the export verify (OK, partial). Gaps are accepted only when the
// auditor asks for a subset; a subset proves the records a signed checkpoint covers and
// says that nothing signed vouches for the others.
func TestFilteredFlagAloneExcusesNothing(t *testing.T) {
	const n = 20
	pub, _ := testKey()
	path := buildFile(t, n)
	lines := exportLines(t, path, Query{})
	// Records 11 to 14 deleted, the rest kept as they are (their hashes still reach the
	// checkpoints), the end line recounted.
	var cut []string
	for _, l := range lines {
		if seq := gjsonSeq(l); seq >= 11 && seq <= 14 {
			continue
		}
		cut = append(cut, l)
	}
	cut[len(cut)-1], _ = sjson.Set(cut[len(cut)-1], "end.records", n-4)
	flagged := append([]string(nil), cut...)
	flagged[0], _ = sjson.Set(flagged[0], "filtered", true)
	flagged[0], _ = sjson.Set(flagged[0], "query", map[string]any{"from_time": "2000-01-01T00:00:00Z"})

	withKey := JSONLOptions{Keys: keysOf(pub)}
	wantProblem(t, verifyLines(t, cut, withKey), KindDeleted, 11)
	rep := verifyLines(t, flagged, withKey)
	wantProblem(t, rep, KindDeleted, 11)
	if !strings.Contains(rep.FirstBad.Detail, "subset") {
		t.Errorf("the detail does not say how to check a subset: %s", rep.FirstBad.Detail)
	}
	wantProblem(t, verifyLines(t, flagged, JSONLOptions{}), KindDeleted, 11)
	// The subset option does not loosen an export that says it is unfiltered.
	wantProblem(t, verifyLines(t, cut, JSONLOptions{Keys: keysOf(pub), Subset: true}), KindDeleted, 11)
	// Asked for as a subset: checkpoint 10 covers records 1 to 10, checkpoint 20 records
	// 15 to 20 (whose chain reaches it): the subset verifies, partial, and says that it
	// cannot show that no record was left out.
	rep = verifyLines(t, flagged, JSONLOptions{Keys: keysOf(pub), Subset: true})
	wantOK(t, rep, nil)
	if !rep.Partial || rep.Vouched != n-4 {
		t.Errorf("subset report %+v", rep)
	}
	// The rewritten tail of a subset is not vouched for: checkpoint 20 no longer matches,
	// and without it nothing signed covers records 15 to 20.
	rewritten := forge(t, flagged, nil, map[uint64]func(*Record){16: mallory})
	rewritten[0] = flagged[0]
	wantProblem(t, verifyLines(t, rewritten, JSONLOptions{Keys: keysOf(pub), Subset: true}), KindCheckpointMismatch, n)
	stripped := forge(t, flagged, func(l string) bool { return !strings.HasPrefix(l, fmt.Sprintf(`{"checkpoint":{"seq":%d,`, n)) }, map[uint64]func(*Record){16: mallory})
	stripped[0] = flagged[0]
	wantProblem(t, verifyLines(t, stripped, JSONLOptions{Keys: keysOf(pub), Subset: true}), KindUnvouched, 15)
}

// gjsonSeq is the seq of a record line (0 for other lines).
func gjsonSeq(l string) uint64 {
	if !strings.HasPrefix(l, `{"seq"`) {
		return 0
	}
	var e struct{ Seq uint64 }
	_ = json.Unmarshal([]byte(l), &e)
	return e.Seq
}

// TestFilteredExportAsASubset: a real filtered export (one user's records) whose first
// record no checkpoint follows: verified as a whole it has a gap; as a subset without a
// key it verifies, partial; with the key, the records no signed checkpoint covers are
// named; and a record that its own header's filter would have left out is not the
// exporter's.
func TestFilteredExportAsASubset(t *testing.T) {
	db, path := openDB(t)
	pub, priv := testKey()
	j := openJournal(t, db, Options{SigningKey: priv, KeyID: "k1"})
	appendN(t, j, 0, 10)
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 10, 10)
	appendN(t, j, 4, 1) // seq 21: record 5's user again
	appendN(t, j, 4, 1) // seq 22
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	db.Close()
	lines := exportLines(t, path, Query{SCIMID: sampleRecord(4).SCIMID})
	if got := len(lines); got != 1+3+1+1 {
		t.Fatalf("export of %d lines: %q", got, lines)
	}
	rep := verifyLines(t, lines, JSONLOptions{})
	wantProblem(t, rep, KindDeleted, 6)
	rep = verifyLines(t, lines, JSONLOptions{Subset: true})
	wantOK(t, rep, nil)
	if !rep.Partial {
		t.Errorf("report %+v", rep)
	}
	rep = verifyLines(t, lines, JSONLOptions{Subset: true, Keys: keysOf(pub)})
	wantProblem(t, rep, KindUnvouched, 5)

	other := append([]string(nil), lines...)
	other[0], _ = sjson.Set(other[0], "query.scim_id", sampleRecord(6).SCIMID)
	wantProblem(t, verifyLines(t, other, JSONLOptions{Subset: true}), KindMalformed, 5)
	other[0], _ = sjson.Delete(lines[0], "query")
	wantProblem(t, verifyLines(t, other, JSONLOptions{Subset: true}), KindMalformed, 5)
}
