package caddymodule

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestReloadRefusesMalformedPolicySettings: a reload whose guardrail settings have a wrong
// type fails, naming the data file and the key, and the running policy stays in force
// (its break-glass guardrail still refuses a deletion).
func TestReloadRefusesMalformedPolicySettings(t *testing.T) {
	dir := copyShippedPolicies(t, guardrailConfig)
	r := startPolicyRig(t, dir)

	writePolicyConfig(t, dir, strings.Replace(guardrailConfig, `"max_per_hour": 3`, `"max_per_hour": "3"`, 1))
	err := caddy.Load(r.cfgJSON, true)
	want := filepath.Join(dir, "scimgate", "config", "data.json") + `: scimgate.config.defaults.mass_deprovision.max_per_hour must be a whole number, 0 or more, got string "3"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("reload: %v\nwant an error with %q", err, want)
	}
	writePolicyConfig(t, dir, strings.Replace(guardrailConfig, `"break_glass": {"patterns": ["(?i)^break-?glass"]}`, `"break_glass": {"patterns": "(?i)^break-?glass"}`, 1))
	err = caddy.Load(r.cfgJSON, true)
	if err == nil || !strings.Contains(err.Error(), "scimgate.config.defaults.break_glass.patterns must be a list of regular expressions (strings)") {
		t.Fatalf("reload: %v, want an error naming break_glass.patterns", err)
	}

	r.client.CloseIdleConnections()
	id, _ := r.create(t, "/Users", policyUser("breakglass-1@contoso.example", ""))
	r.do(t, http.MethodDelete, "/Users/"+id, "").expect(t, http.StatusForbidden)
}
