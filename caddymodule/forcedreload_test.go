package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestForcedReloadIsWarned: a reload with force_reload skips the mass-deprovision check,
// so nothing else would show that a policy went in without it; the gateway warns, naming
// the policy and its hash. A reload that changes no policy is not warned about.
func TestForcedReloadIsWarned(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	gateway := func(config string, force bool) *Handler {
		dir := copyShippedPolicies(t, config)
		return newTestGateway(t, func(g *Handler) {
			g.Policy = &PolicyConfig{Dir: dir, ForceReload: force}
			g.Target = &TargetConfig{Name: "demo", URL: app.URL, Mapping: filepath.Join("..", "mappings", "demoapp.json")}
		})
	}
	previous := gateway(previewConfig(wideDomains, "1"), false)
	forced := gateway(previewConfig(narrowDomains, "1"), true)
	core, logs := observer.New(zapcore.InfoLevel)
	forced.logger = zap.New(core)
	if err := forced.checkReloadBrake(previous); err != nil {
		t.Fatalf("a forced reload: %v", err)
	}
	all := logs.All()
	if len(all) != 1 || all[0].Level != zapcore.WarnLevel || !strings.Contains(all[0].Message, "force_reload") ||
		all[0].ContextMap()["policy_hash"] != forced.policy.Hash() {
		t.Fatalf("logs = %v, want one warning naming force_reload and the policy's hash", all)
	}
	// The same policy again: nothing to check, nothing to warn about.
	if err := forced.checkReloadBrake(forced); err != nil || logs.Len() != 1 {
		t.Fatalf("a reload of the same policy: %v, %d log lines", err, logs.Len())
	}
}
