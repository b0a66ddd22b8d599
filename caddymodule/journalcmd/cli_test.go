package journalcmd_test

// Tests of the journal command, run in-process through the cobra command that Caddy
// registers, against a real admin endpoint and against backup files. Caddy's running
// configuration is process-global: no t.Parallel here.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/caddymodule/journalcmd"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/internal/testnet"
)

func TestCLIAgainstAdminAndBackup(t *testing.T) {
	e := journaltest.Start(t)
	journaltest.Seed(t, e)
	head := e.Head(t)
	pubB64 := base64.StdEncoding.EncodeToString(e.Pub)
	dir := t.TempDir()

	t.Run("before the first checkpoint nothing signed vouches for the records", func(t *testing.T) {
		// The instance verifies with its configured key, or here with the auditor's: the
		// chain holds, but no signed checkpoint covers it yet, which is what an attacker
		// who deleted the checkpoints and rewrote the records would leave too.
		for _, args := range [][]string{{"verify", "--admin", e.Admin}, {"verify", "--admin", e.Admin, "--public-key", pubB64}} {
			code, out, _ := journaltest.Run(t, args...)
			if code != journalcmd.ExitNotVerified || !strings.HasPrefix(out, "FAILED: ") ||
				!strings.Contains(out, "(unvouched): no signed checkpoint vouches for records 1 to ") {
				t.Fatalf("%v: exit %d: %q", args, code, out)
			}
		}
		e.Checkpoint(t)
	})

	t.Run("verify --admin", func(t *testing.T) {
		code, out, _ := journaltest.Run(t, "verify", "--admin", e.Admin)
		if code != 0 || !strings.HasPrefix(out, "OK: journal audit in "+filepath.Join(e.DataDir, journaltest.StoreFile)+" verifies") {
			t.Fatalf("exit %d: %q", code, out)
		}
		if strings.Count(out, "\n") != 1 {
			t.Errorf("verify printed more than one line: %q", out)
		}
	})

	t.Run("verify --admin --public-key verifies locally", func(t *testing.T) {
		code, out, _ := journaltest.Run(t, "verify", "--admin", e.Admin, "--public-key", pubB64)
		if code != 0 || !strings.HasPrefix(out, "OK:") {
			t.Fatalf("exit %d: %q", code, out)
		}
	})

	t.Run("export --admin with filters to a file", func(t *testing.T) {
		path := filepath.Join(dir, "bob.csv")
		code, _, stderr := journaltest.Run(t, "export", "--admin", e.Admin, "--format", "csv", "--user-name", "bob@example.com", "--output", path)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil || len(rows) != 3 { // header, bob's create, bob's rejected duplicate
			t.Fatalf("rows %d, err %v:\n%s", len(rows), err, data)
		}
		if !strings.Contains(stderr, "exported 2 records") {
			t.Errorf("stderr = %q", stderr)
		}
		if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*.part")); len(leftovers) != 0 {
			t.Errorf("temporary files left: %v", leftovers)
		}
	})

	t.Run("export --admin to stdout", func(t *testing.T) {
		code, out, _ := journaltest.Run(t, "export", "--admin", e.Admin, "--from-seq", "2", "--to-seq", "3")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		if recs := journaltest.JSONLRecords(t, []byte(out)); len(recs) != 2 || recs[0].Seq != 2 {
			t.Errorf("records %+v", recs)
		}
	})

	backup := filepath.Join(dir, "backup.db")
	t.Run("backup --admin", func(t *testing.T) {
		code, _, stderr := journaltest.Run(t, "backup", "--admin", e.Admin, "--output", backup)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		rep, err := journal.VerifyFileJournal(context.Background(), backup, "", e.Pub)
		if err != nil || !rep.OK || rep.LastSeq != head {
			t.Fatalf("VerifyFileJournal = %+v, %v", rep, err)
		}
	})

	t.Run("verify --file", func(t *testing.T) {
		code, out, _ := journaltest.Run(t, "verify", "--file", backup, "--public-key", pubB64)
		if code != 0 || !strings.HasPrefix(out, "OK: journal "+journaltest.JournalName+" in "+backup+" verifies") {
			t.Fatalf("exit %d: %q", code, out)
		}
	})

	t.Run("export --file and verify the JSONL", func(t *testing.T) {
		path := filepath.Join(dir, "all.jsonl")
		if code, _, stderr := journaltest.Run(t, "export", "--file", backup, "--output", path); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		code, out, _ := journaltest.Run(t, "verify", "--file", path, "--public-key", pubB64)
		if code != 0 || !strings.HasPrefix(out, "OK:") {
			t.Fatalf("verify of the JSONL export: exit %d: %q", code, out)
		}
		// The line says when the newest checkpoint was signed: whoever can write the file
		// can drop the newest ones, with the records after them.
		if !strings.Contains(out, "1 checkpoints (signatures checked, the newest signed at 20") {
			t.Errorf("verify names no checkpoint time: %q", out)
		}
	})

	t.Run("verify with every key the journal was signed with", func(t *testing.T) {
		// A signed checkpoint, then the export: a key that signed nothing beside the
		// right one (a rotation's old and new keys) changes nothing; alone, it fails (65).
		resp, err := http.Post("http://"+e.Admin+journaladmin.JournalPath(journaltest.JournalName, "checkpoint"), "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("checkpoint: %d", resp.StatusCode)
		}
		path := filepath.Join(dir, "signed.jsonl")
		if code, _, stderr := journaltest.Run(t, "export", "--admin", e.Admin, "--output", path); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		other, _, _ := ed25519.GenerateKey(nil)
		otherB64 := base64.StdEncoding.EncodeToString(other)
		code, out, _ := journaltest.Run(t, "verify", "--file", path, "--public-key", otherB64, "--public-key", pubB64)
		if code != 0 || !strings.HasPrefix(out, "OK:") || strings.Contains(out, " 0 checkpoints") {
			t.Fatalf("verify with two keys: exit %d: %q", code, out)
		}
		code, out, _ = journaltest.Run(t, "verify", "--file", path, "--public-key", otherB64)
		if code != journalcmd.ExitNotVerified || !strings.Contains(out, "signature does not verify") {
			t.Fatalf("verify with a key that signed nothing: exit %d: %q", code, out)
		}
	})

	t.Run("verify names the records no checkpoint vouches for", func(t *testing.T) {
		// An attacker who can write an export appends a record after the newest signed
		// checkpoint, with its hash recomputed and the end line fixed: the chain holds and
		// every signature verifies, so verify says OK; it must also say that nothing
		// vouches for the records after that checkpoint (before, it said "signatures
		// checked" and nothing else).
		data, err := os.ReadFile(filepath.Join(dir, "signed.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		var last struct {
			Seq    uint64          `json:"seq"`
			Hash   string          `json:"hash"`
			Record json.RawMessage `json:"record"`
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-3]), &last); err != nil || last.Seq == 0 {
			t.Fatalf("the line before the last checkpoint is not a record: %v %q", err, lines[len(lines)-3])
		}
		var rec map[string]any
		if err := json.Unmarshal(last.Record, &rec); err != nil {
			t.Fatal(err)
		}
		seq := last.Seq + 1
		rec["seq"], rec["prev_hash"], rec["subject"] = seq, last.Hash, "mallory@example.com"
		raw, _ := json.Marshal(rec)
		prev, _ := hex.DecodeString(last.Hash)
		h := sha256.New()
		h.Write(prev)
		_ = binary.Write(h, binary.BigEndian, seq)
		h.Write(raw)
		sum := hex.EncodeToString(h.Sum(nil))
		forged := append(lines[:len(lines)-1:len(lines)-1],
			fmt.Sprintf(`{"seq":%d,"hash":"%s","record":%s}`, seq, sum, raw),
			fmt.Sprintf(`{"end":{"records":%d,"last_seq":%d,"last_hash":"%s"}}`, seq, seq, sum))
		path := filepath.Join(dir, "appended.jsonl")
		if err := os.WriteFile(path, []byte(strings.Join(forged, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, _ := journaltest.Run(t, "verify", "--file", path, "--public-key", pubB64)
		want := fmt.Sprintf("records %d to %d follow the newest checkpoint: none vouches for them yet", seq, seq)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("exit %d: %q, want OK saying %q", code, out, want)
		}
	})

	t.Run("tail --file", func(t *testing.T) {
		code, out, _ := journaltest.Run(t, "tail", "--file", backup, "-n", "2")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 2 {
			t.Fatalf("exit %d: %q", code, out)
		}
		code, out, _ = journaltest.Run(t, "tail", "--file", backup, "-n", "5", "--user-name", "carol@example.com", "--json")
		var ev journaladmin.Event
		if err := json.Unmarshal([]byte(out), &ev); code != 0 || err != nil || ev.Subject != "carol@example.com" || len(ev.Hash) != 64 {
			t.Fatalf("exit %d, err %v: %q", code, err, out)
		}
		if strings.Count(out, "\n") != 1 {
			t.Errorf("want one line: %q", out)
		}
	})

	t.Run("tail --admin follows", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errb journaltest.SyncBuffer
		cmd := journaltest.Command(t)
		cmd.SetArgs([]string{"tail", "--admin", e.Admin, "-n", "1"})
		cmd.SetOut(&out)
		cmd.SetErr(&errb)
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()
		journaltest.WaitFor(t, func() bool { return strings.Count(out.String(), "\n") == 1 }, "the backlog line")
		e.CreateUser(t, "frank@example.com")
		journaltest.WaitFor(t, func() bool { return strings.Contains(out.String(), "frank@example.com") }, "the new record")
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("tail ended with %v; stderr %s", err, errb.String())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("tail did not stop when cancelled")
		}
	})

	t.Run("bad input", func(t *testing.T) {
		tests := []struct {
			args    []string
			mention string
		}{
			{[]string{"export", "--admin", e.Admin, "--from-seq", "x"}, "--from-seq"},
			{[]string{"export", "--admin", e.Admin, "--format", "xml"}, "--format"},
			{[]string{"verify", "--admin", e.Admin, "--public-key", "nope"}, "--public-key"},
			{[]string{"verify", "--admin", e.Admin, "--journal", "nosuch"}, "no journal named"},
			{[]string{"verify", "--admin", testnet.FreeAddr(t)}, "is scimgate running"},
			{[]string{"backup", "--file", backup, "--output", "x"}, "copy it"},
			{[]string{"backup", "--admin", e.Admin}, "--output is required"},
			{[]string{"tail", "--file", backup, "-n", "-1"}, "-n"},
			{[]string{"verify", "--admin", e.Admin, "--file", backup}, "none of the others"},
		}
		for _, tt := range tests {
			t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
				var out, errb journaltest.SyncBuffer
				cmd := journaltest.Command(t)
				cmd.SetArgs(tt.args)
				cmd.SetOut(&out)
				cmd.SetErr(&errb)
				err := cmd.Execute()
				if err == nil || journaltest.ExitCode(err) != 1 || !strings.Contains(err.Error(), tt.mention) {
					t.Errorf("err = %v (exit %d), want exit 1 mentioning %q", err, journaltest.ExitCode(err), tt.mention)
				}
			})
		}
	})
}

