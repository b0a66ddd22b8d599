package caddymodule

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/internal/testnet"
)

// postCaddyfile POSTs the Caddyfile at path to the admin endpoint's /load, as a `caddy
// reload` without --force does (Caddy adapts it and compares the JSON with the running
// config), and returns the status and the error Caddy answered, decoded ("" without one).
func postCaddyfile(t *testing.T, admin, path string) (int, string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+admin+"/load", bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("admin answered %d with %q", resp.StatusCode, body)
	}
	return resp.StatusCode, e.Error
}

// TestReloadNoticesEditedFiles: through Caddy's admin API, a reload of the same Caddyfile
// after an edit of the policy's data file applies it (no --force: the adapted config
// carries the files' digest); a broken policy file fails the reload with an error naming
// it, escaped once, and the policy in force stays.
func TestReloadNoticesEditedFiles(t *testing.T) {
	admin := testnet.FreeAddr(t)
	t.Setenv("SCIMGATE_IT_ADMIN", admin)
	// What is tested is the reload, not the decision's speed (the race detector and a
	// busy machine make the first decisions slow): see TestPolicyReload.
	t.Setenv("SCIMGATE_IT_POLICY_TIMEOUT", "10s")
	dir := copyShippedPolicies(t, guardrailConfig)
	r := startPolicyRig(t, dir)
	caddyfile := filepath.Join("testdata", "policy", "Caddyfile")
	noEmail := func(n string) string {
		return `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"` + n + `@contoso.example"}`
	}
	resp := r.do(t, http.MethodPost, "/Users", noEmail("before"))
	resp.expect(t, http.StatusForbidden)

	writePolicyConfig(t, dir, strings.Replace(guardrailConfig, `"User": ["userName", "emails"]`, `"User": ["userName"]`, 1))
	if status, msg := postCaddyfile(t, admin, caddyfile); status != http.StatusOK {
		t.Fatalf("reload after the edit: %d %s", status, msg)
	}
	// After /load answers, the old config's server may still accept a connection for a
	// moment (see tagConfig) and answer it with the old policy's 403, or close it
	// unanswered; such a create writes nothing, so it is sent again until the new policy
	// answers. The reload is what is tested: it must apply within the deadline.
	createdAfterReload(t, r.itServer, noEmail("after-edit"))

	broken := filepath.Join(dir, "scimgate", "broken.rego")
	if err := os.WriteFile(broken, []byte("package scimgate\n\ndecision := {\"allow\": true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	status, msg := postCaddyfile(t, admin, caddyfile)
	if status == http.StatusOK || !strings.Contains(msg, "broken.rego") {
		t.Fatalf("reload with a broken policy: %d %q, want an error naming broken.rego", status, msg)
	}
	if strings.Contains(msg, `\`) {
		t.Errorf("the reload error is escaped more than once: %s", msg)
	}
	r.client.CloseIdleConnections()
	r.do(t, http.MethodPost, "/Users", noEmail("after-broken")).expect(t, http.StatusCreated)
}
