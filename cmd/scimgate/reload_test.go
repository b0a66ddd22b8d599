package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/scimgate/scimgate/internal/testnet"
)

// TestReloadPrintsTheReasonOnce runs a gateway in this process with its admin endpoint on
// loopback, and reloads it as `scimgate reload` does: an edited mapping is applied (exit
// 0, no --force), a broken one is refused with the admin endpoint's reason printed as
// plain text (its quotes not escaped) and exit 1.
func TestReloadPrintsTheReasonOnce(t *testing.T) {
	dir := t.TempDir()
	mapping := filepath.Join(dir, "app.json")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(mapping, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/accounts"}}}}`)
	caddyfile := filepath.Join(dir, "Caddyfile")
	t.Setenv("SCIMGATE_TEST_TOKEN", strings.Repeat("t", 32))
	a := testnet.FreeAddrs(t, 2)
	admin := a[0]
	src := "{\n\tadmin " + admin + "\n\tpersist_config off\n\tauto_https off\n\tstorage file_system " + filepath.Join(dir, "caddy") + "\n}\n\n" +
		"http://" + a[1] + " {\n\tbind 127.0.0.1\n\tscim_gateway {\n\t\ttoken entra {env.SCIMGATE_TEST_TOKEN}\n\t\tdata_dir " + filepath.Join(dir, "data") +
		"\n\t\ttarget app {\n\t\t\turl http://127.0.0.1:1\n\t\t\tmapping " + mapping + "\n\t\t}\n\t}\n}\n"
	if err := os.WriteFile(caddyfile, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, _, err := caddycmd.LoadConfig(caddyfile, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	before := runningConfig(t, admin)
	write(`{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/people"}}}}`)
	var out bytes.Buffer
	if code := reload([]string{"--config", caddyfile}, &out); code != 0 {
		t.Fatalf("reload after an edit: exit %d: %s", code, out.String())
	}
	if after := runningConfig(t, admin); bytes.Equal(after, before) {
		t.Fatal("the running config is unchanged after the reload of an edited mapping")
	}

	write(`{"version": 1, "user": {}}`)
	out.Reset()
	if code := reload([]string{"-c", caddyfile}, &out); code != caddy.ExitCodeFailedStartup {
		t.Fatalf("reload of a broken mapping: exit %d, want %d: %s", code, caddy.ExitCodeFailedStartup, out.String())
	}
	want := `app.json: unknown field "user"`
	if got := out.String(); !strings.Contains(got, want) || strings.Contains(got, `\`) || !strings.HasPrefix(got, "scimgate reload: the config was refused; the running config stays: ") {
		t.Fatalf("reload printed %q, want the reason with %s, escaped once", got, want)
	}
}

// runningConfig is the config the admin endpoint at admin runs.
func runningConfig(t *testing.T, admin string) []byte {
	t.Helper()
	resp, err := adminRequest(admin, http.MethodGet, "/config/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}