// TestCLIVerifyTamperedBackup changes a record in a backup: verify --file exits with
// journalcmd.ExitNotVerified and names the record.
func TestCLIVerifyTamperedBackup(t *testing.T) {
	e := journaltest.Start(t)
	journaltest.Seed(t, e)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, _, stderr := journaltest.Run(t, "backup", "--admin", e.Admin, "--output", backup); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	db, err := bbolt.Open(backup, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	journaltest.Tamper(t, kv.NewBolt(db), 2)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, _ := journaltest.Run(t, "verify", "--file", backup, "--public-key", base64.StdEncoding.EncodeToString(e.Pub))
	if code != journalcmd.ExitNotVerified || !strings.HasPrefix(out, "FAILED: ") || !strings.Contains(out, "first bad sequence number 2") {
		t.Fatalf("exit %d: %q", code, out)
	}
}

// TestExportTimeBoundsSaySo: --to is exclusive (journal.Query.ToTime), and the flag says
// so; it read "Last time", and an auditor who exported a day with --to ...T23:59:59Z lost
// the records of its last second.
func TestExportTimeBoundsSaySo(t *testing.T) {
	for _, sub := range journaltest.Command(t).Commands() {
		if sub.Name() != "export" {
			continue
		}
		from, to := sub.Flags().Lookup("from"), sub.Flags().Lookup("to")
		if from == nil || to == nil || !strings.Contains(from.Usage, "inclusive") || !strings.Contains(to.Usage, "exclusive") {
			t.Fatalf("--from %q, --to %q: want them to say inclusive and exclusive", from.Usage, to.Usage)
		}
		return
	}
	t.Fatal("no export subcommand")
}
