package policy

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/types"
)

// built is what compile makes of a policy's files.
type built struct {
	pq    rego.PreparedEvalQuery // the decision, prepared
	comp  *ast.Compiler          // the compiled modules pq evaluates (read-only)
	store storage.Store          // the data pq reads
	data  *dataDoc               // which data file set each value, for errors
}

// compile parses, type-checks and prepares the policy. It runs once per content hash.
func compile(query ast.Ref, srcs []source, dir string) (built, error) {
	var none built
	modules, err := parseModules(srcs)
	if err != nil {
		return none, err
	}
	data, err := buildData(srcs)
	if err != nil {
		return none, err
	}
	dataValue, err := ast.InterfaceToValue(data.root)
	if err != nil {
		return none, fmt.Errorf("converting policy data: %w", err)
	}
	if err := checkGatewayDataFree(data, modules); err != nil {
		return none, err
	}
	if err := checkSchemaRefs(modules); err != nil {
		return none, err
	}
	compiler := ast.NewCompiler().
		WithCapabilities(capabilities).
		WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(true).
		WithUseTypeCheckAnnotations(true).
		WithPathConflictsCheck(data.exists)
	if compiler.Compile(modules); compiler.Failed() {
		return none, explain(compiler.Errors)
	}
	if err := checkQueryDefined(compiler, query, data, dir); err != nil {
		return none, err
	}
	if err := checkQueryType(compiler, query); err != nil {
		return none, err
	}
	// NewFromASTObject keeps the data as AST values, so reading data.* during evaluation
	// converts nothing per request.
	checked, err := checkSettings(compiler, inmem.NewFromASTObject(withGatewayData(dataValue.(ast.Object), false)), query, data)
	if err != nil {
		return none, err
	}
	store := inmem.NewFromASTObject(withGatewayData(dataValue.(ast.Object), checked))
	pq, err := prepare(compiler, store, query, rego.EnablePrintStatements(true), rego.GenerateJSON(keepTerm))
	if err != nil {
		return none, fmt.Errorf("preparing query %s: %w", query, err)
	}
	return built{pq: pq, comp: compiler, store: store, data: data}, nil
}

// prepare prepares query on the compiled policy and its data, with strict builtin errors
// and the scimgate capabilities, plus extra options.
func prepare(c *ast.Compiler, store storage.Store, query ast.Ref, extra ...func(*rego.Rego)) (rego.PreparedEvalQuery, error) {
	opts := append([]func(*rego.Rego){
		rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(query)))),
		rego.Compiler(c),
		rego.Store(store),
		rego.Capabilities(capabilities),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
	}, extra...)
	return rego.New(opts...).PrepareForEval(context.Background())
}

// keepTerm hands results back as AST terms: decodeDecision reads them directly instead of
// having rego build a map[string]any per decision.
func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// parseModules parses every policy file as Rego v1, collecting the errors of all files so
// one load reports every broken file.
func parseModules(srcs []source) (map[string]*ast.Module, error) {
	modules := map[string]*ast.Module{}
	var errs ast.Errors
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: capabilities, ProcessAnnotation: true}
	for _, s := range srcs {
		if s.kind != kindRego {
			continue
		}
		m, err := ast.ParseModuleWithOpts(s.name, string(s.bytes), popts)
		if err != nil {
			var astErrs ast.Errors
			if asErrors(err, &astErrs) {
				errs = append(errs, astErrs...)
				continue
			}
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if m == nil {
			errs = append(errs, ast.NewError(ast.ParseErr, &ast.Location{File: s.name, Row: 1}, "empty module: the file holds no package; delete it or add a package and rules"))
			continue
		}
		modules[s.name] = m
	}
	if len(errs) > 0 {
		return nil, explain(errs)
	}
	return modules, nil
}

func asErrors(err error, out *ast.Errors) bool {
	e, ok := err.(ast.Errors)
	if ok {
		*out = e
	}
	return ok
}

