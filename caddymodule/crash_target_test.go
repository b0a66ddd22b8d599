package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/scimgate/scimgate/caddymodule/outboxadmin"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// crashTargetMapping maps users onto crashApp, with a lookup by login.
const crashTargetMapping = `{
  "version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/accounts?login={userName}", "id": "items.0.id"},
    "events": {
      "create": {"method": "POST", "path": "/accounts", "id": "id", "body": {"login": {"from": "userName"}}}
    }
  }
}`

// crashApp is a native app that can kill the gateway process in the middle of a create:
// the account exists in the app, but the gateway dies before it reads the answer, so the
// directory never commits.
type crashApp struct {
	mu        sync.Mutex
	accounts  map[string]int // login -> id
	killPID   int            // when set, the next create (or the call killOn names) kills this process first
	killOn    string         // the method that kills: "" for POST (a create), or "PATCH"
	suspended map[int]bool   // accounts suspended by PATCH {"enabled": false}
}

func (a *crashApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.Method {
	case http.MethodGet:
		login := r.URL.Query().Get("login")
		if id, ok := a.accounts[strings.ToLower(login)]; ok {
			fmt.Fprintf(w, `{"items":[{"id":%d,"login":%q}]}`, id, login)
			return
		}
		fmt.Fprint(w, `{"items":[]}`)
	case http.MethodPatch:
		var body struct{ Enabled *bool }
		_ = json.NewDecoder(r.Body).Decode(&body)
		var id int
		fmt.Sscanf(r.URL.Path, "/accounts/%d", &id)
		if a.killPID != 0 && a.killOn == http.MethodPatch {
			p, _ := os.FindProcess(a.killPID)
			_ = p.Kill() // SIGKILL between the flow's two calls: the second is not applied
			a.killPID = 0
			time.Sleep(100 * time.Millisecond)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if a.suspended == nil {
			a.suspended = map[int]bool{}
		}
		a.suspended[id] = body.Enabled != nil && !*body.Enabled
		fmt.Fprintf(w, `{"id":%d}`, id)
	case http.MethodPost:
		var body struct{ Login string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		if _, dup := a.accounts[strings.ToLower(body.Login)]; dup {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"error":{"message":"duplicate login"}}`)
			return
		}
		id := len(a.accounts) + 1
		a.accounts[strings.ToLower(body.Login)] = id
		if a.killPID != 0 && a.killOn == "" {
			p, _ := os.FindProcess(a.killPID)
			_ = p.Kill() // SIGKILL, after the account was created, before the answer
			a.killPID = 0
			time.Sleep(100 * time.Millisecond)
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%d}`, id)
	}
}

// crashTargetChild runs in the child process: a gateway with the target, on a loopback
// port it prints.
func crashTargetChild(spec string) int {
	var cfg struct{ Dir, URL, Mapping, Delivery string }
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: cfg.Dir,
		Target: &TargetConfig{Name: "app", URL: cfg.URL, Mapping: cfg.Mapping}}
	if cfg.Delivery != "" {
		g.Target.Delivery = cfg.Delivery
		g.Target.Queue = &QueueConfig{RetryMin: caddy.Duration(5 * time.Millisecond), RetryMax: caddy.Duration(50 * time.Millisecond)}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := g.Provision(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "provision:", err)
		return 2
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 2
	}
	fmt.Println(l.Addr().String())
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	admin := (outboxadmin.OutboxAdmin{}).Routes()[0].Handler // the outbox counts, for the parent to wait on
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == outboxadmin.Prefix {
			_ = admin.ServeHTTP(w, r)
			return
		}
		_ = g.ServeHTTP(w, r, next)
	}))
	return 0
}

// crashRig is a crashApp on loopback and a way to start gateway children in front of it
// with mapping, on one data directory, and to send them Entra's create of body.
type crashRig struct {
	app  *crashApp
	spec []byte
}

func newCrashRig(t *testing.T, mapping string) *crashRig {
	t.Helper()
	app := &crashApp{accounts: map[string]int{}}
	rig := newCrashRigServing(t, mapping, app, "")
	rig.app = app
	return rig
}

