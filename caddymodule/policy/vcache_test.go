package policy

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/scimgate/scimgate/caddymodule/internal/policytest"
)

// TestVCacheActsAsOPAs drives vcache and OPA's own virtual cache with the same random
// sequence of Put, Get, Push and Pop (refs of rules and of function calls with object
// arguments, values and undefined, refs the caller reuses after a Put) and requires the same
// answer to every Get and Keys, across resets.
func TestVCacheActsAsOPAs(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	terms := []*ast.Term{
		ast.MustParseTerm("data.scimgate.guardrails.scoping._out_now").Value.(ast.Ref)[0],
		ast.StringTerm("scimgate"), ast.StringTerm("guardrails"), ast.StringTerm("scoping"), ast.StringTerm("_out_now"),
		ast.StringTerm("_problems"), ast.MustParseTerm(`{"userName": "a@b.c", "emails": [{"value": "a@b.c"}]}`),
		ast.MustParseTerm(`{"userName": "d@e.f"}`), ast.IntNumberTerm(1), ast.IntNumberTerm(2), ast.StringTerm("x"),
	}
	randomRef := func() ast.Ref {
		ref := ast.Ref{terms[0]}
		for range 1 + rnd.IntN(4) {
			ref = append(ref, terms[1+rnd.IntN(len(terms)-1)])
		}
		return ref
	}
	values := []*ast.Term{nil, ast.BooleanTerm(true), ast.StringTerm("v"), ast.MustParseTerm(`{"a": [1]}`)}
	ours := getVCache()
	defer putVCache(ours)
	for round := range 20 {
		opas := topdown.NewVirtualCache()
		depth := 0
		for step := range 2000 {
			switch op := rnd.IntN(10); {
			case op < 4:
				ref, v := randomRef(), values[rnd.IntN(len(values))]
				ours.Put(ref, v)
				opas.Put(ref, v)
				ref[len(ref)-1] = ast.StringTerm("reused") // OPA reuses the slice it passed
			case op < 8:
				ref := randomRef()
				v1, u1 := ours.Get(ref)
				v2, u2 := opas.Get(ref)
				if u1 != u2 || (v1 == nil) != (v2 == nil) || (v1 != nil && !v1.Equal(v2)) {
					t.Fatalf("round %d step %d: Get(%v) = %v, %v; OPA's: %v, %v", round, step, ref, v1, u1, v2, u2)
				}
			case op == 8 && depth < 3:
				ours.Push()
				opas.Push()
				depth++
			case op == 9 && depth > 0:
				ours.Pop()
				opas.Pop()
				depth--
			}
		}
		k1, k2 := ours.Keys(), opas.Keys()
		sortRefs := func(rs []ast.Ref) { slices.SortFunc(rs, func(a, b ast.Ref) int { return a.Compare(b) }) }
		sortRefs(k1)
		sortRefs(k2)
		if !slices.EqualFunc(k1, k2, func(a, b ast.Ref) bool { return a.Equal(b) }) {
			t.Fatalf("round %d: Keys %v; OPA's %v", round, k1, k2)
		}
		ours.reset()
	}
}

// TestPooledCacheDecidesAsOPAs: the shipped policies, with every guardrail configured so
// that each one has something to say about one of the inputs, decide every input alike
// through Decide (the pooled cache, reused from one decision to the next, in two orders)
// and through OPA's evaluation with its own cache.
func TestPooledCacheDecidesAsOPAs(t *testing.T) {
	dir := policytest.CopyShipped(t, `{"defaults": {
		"scoping": {"domains": ["fabrikam.example"], "on_exit": "deactivate"},
		"attribute_allowlist": {"User": ["userName", "active", "emails.value"], "Group": ["displayName"]},
		"required_attributes": {"User": ["userName", "title"]},
		"break_glass": {"patterns": ["^alice@"]},
		"privileged_groups": {"names": ["Engineering"], "effect": "skip"},
		"mass_deprovision": {"max_per_hour": 2}}}`)
	e := load(t, Options{Dir: dir})
	create, patch, group := userCreateInput(t), userPatchInput(t), groupAddInput(t)
	deactivate := *patch
	deactivate.Events = []string{"deactivate"}
	resync := *patch
	resync.Action, resync.Previous, resync.Changed = "replace", resync.Resource, nil
	leaving := *patch // was in scope (fabrikam.example), is not now: deactivated
	leaving.Previous = maps.Clone(patch.Previous)
	leaving.Previous["userName"] = "alice@fabrikam.example"
	untitled := *create // a create without a required attribute: denied
	untitled.Resource = maps.Clone(create.Resource)
	delete(untitled.Resource, "title")
	inputs := []*Input{create, patch, group, &deactivate, &resync, &leaving, &untitled}
	opas := func(in *Input) Decision {
		v, err := in.astValue()
		if err != nil {
			t.Fatal(err)
		}
		rs, err := e.policy.pq.Eval(context.Background(), rego.EvalParsedInput(v))
		if err != nil {
			t.Fatal(err)
		}
		d, _ := e.result(rs)
		return d
	}
	seen := map[string]bool{}
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1, 0, 2, 5, 0}} {
		for _, i := range order {
			got, _ := e.Decide(context.Background(), inputs[i])
			if want := opas(inputs[i]); !equalDecision(got, want) {
				t.Errorf("input %d: %+v; with OPA's cache %+v", i, got, want)
			}
			seen[fmt.Sprintf("allow=%v skip=%v deactivate=%v drops=%v", got.Allow, got.Skip, got.Deactivate, len(got.DropAttributes)+len(got.DropMembers) > 0)] = true
		}
	}
	if len(seen) < 3 { // denied, skipped, deactivated
		t.Errorf("the inputs got only %v: the guardrails had too little to say", seen)
	}
}
