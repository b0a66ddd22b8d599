package policy

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadRefusesADecisionThatIsNeverAnObject: a decision the type checker proves can
// never be an object (a string, a set, a function...) fails the load, naming the rule and
// the type, instead of loading a policy that denies every request; a decision that may
// be an object for some input loads (what it is for others is checked per decision).
func TestLoadRefusesADecisionThatIsNeverAnObject(t *testing.T) {
	for _, tt := range []struct{ name, rego, want string }{
		{"string", `decision := "yes"`, "data.scimgate.decision is always a string"},
		{"set", `decision contains "allow" if true`, "data.scimgate.decision is always a set"},
		{"array", `decision := [{"allow": true}]`, "data.scimgate.decision is always an array"},
		{"boolean", `default decision := true`, "data.scimgate.decision is always a boolean"},
		{"function", `decision(x) := {"allow": x}`, "data.scimgate.decision is a function"},
		{"string or number", `default decision := "no"
decision := 1 if input.action == "create"`, "data.scimgate.decision is always a number or a string"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "decision.rego"), "package scimgate\n\n"+tt.rego+"\n")
			e, err := Load(Options{Dir: dir})
			if err == nil {
				_ = e.Close()
				t.Fatal("Load succeeded; want an error")
			}
			for _, w := range []string{tt.want, filepath.Join(dir, "decision.rego") + ":3", `must be an object such as {"allow": true}`} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	for _, tt := range []struct{ name, rego string }{
		{"object", `decision := {"allow": true}`},
		{"object or string", `default decision := {"allow": false}
decision := "oops" if input.action == "create"`},
		{"from input", `decision := input.decision`},
	} {
		t.Run("loads "+tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "decision.rego"), "package scimgate\n\n"+tt.rego+"\n")
			e := load(t, Options{Dir: dir})
			_, _ = e.Decide(context.Background(), &Input{Action: "patch"})
		})
	}
}

// TestLoadRefusesADecisionOfTheWrongShape: a decision object the type checker knows is
// malformed (an unknown key, a key of the wrong type, no allow) fails the load, naming
// the file and row of the rule, the key and what it should be, instead of loading a
// policy that denies every request it reaches; an object whose keys or types the checker
// cannot know (built at run time, a partial object) still loads.
func TestLoadRefusesADecisionOfTheWrongShape(t *testing.T) {
	for _, tt := range []struct {
		name, rego, want string
		row              int
	}{
		{"misspelt key", `decision := {"alow": true}`, `data.scimgate.decision has unknown key "alow"; decision keys are allow, skip, reasons, drop_attributes, drop_members, deactivate`, 3},
		{"allow as a string", `decision := {"allow": "true"}`, `data.scimgate.decision.allow is a string; it must be a boolean`, 3},
		{"reasons of numbers", `decision := {"allow": false, "reasons": [1]}`, `data.scimgate.decision.reasons holds a number; it must be a list of strings`, 3},
		{"deactivate as a number", `decision := {"allow": true, "deactivate": 1}`, `data.scimgate.decision.deactivate is a number; it must be a boolean`, 3},
		{"no allow", `decision := {"skip": true}`, `data.scimgate.decision has no "allow" key (its keys: [skip])`, 3},
		{"the second rule", `default decision := {"allow": false}

decision := {"allow": true, "drop_attribute": ["x"]} if input.action == "create"`, `has unknown key "drop_attribute"`, 5},
		{"through a variable", `decision := d if {
	d := {"alow": true}
}`, `has unknown key "alow"`, 3},
		{"a partial object", `decision["alow"] := true`, `has unknown key "alow"`, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "decision.rego"), "package scimgate\n\n"+tt.rego+"\n")
			e, err := Load(Options{Dir: dir})
			if err == nil {
				_ = e.Close()
				t.Fatal("Load succeeded; want an error")
			}
			for _, w := range []string{tt.want, fmt.Sprintf("%s:%d:", filepath.Join(dir, "decision.rego"), tt.row), "data.scimgate.decision"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	for _, tt := range []struct{ name, rego string }{
		{"every key", `decision := {"allow": true, "skip": false, "reasons": ["r"], "drop_attributes": {"a"}, "drop_members": [], "deactivate": false}`},
		{"reasons as a set from input", `decision := {"allow": true, "reasons": {r | some r in input.changed}}`},
		{"built at run time", `decision := object.union({"allow": true}, {k: true | some k in input.changed})`},
		{"a comprehension", `decision := {k: true | some k in ["allow"]}`},
		{"a partial object", `decision["allow"] := true`},
		{"from input", `decision := {"allow": input.x}`},
	} {
		t.Run("loads "+tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "decision.rego"), "package scimgate\n\n"+tt.rego+"\n")
			e := load(t, Options{Dir: dir})
			_, _ = e.Decide(context.Background(), &Input{Action: "patch"})
		})
	}
}
