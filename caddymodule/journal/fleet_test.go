package journal

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/fleet"
	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// sharedBolt is a bbolt store that says it is shared, as an etcd store does: two Journal
// values on it in one process stand for two gateways on one journal.
type sharedBolt struct{ *kv.Bolt }

func (sharedBolt) Shared() bool { return true }

// Two gateways share a journal: the one holding the checkpoint job writes a checkpoint
// every CheckpointEvery records, counting those the other appends, and a live subscriber
// on either sees every record, whichever gateway appended it.
func TestJournalOfAFleet(t *testing.T) {
	te := etcdtest.Start(t, 1)
	raw, _ := openDB(t)
	db := sharedBolt{raw.(*kv.Bolt)}
	const job = "journal/audit/checkpoint"
	type gw struct {
		el          *fleet.Etcd
		j           *Journal
		checkpoints atomic.Int32
		last        atomic.Uint64 // the newest checkpoint's seq
	}
	var gws []*gw
	for _, id := range []string{"a", "b"} {
		el, err := fleet.NewEtcd(te.Client(), "/scimgate/test/e/", fleet.EtcdOptions{TTL: 2 * time.Second, ID: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { el.Close() })
		g := &gw{el: el}
		g.j = openJournal(t, db, Options{Name: "audit", CheckpointEvery: 10, Elector: el,
			OnCheckpoint: func(cp Checkpoint) { g.checkpoints.Add(1); g.last.Store(cp.Seq) }})
		gws = append(gws, g)
	}
	var holder, other *gw
	for deadline := time.Now().Add(30 * time.Second); holder == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for i, g := range gws {
			if g.el.Holding(job) {
				holder, other = g, gws[1-i]
			}
		}
	}
	if holder == nil {
		t.Fatal("no gateway holds the checkpoint job")
	}
	subs := []*Subscription{holder.j.Subscribe(100), other.j.Subscribe(100)}
	const n = 50
	for i := 1; i <= n; i++ {
		if err := db.Update(func(tx kv.Tx) error { return other.j.Append(tx, sampleRecord(i)) }); err != nil {
			t.Fatal(err)
		}
	}
	for si, sub := range subs {
		for want := uint64(1); want <= n; want++ {
			select {
			case e, ok := <-sub.C:
				if !ok {
					t.Fatalf("subscriber %d dropped: %v", si, sub.Err())
				}
				if e.Record.Seq != want {
					t.Fatalf("subscriber %d got record %d, want %d", si, e.Record.Seq, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("subscriber %d: record %d never came", si, want)
			}
		}
	}
	var latest uint64
	for deadline := time.Now().Add(10 * time.Second); latest != n && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		info, err := holder.j.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.LatestCheckpoint != nil {
			latest = info.LatestCheckpoint.Seq
		}
	}
	if latest != n {
		t.Errorf("the newest checkpoint covers record %d, want %d", latest, n)
	}
	if holder.checkpoints.Load() == 0 || other.checkpoints.Load() != 0 {
		t.Errorf("checkpoints written: %d by the holder, %d by the other gateway; want some, none",
			holder.checkpoints.Load(), other.checkpoints.Load())
	}

	// Records past the last multiple of checkpoint_every: closing the gateway that does not
	// hold the job writes no checkpoint; closing the holder checkpoints the head.
	for i := n + 1; i <= n+3; i++ {
		if err := db.Update(func(tx kv.Tx) error { return other.j.Append(tx, sampleRecord(i)) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := holder.j.Close(); err != nil {
		t.Fatal(err)
	}
	if got := holder.last.Load(); got != n+3 {
		t.Errorf("closing the holder left the newest checkpoint at %d, want the head %d", got, n+3)
	}
	if c := other.checkpoints.Load(); c != 0 {
		t.Errorf("the gateway without the job wrote %d checkpoints at close", c)
	}
}

// In a fleet every record names the gateway that appended it (Options.Gateway), unless it
// names one itself; a journal without the option writes no gateway, as before. Records
// written before gateways were named keep their bytes and hashes, and the chain of old and
// new records verifies as one, in the file and in a JSONL export.
func TestRecordsNameTheirGateway(t *testing.T) {
	raw, _ := openDB(t)
	db := sharedBolt{raw.(*kv.Bolt)}
	single, err := Open(db, Options{Name: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	appendWith := func(j *Journal, r *Record) {
		t.Helper()
		if err := db.Update(func(tx kv.Tx) error { return j.Append(tx, r) }); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		appendWith(single, sampleRecord(i))
	}
	before := allEntries(t, db, "audit")
	if err := single.Close(); err != nil {
		t.Fatal(err)
	}

	a := openJournal(t, db, Options{Name: "audit", Gateway: "gw-a:101"})
	b := openJournal(t, db, Options{Name: "audit", Gateway: "gw-b:202"})
	appendWith(a, sampleRecord(4))
	appendWith(b, sampleRecord(5))
	own := sampleRecord(6)
	own.Gateway = "operator-cli"
	appendWith(a, own)
	appendWith(b, sampleRecord(7))

	got := allEntries(t, db, "audit")
	want := []string{"", "", "", "gw-a:101", "gw-b:202", "operator-cli", "gw-b:202"}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i, e := range got {
		if e.Record.Gateway != want[i] {
			t.Errorf("record %d names gateway %q, want %q", e.Record.Seq, e.Record.Gateway, want[i])
		}
		if has := bytes.Contains(e.Raw, []byte(`"gateway":`)); has != (want[i] != "") {
			t.Errorf("record %d: stored bytes %s", e.Record.Seq, e.Raw)
		}
	}
	for i, e := range before {
		if !bytes.Equal(got[i].Raw, e.Raw) || got[i].Hash != e.Hash {
			t.Errorf("record %d changed once gateways were named", e.Record.Seq)
		}
	}
	rep, err := b.Verify(context.Background(), nil)
	if err != nil || !rep.OK || rep.Records != uint64(len(want)) {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	var export bytes.Buffer
	if _, err := a.Export(context.Background(), &export, Query{}, FormatJSONL); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(export.String(), `"gateway":"gw-b:202"`) {
		t.Error("the JSONL export does not carry the gateway")
	}
	if rep, err := VerifyJSONL(context.Background(), &export, nil); err != nil || !rep.OK {
		t.Fatalf("verify the export: %+v %v", rep, err)
	}
}
