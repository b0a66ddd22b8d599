package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scimgate/scimgate/caddymodule/internal/policytest"
)

// memoPolicy reads the input every way the Memo must tell apart: shared fields (target,
// events), the per-user ones (resource, native_id), the whole input, a function called on
// shared and on per-user values, and a print.
const memoPolicy = `package scimgate

import rego.v1

domain := split(input.resource.userName, "@")[1]

suffix := concat("/", [input.target, format_int(count(input.events), 10)])

label(x) := concat(":", [x, suffix])

native := object.get(input, "native_id", "")

blocked contains d if {
	some d in data.scimgate.blocked_domains
	d == domain
}

noisy if print("deciding", input.resource.userName)

decision := {
	"allow": count(blocked) == 0,
	"skip": native == "",
	"reasons": [label(domain), label("fixed"), suffix],
	"drop_attributes": [a | some a in data.scimgate.drop[input.target]],
	"drop_members": [],
	"deactivate": noisy,
}
`

// TestMemoInvariance: only the rules that read neither the input's resource, previous nor
// native_id (directly, through other rules, or by reading the whole input) nor a
// nondeterministic builtin or print count as invariant.
func TestMemoInvariance(t *testing.T) {
	dir := t.TempDir()
	writeMemoPolicy(t, dir)
	e := load(t, Options{Dir: dir})
	inv := e.policy.invariance()
	if inv == nil {
		t.Fatal("no invariance computed")
	}
	ref := func(s string) ast.Ref { return ast.MustParseRef("data.scimgate." + s) }
	for _, c := range []struct {
		ref  ast.Ref
		want bool
	}{
		{ref("suffix"), true},
		{ref("blocked"), false},  // through domain
		{ref("domain"), false},   // input.resource
		{ref("native"), false},   // the whole input
		{ref("noisy"), false},    // print
		{ref("decision"), false}, // through all of them
		{append(ast.Ref{ast.RefTerm(ref("label")...)}, ast.StringTerm("x")), true}, // a function, for its arguments
		{ast.MustParseRef("data.nothing.here"), false},
		{ast.MustParseRef("data.scimgate"), false}, // a package, not a rule
	} {
		if got := inv.invariant(c.ref); got != c.want {
			t.Errorf("invariant(%v) = %v, want %v", c.ref, got, c.want)
		}
	}

	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "p.rego"), "package scimgate\n\nimport rego.v1\n\nnow := time.now_ns()\n\nr := rand.intn(\"x\", 10)\n\nk := 1\n\ndecision := {\"allow\": true, \"reasons\": [sprintf(\"%d %d %d\", [now, r, k])]}\n")
	inv = load(t, Options{Dir: dir}).policy.invariance()
	if inv.invariant(ast.MustParseRef("data.scimgate.now")) || inv.invariant(ast.MustParseRef("data.scimgate.r")) || !inv.invariant(ast.MustParseRef("data.scimgate.k")) {
		t.Error("nondeterministic builtins: time.now_ns and rand.intn must not be invariant, a constant must")
	}
}

// TestMemoDecidesAlike: a Memo's decisions equal DecidePrepared's, input by input, over
// users of varied shapes and runs of different shared fields (target, events), and the
// policy's print runs on every decision as without a Memo.
func TestMemoDecidesAlike(t *testing.T) {
	dir := t.TempDir()
	writeMemoPolicy(t, dir)
	var prints atomic.Int64
	e := load(t, Options{Dir: dir, Print: func(string, string) { prints.Add(1) }})
	shipped := load(t, Options{Dir: policytest.CopyShipped(t, `{"defaults": {"scoping": {"domains": ["contoso.example"]},
		"attribute_allowlist": {"User": ["userName", "emails"]}}, "targets": {"b": {"scoping": {"domains": ["fabrikam.example"], "on_exit": "ignore"}}}}`)})
	inputs := memoInputs(t, 300)
	for _, eng := range []*Engine{e, shipped} {
		m := eng.NewMemo()
		kept := 0
		for i, p := range inputs {
			prints.Store(0)
			want, wantErr := eng.DecidePrepared(context.Background(), p)
			printed := prints.Swap(0)
			got, err := m.Decide(context.Background(), p)
			if !reflect.DeepEqual(got, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("input %d: memo decided %+v, %v; without: %+v, %v", i, got, err, want, wantErr)
			}
			if prints.Load() != printed {
				t.Fatalf("input %d: %d prints with the memo, %d without", i, prints.Load(), printed)
			}
			kept = max(kept, len(m.kept.entries))
		}
		if kept == 0 {
			t.Error("the memo kept nothing")
		}
	}
}

// memoInputs are n user inputs in runs of shared fields, with varied resources: in and
// out of the domains, blocked, without a userName, with extra attributes, with and
// without a native id.
func memoInputs(t *testing.T, n int) []*Prepared {
	t.Helper()
	var out []*Prepared
	var last *Prepared
	for i := range n {
		domain := []string{"contoso.example", "fabrikam.example", "blocked.example", "eu.contoso.example"}[i%4]
		doc := map[string]any{"schemas": []any{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": fmt.Sprintf("u%d@%s", i, domain)}
		switch i % 5 {
		case 1:
			doc["title"] = "Engineer"
			doc["emails"] = []any{map[string]any{"value": fmt.Sprintf("u%d@%s", i, domain), "type": "work"}}
		case 2:
			doc["userName"] = fmt.Sprintf("u%d", i) // no domain
		case 3:
			doc["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = map[string]any{"department": "Sales"}
		}
		in := Input{Action: "replace", ResourceType: "User", Events: []string{"update"}, Client: "preview", Target: "a", Resource: doc, Previous: doc}
		if i%3 != 0 {
			in.NativeID = fmt.Sprint("n", i)
		}
		if i >= n/3 {
			in.Target = "b" // a new run
		}
		if i >= 2*n/3 && i%2 == 0 {
			in.Events = []string{"update", "rename"} // runs of one input
		}
		p, err := in.PrepareLike(last)
		if err != nil {
			t.Fatal(err)
		}
		last = p
		out = append(out, p)
	}
	return out
}

func writeMemoPolicy(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "scimgate"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "scimgate", "decision.rego"), memoPolicy)
	writeFile(t, filepath.Join(dir, "scimgate", "data.json"), `{"blocked_domains": ["blocked.example"], "drop": {"a": ["title"], "b": []}}`)
}
