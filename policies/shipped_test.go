package policies

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// loadShipped loads the policies the way the gateway does: every non-test *.rego below
// dir, and every data.json mounted at its directory's path relative to dir (OPA's bundle
// convention), so scimgate/config/data.json becomes data.scimgate.config.
func loadShipped(t testing.TB, dir string) ([]*ast.Module, map[string]any) {
	t.Helper()
	var modules []*ast.Module
	data := map[string]any{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case strings.HasSuffix(rel, ".rego") && !strings.HasSuffix(rel, "_test.rego"):
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m, err := ast.ParseModuleWithOpts(rel, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				return err
			}
			modules = append(modules, m)
		case path.Base(rel) == "data.json":
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var doc any
			if err := json.Unmarshal(src, &doc); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			mount(data, path.Dir(rel), doc)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("loading %s: %v", dir, err)
	}
	return modules, data
}

// mount places doc at the slash-separated dir inside root ("." is the root itself).
func mount(root map[string]any, dir string, doc any) {
	if dir == "." {
		if m, ok := doc.(map[string]any); ok {
			for k, v := range m {
				root[k] = v
			}
		}
		return
	}
	parts := strings.Split(dir, "/")
	node := root
	for _, p := range parts[:len(parts)-1] {
		next, ok := node[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			node[p] = next
		}
		node = next
	}
	node[parts[len(parts)-1]] = doc
}

// prepareDecision compiles the shipped policies as the gateway queries them: strict
// builtin errors (a runtime error denies), the strict compiler (which also rejects unused
// variables and imports) and a store holding AST values (no conversion per read).
func prepareDecision(t testing.TB) rego.PreparedEvalQuery {
	t.Helper()
	return prepareQuery(t, "data.scimgate.decision")
}

// prepareQuery compiles the shipped policies with the store, options and compiler the
// gateway uses, for query.
func prepareQuery(t testing.TB, query string) rego.PreparedEvalQuery {
	t.Helper()
	modules, data := loadShipped(t, ".")
	opts := []func(*rego.Rego){
		rego.Query(query),
		rego.Store(inmem.NewFromObjectWithOpts(data, inmem.OptReturnASTValuesOnRead(true))),
		rego.StoreReadAST(true),
		rego.StrictBuiltinErrors(true),
		rego.Strict(true),
	}
	for _, m := range modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	pq, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("preparing %s: %v", query, err)
	}
	return pq
}

// decision is the contract's decision object.
type decision struct {
	Allow          bool     `json:"allow"`
	Skip           bool     `json:"skip"`
	Reasons        []string `json:"reasons"`
	DropAttributes []string `json:"drop_attributes"`
	DropMembers    []string `json:"drop_members"`
	Deactivate     bool     `json:"deactivate"`
}

func decide(t testing.TB, pq rego.PreparedEvalQuery, input map[string]any) decision {
	t.Helper()
	rs, err := pq.Eval(context.Background(), rego.EvalInput(input))
	if err != nil {
		t.Fatalf("evaluating: %v", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("decision undefined: %v", rs)
	}
	b, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	var d decision
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("decision %s: %v", b, err)
	}
	return d
}

// The name lists cmd/entrasim draws from (dataset.go) and the names Microsoft's Postman
// collection (/work/shared/conformance) creates: demo traffic must pass untouched.
var (
	simGiven    = []string{"Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger", "Radia", "Tim", "Hedy", "Donald", "Katherine", "John"}
	simFamily   = []string{"Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen", "Dijkstra", "Perlman", "Berners-Lee", "Lamarr", "Knuth", "Johnson", "Backus"}
	simDepts    = []string{"Engineering", "Sales", "Marketing", "Finance", "Legal", "Support", "Operations", "Research"}
	simNouns    = []string{"Team", "Guild", "Committee", "Project", "Council", "Chapter"}
	postmanUser = []string{"UserName123", "UserName222", "UserName333", "UserName444", "UserName111", "UserNameReplace2", "ryan3", "OMalley", "emp1", "emp2", "emp3", "enterprise", "newusername"}
	postmanGrp  = []string{"Group1DisplayName", "GroupDisplayName2", "GroupDisplayName3", "putName", "Group 1", "Research", "Everyone"}
)

func simUserNames() []string {
	var names []string
	for i, g := range simGiven {
		for _, f := range simFamily {
			names = append(names, fmt.Sprintf("%s.%s.%d@contoso.example", strings.ToLower(g), strings.ToLower(f), i))
		}
	}
	return append(names, postmanUser...)
}

func simGroupNames() []string {
	var names []string
	for i, d := range simDepts {
		for _, n := range simNouns {
			names = append(names, fmt.Sprintf("%s %s %d", d, n, i))
		}
	}
	return append(names, postmanGrp...)
}

func userInput(action string, events []string, name string, previous, resource any) map[string]any {
	return map[string]any{
		"action": action, "resource_type": "User", "events": events, "client": "entra",
		"target": "demo", "native_id": "42", "previous": previous, "resource": resource,
		"changed": []any{}, "members": map[string]any{"add": []any{}, "remove": []any{}},
		"stats": map[string]any{"window": "1h", "last_hour": map[string]any{
			"create": 0, "update": 0, "deactivate": 10, "reactivate": 0, "delete": 10,
			"rename": 0, "add_members": 0, "remove_members": 0,
		}},
	}
}

