package policies

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
)

// prepareWithConfig compiles the shipped policies with a query that evaluates the decision
// and the load-time settings check under a configuration given in the input
// (input.config), so every case below runs on one compiled policy.
func prepareWithConfig(t testing.TB) rego.PreparedEvalQuery {
	t.Helper()
	return prepareQuery(t, `decision := data.scimgate.decision with input as input.request with data.scimgate.config as input.config
		errors := data.scimgate.settings_errors with input as {"packages": input.packages} with data.scimgate.config as input.config
		schemas := {name: s | s := data.scimgate.guardrails[name].settings_schema}`)
}

type settingsOutcome struct {
	Decision decision `json:"decision"`
	Errors   []struct {
		Path    []string `json:"path"`
		Message string   `json:"message"`
	} `json:"errors"`
	Schemas map[string]map[string]any `json:"schemas"`
}

// shippedPackages is the input the gateway gives the settings check: the loaded packages.
func shippedPackages() []any {
	packages := []any{"data.scimgate", "data.scimgate.lib.paths", "data.scimgate.lib.request", "data.scimgate.lib.settings"}
	for _, name := range []string{"attribute_allowlist", "break_glass", "mass_deprovision", "privileged_groups", "required_attributes", "scoping"} {
		packages = append(packages, "data.scimgate.guardrails."+name)
	}
	return packages
}

func evalSettings(t *testing.T, pq rego.PreparedEvalQuery, config any, request map[string]any) settingsOutcome {
	t.Helper()
	return evalSettingsWithPackages(t, pq, config, shippedPackages(), request)
}

func evalSettingsWithPackages(t *testing.T, pq rego.PreparedEvalQuery, config any, packages []any, request map[string]any) settingsOutcome {
	t.Helper()
	rs, err := pq.Eval(context.Background(), rego.EvalInput(map[string]any{"config": config, "request": request, "packages": packages}))
	if err != nil {
		t.Fatalf("evaluating: %v", err)
	}
	if len(rs) != 1 {
		t.Fatalf("undefined: %v", rs)
	}
	b, err := json.Marshal(rs[0].Bindings)
	if err != nil {
		t.Fatal(err)
	}
	var out settingsOutcome
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return out
}

// Requests each guardrail guards: a malformed setting must refuse them.
var (
	reqUserCreate = userInput("create", []string{"create"}, "", nil, user("ada@contoso.example", true))
	reqUserDeact  = userInput("patch", []string{"deactivate"}, "", user("ada@contoso.example", true), user("ada@contoso.example", false))
	reqGroupAdd   = map[string]any{
		"action": "patch", "resource_type": "Group", "events": []any{"add_members"}, "target": "demo", "native_id": "9",
		"previous": map[string]any{"displayName": "Sales"}, "resource": map[string]any{"displayName": "Sales"},
		"members": map[string]any{"add": []any{map[string]any{"id": "u1", "type": "User", "display": "ada@contoso.example"}}, "remove": []any{}},
	}
	reqGroupCreate = map[string]any{"action": "create", "resource_type": "Group", "events": []any{"create"}, "target": "demo", "resource": map[string]any{"displayName": "Sales"}}
)

// malformedCase is one wrong value for one key of a shipped guardrail's settings.
type malformedCase struct {
	guardrail, key string
	value          any
	request        map[string]any
	message        string // part of the load-time message
}

