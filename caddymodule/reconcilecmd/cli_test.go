package reconcilecmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	_ "github.com/caddyserver/caddy/v2/modules/filestorage" // the Caddyfile's storage

	_ "github.com/scimgate/scimgate/caddymodule"
	"github.com/scimgate/scimgate/caddymodule/reconcile"
	"github.com/scimgate/scimgate/demoapp"
	"github.com/scimgate/scimgate/internal/testnet"
)

const (
	token   = "reconcile-cli-test-token-0123456789abcdef"
	demoKey = "reconcile-cli-demo-key-0123456789"
)

// gateway is a Caddy running the gateway with the demo app as its target, each on a
// loopback port, and its admin endpoint on a third.
type gateway struct {
	admin, scim, app string
}

// start runs the gateway; reconcileBlock is the target's reconcile block ("" for none).
func start(t *testing.T, reconcileBlock string) *gateway {
	t.Helper()
	mapFile, err := filepath.Abs(filepath.Join("..", "..", "mappings", "demoapp.json"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := startWith(t, mapFile, reconcileBlock)
	if err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	return g
}

// startWith runs the gateway with the mapping file mapFile.
func startWith(t *testing.T, mapFile, reconcileBlock string) (*gateway, error) {
	t.Helper()
	a := testnet.FreeAddrs(t, 3)
	g := &gateway{admin: a[0]}
	addr, app := a[1], a[2]
	g.scim, g.app = "http://"+addr+"/scim/v2", "http://"+app
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	caddyfile := fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https off
	storage file_system %s
	log {
		output discard
	}
}
http://%s {
	bind 127.0.0.1
	scim_gateway {
		token entra %s
		data_dir %s
		target demo {
			url http://%s
			mapping %s
			header X-Api-Key %s
			%s
		}
	}
}
http://%s {
	bind 127.0.0.1
	scimgate_demo_app {
		api_key %s
		name %s
	}
}
`, g.admin, t.TempDir(), addr, token, t.TempDir(), app, mapFile, demoKey, reconcileBlock, app, demoKey, name)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}}}`), true); err != nil {
			t.Errorf("stopping the admin endpoint: %v", err)
		}
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
	return g, nil
}

// do makes one request and fails the test unless it answers want.
func do(t *testing.T, method, url, header, value, body string, want int) []byte {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(header, value)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s (want %d)", method, url, resp.StatusCode, out, want)
	}
	return out
}

// createUser provisions a user through the gateway's SCIM endpoint, as Entra would.
func (g *gateway) createUser(t *testing.T, name string) {
	t.Helper()
	body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":%q,"active":true,"title":"Engineer",
		"emails":[{"type":"work","value":%q,"primary":true}]}`, name, name)
	do(t, "POST", g.scim+"/Users", "Authorization", "Bearer "+token, body, 201)
}

func (g *gateway) appState(t *testing.T) demoapp.Snapshot {
	t.Helper()
	s, err := demoapp.FetchState(http.DefaultClient, g.app, demoKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs `reconcile args...` in-process, as Caddy's CLI would.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	reg, ok := caddycmd.Commands()["reconcile"]
	if !ok || reg.CobraFunc == nil {
		t.Fatal("the reconcile command is not registered")
	}
	cmd := &cobra.Command{Use: "reconcile", SilenceUsage: true, SilenceErrors: true}
	reg.CobraFunc(cmd)
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// TestReconcileCommand: against a running gateway, `reconcile` reports an account made
// in the app by hand and a title changed there; `reconcile --fix` with orphans disable
// locks the orphan and restores the title, journaled; the reports are listed and shown
// again by id in every format.
func TestReconcileCommand(t *testing.T) {
	g := start(t, "reconcile {\n\t\t\t\torphans disable\n\t\t\t\tkeep 5\n\t\t\t}")
	for i := range 5 {
		g.createUser(t, fmt.Sprintf("user%d@example.com", i))
	}
	do(t, "POST", g.app+"/api/v1/accounts", "X-Api-Key", demoKey, `{"login":"intruder@example.com"}`, 201)
	var drifted int64
	for _, a := range g.appState(t).Accounts {
		if a.Login == "user3@example.com" {
			drifted = a.ID
		}
	}
	do(t, "PATCH", fmt.Sprintf("%s/api/v1/accounts/%d", g.app, drifted), "X-Api-Key", demoKey, `{"org":{"title":"Owner"}}`, 200)

	out, err := run(t, "--admin", g.admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"orphaned 1, missing 0, not disabled 0, drifted 1", "intruder@example.com", `org.title app="Owner" expected="Engineer"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}

	out, err = run(t, "--admin", g.admin, "--fix", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep reconcile.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Counts.Fixed != 2 || rep.Counts.FixFailed != 0 || rep.By != "cli" {
		t.Fatalf("fix: %+v", rep.Counts)
	}
	for _, a := range g.appState(t).Accounts {
		switch {
		case a.Login == "intruder@example.com" && !a.Locked:
			t.Error("the orphan was not locked")
		case a.Login == "user3@example.com" && a.Org.Title != "Engineer":
			t.Errorf("the title is %q after the fix", a.Org.Title)
		}
	}
	journal := string(do(t, "GET", "http://"+g.admin+"/scimgate/journals/scimgate/export?format=jsonl", "X-Test", "1", "", 200))
	if n := strings.Count(journal, `"action":"repair"`); n != 4 { // an intent and an outcome each
		t.Errorf("%d repair records in the journal, want 4", n)
	}

	// --output writes the report (personal data) readable by its owner only: it was
	// created with the umask's mode (0644 under the usual 022).
	outFile := filepath.Join(t.TempDir(), "report.csv")
	if _, err := run(t, "show", fmt.Sprint(rep.ID), "--admin", g.admin, "--format", "csv", "--output", outFile); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(outFile); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Errorf("--output file: %v %v, want a non-empty file with mode 0600", fi.Mode(), err)
	}

	out, err = run(t, "reports", "--admin", g.admin)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(strings.TrimSpace(out), "\n"); lines != 2 {
		t.Errorf("reports lists %d reports, want 2:\n%s", lines, out)
	}
	out, err = run(t, "show", fmt.Sprint(rep.ID), "--admin", g.admin, "--format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "report,run,target,kind") || !strings.Contains(out, ",applied\n") {
		t.Errorf("show --format csv:\n%s", out)
	}
	if _, err := run(t, "show", "999", "--admin", g.admin); err == nil || !strings.Contains(err.Error(), "no such report") {
		t.Errorf("show of an unknown report: %v", err)
	}
	if _, err := run(t, "--admin", g.admin, "--target", "nope"); err == nil || !strings.Contains(err.Error(), `no target "nope"`) {
		t.Errorf("an unknown target: %v", err)
	}
	if _, err := run(t, "--admin", g.admin, "--format", "xml"); err == nil {
		t.Error("an unknown format was accepted")
	}
	out, err = run(t, "--admin", g.admin)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "orphaned 1, missing 0, not disabled 0, drifted 0, members missing 0, members extra 0") || !strings.Contains(out, "disabled in the app") {
		t.Errorf("after the fix:\n%s", out)
	}
}

