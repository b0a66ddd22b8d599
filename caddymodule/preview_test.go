package caddymodule

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/internal/testnet"
)

// runPreview runs `scimgate preview args...` in-process, built the way Caddy builds it
// from the registered command. (internal/journaltest.Run does this for the journal
// command, but it imports this package.)
func runPreview(t *testing.T, args ...string) (out string, err error) {
	t.Helper()
	reg, ok := caddycmd.Commands()["preview"]
	if !ok || reg.CobraFunc == nil {
		t.Fatal("the preview command is not registered")
	}
	cmd := &cobra.Command{Use: "preview", SilenceUsage: true, SilenceErrors: true}
	reg.CobraFunc(cmd)
	var stdout strings.Builder
	cmd.SetArgs(args)
	cmd.SetOut(&stdout)
	cmd.SetErr(io.Discard)
	err = cmd.Execute()
	return stdout.String(), err
}

// previewConfig scopes the demo target to domains, with the brake at limit per hour.
func previewConfig(domains, limit string) string {
	return `{"defaults": {"mass_deprovision": {"max_per_hour": ` + limit + `}},
		"targets": {"demo": {"scoping": {"domains": ` + domains + `, "on_exit": "deactivate"}}}}`
}

const (
	wideDomains   = `["contoso.example", "fabrikam.example"]`
	narrowDomains = `["contoso.example"]`
)

