package demoapp

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/scimgate/scimgate/internal/testnet"
)

// TestRealCaddy runs the app in a real Caddy from testdata/Caddyfile, over the network,
// and checks that a reload keeps the data and applies new limits.
func TestRealCaddy(t *testing.T) {
	addr := testnet.FreeAddr(t)
	t.Setenv("DEMOAPP_IT_ADDR", addr)
	t.Setenv("DEMOAPP_IT_STORAGE", t.TempDir())
	t.Setenv("DEMOAPP_IT_KEY", "it-key-secret")
	t.Setenv("DEMOAPP_IT_MAX_ACCOUNTS", "2")
	base := "http://" + addr

	cfg := adaptTestCaddyfile(t)
	if strings.Contains(string(cfg), "it-key-secret") {
		t.Fatal("the adapted config holds the key; {env.*} must be resolved at provisioning")
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})

	call := func(method, path, body, key string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	expect := func(method, path, body, key string, want int, contains string) {
		t.Helper()
		got, b := call(method, path, body, key)
		if got != want || !strings.Contains(b, contains) {
			t.Errorf("%s %s: %d %s; want %d containing %q", method, path, got, b, want, contains)
		}
	}
	const key = "it-key-secret"
	expect("GET", "/api/v1/accounts", "", "", 401, `"code":"UNAUTHORIZED"`)
	expect("GET", "/elsewhere", "", "", 404, "not the demo app")
	expect("POST", "/api/v1/accounts", `{"login":"ada@contoso.example"}`, key, 201, `"id":1`)
	expect("POST", "/api/v1/accounts", `{"login":"grace@contoso.example"}`, key, 201, `"id":2`)
	expect("POST", "/api/v1/accounts", `{"login":"third@contoso.example"}`, key, 507, `"code":"LIMIT_REACHED"`)
	expect("POST", "/api/v1/teams", `{"name":"Engineering"}`, key, 201, `"id":1`)
	expect("PUT", "/api/v1/teams/1/members/2", "", key, 204, "")

	// A reload with a higher limit keeps the data (same name) and applies the limit.
	t.Setenv("DEMOAPP_IT_MAX_ACCOUNTS", "3")
	if err := caddy.Load(adaptTestCaddyfile(t), true); err != nil {
		t.Fatalf("reloading Caddy: %v", err)
	}
	// A keep-alive connection to the old server is closed by its shutdown, and a new one
	// the old server accepted while it stopped is closed unanswered: start afresh, and wait
	// until the new server answers.
	client.CloseIdleConnections()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get(base + "/api/v1/accounts")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reloaded server does not answer: %v", err)
		}
	}
	expect("GET", "/api/v1/accounts?login=ADA@contoso.example", "", key, 200, `"login":"ada@contoso.example"`)
	expect("GET", "/api/v1/teams/1/members", "", key, 200, `"account_id":2`)
	expect("POST", "/api/v1/accounts", `{"login":"third@contoso.example"}`, key, 201, `"id":3`)
	expect("GET", "/api/v1/_state", "", key, 200, `"memberships":[{"team_id":1,"account_id":2}]`)
}

func adaptTestCaddyfile(t *testing.T) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v", err)
	}
	for _, w := range warnings {
		t.Logf("Caddyfile warning: %s", w.String())
	}
	return cfg
}
