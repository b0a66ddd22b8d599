package policy

import (
	"context"
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
