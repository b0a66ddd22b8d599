package journal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
)

// TestVerifyAcrossAKeyRotation: a journal signed by one key, then (reopened, as after a
// restart) by another holds checkpoints of both. Verified with the new key alone the old
// checkpoints fail; with both keys every checkpoint verifies, in the store and in a JSONL
// export; a key that signed nothing does not stand in for one that did; nil keys are "no
// key", and a checkpoint verified without any key fails.
func TestVerifyAcrossAKeyRotation(t *testing.T) {
	db, _ := openDB(t)
	oldPub, oldPriv := testKey()
	newPriv := ed25519.NewKeyFromSeed([]byte("scimgate-journal-rotated-seed-32"))
	newPub := newPriv.Public().(ed25519.PublicKey)
	otherPub, _, _ := ed25519.GenerateKey(nil)

	j := openJournal(t, db, Options{SigningKey: oldPriv, KeyID: "2025"})
	appendN(t, j, 0, 3)
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openJournal(t, db, Options{SigningKey: newPriv, KeyID: "2026"})
	appendN(t, j, 3, 3)
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	rep, err := j.Verify(ctx, newPub)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, KindBadSignature, 3)
	if !strings.Contains(rep.FirstBad.Detail, `key id "2025"`) {
		t.Errorf("the problem does not name the checkpoint's key: %s", rep.FirstBad.Detail)
	}
	rep, err = j.Verify(ctx, newPub, oldPub)
	wantOK(t, rep, err)
	if rep.Checkpoints != 2 || !rep.Signed {
		t.Errorf("verified with both keys: %+v", rep)
	}
	rep, err = j.Verify(ctx, nil, oldPub, nil, newPub)
	wantOK(t, rep, err)
	rep, err = j.Verify(ctx, otherPub, newPub)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, KindBadSignature, 3)
	if !strings.Contains(rep.FirstBad.Detail, "any of the 2 given public keys") {
		t.Errorf("detail: %s", rep.FirstBad.Detail)
	}

	var buf bytes.Buffer
	if _, err := j.Export(ctx, &buf, Query{}, FormatJSONL); err != nil {
		t.Fatal(err)
	}
	rep, err = VerifyJSONL(ctx, bytes.NewReader(buf.Bytes()), oldPub, newPub)
	wantOK(t, rep, err)
	rep, err = VerifyJSONL(ctx, bytes.NewReader(buf.Bytes()), oldPub)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, KindBadSignature, 6)

	info, err := j.Info()
	if err != nil || info.LatestCheckpoint == nil {
		t.Fatal(info, err)
	}
	if err := info.LatestCheckpoint.VerifySignature("main"); err == nil || !strings.Contains(err.Error(), "no public key") {
		t.Errorf("a signature checked without any key: %v", err)
	}
	if err := info.LatestCheckpoint.VerifySignature("main", nil); err == nil {
		t.Error("a signature checked with only a nil key verified")
	}
}
