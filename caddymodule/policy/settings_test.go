package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/policytest"
)

// TestLoadRefusesMalformedSettings: every key of every shipped guardrail's settings, given
// a wrong type (or misspelt), fails the load with the data file and the key, whether the
// file is the mounted data.json or a DataFiles entry. (policies/settings_test.go checks the
// same keys against the decision.)
func TestLoadRefusesMalformedSettings(t *testing.T) {
	tests := []struct{ guardrail, key, value, want string }{
		{"required_attributes", "User", `"userName"`, `must be a list of strings, got string "userName"`},
		{"required_attributes", "Group", `[1]`, `must be a list of strings, got array [1]`},
		{"required_attributes", "Users", `["userName"]`, `is not a setting of this guardrail (known: Group, User, enabled)`},
		{"privileged_groups", "names", `"Domain Admins"`, `must be a list of strings`},
		{"privileged_groups", "patterns", `["[a-"]`, `holds "[a-", which is not a valid RE2 regular expression`},
		{"privileged_groups", "effect", `"Skip"`, `must be one of "deny", "skip", got string "Skip"`},
		{"break_glass", "user_names", `"bg@x"`, `must be a list of strings, got string "bg@x"`},
		{"break_glass", "patterns", `"(?i)^break"`, `must be a list of regular expressions (strings)`},
		{"break_glass", "external_ids", `{"a": 1}`, `must be a list of strings, got object {"a":1}`},
		{"mass_deprovision", "max_per_hour", `"1"`, `must be a whole number, 0 or more, got string "1"`},
		{"mass_deprovision", "max_deactivate_per_hour", `-5`, `must be a whole number, 0 or more, got number -5`},
		{"mass_deprovision", "max_delete_per_hour", `1.5`, `must be a whole number, 0 or more, got number 1.5`},
		{"scoping", "domains", `"contoso.example"`, `must be a list of strings, got string "contoso.example"`},
		{"scoping", "departments", `null`, `must be a list of strings, got null null`},
		{"scoping", "on_exit", `"delete"`, `must be one of "deactivate", "ignore", got string "delete"`},
		{"scoping", "enabled", `"true"`, `must be true or false, got string "true"`},
		{"attribute_allowlist", "User", `"userName"`, `must be a list of strings`},
		{"attribute_allowlist", "Group", `[["displayName"]]`, `must be a list of strings`},
	}
	for _, tt := range tests {
		t.Run(tt.guardrail+"."+tt.key, func(t *testing.T) {
			config := `{"defaults": {"` + tt.guardrail + `": {"` + tt.key + `": ` + tt.value + `}}}`
			dir := policytest.CopyShipped(t, config)
			_, err := Load(Options{Dir: dir})
			file := filepath.Join(dir, "scimgate", "config", "data.json")
			want := file + ": scimgate.config.defaults." + tt.guardrail + "." + tt.key + " " + tt.want
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load: %v\nwant an error with %q", err, want)
			}

			// The same settings in an extra data file, for one target.
			dir = policytest.CopyShipped(t, `{"defaults": {}}`)
			extra := filepath.Join(t.TempDir(), "targets.json")
			writeFile(t, extra, `{"scimgate": {"config": {"targets": {"hr": {"`+tt.guardrail+`": {"`+tt.key+`": `+tt.value+`}}}}}}`)
			_, err = Load(Options{Dir: dir, DataFiles: []string{extra}})
			want = extra + ": scimgate.config.targets.hr." + tt.guardrail + "." + tt.key + " " + tt.want
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load with DataFiles: %v\nwant an error with %q", err, want)
			}
		})
	}
	if n := cacheLen(); n != 0 {
		t.Errorf("failed loads left %d cache entries", n)
	}
}

// TestLoadReportsEverySettingsError: one load lists every problem, sorted, each with its
// file; a section for a guardrail that is not loaded is one of them.
func TestLoadReportsEverySettingsError(t *testing.T) {
	dir := policytest.CopyShipped(t, `{"defaults": {"break_glass": {"user_names": "bg@x"}, "breakglass": {}},
		"targets": {"demo": {"mass_deprovision": {"max_per_hour": "1"}}}, "default": {}}`)
	_, err := Load(Options{Dir: dir})
	file := filepath.Join(dir, "scimgate", "config", "data.json")
	want := "4 policy setting error(s); fix them in the data file named, or remove the key:\n" +
		"  " + file + `: scimgate.config.default is not a part of scimgate.config (known: defaults, targets)` + "\n" +
		"  " + file + `: scimgate.config.defaults.break_glass.user_names must be a list of strings, got string "bg@x"` + "\n" +
		"  " + file + `: scimgate.config.defaults.breakglass configures no loaded guardrail: no package scimgate.guardrails.breakglass (loaded: attribute_allowlist, break_glass, mass_deprovision, privileged_groups, required_attributes, scoping); fix the name, or remove the section` + "\n" +
		"  " + file + `: scimgate.config.targets.demo.mass_deprovision.max_per_hour must be a whole number, 0 or more, got string "1"`
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("Load: %v\nwant it to end with:\n%s", err, want)
	}
}