// newCrashRigServing is a crash rig whose app is app, with gateways whose target delivers
// in mode delivery ("" for immediate).
func newCrashRigServing(t *testing.T, mapping string, app http.Handler, delivery string) *crashRig {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: app}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	mapFile := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(mapping), 0o600); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(map[string]string{"Dir": t.TempDir(), "URL": "http://" + l.Addr().String(), "Mapping": mapFile, "Delivery": delivery})
	return &crashRig{spec: spec}
}

// start starts a gateway child and returns it with its address.
func (c *crashRig) start(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SCIMGATE_TARGET_CHILD="+string(c.spec))
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("child did not start: %v", err)
	}
	return cmd, strings.TrimSpace(line)
}

// post sends Entra's create of body to the child at addr.
func (c *crashRig) post(addr, body string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/scim/v2/Users", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/scim+json")
	return (&http.Client{Timeout: 5 * time.Second}).Do(req)
}

// TestTargetCrashBetweenCallAndCommit kills the gateway after the app created the account
// and before the directory committed it. After the restart the unfinished intent is
// reported, and Entra's retry of the create adopts the account instead of creating a
// second one.
func TestTargetCrashBetweenCallAndCommit(t *testing.T) {
	rig := newCrashRig(t, crashTargetMapping)
	app, spec := rig.app, rig.spec
	start := func() (*exec.Cmd, string) { return rig.start(t) }
	post := func(addr string) (*http.Response, error) { return rig.post(addr, `{"userName":"ada@contoso.example"}`) }

	cmd, addr := start()
	app.mu.Lock()
	app.killPID = cmd.Process.Pid
	app.mu.Unlock()
	if resp, err := post(addr); err == nil {
		resp.Body.Close()
		t.Fatalf("the gateway answered %d although it was killed mid-request", resp.StatusCode)
	}
	_ = cmd.Wait()

	cmd, addr = start() // restart: reconciliation runs at provisioning
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	resp, err := post(addr) // Entra's retry
	if err != nil {
		t.Fatal(err)
	}
	var created map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("retry answered %d %v", resp.StatusCode, created)
	}
	app.mu.Lock()
	n := len(app.accounts)
	app.mu.Unlock()
	if n != 1 {
		t.Fatalf("the app has %d accounts after the retry, want 1 (no duplicate)", n)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	var cfg struct{ Dir string }
	_ = json.Unmarshal(spec, &cfg)
	st, err := store.Open(filepath.Join(cfg.Dir, storeFileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_ = st.View(func(tx *store.Tx) error {
		native, err := tx.NativeID("app/User", created["id"].(string))
		if err != nil || native != "1" {
			t.Errorf("id map: %q %v, want the adopted account 1", native, err)
		}
		return nil
	})
}

// crashFlowMapping creates an account and, for a user that starts inactive, suspends it
// in a second call of the same flow.
const crashFlowMapping = `{
  "version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/accounts?login={userName}", "id": "items.0.id"},
    "events": {
      "create": [
        {"method": "POST", "path": "/accounts", "id": "id", "body": {"login": {"from": "userName"}}},
        {"method": "PATCH", "path": "/accounts/{id}", "when": {"equals": {"active": false}}, "body": {"enabled": "active"}}
      ]
    }
  }
}`

// TestTargetCrashInsideAFlow kills the gateway between the two calls of a create's flow:
// the account exists, the suspend never happened, the directory has nothing. After the
// restart, Entra's retry adopts the account and resumes the flow with the suspend: one
// account, suspended.
func TestTargetCrashInsideAFlow(t *testing.T) {
	rig := newCrashRig(t, crashFlowMapping)
	app := rig.app
	start := func() (*exec.Cmd, string) { return rig.start(t) }
	post := func(addr string) (*http.Response, error) {
		return rig.post(addr, `{"userName":"dormant@contoso.example","active":"False"}`)
	}

	cmd, addr := start()
	app.mu.Lock()
	app.killPID, app.killOn = cmd.Process.Pid, http.MethodPatch
	app.mu.Unlock()
	if resp, err := post(addr); err == nil {
		resp.Body.Close()
		t.Fatalf("the gateway answered %d although it was killed mid-flow", resp.StatusCode)
	}
	_ = cmd.Wait()

	cmd, addr = start()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	resp, err := post(addr) // Entra's retry
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("retry answered %d", resp.StatusCode)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if len(app.accounts) != 1 || !app.suspended[1] {
		t.Fatalf("accounts %v, suspended %v: want one account, suspended", app.accounts, app.suspended)
	}
}