// malformedCases covers every key of every shipped guardrail's settings_schema (checked
// by TestMalformedSettingsCoverEverySchemaKey), "enabled" and a misspelt key for each.
func malformedCases() []malformedCase {
	cases := []malformedCase{
		{"required_attributes", "User", "userName", reqUserCreate, `must be a list of strings, got string "userName"`},
		{"required_attributes", "Group", []any{"displayName", 3}, reqGroupCreate, `must be a list of strings, got array`},
		{"privileged_groups", "names", "Domain Admins", reqGroupCreate, `must be a list of strings, got string "Domain Admins"`},
		{"privileged_groups", "patterns", "(?i)^tier0-", reqGroupCreate, `must be a list of regular expressions (strings), got string`},
		{"privileged_groups", "patterns", []any{"[a-"}, reqGroupAdd, `holds "[a-", which is not a valid RE2 regular expression`},
		{"privileged_groups", "effect", "Skip", reqGroupCreate, `must be one of "deny", "skip", got string "Skip"`},
		{"break_glass", "user_names", "bg@x", reqUserDeact, `must be a list of strings, got string "bg@x"`},
		{"break_glass", "patterns", []any{"(unclosed"}, reqUserDeact, `which is not a valid RE2 regular expression`},
		{"break_glass", "external_ids", "e-1", reqUserDeact, `must be a list of strings, got string "e-1"`},
		{"mass_deprovision", "max_per_hour", "1", reqUserDeact, `must be a whole number, 0 or more, got string "1"`},
		{"mass_deprovision", "max_per_hour", -1, reqUserDeact, `must be a whole number, 0 or more, got number -1`},
		{"mass_deprovision", "max_per_hour", 2.5, reqUserDeact, `must be a whole number, 0 or more, got number 2.5`},
		{"mass_deprovision", "max_deactivate_per_hour", nil, reqUserDeact, `must be a whole number, 0 or more, got null null`},
		{"mass_deprovision", "max_delete_per_hour", true, reqUserDeact, `must be a whole number, 0 or more, got boolean true`},
		{"scoping", "domains", "contoso.example", reqUserCreate, `must be a list of strings, got string "contoso.example"`},
		{"scoping", "domains", "contoso.example", reqGroupAdd, `must be a list of strings`},
		{"scoping", "departments", map[string]any{"Engineering": true}, reqUserCreate, `must be a list of strings, got object`},
		{"scoping", "on_exit", "disable", reqUserDeact, `must be one of "deactivate", "ignore", got string "disable"`},
		{"attribute_allowlist", "User", "userName", reqUserCreate, `must be a list of strings, got string "userName"`},
		{"attribute_allowlist", "Group", []any{nil}, reqGroupCreate, `must be a list of strings, got array [null]`},
	}
	misspelt := map[string]string{
		"required_attributes": "Users", "privileged_groups": "name", "break_glass": "usernames",
		"mass_deprovision": "max_per_huor", "scoping": "domain", "attribute_allowlist": "user",
	}
	guarded := map[string]map[string]any{
		"required_attributes": reqUserCreate, "privileged_groups": reqGroupCreate, "break_glass": reqUserDeact,
		"mass_deprovision": reqUserDeact, "scoping": reqUserCreate, "attribute_allowlist": reqUserCreate,
	}
	for _, g := range slices.Sorted(func(yield func(string) bool) {
		for g := range misspelt {
			if !yield(g) {
				return
			}
		}
	}) {
		cases = append(cases,
			malformedCase{g, "enabled", "yes", guarded[g], `must be true or false, got string "yes"`},
			malformedCase{g, misspelt[g], []any{"x"}, guarded[g], "is not a setting of this guardrail (known: "},
		)
	}
	return cases
}

// TestMalformedSettingNeverOff: a wrong type or an unknown key in any shipped guardrail's
// settings, in the defaults or a target's section, (1) is reported by the load-time check
// with its full path, and (2) if it reaches a decision anyway, refuses the request the
// guardrail guards with a reason naming the key — never treated as the guardrail "off".
func TestMalformedSettingNeverOff(t *testing.T) {
	pq := prepareWithConfig(t)
	for _, c := range malformedCases() {
		for _, where := range []string{"defaults", "targets.demo"} {
			t.Run(fmt.Sprintf("%s.%s=%v in %s", c.guardrail, c.key, c.value, where), func(t *testing.T) {
				section := map[string]any{c.key: c.value}
				config := map[string]any{"defaults": map[string]any{c.guardrail: section}}
				if where != "defaults" {
					config = map[string]any{"targets": map[string]any{"demo": map[string]any{c.guardrail: section}}}
				}
				out := evalSettings(t, pq, config, c.request)
				key := "scimgate.config." + where + "." + c.guardrail + "." + c.key
				var found bool
				for _, e := range out.Errors {
					if strings.Join(e.Path, ".") == key && strings.Contains(e.Message, c.message) {
						found = true
					}
				}
				if !found || len(out.Errors) != 1 {
					t.Errorf("settings_errors = %+v, want exactly %s %s", out.Errors, key, c.message)
				}
				d := out.Decision
				named := slices.ContainsFunc(d.Reasons, func(r string) bool {
					return strings.Contains(r, "settings for target \"demo\" are malformed ("+key+" ") && strings.HasSuffix(r, "refused until scimgate.config is fixed.")
				})
				if d.Allow || !named {
					t.Errorf("decision = %+v, want a denial naming %s", d, key)
				}
			})
		}
	}
}

