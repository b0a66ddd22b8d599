package main

// Integration tests: a real Caddy with the scim_gateway module and its admin endpoint,
// started in this process from testdata/Caddyfile on loopback ports, driven by run.
// Caddy's configuration is process-global: these tests must not call t.Parallel.

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/scimgate/scimgate/caddymodule"
	"github.com/scimgate/scimgate/internal/testnet"
)

const itToken = "writetail-test-token-0123456789abcdef0123456789"

// startGateway runs Caddy with the gateway and returns the SCIM root and the admin address.
func startGateway(t *testing.T) (root, admin string) {
	t.Helper()
	a := testnet.FreeAddrs(t, 2)
	addr, admin := a[0], a[1]
	t.Setenv("WRITETAIL_IT_ADDR", addr)
	t.Setenv("WRITETAIL_IT_ADMIN", admin)
	t.Setenv("WRITETAIL_IT_DATA", t.TempDir())
	t.Setenv("WRITETAIL_IT_STORAGE", t.TempDir())
	t.Setenv("WRITETAIL_IT_TOKEN", itToken)
	src, err := os.ReadFile(filepath.Join("testdata", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
	return "http://" + addr + "/scim/v2", admin
}

// countUsers returns totalResults of a userName "sw" filter on the gateway.
func countUsers(t *testing.T, root, prefix string) int {
	t.Helper()
	q := url.Values{"filter": {`userName sw "` + prefix + `"`}, "count": {"0"}}
	req, _ := http.NewRequest(http.MethodGet, root+"/Users?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+itToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lr struct {
		TotalResults int `json:"totalResults"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("listing users: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		t.Fatal(err)
	}
	return lr.TotalResults
}

// TestRunSeedsMeasuresAndProfiles seeds, measures and captures the profiles from a real
// gateway, and checks that every create made a user.
func TestRunSeedsMeasuresAndProfiles(t *testing.T) {
	root, admin := startGateway(t)
	t.Setenv("SCIM_TOKEN", itToken)
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	code := run([]string{"-url", root, "-prefix", "it1", "-seed", "20", "-requests", "30", "-concurrency", "4",
		"-admin", admin, "-profile-dir", dir, "-trace", "1s"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errOut)
	}
	for _, want := range []string{"seed     n=20 ", "measured n=30 ", "p99=", "max="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, &out)
		}
	}
	for _, f := range []string{"trace.out", "block.pb.gz", "mutex.pb.gz"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Size() == 0 {
			t.Errorf("profile %s missing or empty: %v", f, err)
		}
	}
	// The trace (1 s from before the first create) holds creates, each in its request
	// region and each waiting on a commit, and the report splits their time.
	m := regexp.MustCompile(`trace: (\d+) requests that committed`).FindStringSubmatch(out.String())
	if m == nil || m[1] == "0" || !strings.Contains(out.String(), "group commit: busy") {
		t.Errorf("no report of where the creates waited, or one without them:\n%s", &out)
	}
	if n := countUsers(t, root, "it1-"); n != 50 {
		t.Errorf("gateway holds %d users named it1-*, want 50", n)
	}
}

// TestRunReportsRefusedCreates: creates the gateway refuses (here a wrong token) make the
// exit status 1 and print a sample of the answer.
func TestRunReportsRefusedCreates(t *testing.T) {
	root, _ := startGateway(t)
	t.Setenv("SCIM_TOKEN", "not-the-token-0123456789abcdef0123456789abcdef")
	var out, errOut bytes.Buffer
	code := run([]string{"-url", root, "-requests", "3", "-concurrency", "2"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, &out)
	}
	if !strings.Contains(out.String(), "failed=3") && !strings.Contains(out.String(), "3 failed") {
		t.Errorf("output does not count the 3 failures:\n%s", &out)
	}
	if !strings.Contains(out.String(), "status 401") {
		t.Errorf("output lacks the refusal's status:\n%s", &out)
	}
}

// TestRunKeepsConnections: the client reads every answer to its end, so its connections
// are kept from one create to the next, as Entra's are, whatever the answer's size (one
// that was closed unread closed its connection: the server then paid a new connection and
// a new goroutine per request, and the measurement with them).
func TestRunKeepsConnections(t *testing.T) {
	var conns atomic.Int64
	answer := `{"id":"x","userName":"` + strings.Repeat("a", 2000) + `"}`
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/scim+json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, answer)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	t.Setenv("SCIM_TOKEN", itToken)
	var out, errOut bytes.Buffer
	if code := run([]string{"-url", srv.URL + "/scim/v2", "-requests", "200", "-concurrency", "4"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, &out, &errOut)
	}
	if n := conns.Load(); n > 8 {
		t.Errorf("200 creates at concurrency 4 opened %d connections; a client that keeps them opens about 4", n)
	}
}

func TestParseRefusesUnboundedRuns(t *testing.T) {
	t.Setenv("SCIM_TOKEN", itToken)
	for _, args := range [][]string{
		{"-seed", "200001"},
		{"-requests", "0"},
		{"-requests", "1000001"},
		{"-concurrency", "0"},
		{"-seed-concurrency", "257"},
		{"-trace", "2m"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	t.Setenv("SCIM_TOKEN", "")
	var out, errOut bytes.Buffer
	if code := run(nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "SCIM_TOKEN") {
		t.Errorf("no token: exit %d, stderr %q; want 2 naming SCIM_TOKEN", code, &errOut)
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.50, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := pct(lat, c.q); got != c.want {
			t.Errorf("pct(1..100ms, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := pct([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("pct of one sample = %v, want 7", got)
	}
}
