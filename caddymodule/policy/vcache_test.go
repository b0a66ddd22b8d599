package policy

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
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