// TestMalformedSettingsCoverEverySchemaKey: the cases above name every key every shipped
// guardrail declares, so a new setting cannot go untested.
func TestMalformedSettingsCoverEverySchemaKey(t *testing.T) {
	out := evalSettings(t, prepareWithConfig(t), map[string]any{}, reqUserCreate)
	if len(out.Schemas) != 6 {
		t.Errorf("schemas of %d guardrails, want the 6 shipped: %v", len(out.Schemas), out.Schemas)
	}
	tested := map[string]bool{}
	for _, c := range malformedCases() {
		tested[c.guardrail+"."+c.key] = true
	}
	for g, schema := range out.Schemas {
		for key := range schema {
			if !tested[g+"."+key] {
				t.Errorf("%s.%s has no malformed-setting case", g, key)
			}
		}
		if !tested[g+".enabled"] {
			t.Errorf("%s.enabled has no malformed-setting case", g)
		}
	}
}

// TestShippedSettingsAreWellFormed: the shipped configuration, and every example in
// policies/README.md, pass the settings check.
func TestShippedSettingsAreWellFormed(t *testing.T) {
	pq := prepareWithConfig(t)
	_, data := loadShipped(t, ".")
	shipped := data["scimgate"].(map[string]any)["config"]
	if out := evalSettings(t, pq, shipped, reqUserCreate); len(out.Errors) > 0 {
		t.Errorf("the shipped data.json: %+v", out.Errors)
	}
	readme := map[string]any{"defaults": map[string]any{
		"required_attributes": map[string]any{"User": []any{"userName", "name.givenName", "emails.value"}, "Group": []any{"displayName"}},
		"privileged_groups":   map[string]any{"names": []any{"Domain Admins"}, "patterns": []any{"(?i)^(tier0|priv)-"}, "effect": "skip"},
		"break_glass":         map[string]any{"user_names": []any{"emergency-admin@contoso.example"}, "patterns": []any{"(?i)^break-?glass"}, "external_ids": []any{}},
		"mass_deprovision":    map[string]any{"max_per_hour": 500, "max_deactivate_per_hour": 400, "max_delete_per_hour": 0},
		"scoping":             map[string]any{"domains": []any{"contoso.example"}, "departments": []any{"Engineering"}, "on_exit": "ignore", "enabled": true},
		"attribute_allowlist": map[string]any{"User": []any{"userName"}, "Group": []any{"displayName", "members"}, "enabled": false},
		"my_own_guardrail":    map[string]any{"anything": "goes"},
	}}
	out := evalSettingsWithPackages(t, pq, readme, append(shippedPackages(), "data.scimgate.guardrails.my_own_guardrail"), reqUserCreate)
	if len(out.Errors) > 0 {
		t.Errorf("the README's settings: %+v", out.Errors)
	}
}

