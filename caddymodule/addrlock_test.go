package caddymodule

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/scimgate/scimgate/internal/testnet"
)

// serveChild runs in a child process (SCIMGATE_SERVE_CHILD set): Caddy with the Caddyfile
// SCIMGATE_SERVE_CADDYFILE names, by default testdata/entra/Caddyfile (its SCIMGATE_IT_*
// variables set by the parent), until its stdin closes or it is killed. It prints
// "serving" once Caddy listens.
func serveChild() int {
	path := os.Getenv("SCIMGATE_SERVE_CADDYFILE")
	if path == "" {
		path = filepath.Join("testdata", "entra", "Caddyfile")
	}
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := caddy.Load(cfg, true); err != nil {
		fmt.Fprintln(os.Stderr, "starting Caddy:", err)
		return 2
	}
	fmt.Println("serving")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = caddy.Stop()
	return 0
}

// TestSecondProcessOnAddressFails: a gateway in another process serves an address (Caddy
// binds it with SO_REUSEPORT, which would let this process bind it too); starting a
// gateway on the same address here, with its own data directory, fails and says why.
// Once the other process is gone, the same config starts, and reloads in this process
// keep the address.
func TestSecondProcessOnAddressFails(t *testing.T) {
	addr := testnet.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SCIMGATE_SERVE_CHILD=1",
		"SCIMGATE_IT_ADDR="+addr, "SCIMGATE_IT_DATA="+t.TempDir(), "SCIMGATE_IT_STORAGE="+t.TempDir(),
		"SCIMGATE_IT_TOKEN="+testToken)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopChild := func() { _ = stdin.Close(); _ = cmd.Wait() }
	t.Cleanup(stopChild)
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || strings.TrimSpace(line) != "serving" {
		t.Fatalf("the child did not start: %q %v", line, err)
	}

	t.Setenv("SCIMGATE_IT_ADDR", addr)
	t.Setenv("SCIMGATE_IT_DATA", t.TempDir())
	t.Setenv("SCIMGATE_IT_STORAGE", t.TempDir())
	t.Setenv("SCIMGATE_IT_TOKEN", testToken)
	cfg := adaptCaddyfile(t, filepath.Join("testdata", "entra", "Caddyfile"))
	err = caddy.Load(cfg, true)
	if err == nil {
		_ = caddy.Stop()
		t.Fatal("a second gateway started on an address another process serves")
	}
	if !strings.Contains(err.Error(), "another scimgate process already serves "+addr+" (port ") {
		t.Fatalf("error = %v, want it to say another scimgate process serves %s", err, addr)
	}

	stopChild()
	s := &itServer{base: "http://" + addr + "/scim/v2", cfgJSON: cfg, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("starting once the other process is gone: %v", err)
	}
	t.Cleanup(func() { s.stop(t) })
	if err := caddy.Load(cfg, true); err != nil { // a reload in this process shares the lock
		t.Fatalf("reload: %v", err)
	}
	itWaitAnswered(t, s)
}

// TestSecondProcessOnWildcardPortFails: a gateway in another process serves a port on
// every address (:port, as Caddyfile.example binds by default); a gateway here on
// 127.0.0.1 of the same port is refused. Both bind with SO_REUSEPORT and the kernel gave
// connections to either: the locks were taken on the whole address (":port" and
// "127.0.0.1:port"), so both started, and a client's answers alternated between two
// directories.
func TestSecondProcessOnWildcardPortFails(t *testing.T) {
	addr := testnet.FreeAddr(t)
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	wildcard := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(wildcard, []byte(`{
	admin off
	persist_config off
	auto_https off
	storage file_system {$SCIMGATE_IT_STORAGE}
	log {
		output discard
	}
}
http://:{$SCIMGATE_IT_PORT} {
	scim_gateway {
		token entra {env.SCIMGATE_IT_TOKEN}
		data_dir {$SCIMGATE_IT_DATA}
	}
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SCIMGATE_SERVE_CHILD=1", "SCIMGATE_SERVE_CADDYFILE="+wildcard,
		"SCIMGATE_IT_PORT="+port, "SCIMGATE_IT_DATA="+t.TempDir(), "SCIMGATE_IT_STORAGE="+t.TempDir(),
		"SCIMGATE_IT_TOKEN="+testToken)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || strings.TrimSpace(line) != "serving" {
		t.Fatalf("the child did not start: %q %v", line, err)
	}

	t.Setenv("SCIMGATE_IT_ADDR", addr)
	t.Setenv("SCIMGATE_IT_DATA", t.TempDir())
	t.Setenv("SCIMGATE_IT_STORAGE", t.TempDir())
	t.Setenv("SCIMGATE_IT_TOKEN", testToken)
	err = caddy.Load(adaptCaddyfile(t, filepath.Join("testdata", "entra", "Caddyfile")), true)
	if err == nil {
		_ = caddy.Stop()
		t.Fatalf("a gateway started on %s while another process serves :%s", addr, port)
	}
	if !strings.Contains(err.Error(), "another scimgate process already serves "+addr+" (port "+port) {
		t.Fatalf("error = %v, want it to say another scimgate process serves port %s", err, port)
	}
}
