package journaltest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// The journal command, run in-process through the cobra command that Caddy registers.

// Run runs `journal args...` and returns the exit status the process would have, stdout
// and stderr.
func Run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return RunContext(t, context.Background(), args...)
}

// RunContext is Run with a context, which interrupts the command when cancelled.
func RunContext(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb SyncBuffer
	cmd := Command(t)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(ctx)
	return ExitCode(err), out.String(), errb.String()
}

// Err runs `journal args...` and returns the command's error.
func Err(t *testing.T, args ...string) error {
	t.Helper()
	cmd := Command(t)
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	return cmd.Execute()
}

// Command builds the journal command the way Caddy does: from the registered
// caddycmd.Command's CobraFunc.
func Command(t *testing.T) *cobra.Command {
	t.Helper()
	reg, ok := caddycmd.Commands()["journal"]
	if !ok || reg.CobraFunc == nil {
		t.Fatal("the journal command is not registered")
	}
	cmd := &cobra.Command{Use: "journal", SilenceUsage: true, SilenceErrors: true}
	reg.CobraFunc(cmd)
	return cmd
}

// ExitCode is the status caddycmd.Main would exit with for a command's error: Caddy's
// wrapper carries statuses above 1 in an unexported error type with an ExitCode field.
func ExitCode(err error) int {
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

// SyncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond for up to 10 s.
func WaitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WatchStart runs `journal watch --admin admin --open=false args...` in the background
// and returns the URL it prints. The command is stopped (its context cancelled) when the
// test ends, and must then return without error.
func WatchStart(t *testing.T, admin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb SyncBuffer
	cmd := Command(t)
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
	prefix := "Watching journal " + JournalName + ": open "
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

// WatchDo sends one request and returns the response with its body read. host, when set,
// replaces the Host header; the client never follows redirects.
func WatchDo(t *testing.T, method, u, host string, headers ...string) (*http.Response, []byte) {
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

// WatchStream opens a live stream through watch at u, as Env.Live does on the admin
// endpoint.
func WatchStream(t *testing.T, u string, headers ...string) *SSE {
	t.Helper()
	return Stream(t, &http.Client{Transport: &http.Transport{}}, u, headers...)
}