func user(name string, active bool) map[string]any {
	return map[string]any{
		"schemas": []any{"urn:ietf:params:scim:schemas:core:2.0:User"}, "id": "u-" + name,
		"userName": name, "active": active, "externalId": "ext-" + name, "displayName": name,
		"emails": []any{map[string]any{"type": "work", "primary": true, "value": name}},
	}
}

// TestShippedConfigPassesDemoTraffic: with the shipped configuration, the users and
// groups the demo generates are created, changed, deactivated and deleted untouched.
func TestShippedConfigPassesDemoTraffic(t *testing.T) {
	pq := prepareDecision(t)
	untouched := func(t *testing.T, what string, d decision) {
		t.Helper()
		if !d.Allow || d.Skip || d.Deactivate || len(d.DropAttributes)+len(d.DropMembers) > 0 {
			t.Errorf("%s: %+v, want allowed untouched", what, d)
		}
	}
	for _, name := range simUserNames() {
		u, off := user(name, true), user(name, false)
		untouched(t, "create "+name, decide(t, pq, userInput("create", []string{"create"}, name, nil, u)))
		untouched(t, "deactivate "+name, decide(t, pq, userInput("patch", []string{"deactivate"}, name, u, off)))
		untouched(t, "delete "+name, decide(t, pq, userInput("delete", []string{"delete"}, name, u, nil)))
	}
	for _, name := range simGroupNames() {
		g := map[string]any{"displayName": name, "members": []any{}}
		in := map[string]any{
			"action": "create", "resource_type": "Group", "events": []any{"create", "add_members"},
			"target": "demo", "native_id": "", "previous": nil, "resource": g,
			"members": map[string]any{"add": []any{map[string]any{"id": "u1", "type": "User", "display": "ada@contoso.example"}}, "remove": []any{}},
		}
		untouched(t, "create group "+name, decide(t, pq, in))
	}
}

// TestShippedConfigGuards: the shipped configuration refuses what it is meant to.
func TestShippedConfigGuards(t *testing.T) {
	pq := prepareDecision(t)
	tests := []struct {
		name  string
		input map[string]any
	}{
		{"privileged group", map[string]any{"action": "create", "resource_type": "Group", "events": []any{"create"}, "target": "demo", "resource": map[string]any{"displayName": "Global Administrators"}}},
		{"tier0 pattern", map[string]any{"action": "create", "resource_type": "Group", "events": []any{"create"}, "target": "demo", "resource": map[string]any{"displayName": "tier0-ops"}}},
		{"break-glass deactivation", userInput("patch", []string{"deactivate"}, "", user("breakglass1@contoso.example", true), user("breakglass1@contoso.example", false))},
		{"user without userName", userInput("create", []string{"create"}, "", nil, map[string]any{"displayName": "x"})},
		{"group without displayName", map[string]any{"action": "create", "resource_type": "Group", "events": []any{"create"}, "target": "demo", "resource": map[string]any{"displayName": ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t, pq, tt.input)
			if d.Allow || len(d.Reasons) == 0 {
				t.Errorf("got %+v, want a denial with reasons", d)
			}
		})
	}
}

// TestGarbageInputDoesNotError: inputs with wrong types or missing fields evaluate to a
// decision (strict builtin errors would otherwise deny without an actionable reason).
func TestGarbageInputDoesNotError(t *testing.T) {
	pq := prepareDecision(t)
	inputs := []map[string]any{
		{},
		{"action": "create"},
		{"resource_type": "User", "events": "create", "resource": "x", "previous": 7, "target": nil},
		{"resource_type": "User", "events": []any{"delete", 3}, "previous": map[string]any{"userName": 5, "externalId": []any{}}, "stats": "none"},
		{"resource_type": "Group", "events": []any{"create"}, "resource": map[string]any{"displayName": 3}, "members": map[string]any{"add": []any{"x", nil}}},
		{"resource_type": "Group", "events": []any{"rename"}, "resource": nil, "previous": nil, "members": "none"},
	}
	for _, in := range inputs {
		_ = decide(t, pq, in) // fails the test on an evaluation error or an undefined decision
	}
}

// TestRegoFormatted: every policy is as `opa fmt` writes it, so diffs stay about meaning.
func TestRegoFormatted(t *testing.T) {
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".rego" {
			return err
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out, err := format.SourceWithOpts(p, src, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if string(out) != string(src) {
			t.Errorf("%s is not formatted as opa fmt would", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkDecision measures one decision with the shipped configuration for an
// ordinary user create (the gateway evaluates one per write).
func BenchmarkDecision(b *testing.B) {
	pq := prepareDecision(b)
	name := "ada.lovelace.0@contoso.example"
	in := userInput("create", []string{"create"}, name, nil, user(name, true))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pq.Eval(ctx, rego.EvalInput(in)); err != nil {
			b.Fatal(err)
		}
	}
}
