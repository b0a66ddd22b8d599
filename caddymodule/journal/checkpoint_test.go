package journal

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

// checkpointSink collects OnCheckpoint calls.
func checkpointSink() (chan Checkpoint, func(Checkpoint)) {
	c := make(chan Checkpoint, 64)
	return c, func(cp Checkpoint) { c <- cp }
}

func waitCheckpoint(t *testing.T, c chan Checkpoint) Checkpoint {
	t.Helper()
	select {
	case cp := <-c:
		return cp
	case <-time.After(5 * time.Second):
		t.Fatal("no checkpoint")
		return Checkpoint{}
	}
}

func TestCheckpointEveryN(t *testing.T) {
	db, _ := openDB(t)
	pub, priv := testKey()
	got, on := checkpointSink()
	j := openJournal(t, db, Options{CheckpointEvery: 5, SigningKey: priv, KeyID: "k1", OnCheckpoint: on})
	var cp Checkpoint
	for i := range 12 {
		appendN(t, j, i, 1)
		if seq := uint64(i + 1); seq%5 == 0 || seq == 1 {
			// The checkpoint runs after the commit, outside Append: wait for it so that it
			// covers exactly this head. A signed journal's first record is checkpointed at
			// once (firstCheckpoint).
			if cp = waitCheckpoint(t, got); cp.Seq != seq {
				t.Fatalf("checkpoint at %d, want %d", cp.Seq, seq)
			}
		}
	}
	select {
	case cp := <-got:
		t.Fatalf("unexpected checkpoint %+v", cp)
	case <-time.After(20 * time.Millisecond):
	}
	if cp.Seq != 10 || cp.KeyID != "k1" || cp.Signature == "" {
		t.Fatalf("checkpoint %+v", cp)
	}
	if err := cp.VerifySignature("main", pub); err != nil {
		t.Fatal(err)
	}
	if err := cp.VerifySignature("other", pub); err == nil {
		t.Error("signature verifies for another journal name")
	}
	rep, err := j.Verify(context.Background(), pub)
	wantOK(t, rep, err)
	if rep.Checkpoints != 3 || !rep.Signed {
		t.Errorf("report %+v", rep)
	}
}

func TestCheckpointInterval(t *testing.T) {
	db, _ := openDB(t)
	got, on := checkpointSink()
	j := openJournal(t, db, Options{CheckpointInterval: 10 * time.Millisecond, OnCheckpoint: on})
	appendN(t, j, 0, 3)
	cp := waitCheckpoint(t, got)
	if cp.Seq != 3 || cp.Signature != "" {
		t.Fatalf("checkpoint %+v", cp)
	}
	// No new records: the timer writes nothing new.
	select {
	case cp := <-got:
		t.Fatalf("checkpoint %+v without new records", cp)
	case <-time.After(50 * time.Millisecond):
	}
	appendN(t, j, 3, 1)
	if cp := waitCheckpoint(t, got); cp.Seq != 4 {
		t.Fatalf("checkpoint at %d, want 4", cp.Seq)
	}
}

func TestCheckpointOnDemand(t *testing.T) {
	db, _ := openDB(t)
	pub, priv := testKey()
	got, on := checkpointSink()
	j := openJournal(t, db, Options{SigningKey: priv, KeyID: "k1", OnCheckpoint: on})
	if _, err := j.Checkpoint(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty journal: %v", err)
	}
	appendN(t, j, 0, 4)
	cp, err := j.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if cp.Seq != 4 || waitCheckpoint(t, got).Seq != 4 {
		t.Fatalf("checkpoint %+v", cp)
	}
	again, err := j.Checkpoint()
	if err != nil || *again != *cp {
		t.Fatalf("second checkpoint of the same head: %+v %v", again, err)
	}
	select {
	case <-got:
		t.Fatal("OnCheckpoint called for an existing checkpoint")
	default:
	}
	info, err := j.Info()
	if err != nil || info.LatestCheckpoint == nil || info.LatestCheckpoint.Hash != cp.Hash {
		t.Fatalf("latest %+v %v", info.LatestCheckpoint, err)
	}

	rep, err := j.Verify(context.Background(), pub)
	wantOK(t, rep, err)
	otherPub, _, _ := ed25519.GenerateKey(nil)
	rep, err = j.Verify(context.Background(), otherPub)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, KindBadSignature, 4)
}

func TestUnsignedCheckpointWithKey(t *testing.T) {
	db, _ := openDB(t)
	pub, _ := testKey()
	j := openJournal(t, db, Options{})
	appendN(t, j, 0, 2)
	if _, err := j.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	rep, err := j.Verify(context.Background(), nil)
	wantOK(t, rep, err)
	rep, err = j.Verify(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, KindBadSignature, 2)
}