// withAdmin is cfg with Caddy's admin endpoint on addr (the policy rig runs without one).
func withAdmin(t *testing.T, cfg []byte, addr string) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	doc["admin"] = map[string]any{"listen": addr}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPreviewAndReloadBrake: against a running gateway in front of the demo app,
// `scimgate preview` of a policy that narrows scope lists exactly the users with app
// accounts who leave it (table and JSON), read through the admin endpoint while the
// gateway runs; a reload to that policy is refused, with the number, when it takes more
// accounts out than the new policy's brake allows in an hour, passes at the limit, and
// passes past it with force_reload.
func TestPreviewAndReloadBrake(t *testing.T) {
	dir := copyShippedPolicies(t, previewConfig(wideDomains, "2"))
	r := startPolicyRig(t, dir)
	admin := testnet.FreeAddr(t)
	r.cfgJSON = withAdmin(t, r.cfgJSON, admin)
	if err := caddy.Load(r.cfgJSON, true); err != nil {
		t.Fatalf("enabling the admin endpoint: %v", err)
	}
	r.client.CloseIdleConnections()
	itWaitAnswered(t, r.itServer)
	ids := map[string]string{}
	for _, name := range []string{"ada@contoso.example", "bob@fabrikam.example", "cy@contoso.example", "dee@fabrikam.example", "eve@fabrikam.example"} {
		ids[name], _ = r.create(t, "/Users", policyUser(name, ""))
		if r.account(t, name) == nil {
			t.Fatalf("%s has no account in the demo app", name)
		}
	}
	leaving := []string{ids["bob@fabrikam.example"], ids["dee@fabrikam.example"], ids["eve@fabrikam.example"]}
	slices.Sort(leaving)
	narrow := copyShippedPolicies(t, previewConfig(narrowDomains, "2"))

	out, err := runPreview(t, "--admin", admin, "--policy", narrow, "--json")
	if err != nil {
		t.Fatalf("preview --json: %v", err)
	}
	var im provision.Impact
	if err := json.Unmarshal([]byte(out), &im); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got []string
	for _, e := range im.Entries {
		if e.Effect != provision.EffectLeavesScope || e.NativeID == "" {
			t.Errorf("unexpected entry %+v", e)
		}
		got = append(got, e.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, leaving) || im.Users != 5 || im.Deprovisions != 3 || im.Target != "demo" {
		t.Errorf("preview: users %d, deprovisions %d, leaving %v; want 5, 3, %v", im.Users, im.Deprovisions, got, leaving)
	}

	out, err = runPreview(t, "--admin", admin, "--policy", narrow)
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	for _, want := range []string{"5 users and 0 groups previewed", "accounts deactivated or leaving scope: 3", "leaves_scope      3",
		"leaves_scope  User  bob@fabrikam.example", `domain "fabrikam.example" is not in scoping.domains`} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ada@contoso.example") {
		t.Errorf("the table lists a user who stays in scope:\n%s", out)
	}

	// A mapping that locks accounts through another path: every user's deactivation
	// differs, nothing else.
	current, err := os.ReadFile(filepath.Join("..", "mappings", "demoapp.json"))
	if err != nil {
		t.Fatal(err)
	}
	proposedMapping := filepath.Join(t.TempDir(), "demoapp-v2.json")
	changed := strings.Replace(string(current), `"/api/v1/accounts/{id}/lock"`, `"/api/v1/accounts/{id}/disable"`, 1)
	if err := os.WriteFile(proposedMapping, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runPreview(t, "--admin", admin, "--mapping", proposedMapping, "--json")
	if err != nil {
		t.Fatalf("preview --mapping: %v", err)
	}
	var mi provision.MappingImpact
	if err := json.Unmarshal([]byte(out), &mi); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !maps.Equal(mi.Counts, map[string]int{"deactivate: path": 5}) || mi.Differing != 5 || mi.Users != 5 {
		t.Errorf("mapping preview: %+v", mi)
	}
	if s := mi.Samples["deactivate: path"]; len(s.New) != 1 || !strings.HasSuffix(s.New[0].Path, "/disable") || !strings.HasSuffix(s.Current[0].Path, "/lock") {
		t.Errorf("mapping sample: %+v", s)
	}
	out, err = runPreview(t, "--admin", admin, "--mapping", proposedMapping)
	if err != nil || !strings.Contains(out, "5 resources would get different calls") || !strings.Contains(out, "deactivate: path  5") || !strings.Contains(out, "/disable") {
		t.Errorf("mapping table (%v):\n%s", err, out)
	}

	// Bad requests get a clear error, and change nothing.
	broken := copyShippedPolicies(t, `{"defaults": {"break_glass": {"user_names": "bg@x"}}}`)
	for _, tt := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{http.MethodGet, PreviewPath, "", http.StatusMethodNotAllowed, "POST a JSON body"},
		{http.MethodPost, PreviewPath, `{"dir": `, http.StatusBadRequest, "reading the preview request"},
		{http.MethodPost, PreviewPath, `{"directory": "x"}`, http.StatusBadRequest, `unknown field \"directory\"`},
		{http.MethodPost, PreviewPath, `{"journal": "nope", "dir": "x"}`, http.StatusNotFound, `no gateway with the journal \"nope\" (running: `},
		{http.MethodPost, PreviewPath, `{"dir": "` + t.TempDir() + `"}`, http.StatusUnprocessableEntity, "no policies in"},
		{http.MethodPost, PreviewPath, `{"dir": "` + broken + `"}`, http.StatusUnprocessableEntity, "scimgate.config.defaults.break_glass.user_names must be a list of strings"},
		{http.MethodPost, PreviewMappingPath, `{}`, http.StatusUnprocessableEntity, "give the proposed mapping file"},
		{http.MethodPost, PreviewMappingPath, `{"mapping": "/nonexistent.json"}`, http.StatusUnprocessableEntity, "reading the mapping"},
	} {
		req, _ := http.NewRequest(tt.method, "http://"+admin+tt.path, strings.NewReader(tt.body))
		req.Header.Set("Origin", "http://"+admin)
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s %s %s: %d %s, want %d with %q", tt.method, tt.path, tt.body, resp.StatusCode, body, tt.status, tt.want)
		}
	}

	// The reload to the narrowed policy: 3 accounts out, the brake allows 2 an hour.
	writePolicyConfig(t, dir, previewConfig(narrowDomains, "2"))
	err = caddy.Load(r.cfgJSON, true)
	if err == nil || !strings.Contains(err.Error(), `refusing the reload: the new policy would deactivate or take out of scope 3 account(s) of target "demo" (0 deactivated, 3 leaving scope)`) ||
		!strings.Contains(err.Error(), "mass-deprovision brake: 2 deactivations and deletions") || !strings.Contains(err.Error(), "force_reload") {
		t.Fatalf("reload past the brake: %v", err)
	}
	// The policy in force did not change: fabrikam users are still provisioned.
	r.client.CloseIdleConnections()
	itWaitAnswered(t, r.itServer)
	r.create(t, "/Users", policyUser("fay@fabrikam.example", ""))
	if r.account(t, "fay@fabrikam.example") == nil {
		t.Fatal("after a refused reload, the old policy should still provision fabrikam users")
	}

	// At the limit (4 accounts now leave; the brake allows 4) the reload passes.
	writePolicyConfig(t, dir, previewConfig(narrowDomains, "4"))
	if err := caddy.Load(r.cfgJSON, true); err != nil {
		t.Fatalf("reload at the brake's limit: %v", err)
	}
	// Back to the wide scope (nobody leaves), then narrowed past the brake with force_reload.
	writePolicyConfig(t, dir, previewConfig(wideDomains, "1"))
	if err := caddy.Load(r.cfgJSON, true); err != nil {
		t.Fatalf("reload widening the scope: %v", err)
	}
	writePolicyConfig(t, dir, previewConfig(narrowDomains, "1"))
	forced := []byte(strings.Replace(string(r.cfgJSON), `"policy":{`, `"policy":{"force_reload":true,`, 1))
	if string(forced) == string(r.cfgJSON) {
		t.Fatal("no policy block in the config")
	}
	if err := caddy.Load(forced, true); err != nil {
		t.Fatalf("forced reload: %v", err)
	}
}