// buildData merges every data file into one document.
func buildData(srcs []source) (*dataDoc, error) {
	d := newDataDoc()
	for _, s := range srcs {
		if s.kind == kindRego {
			continue
		}
		obj, err := parseDataFile(s)
		if err != nil {
			return nil, err
		}
		if err := d.add(s.name, s.mount, obj); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// checkQueryDefined rejects a query no rule (or data) defines: every request would be
// denied as undefined, which is better caught at load time.
func checkQueryDefined(c *ast.Compiler, query ast.Ref, data *dataDoc, dir string) error {
	if len(c.GetRules(query)) > 0 {
		return nil
	}
	if path, err := query.Ptr(); err == nil {
		if ok, _ := data.exists(strings.Split(path, "/")); ok {
			return nil
		}
	}
	pkg, rule := query[:len(query)-1], query[len(query)-1]
	var pkgs []string
	for _, m := range c.Modules {
		if p := m.Package.Path.String(); !slices.Contains(pkgs, p) {
			pkgs = append(pkgs, p)
		}
	}
	slices.Sort(pkgs)
	return fmt.Errorf("no rule defines %s: add a %s rule to package %s in a .rego file under %s (packages loaded: %s)",
		query, string(rule.Value.(ast.String)), strings.TrimPrefix(pkg.String(), "data."), dir, strings.Join(pkgs, ", "))
}

// checkQueryType rejects a decision the type checker proves can never be an object (a
// string, a set, a function...), or an object it knows is malformed (an unknown key, a
// key of the wrong type, no allow: see shapeError): every request would be denied as
// malformed, which is better caught when the policy loads, so that a reload keeps the
// policy in force. What the checker cannot know (any, an object built at run time) is
// checked per decision instead.
func checkQueryType(c *ast.Compiler, query ast.Ref) error {
	rules := c.GetRules(query)
	if len(rules) == 0 || c.TypeEnv == nil {
		return nil // data, not a rule: its value is checked per decision
	}
	// The first rule in the files (GetRules's order is not stable), so the error names
	// the same line every time.
	rules = slices.Clone(rules)
	first := slices.MinFunc(rules, byLocation)
	where := first.Location.String()
	if _, ok := c.TypeEnv.GetByRef(query).(*types.Function); ok || len(first.Head.Args) > 0 {
		return fmt.Errorf("%s: %s is a function (it takes arguments); it must be an object such as {\"allow\": true}: write `decision := {...}` or `decision := {...} if {...}`", where, query)
	}
	t := c.TypeEnv.GetByRef(query)
	if t == nil {
		return nil
	}
	if mayBeObject(t) {
		slices.SortFunc(rules, byLocation)
		return shapeError(c, query, rules, t)
	}
	return fmt.Errorf("%s: %s is always %s; it must be an object such as {\"allow\": true}, or every request is denied", where, query, typeNames(t))
}

// byLocation orders rules as they appear in the files.
func byLocation(a, b *ast.Rule) int {
	return cmp.Or(cmp.Compare(a.Location.File, b.Location.File), cmp.Compare(a.Location.Row, b.Location.Row), cmp.Compare(a.Location.Col, b.Location.Col))
}

// mayBeObject reports whether a value of type t can be an object.
func mayBeObject(t types.Type) bool {
	switch x := t.(type) {
	case *types.Object:
		return true
	case types.Any:
		if len(x) == 0 {
			return true // any
		}
		for _, m := range x {
			if mayBeObject(m) {
				return true
			}
		}
	}
	return false
}

// typeNames says what a type is, for a person: "a string", "a string or a number".
func typeNames(t types.Type) string {
	if a, ok := t.(types.Any); ok && len(a) > 0 {
		names := make([]string, len(a))
		for i, m := range a {
			names[i] = typeNames(m)
		}
		return strings.Join(names, " or ")
	}
	switch t.(type) {
	case types.String:
		return "a string"
	case types.Number:
		return "a number"
	case types.Boolean:
		return "a boolean"
	case types.Null:
		return "null"
	case *types.Array:
		return "an array"
	case *types.Set:
		return "a set"
	}
	return types.Sprint(t)
}

// explain turns compiler errors into one error that names file and row of each problem and,
// for the mistakes people make most, says how to fix it.
func explain(errs ast.Errors) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d policy error(s):", len(errs))
	for _, e := range errs {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
		if h := hint(e); h != "" {
			b.WriteString("\n    fix: ")
			b.WriteString(h)
		}
	}
	return loadError{msg: b.String(), errs: errs}
}

func hint(e *ast.Error) string {
	msg := e.Message
	for name, why := range disabledBuiltins {
		if strings.Contains(msg, "undefined function "+name) {
			return name + " is disabled in scimgate: " + why
		}
	}
	switch {
	case strings.Contains(msg, "is unsafe"):
		return "bind every variable before using it, e.g. `x := input.resource.userName` or `some x in input.changed`"
	case strings.Contains(msg, "conflicting rule for data path"):
		return "a data file defines the same path as this rule; rename the rule or the data key"
	case e.Code == ast.ParseErr && (strings.Contains(msg, "`if` keyword is required") || strings.Contains(msg, "`contains` keyword is required")):
		return "policies are Rego v1 (OPA 1.x): write `rule if { ... }` and `set contains x if { ... }`"
	}
	return ""
}

// loadError keeps the compiler's structured errors next to the readable message.
type loadError struct {
	msg  string
	errs ast.Errors
}

func (e loadError) Error() string { return e.msg }
func (e loadError) Unwrap() error { return e.errs }
