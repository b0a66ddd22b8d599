package journal

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestCheckpointsAreLogged: every checkpoint goes to the logger too (the Caddy module's
// logger, so that an external log sink keeps a copy), with everything needed to check it.
func TestCheckpointsAreLogged(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	db, _ := openDB(t)
	_, priv := testKey()
	j := openJournal(t, db, Options{CheckpointEvery: 2, SigningKey: priv, KeyID: "k1", Logger: zap.New(core)})
	appendN(t, j, 0, 2)
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("journal checkpoint").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	entries := logs.FilterMessage("journal checkpoint").All()
	if len(entries) != 1 {
		t.Fatalf("%d checkpoint log lines, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	info, err := j.Info()
	cp := info.LatestCheckpoint
	if err != nil || cp == nil {
		t.Fatalf("latest checkpoint: %v %v", cp, err)
	}
	if f["seq"] != uint64(2) || f["hash"] != cp.Hash || f["signature"] != cp.Signature || f["key_id"] != "k1" || cp.Signature == "" {
		t.Fatalf("log line %v does not carry checkpoint %+v", f, cp)
	}
}
