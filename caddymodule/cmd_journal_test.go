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
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
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

// cliWatchStart runs `journal watch --admin admin --open=false args...` in the background
// and returns the URL it prints. The command is stopped (its context cancelled) when the
// test ends, and must then return without error.
func cliWatchStart(t *testing.T, admin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb cliSyncBuffer
	cmd := cliTestCommand(t)
	cmd.SetArgs(append([]string{"watch", "--admin", admin, "--open=false"}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("watch ended with %v; stderr %s", err, errb.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("watch did not stop when cancelled")
		}
	})
	prefix := "Watching journal " + admJournalName + ": open "
	deadline := time.Now().Add(10 * time.Second)
	for {
		if line, ok := strings.CutPrefix(out.String(), prefix); ok && strings.HasSuffix(line, "\n") {
			return strings.TrimSuffix(line, "\n")
		}
		select {
		case err := <-done:
			t.Fatalf("watch ended before printing its URL: %v; stdout %q, stderr %q", err, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch printed no URL; stdout %q, stderr %q", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cliWatchDo sends one request and returns the response with its body read. host, when
// set, replaces the Host header; the client never follows redirects.
func cliWatchDo(t *testing.T, method, u, host string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// cliWatchStream opens a live stream at u with headers and reads its events in the
// background, as admEnv.live does on the admin endpoint.
func cliWatchStream(t *testing.T, u string, headers ...string) *admSSE {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		t.Fatalf("live through watch: status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	s := &admSSE{events: make(chan admSSEEvent, 1000), cancel: cancel, done: make(chan error, 1)}
	go func() {
		defer resp.Body.Close()
		s.done <- cliReadSSE(resp.Body, func(event string, data []byte) error {
			s.events <- admSSEEvent{event, bytes.Clone(data)}
			return nil
		})
		close(s.events)
	}()
	return s
}

// TestCLIWatchProxy runs `journal watch` against a real admin endpoint: a URL typed into a
// browser gets the page, the page's stream delivers records written through the gateway,
// and nothing else of the admin API is reachable.
func TestCLIWatchProxy(t *testing.T) {
	e := admStart(t)
	first := e.createUser(t, "before@example.com")
	base := cliWatchStart(t, e.admin)
	u, err := url.Parse(base)
	if err != nil || u.Path != "/" || !strings.HasPrefix(u.Host, "127.0.0.1:") {
		t.Fatalf("printed URL %q: %v", base, err)
	}
	origin := strings.TrimSuffix(base, "/")
	page := liveWatchURL(admJournalName)
	live := cliJournalPath(admJournalName, "live")
	typed := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "none", "Sec-Fetch-Dest", "document"}

	t.Run("a typed URL gets the page", func(t *testing.T) {
		// The admin endpoint itself refuses this request: the reason watch exists.
		if resp, body := e.do(t, http.MethodGet, page, typed...); resp.StatusCode != http.StatusForbidden {
			t.Errorf("the admin endpoint answered a typed URL with %d, want 403: %s", resp.StatusCode, body)
		}
		resp, body := cliWatchDo(t, http.MethodGet, base, "", typed...)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != page {
			t.Fatalf("GET /: status %d, Location %q, want 302 to %s", resp.StatusCode, resp.Header.Get("Location"), page)
		}
		resp, body = cliWatchDo(t, http.MethodGet, origin+page, "", typed...)
		admWantStatus(t, resp, body, http.StatusOK)
		admWantHeader(t, resp, "Content-Type", "text/html; charset=utf-8")
		admWantHeader(t, resp, "Content-Security-Policy", livePageCSP)
		if !bytes.Equal(body, livePage) {
			t.Errorf("the page through watch differs from the admin endpoint's (%d bytes, want %d)", len(body), len(livePage))
		}
		resp, body = cliWatchDo(t, http.MethodGet, base+"?outcome=rejected", "", typed...)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != page+"?outcome=rejected" {
			t.Errorf("GET /?outcome=rejected: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, body = cliWatchDo(t, http.MethodHead, origin+page, "", typed...)
		if resp.StatusCode != http.StatusOK || len(body) != 0 {
			t.Errorf("HEAD of the page: status %d, %d body bytes", resp.StatusCode, len(body))
		}
	})

	// The page's own stream request: same-origin, CORS mode, with the page as Referer.
	fromPage := []string{"Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Dest", "empty", "Referer", origin + page, "Accept", "text/event-stream"}

	t.Run("the stream delivers new records", func(t *testing.T) {
		s := cliWatchStream(t, origin+live+"?backlog=1", fromPage...)
		if ev := s.nextRecord(t); ev.Subject != "before@example.com" || ev.SCIMID != first {
			t.Fatalf("backlog record %+v", ev.Record)
		}
		e.createUser(t, "carol@example.com")
		if ev := s.nextRecord(t); ev.Subject != "carol@example.com" || ev.Outcome != "applied" {
			t.Fatalf("new record %+v", ev.Record)
		}
	})

	t.Run("the stream resumes after the last record seen", func(t *testing.T) {
		head := e.head(t)
		for _, resume := range []struct{ query, header string }{
			{"?last_event_id=" + strconv.FormatUint(head-1, 10), ""},
			{"", strconv.FormatUint(head-1, 10)},
		} {
			headers := fromPage
			if resume.header != "" {
				headers = append(slices.Clone(fromPage), "Last-Event-ID", resume.header)
			}
			s := cliWatchStream(t, origin+live+resume.query, headers...)
			if ev := s.nextRecord(t); ev.Seq != head || ev.Subject != "carol@example.com" {
				t.Errorf("resuming with %+v: first record %+v, want seq %d", resume, ev.Record, head)
			}
			s.cancel()
		}
	})

	t.Run("refused", func(t *testing.T) {
		port := u.Port()
		tests := []struct {
			name, method, path, host string
			headers                  []string
			status                   int
		}{
			{"admin config", http.MethodGet, "/config/", "", nil, http.StatusNotFound},
			{"journal list", http.MethodGet, admPrefix, "", nil, http.StatusNotFound},
			{"backup", http.MethodGet, cliJournalPath(admJournalName, "backup"), "", nil, http.StatusNotFound},
			{"export", http.MethodGet, cliJournalPath(admJournalName, "export"), "", nil, http.StatusNotFound},
			{"another journal's page", http.MethodGet, liveWatchURL("other"), "", nil, http.StatusNotFound},
			{"dot segments", http.MethodGet, page + "/../backup", "", nil, http.StatusNotFound},
			{"escaped slash", http.MethodGet, admPrefix + "/audit%2Fwatch/live", "", nil, http.StatusNotFound},
			{"trailing slash", http.MethodGet, page + "/", "", nil, http.StatusNotFound},
			{"unknown page parameter", http.MethodGet, page + "?format=csv", "", nil, http.StatusBadRequest},
			{"unknown stream parameter", http.MethodGet, live + "?to_seq=1", "", nil, http.StatusBadRequest},
			{"POST", http.MethodPost, page, "", nil, http.StatusMethodNotAllowed},
			{"POST checkpoint", http.MethodPost, cliJournalPath(admJournalName, "checkpoint"), "", nil, http.StatusMethodNotAllowed},
			{"DELETE", http.MethodDelete, "/config/", "", nil, http.StatusMethodNotAllowed},
			{"HEAD of the stream", http.MethodHead, live, "", nil, http.StatusMethodNotAllowed},
			{"rebound host", http.MethodGet, page, "attacker.example:" + port, typed, http.StatusForbidden},
			{"host without port", http.MethodGet, "/", "127.0.0.1", typed, http.StatusForbidden},
			{"host of the admin endpoint", http.MethodGet, page, e.admin, typed, http.StatusForbidden},
			{"another origin", http.MethodGet, live, "", []string{"Origin", "http://attacker.example"}, http.StatusForbidden},
			{"null origin", http.MethodGet, live, "", []string{"Origin", "null"}, http.StatusForbidden},
			{"no-cors", http.MethodGet, live, "", []string{"Sec-Fetch-Mode", "no-cors"}, http.StatusForbidden},
			{"cross-site fetch", http.MethodGet, live, "", []string{"Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := cliWatchDo(t, tt.method, origin+tt.path, tt.host, tt.headers...)
				admWantStatus(t, resp, body, tt.status)
				if tt.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
					t.Error("405 without an Allow header")
				}
			})
		}
	})

	t.Run("allowed browser contexts", func(t *testing.T) {
		for _, headers := range [][]string{
			{"Origin", origin}, // a same-origin request that names itself
			{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "cross-site"}, // a link from elsewhere
			nil, // curl
		} {
			resp, body := cliWatchDo(t, http.MethodGet, origin+page, "", headers...)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("headers %q: status %d: %s", headers, resp.StatusCode, body)
			}
		}
		resp, body := cliWatchDo(t, http.MethodGet, origin+page, "localhost:"+u.Port())
		admWantStatus(t, resp, body, http.StatusOK)
	})
}

// TestCLIWatchStopsWithStreamOpen checks that cancelling watch ends it promptly even while a
// page's stream is open (the cleanup of cliWatchStart fails the test otherwise).
func TestCLIWatchStopsWithStreamOpen(t *testing.T) {
	e := admStart(t)
	base := cliWatchStart(t, e.admin)
	s := cliWatchStream(t, strings.TrimSuffix(base, "/")+cliJournalPath(admJournalName, "live"))
	e.createUser(t, "open@example.com")
	if ev := s.nextRecord(t); ev.Subject != "open@example.com" {
		t.Fatalf("record %+v", ev.Record)
	}
}

func TestCLIWatchBadInput(t *testing.T) {
	e := admStart(t)
	tests := []struct {
		args    []string
		mention string
	}{
		{[]string{"--listen", "0.0.0.0:0"}, "not a loopback address"},
		{[]string{"--listen", ":0"}, "not a loopback address"},
		{[]string{"--listen", "[::]:0"}, "not a loopback address"},
		{[]string{"--listen", "192.0.2.1:8080"}, "not a loopback address"},
		{[]string{"--listen", "scimgate.example.com:8080"}, "not a loopback address"},
		{[]string{"--listen", "127.0.0.1"}, "want host:port"},
		{[]string{"--journal", "nosuch"}, "no journal named"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			err := cliTestErr(t, append([]string{"watch", "--admin", e.admin}, tt.args...)...)
			if err == nil || cliExitCode(err) != 1 || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("err = %v (exit %d); want exit 1 mentioning %q", err, cliExitCode(err), tt.mention)
			}
		})
	}
	for _, args := range [][]string{
		{"watch", "--file", "backup.db"},
		{"watch", "--admin", itFreeLoopbackAddr(t)},
	} {
		if err := cliTestErr(t, args...); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// cliTestErr runs `journal args...` and returns the command's error.
func cliTestErr(t *testing.T, args ...string) error {
	t.Helper()
	cmd := cliTestCommand(t)
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	return cmd.Execute()
}

func TestCLIWatchHosts(t *testing.T) {
	tests := []struct {
		addr net.TCPAddr
		want []string
	}{
		{net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, []string{"127.0.0.1:8080", "localhost:8080"}},
		{net.TCPAddr{IP: net.IPv6loopback, Port: 8080}, []string{"[::1]:8080", "localhost:8080"}},
		{net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}, []string{"127.0.0.1:80", "localhost:80", "127.0.0.1", "localhost"}},
		{net.TCPAddr{IP: net.IPv6loopback, Port: 80}, []string{"[::1]:80", "localhost:80", "[::1]", "localhost"}},
	}
	for _, tt := range tests {
		if got := cliWatchHosts(&tt.addr); !slices.Equal(got, tt.want) {
			t.Errorf("cliWatchHosts(%v) = %q, want %q", &tt.addr, got, tt.want)
		}
	}
}

func TestCLIIsLoopbackHost(t *testing.T) {
	tests := map[string]bool{
		"127.0.0.1": true, "127.8.9.10": true, "::1": true, "localhost": true, "LocalHost": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "192.0.2.1": false,
		"localhost.example.com": false, "127.0.0.1.nip.io": false, "::ffff:10.0.0.1": false,
	}
	for host, want := range tests {
		if got := cliIsLoopbackHost(host); got != want {
			t.Errorf("cliIsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