// TestSettingsCheckLeavesOtherPoliciesAlone: the shipped configuration loads; a policy
// without a settings check, or a guardrail of one's own with a free-form section, loads
// whatever its data holds.
func TestSettingsCheckLeavesOtherPoliciesAlone(t *testing.T) {
	e := load(t, Options{Dir: policytest.Dir(t)})
	if d, err := e.Decide(context.Background(), &Input{Action: "create", ResourceType: "User", Events: []string{"create"}, Resource: map[string]any{"userName": "ada@contoso.example"}}); err != nil || !d.Allow {
		t.Fatalf("shipped policies: %+v, %v", d, err)
	}
	// testdata/ok has data but no settings_errors rule.
	load(t, Options{Dir: "testdata/ok"})

	dir := policytest.CopyShipped(t, `{"defaults": {"mine": {"anything": "goes", "limit": "7"}}}`)
	writeFile(t, filepath.Join(dir, "scimgate", "guardrails", "mine.rego"), "package scimgate.guardrails.mine\n\nverdict := {\"notes\": [\"mine\"]} if input.resource_type == \"User\"\n")
	load(t, Options{Dir: dir})
}

// TestGatewayDataSaysSettingsChecked: data.scimgate_gateway.settings_checked is true only
// when the policy's settings check ran at load and found nothing.
func TestGatewayDataSaysSettingsChecked(t *testing.T) {
	decision := "package scimgate\n\ndecision := {\"allow\": data.scimgate_gateway.settings_checked}\n"
	for _, tt := range []struct {
		name, check string
		want        bool
	}{
		{"with a check", "package scimgate\n\nsettings_errors contains {\"path\": [\"x\"], \"message\": \"m\"} if input.packages == []\n", true},
		{"without a check", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "decision.rego"), decision)
			if tt.check != "" {
				writeFile(t, filepath.Join(dir, "check.rego"), tt.check)
			}
			d, err := load(t, Options{Dir: dir}).Decide(context.Background(), &Input{})
			if err != nil || d.Allow != tt.want {
				t.Fatalf("settings_checked = %v (%v), want %v", d.Allow, err, tt.want)
			}
		})
	}
}

// TestGatewayDataIsReserved: neither a data file nor a package may define what the gateway
// adds (a data file setting settings_checked would switch the guardrails' own checks off).
func TestGatewayDataIsReserved(t *testing.T) {
	dir := policytest.CopyShipped(t, `{"defaults": {}}`)
	extra := filepath.Join(t.TempDir(), "sneaky.json")
	writeFile(t, extra, `{"scimgate_gateway": {"settings_checked": true}}`)
	_, err := Load(Options{Dir: dir, DataFiles: []string{extra}})
	if err == nil || !strings.Contains(err.Error(), extra+" sets data.scimgate_gateway, which the gateway reserves") {
		t.Errorf("data file: %v", err)
	}
	dir = policytest.CopyShipped(t, `{"defaults": {}}`)
	writeFile(t, filepath.Join(dir, "mine.rego"), "package scimgate_gateway\n\nsettings_checked := true\n")
	_, err = Load(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "package scimgate_gateway is reserved for the gateway") {
		t.Errorf("package: %v", err)
	}
}

// TestGuardrailsCheckSettingsWhenLoadDidNot: shipped guardrails loaded without the load-time
// check (settings_errors.rego left out) still refuse what a malformed setting guards,
// never reading it as "off".
func TestGuardrailsCheckSettingsWhenLoadDidNot(t *testing.T) {
	dir := policytest.CopyShipped(t, `{"defaults": {"break_glass": {"user_names": "bg@x"}}}`)
	if err := os.Remove(filepath.Join(dir, "scimgate", "settings_errors.rego")); err != nil {
		t.Fatal(err)
	}
	e := load(t, Options{Dir: dir})
	user := map[string]any{"userName": "bg@x", "active": false}
	d, err := e.Decide(context.Background(), &Input{Action: "patch", ResourceType: "User", Events: []string{"deactivate"},
		Target: "demo", NativeID: "1", Resource: user, Previous: user})
	if err != nil || d.Allow || len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], "break_glass settings for target \"demo\" are malformed") {
		t.Fatalf("Decide = %+v, %v; want a refusal naming the malformed setting", d, err)
	}
}

// TestCheckTargets: settings under scimgate.config.targets for a target the gateway does
// not have (a misspelt name) would never apply, so that target would keep the defaults
// without its stricter guardrails. CheckTargets, run per gateway with its targets, refuses
// them naming the data file, the unknown target and the gateway's targets; the compiled
// policy stays shared, so two gateways with different targets check the same one.
func TestCheckTargets(t *testing.T) {
	dir := policytest.CopyShipped(t, `{"defaults": {}, "targets": {"hr": {}, "erp": {"mass_deprovision": {"max_per_hour": 5}}}}`)
	e := load(t, Options{Dir: dir})
	other := load(t, Options{Dir: dir})
	if other.Hash() != e.Hash() || cacheRefs(e.Hash()) != 2 {
		t.Fatalf("the two engines do not share the compiled policy")
	}
	if err := e.CheckTargets([]string{"erp", "hr"}); err != nil {
		t.Fatalf("the gateways' own targets: %v", err)
	}
	err := other.CheckTargets([]string{"erp", "crm"})
	file := filepath.Join(dir, "scimgate", "config", "data.json")
	want := file + ": scimgate.config.targets.hr names no target of this config's gateways (targets: crm, erp); its settings would never apply: use the target's name, or remove the section"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("CheckTargets: %v\nwant an error with %q", err, want)
	}
	// The check is not part of the compiled (cached) policy: the first gateway's passes again.
	if err := e.CheckTargets([]string{"hr", "erp"}); err != nil {
		t.Fatalf("after another gateway's check: %v", err)
	}
	// A policy without the settings check has nothing to say.
	plain := load(t, Options{Dir: "testdata/trivial"})
	if err := plain.CheckTargets([]string{"x"}); err != nil {
		t.Fatalf("a policy without settings_errors: %v", err)
	}
}