func TestSignedBytesUnambiguous(t *testing.T) {
	ts := time.Unix(1700000000, 5)
	a := Checkpoint{Seq: 1, Hash: "00" + string(make([]byte, 0)) + "11", Time: ts}
	a.Hash = "aa00000000000000000000000000000000000000000000000000000000000000"
	b := a
	b.KeyID = "x"
	ab, _ := a.SignedBytes("jx")
	bb, _ := b.SignedBytes("j")
	if string(ab) == string(bb) {
		t.Fatal("name and key id boundaries are ambiguous")
	}
	if _, err := (Checkpoint{Hash: "zz"}).SignedBytes("j"); err == nil {
		t.Error("malformed hash accepted")
	}
}

// TestFirstRecordsVouched: with a public key, verify refuses records no signed checkpoint
// covers, so a signed journal's first records are checkpointed at once instead of at its
// first checkpoint_every or checkpoint_interval (here 1,000 records and an hour): a new
// gateway's journal, and one whose signing was just turned on, verify with the key from
// the start, and its checkpoints are still written on their schedule after that.
func TestFirstRecordsVouched(t *testing.T) {
	db, _ := openDB(t)
	pub, priv := testKey()
	got, on := checkpointSink()
	opts := Options{CheckpointEvery: 1000, CheckpointInterval: time.Hour, SigningKey: priv, KeyID: "k1", OnCheckpoint: on}
	j := openJournal(t, db, opts)
	appendN(t, j, 0, 1)
	if cp := waitCheckpoint(t, got); cp.Seq != 1 || cp.Signature == "" {
		t.Fatalf("first checkpoint %+v", cp)
	}
	appendN(t, j, 1, 3)
	rep, err := j.Verify(context.Background(), pub)
	wantOK(t, rep, err)
	if rep.Checkpoints != 1 || rep.CheckpointSeq != 1 {
		t.Errorf("report %+v", rep)
	}
	select {
	case cp := <-got:
		t.Fatalf("a checkpoint off its schedule: %+v", cp)
	case <-time.After(20 * time.Millisecond):
	}
	j.Close()
	if cp := waitCheckpoint(t, got); cp.Seq != 4 || cp.Signature == "" {
		t.Fatalf("checkpoint at close %+v, want the head (4), signed", cp)
	}

	// Records written unsigned, then signing turned on: checkpointed when the job starts.
	db2, _ := openDB(t)
	unsigned := openJournal(t, db2, Options{})
	appendN(t, unsigned, 0, 5)
	unsigned.Close()
	openJournal(t, db2, opts)
	if cp := waitCheckpoint(t, got); cp.Seq != 5 || cp.Signature == "" {
		t.Fatalf("checkpoint when signing is turned on: %+v", cp)
	}
}

// TestCheckpointAtClose: closing a journal whose checkpoints are on writes a checkpoint of
// the head when the newest one does not cover it (signed with the journal's key), so the
// records since the last checkpoint_every are vouched for while the gateway is down; a
// journal whose checkpoints are off writes none, and a head already covered gets no second.
func TestCheckpointAtClose(t *testing.T) {
	pub, priv := testKey()
	db, _ := openDB(t)
	got, on := checkpointSink()
	opts := Options{CheckpointEvery: 1000, SigningKey: priv, KeyID: "k1", OnCheckpoint: on}
	j := openJournal(t, db, opts)
	appendN(t, j, 0, 1)
	if cp := waitCheckpoint(t, got); cp.Seq != 1 {
		t.Fatalf("first checkpoint %+v", cp) // a signed journal vouches for its first record at once
	}
	appendN(t, j, 1, 6)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	cp := waitCheckpoint(t, got)
	if cp.Seq != 7 || cp.KeyID != "k1" {
		t.Fatalf("checkpoint at close %+v, want the head (7) under k1", cp)
	}
	if err := cp.VerifySignature("main", pub); err != nil {
		t.Fatal(err)
	}

	// Open again and close without a record: the head is covered, nothing is written.
	j = openJournal(t, db, opts)
	rep, err := j.Verify(context.Background(), pub)
	wantOK(t, rep, err)
	if rep.Checkpoints != 2 || rep.CheckpointSeq != 7 {
		t.Errorf("after reopening: %+v, want 2 checkpoints, the newest at 7", rep)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case cp := <-got:
		t.Fatalf("a second checkpoint of a covered head: %+v", cp)
	case <-time.After(20 * time.Millisecond):
	}

	// Checkpoints off: none at close either.
	db2, _ := openDB(t)
	off := openJournal(t, db2, Options{})
	appendN(t, off, 0, 3)
	if err := off.Close(); err != nil {
		t.Fatal(err)
	}
	off = openJournal(t, db2, Options{})
	info, err := off.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.LatestCheckpoint != nil {
		t.Errorf("a journal without checkpoints wrote one at close: %+v", info.LatestCheckpoint)
	}
}
