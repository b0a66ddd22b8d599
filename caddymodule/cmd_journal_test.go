package caddymodule

// Tests of the journal CLI (cmd_journal.go), run in-process through the cobra command that
// Caddy registers, against a real admin endpoint and against backup files.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.etcd.io/bbolt"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

// cliTestRun runs `journal args...` through the registered cobra function and returns
// the exit status the process would have, stdout and stderr.
func cliTestRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return cliTestRunContext(t, context.Background(), args...)
}

func cliTestRunContext(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb cliSyncBuffer
	cmd := cliTestCommand(t)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(ctx)
	return cliExitCode(err), out.String(), errb.String()
}

// cliTestCommand builds the journal command the way Caddy does: from the registered
// caddycmd.Command's CobraFunc.
func cliTestCommand(t *testing.T) *cobra.Command {
	t.Helper()
	reg, ok := caddycmd.Commands()["journal"]
	if !ok || reg.CobraFunc == nil {
		t.Fatal("the journal command is not registered")
	}
	cmd := &cobra.Command{Use: "journal", SilenceUsage: true, SilenceErrors: true}
	reg.CobraFunc(cmd)
	return cmd
}

// cliExitCode is the status caddycmd.Main would exit with for a command's error: Caddy's
// wrapper carries statuses above 1 in an unexported error type with an ExitCode field.
func cliExitCode(err error) int {
	if err == nil {
		return 0
	}
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
		if f := v.Elem().FieldByName("ExitCode"); f.IsValid() && f.CanInt() {
			return int(f.Int())
		}
	}
	return 1
}

// cliSyncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type cliSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *cliSyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *cliSyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCLIAgainstAdminAndBackup(t *testing.T) {
	e := admStart(t)
	admSeed(t, e)
	head := e.head(t)
	pubB64 := base64.StdEncoding.EncodeToString(e.pub)
	dir := t.TempDir()

	t.Run("verify --admin", func(t *testing.T) {
		code, out, _ := cliTestRun(t, "verify", "--admin", e.admin)
		if code != 0 || !strings.HasPrefix(out, "OK: journal audit verifies") {
			t.Fatalf("exit %d: %q", code, out)
		}
		if strings.Count(out, "\n") != 1 {
			t.Errorf("verify printed more than one line: %q", out)
		}
	})

	t.Run("verify --admin --public-key verifies locally", func(t *testing.T) {
		code, out, _ := cliTestRun(t, "verify", "--admin", e.admin, "--public-key", pubB64)
		if code != 0 || !strings.HasPrefix(out, "OK:") {
			t.Fatalf("exit %d: %q", code, out)
		}
	})

	t.Run("export --admin with filters to a file", func(t *testing.T) {
		path := filepath.Join(dir, "bob.csv")
		code, _, stderr := cliTestRun(t, "export", "--admin", e.admin, "--format", "csv", "--user-name", "bob@example.com", "--output", path)
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
		code, out, _ := cliTestRun(t, "export", "--admin", e.admin, "--from-seq", "2", "--to-seq", "3")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		if recs := admJSONLRecords(t, []byte(out)); len(recs) != 2 || recs[0].Seq != 2 {
			t.Errorf("records %+v", recs)
		}
	})

	backup := filepath.Join(dir, "backup.db")
	t.Run("backup --admin", func(t *testing.T) {
		code, _, stderr := cliTestRun(t, "backup", "--admin", e.admin, "--output", backup)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		rep, err := journal.VerifyFile(context.Background(), backup, e.pub)
		if err != nil || !rep.OK || rep.LastSeq != head {
			t.Fatalf("VerifyFile = %+v, %v", rep, err)
		}
	})

	t.Run("verify --file", func(t *testing.T) {
		code, out, _ := cliTestRun(t, "verify", "--file", backup, "--public-key", pubB64)
		if code != 0 || !strings.HasPrefix(out, "OK: "+backup+" verifies") {
			t.Fatalf("exit %d: %q", code, out)
		}
	})

	t.Run("export --file and verify the JSONL", func(t *testing.T) {
		path := filepath.Join(dir, "all.jsonl")
		if code, _, stderr := cliTestRun(t, "export", "--file", backup, "--output", path); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		code, out, _ := cliTestRun(t, "verify", "--file", path, "--public-key", pubB64)
		if code != 0 || !strings.HasPrefix(out, "OK:") {
			t.Fatalf("verify of the JSONL export: exit %d: %q", code, out)
		}
	})

	t.Run("tail --file", func(t *testing.T) {
		code, out, _ := cliTestRun(t, "tail", "--file", backup, "-n", "2")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 2 {
			t.Fatalf("exit %d: %q", code, out)
		}
		code, out, _ = cliTestRun(t, "tail", "--file", backup, "-n", "5", "--user-name", "carol@example.com", "--json")
		var ev liveEvent
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
		var out, errb cliSyncBuffer
		cmd := cliTestCommand(t)
		cmd.SetArgs([]string{"tail", "--admin", e.admin, "-n", "1"})
		cmd.SetOut(&out)
		cmd.SetErr(&errb)
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()
		cliWaitFor(t, func() bool { return strings.Count(out.String(), "\n") == 1 }, "the backlog line")
		e.createUser(t, "frank@example.com")
		cliWaitFor(t, func() bool { return strings.Contains(out.String(), "frank@example.com") }, "the new record")
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
			{[]string{"export", "--admin", e.admin, "--from-seq", "x"}, "--from-seq"},
			{[]string{"export", "--admin", e.admin, "--format", "xml"}, "--format"},
			{[]string{"verify", "--admin", e.admin, "--public-key", "nope"}, "--public-key"},
			{[]string{"verify", "--admin", e.admin, "--journal", "nosuch"}, "no journal named"},
			{[]string{"verify", "--admin", itFreeLoopbackAddr(t)}, "is scimgate running"},
			{[]string{"backup", "--file", backup, "--output", "x"}, "copy it"},
			{[]string{"backup", "--admin", e.admin}, "--output is required"},
			{[]string{"tail", "--file", backup, "-n", "-1"}, "-n"},
			{[]string{"verify", "--admin", e.admin, "--file", backup}, "none of the others"},
		}
		for _, tt := range tests {
			t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
				var out, errb cliSyncBuffer
				cmd := cliTestCommand(t)
				cmd.SetArgs(tt.args)
				cmd.SetOut(&out)
				cmd.SetErr(&errb)
				err := cmd.Execute()
				if err == nil || cliExitCode(err) != 1 || !strings.Contains(err.Error(), tt.mention) {
					t.Errorf("err = %v (exit %d), want exit 1 mentioning %q", err, cliExitCode(err), tt.mention)
				}
			})
		}
	})
}