// TestReloadBrakeFromNoPolicy: the reload that brings the first policy (guardrails
// switched on in a gateway that ran without them) is checked like any other: the config in
// force lets every change through, so a first policy that would take more accounts out of
// scope than its brake allows in an hour is refused, with the number, and the gateway
// keeps running without a policy; at the limit it passes.
func TestReloadBrakeFromNoPolicy(t *testing.T) {
	dir := copyShippedPolicies(t, previewConfig(narrowDomains, "2"))
	r := startPolicyRig(t, dir)
	noPolicy := withoutPolicy(t, r.cfgJSON)
	if err := caddy.Load(tagConfig(t, noPolicy, "no-policy"), true); err != nil {
		t.Fatal(err)
	}
	itWaitConfig(t, r.itServer, "no-policy")
	for _, name := range []string{"ada@contoso.example", "bob@fabrikam.example", "dee@fabrikam.example", "eve@fabrikam.example"} {
		r.create(t, "/Users", policyUser(name, ""))
		if r.account(t, name) == nil {
			t.Fatalf("%s has no account in the demo app", name)
		}
	}
	err := caddy.Load(r.cfgJSON, true)
	if err == nil || !strings.Contains(err.Error(), `refusing the reload: the new policy would deactivate or take out of scope 3 account(s) of target "demo" (0 deactivated, 3 leaving scope)`) {
		t.Fatalf("the first policy, past the brake: %v", err)
	}
	// Still without a policy: fabrikam users are provisioned.
	r.client.CloseIdleConnections()
	itWaitAnswered(t, r.itServer)
	r.create(t, "/Users", policyUser("fay@fabrikam.example", ""))
	if r.account(t, "fay@fabrikam.example") == nil {
		t.Fatal("after a refused reload, the gateway should still run without a policy")
	}
	writePolicyConfig(t, dir, previewConfig(narrowDomains, "4"))
	if err := caddy.Load(r.cfgJSON, true); err != nil {
		t.Fatalf("the first policy, at the brake's limit: %v", err)
	}
}