// TestMalformedConfigShape: the parts of scimgate.config every guardrail reads through
// (defaults, targets, a target, a section) are checked at load too: a non-object there, a
// misspelt part or a section naming no loaded guardrail is reported. A decision that meets
// a guardrail's section that is not an object refuses the guarded requests; the parts
// around the sections are checked at load only (per decision it would cost every write).
func TestMalformedConfigShape(t *testing.T) {
	pq := prepareWithConfig(t)
	tests := []struct {
		name    string
		config  string
		path    string
		message string
		denies  bool // the decision for a user deactivation is refused (a guardrail's own section)
	}{
		{"misspelt part", `{"default": {"break_glass": {"user_names": ["bg@x"]}}}`, "scimgate.config.default", "is not a part of scimgate.config (known: defaults, targets)", false},
		{"defaults not an object", `{"defaults": ["break_glass"]}`, "scimgate.config.defaults", `must be an object, got array ["break_glass"]`, false},
		{"targets not an object", `{"targets": "demo"}`, "scimgate.config.targets", `must be an object, got string "demo"`, false},
		{"target not an object", `{"targets": {"demo": []}}`, "scimgate.config.targets.demo", "must be an object of guardrail settings, got array []", false},
		{"section not an object", `{"defaults": {"break_glass": ["bg@x"]}}`, "scimgate.config.defaults.break_glass", `must be an object, got array ["bg@x"]`, true},
		{"target section not an object", `{"targets": {"demo": {"mass_deprovision": 5}}}`, "scimgate.config.targets.demo.mass_deprovision", "must be an object, got number 5", true},
		{"unknown guardrail", `{"defaults": {"break_glas": {"user_names": ["bg@x"]}}}`, "scimgate.config.defaults.break_glas", "configures no loaded guardrail: no package scimgate.guardrails.break_glas (loaded: attribute_allowlist, break_glass, mass_deprovision, privileged_groups, required_attributes, scoping)", false},
		{"unknown guardrail in a target", `{"targets": {"demo": {"scope": {}}}}`, "scimgate.config.targets.demo.scope", "configures no loaded guardrail", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var config any
			if err := json.Unmarshal([]byte(tt.config), &config); err != nil {
				t.Fatal(err)
			}
			out := evalSettings(t, pq, config, reqUserDeact)
			if len(out.Errors) != 1 || strings.Join(out.Errors[0].Path, ".") != tt.path || !strings.Contains(out.Errors[0].Message, tt.message) {
				t.Errorf("settings_errors = %+v, want %s %s", out.Errors, tt.path, tt.message)
			}
			if tt.denies && (out.Decision.Allow || !strings.Contains(strings.Join(out.Decision.Reasons, " "), tt.path+" ")) {
				t.Errorf("decision = %+v, want a denial naming %s", out.Decision, tt.path)
			}
		})
	}
}

// TestWellFormedSettingsStillDecide: the checks change nothing for well-formed settings:
// "enabled": false still switches a guardrail off whatever else its section holds
// (the load-time check reports such keys; the decision does not refuse), and a guardrail
// of one's own keeps a free-form section.
func TestWellFormedSettingsStillDecide(t *testing.T) {
	pq := prepareWithConfig(t)
	off := map[string]any{"defaults": map[string]any{"mass_deprovision": map[string]any{"enabled": false, "max_per_hour": "1"}}}
	out := evalSettings(t, pq, off, reqUserDeact)
	if !out.Decision.Allow {
		t.Errorf("a switched-off guardrail refused: %+v", out.Decision)
	}
	if len(out.Errors) != 1 || out.Errors[0].Path[len(out.Errors[0].Path)-1] != "max_per_hour" {
		t.Errorf("settings_errors = %+v, want max_per_hour reported", out.Errors)
	}
	brake := map[string]any{"defaults": map[string]any{"mass_deprovision": map[string]any{"max_per_hour": 100}}}
	if out := evalSettings(t, pq, brake, reqUserDeact); !out.Decision.Allow || len(out.Errors) > 0 {
		t.Errorf("below the brake: %+v", out)
	}
	brake = map[string]any{"defaults": map[string]any{"mass_deprovision": map[string]any{"max_per_hour": 20}}}
	if out := evalSettings(t, pq, brake, reqUserDeact); out.Decision.Allow || !strings.Contains(strings.Join(out.Decision.Reasons, " "), "mass-deprovision brake: 20 deactivations and deletions") {
		t.Errorf("at the limit of 20 with 10+10 in the last hour: %+v, want the brake", out.Decision)
	}
}
