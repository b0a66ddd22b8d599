package outboxcmd_test

// The outbox command, run in-process through the cobra command Caddy registers, against a
// real Caddy (admin endpoint and gateway on loopback) whose target delivers through the
// outbox to an app that rejects creates until told otherwise. Caddy's running config is
// process-global: no t.Parallel here.

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	_ "github.com/scimgate/scimgate/caddymodule"
	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/internal/testnet"
)

const mapping = `{"version": 1, "users": {"events": {
  "create": {"method": "POST", "path": "/accounts", "id": "id", "body": {"login": {"from": "userName"}}}}}}`

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	reg, ok := caddycmd.Commands()["outbox"]
	if !ok {
		t.Fatal("the outbox command is not registered")
	}
	cmd := &cobra.Command{Use: "outbox", SilenceUsage: true, SilenceErrors: true}
	reg.CobraFunc(cmd)
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	return out.String(), err
}

func TestOutboxCommand(t *testing.T) {
	var accept atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !accept.Load() {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"message":"login refused"}}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id": 7}`)
	}))
	defer app.Close()
	dir := t.TempDir()
	mapFile := filepath.Join(dir, "app.json")
	if err := os.WriteFile(mapFile, []byte(mapping), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := testnet.FreeAddrs(t, 2)
	admin, addr := addrs[0], addrs[1]
	caddyfile := fmt.Sprintf(`{
	admin %s
	auto_https off
	storage file_system %s
}
http://%s {
	scim_gateway {
		token entra %s
		data_dir %s
		target cli {
			url %s
			mapping %s
			delivery queued
			queue {
				retry_backoff 5ms 20ms
			}
		}
	}
}
`, admin, filepath.Join(dir, "caddy"), addr, journaltest.Token, filepath.Join(dir, "data"), app.URL, mapFile)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}}}`), true)
		_ = caddy.Stop()
	})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/scim/v2/Users", strings.NewReader(journaltest.UserBody("ada@contoso.example")))
	req.Header.Set("Authorization", "Bearer "+journaltest.Token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %v %v", resp, err)
	}
	resp.Body.Close()

	var out string
	journaltest.WaitFor(t, func() bool {
		out, err = run(t, "list", "--admin", admin, "--state", "dead")
		return err == nil && strings.Contains(out, "dead")
	}, "a dead letter")
	if !strings.Contains(out, "ada@contoso.example") || !strings.Contains(out, "400 ") {
		t.Fatalf("list:\n%s", out)
	}
	seq := strings.Fields(strings.Split(out, "\n")[1])[0]
	if strings.Contains(out, "there may be more") {
		t.Fatalf("a whole listing says it may be cut:\n%s", out)
	}
	// A listing cut at its limit says so (the table alone would look like the whole outbox).
	if out, err := run(t, "list", "--admin", admin, "--limit", "1"); err != nil || !strings.Contains(out, "the first 1 changes; there may be more") {
		t.Fatalf("list --limit 1: %v\n%s", err, out)
	}
	for _, bad := range []string{"0", "1001"} {
		if _, err := run(t, "list", "--admin", admin, "--limit", bad); err == nil || !strings.Contains(err.Error(), "want 1 to 1000") {
			t.Fatalf("list --limit %s: %v", bad, err)
		}
	}
	if out, err := run(t, "targets", "--admin", admin); err != nil || !strings.Contains(out, "cli ") {
		t.Fatalf("targets: %v\n%s", err, out)
	}
	if out, err := run(t, "show", seq, "--admin", admin); err != nil || !strings.Contains(out, `"outcome": "dead"`) {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if _, err := run(t, "show", "abc", "--admin", admin); err == nil {
		t.Fatal("show of no number: no error")
	}
	if _, err := run(t, "drop", "999", "--admin", admin, "--by", "ops"); err == nil || !strings.Contains(err.Error(), "no such task") {
		t.Fatalf("drop of no task: %v", err)
	}
	if out, err := run(t, "pause", "--admin", admin, "--by", "ops"); err != nil || !strings.Contains(out, "paused") {
		t.Fatalf("pause: %v %s", err, out)
	}
	accept.Store(true)
	if out, err := run(t, "retry", seq, "--admin", admin, "--by", "ops"); err != nil || !strings.Contains(out, "queued again") {
		t.Fatalf("retry: %v %s", err, out)
	}
	if out, err := run(t, "resume", "--admin", admin, "--by", "ops"); err != nil || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: %v %s", err, out)
	}
	journaltest.WaitFor(t, func() bool {
		out, err = run(t, "list", "--admin", admin)
		return err == nil && strings.Count(out, "\n") == 1 // the header only
	}, "the outbox to drain")
}
