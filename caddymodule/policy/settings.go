package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// SettingsErrorsRule is the rule, next to the decision (data.scimgate.settings_errors for
// data.scimgate.decision), that a policy may define to check its own data once at load:
// a set of {"path": [keys from the data root], "message": "..."}. Any entry fails the load
// (and so a reload, which keeps the previous configuration), naming the data file that set
// the path and the key. Its input is {"packages": [every loaded package, "data.x.y"]}.
// The shipped policies use it for the guardrails' settings (policies/README.md); a policy
// without it is not checked, so custom data stays free-form.
const SettingsErrorsRule = "settings_errors"

// GatewayData is the data document the gateway adds beside the policy's own data, which
// no data file or package may define: {"settings_checked": true} when the settings check
// ran at load and found nothing. The shipped guardrails then skip re-checking their own
// section per decision (data.scimgate.lib.settings.malformed): the load has already
// refused any malformed setting, and data cannot change without a new load. Without it
// (opa eval, the policies' own tests, a policy without the check) they check every time.
const GatewayData = "scimgate_gateway"

// maxSettingsErrors bounds how many problems one load error lists.
const maxSettingsErrors = 20

// checkSettings evaluates the settings check beside query, when the policy defines one;
// checked reports that it ran and found nothing.
func checkSettings(c *ast.Compiler, store storage.Store, query ast.Ref, data *dataDoc) (checked bool, err error) {
	ref := settingsRef(query)
	if len(c.GetRules(ref)) == 0 {
		return false, nil
	}
	problems, err := evalSettings(c, store, ref, map[string]any{"packages": loadedPackages(c)})
	if err != nil {
		return false, err
	}
	if len(problems) == 0 {
		return true, nil
	}
	return false, settingsError(problems, data)
}

// CheckTargets runs the policy's settings check again with the names of the gateway's
// targets as input.targets, so that settings for a target the gateway does not have (a
// misspelt name, which would leave the real target on the defaults, without its stricter
// guardrails) fail its load, naming the data file and the key. Each gateway runs it with
// its own targets, outside the compiled policy: gateways of different targets share one.
// A policy without the check (SettingsErrorsRule) passes.
func (e *Engine) CheckTargets(targets []string) error {
	query, err := parseQuery(e.query)
	if err != nil {
		return err
	}
	c := e.policy
	ref := settingsRef(query)
	if len(c.comp.GetRules(ref)) == 0 {
		return nil
	}
	names := make([]any, len(targets))
	for i, t := range targets {
		names[i] = t
	}
	problems, err := evalSettings(c.comp, c.store, ref, map[string]any{"packages": loadedPackages(c.comp), "targets": names})
	if err != nil {
		return err
	}
	if len(problems) == 0 {
		return nil
	}
	return settingsError(problems, c.data)
}

// settingsRef is the settings check next to query.
func settingsRef(query ast.Ref) ast.Ref {
	return append(query[:len(query)-1:len(query)-1], ast.StringTerm(SettingsErrorsRule))
}

// evalSettings evaluates the settings check ref with input and returns what it reports.
func evalSettings(c *ast.Compiler, store storage.Store, ref ast.Ref, input map[string]any) ([]settingsProblem, error) {
	pq, err := prepare(c, store, ref)
	if err != nil {
		return nil, fmt.Errorf("preparing the settings check %s: %w", ref, err)
	}
	rs, err := pq.Eval(context.Background(), rego.EvalInput(input))
	if err != nil {
		return nil, fmt.Errorf("checking the policy settings (%s): %w", ref, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil // undefined: nothing to report
	}
	return decodeSettingsErrors(ref, rs[0].Expressions[0].Value)
}

// withGatewayData is data with the GatewayData document added.
func withGatewayData(data ast.Object, settingsChecked bool) ast.Object {
	out := data.Copy()
	out.Insert(ast.StringTerm(GatewayData), ast.ObjectTerm([2]*ast.Term{ast.StringTerm("settings_checked"), ast.BooleanTerm(settingsChecked)}))
	return out
}

// checkGatewayDataFree refuses data files and packages that would define GatewayData.
func checkGatewayDataFree(data *dataDoc, modules map[string]*ast.Module) error {
	if _, ok := data.root[GatewayData]; ok {
		return fmt.Errorf("%s sets data.%s, which the gateway reserves for itself; rename the key", data.owner([]string{GatewayData}), GatewayData)
	}
	reserved := ast.DefaultRootRef.Append(ast.StringTerm(GatewayData))
	for name, m := range modules {
		if m.Package.Path.HasPrefix(reserved) {
			return fmt.Errorf("%s: package %s is reserved for the gateway; rename the package", name, strings.TrimPrefix(m.Package.Path.String(), "data."))
		}
	}
	return nil
}

// loadedPackages lists every loaded package path, sorted, without duplicates.
func loadedPackages(c *ast.Compiler) []any {
	var pkgs []string
	for _, m := range c.Modules {
		if p := m.Package.Path.String(); !slices.Contains(pkgs, p) {
			pkgs = append(pkgs, p)
		}
	}
	slices.Sort(pkgs)
	out := make([]any, len(pkgs))
	for i, p := range pkgs {
		out[i] = p
	}
	return out
}

// settingsProblem is one entry of the settings check.
type settingsProblem struct {
	path    []string
	message string
}

// decodeSettingsErrors reads the check's result: a set or array of {"path", "message"}.
// Anything else is a bug in the check and fails the load (an unreadable check must not
// pass as a clean one).
func decodeSettingsErrors(ref ast.Ref, v any) ([]settingsProblem, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s must be a set of {\"path\": [...], \"message\": \"...\"}, got %T", ref, v)
	}
	problems := make([]settingsProblem, 0, len(items))
	for _, it := range items {
		obj, _ := it.(map[string]any)
		msg, okMsg := obj["message"].(string)
		rawPath, okPath := obj["path"].([]any)
		if !okMsg || !okPath {
			return nil, fmt.Errorf("%s holds %v; each entry must be {\"path\": [...], \"message\": \"...\"}", ref, it)
		}
		p := make([]string, len(rawPath))
		for i, seg := range rawPath {
			if p[i], ok = seg.(string); !ok {
				p[i] = fmt.Sprint(seg)
			}
		}
		problems = append(problems, settingsProblem{path: p, message: msg})
	}
	return problems, nil
}

// settingsError names, for each problem, the data file that set the key and the key.
func settingsError(problems []settingsProblem, data *dataDoc) error {
	lines := make([]string, 0, len(problems))
	for _, p := range problems {
		lines = append(lines, fmt.Sprintf("%s: %s %s", data.owner(p.path), strings.Join(p.path, "."), p.message))
	}
	slices.Sort(lines)
	var b strings.Builder
	fmt.Fprintf(&b, "%d policy setting error(s); fix them in the data file named, or remove the key:", len(lines))
	for i, l := range lines {
		if i == maxSettingsErrors {
			fmt.Fprintf(&b, "\n  ... and %d more", len(lines)-i)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(l)
	}
	return errors.New(b.String())
}