// TestCLIVerifyTamperedBackup changes a record in a backup: verify --file exits with
// cliExitNotVerified and names the record.
func TestCLIVerifyTamperedBackup(t *testing.T) {
	e := admStart(t)
	admSeed(t, e)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, _, stderr := cliTestRun(t, "backup", "--admin", e.admin, "--output", backup); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	db, err := bbolt.Open(backup, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	admTamper(t, db, 2)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, _ := cliTestRun(t, "verify", "--file", backup, "--public-key", base64.StdEncoding.EncodeToString(e.pub))
	if code != cliExitNotVerified || !strings.HasPrefix(out, "FAILED: ") || !strings.Contains(out, "first bad sequence number 2") {
		t.Fatalf("exit %d: %q", code, out)
	}
}

func TestCLILoadPublicKey(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"empty", "", true},
		{"base64", base64.StdEncoding.EncodeToString(pub), true},
		{"base64url raw", base64.RawURLEncoding.EncodeToString(pub), true},
		{"hex", hex.EncodeToString(pub), true},
		{"PKIX base64", base64.StdEncoding.EncodeToString(der), true},
		{"PEM file", write("pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), true},
		{"base64 file", write("pub.b64", []byte(base64.StdEncoding.EncodeToString(pub)+"\n")), true},
		{"short", base64.StdEncoding.EncodeToString(pub[:31]), false},
		{"garbage", "not a key", false},
		{"big file", write("big", bytes.Repeat([]byte("A"), 70<<10)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cliLoadPublicKey(tt.value)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
			if tt.ok && tt.value != "" && !got.Equal(pub) {
				t.Errorf("key = %x, want %x", got, pub)
			}
		})
	}
}

func TestCLIReadSSE(t *testing.T) {
	in := "retry: 2000\n\n: comment\n\nid: 1\nevent: record\ndata: {\"a\":\ndata: 1}\n\nevent: heartbeat\ndata: x\n\ndata: plain\n\n"
	var got []string
	err := cliReadSSE(strings.NewReader(in), func(event string, data []byte) error {
		got = append(got, event+"="+string(data))
		return nil
	})
	want := []string{"record={\"a\":\n1}", "heartbeat=x", "message=plain"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("events %q, err %v; want %q", got, err, want)
	}
}

func TestCLICol(t *testing.T) {
	if got := cliCol("a\x1b[31mb\nc"); got != "a?[31mb?c" {
		t.Errorf("cliCol = %q", got)
	}
	if got := cliCol(""); got != "-" {
		t.Errorf("cliCol(\"\") = %q", got)
	}
}

// cliWaitFor polls cond for up to 10 s.
func cliWaitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