// TestReconcileSchedule: a target with `reconcile { every 1h }` is reconciled when the
// config starts (no report is younger than an hour), by "schedule".
func TestReconcileSchedule(t *testing.T) {
	g := start(t, "reconcile {\n\t\t\t\tevery 1h\n\t\t\t}")
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + g.admin + "/scimgate/reconcile/demo/reports")
		if err != nil {
			t.Fatal(err)
		}
		var sums []reconcile.Summary
		err = json.NewDecoder(resp.Body).Decode(&sums)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(sums) > 0 {
			if sums[0].By != "schedule" || !sums[0].Complete {
				t.Fatalf("the scheduled report: %+v", sums[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no scheduled reconcile within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReconcileCaddyfileErrors: bad reconcile options fail the adapt with the option named.
func TestReconcileCaddyfileErrors(t *testing.T) {
	for block, want := range map[string]string{
		"reconcile {\n every 10s\n}":       "every: want a duration of at least 1m0s",
		"reconcile {\n orphans delete\n}":  "orphans: want report or disable",
		"reconcile {\n keep 0\n}":          "keep: want a positive integer",
		"reconcile {\n fix\n fix\n}":       "fix is set twice",
		"reconcile {\n every\n}":           "every needs a value",
		"reconcile {\n sometimes\n}":       `unrecognized reconcile option "sometimes"`,
		"reconcile {\n sometimes maybe\n}": `unrecognized reconcile option "sometimes"`,
	} {
		cf := "http://127.0.0.1:1 {\n scim_gateway {\n token entra " + token + "\n target demo {\n url http://127.0.0.1:2\n mapping m.json\n " + block + "\n }\n }\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", block, err, want)
		}
	}
}

// TestReconcileNeedsAListCall: a target configured for reconciles whose mapping has no
// list call fails the load, naming what is missing.
func TestReconcileNeedsAListCall(t *testing.T) {
	mapFile := filepath.Join(t.TempDir(), "nolist.json")
	if err := os.WriteFile(mapFile, []byte(`{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/api/v1/accounts", "id": "id", "body": {"login": "userName"}}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := startWith(t, mapFile, "reconcile {\n\t\t\t\tevery 1h\n\t\t\t}")
	if err == nil || !strings.Contains(err.Error(), "target demo: reconcile: the mapping has no list call") {
		t.Fatalf("loading: %v", err)
	}
}

// TestReconcileAdminRoutes: the admin routes answer wrong methods, ids, formats and
// parameters with the error that names them, and a stored report in each format.
func TestReconcileAdminRoutes(t *testing.T) {
	g := start(t, "")
	g.createUser(t, "one@example.com")
	base := "http://" + g.admin + "/scimgate/reconcile"
	var rep reconcile.Report
	if err := json.Unmarshal(do(t, "POST", base+"/demo/run", "X-Test", "1", "", 200), &rep); err != nil || rep.Counts.AppUsers != 1 {
		t.Fatalf("run: %v %+v", err, rep.Counts)
	}
	id := fmt.Sprint(rep.ID)
	for _, tc := range []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "", 200, `"target":"demo"`},
		{"POST", "/demo/reports", 405, "method POST not allowed; use GET"},
		{"GET", "/demo/run", 405, "method GET not allowed; use POST"},
		{"POST", "/demo/run?fix=maybe", 400, `fix: \"maybe\" is not true or false`},
		{"GET", "/demo/reports/abc", 400, `report id \"abc\" is not a number`},
		{"GET", "/demo/reports/" + id + "?format=xml", 400, `format: \"xml\" is not json, csv or table`},
		{"GET", "/demo/reports/999", 404, "no such report"},
		{"GET", "/demo/nothing", 404, "no such route"},
		{"GET", "/other/reports", 404, `no target \"other\" can be reconciled`},
		{"GET", "/demo/reports/" + id + "?format=table", 200, "reconcile report " + id + " of demo"},
		{"GET", "/demo/reports/" + id + "?format=csv", 200, "report,run,target,kind"},
		{"POST", "/demo/reports/" + id + "/fix", 200, `"fix":true`},
	} {
		body := string(do(t, tc.method, base+tc.path, "X-Test", "1", "", tc.status))
		if !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %s, want %q", tc.method, tc.path, body, tc.want)
		}
	}
}
