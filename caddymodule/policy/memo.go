package policy

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Memo carries rule values from one decision to the next, for a run of inputs that differ
// only in their resources and native id (a preview's users: the same action, events,
// client, target and counts). Most of a decision's rules never look at the resource — the
// guardrails' settings for the target, their gates on the request's kind, the compiled
// allowlists — and OPA recomputes them on every evaluation; a Memo keeps their values, so
// a decision evaluates only what depends on the resource.
//
// What is kept is exact: a rule (or a function, for one list of arguments) is kept only
// when nothing it reads, directly or through the rules it uses, is the input's resource,
// previous or native_id, nor a builtin whose result may change from call to call
// (time.now_ns, rand.intn, print, ...); its value is then the same for every input of the
// run, and OPA would compute that same value again. Only values of decisions that
// succeeded are kept, and only those OPA found twice (a function called on one user's
// resource is not worth keeping). An input whose other fields differ from the run's
// starts a new run (the Memo forgets what it kept).
//
// A Memo is not safe for concurrent use: give each goroutine its own.
type Memo struct {
	e    *Engine
	inv  *invariance
	rest ast.Object // the shared part of the run's inputs (Prepared.rest)
	kept vframe     // the values kept, looked up as a vcache frame
	refs []*ast.Term
	sightings
}

// Bounds of a Memo: at most memoMaxKept values kept, and the refs found once forgotten
// when memoMaxSeen of them accumulate (one user's function calls never repeat); the same
// for the refs found not invariant.
const (
	memoMaxKept = 4096
	memoMaxSeen = 8192
)

// NewMemo returns an empty Memo for decisions of e.
func (e *Engine) NewMemo() *Memo {
	return &Memo{e: e, inv: e.policy.invariance(), kept: vframe{table: map[int]int{}}, sightings: newSightings()}
}

// Decide is Engine.DecidePrepared with the Memo's kept values: the same decision and
// error, for less work once the run's first inputs have been decided.
func (m *Memo) Decide(ctx context.Context, p *Prepared) (Decision, error) {
	if p == nil || p.value == nil {
		return m.e.deny(fmt.Errorf("%w: no input", ErrInput))
	}
	if m.inv == nil {
		return m.e.decide(ctx, p.value, nil)
	}
	if m.rest != p.rest && (m.rest == nil || m.rest.Compare(p.rest) != 0) {
		m.reset()
		m.rest = p.rest
	}
	return m.e.decide(ctx, p.value, m)
}

func (m *Memo) reset() {
	m.kept.clear()
	clear(m.refs)
	m.refs = m.refs[:0]
	m.sightings.reset()
}

// keptFrame is what the Memo kept, nil when nothing yet.
func (m *Memo) keptFrame() *vframe {
	if len(m.kept.entries) == 0 {
		return nil
	}
	return &m.kept
}

// learn keeps, from the base frame of a successful evaluation's cache, the values of
// invariant refs found for the second time.
func (m *Memo) learn(c *vcache) {
	f := &c.frames[0]
	for i := range f.entries {
		if len(m.kept.entries) >= memoMaxKept {
			return
		}
		e := &f.entries[i]
		h := e.hash
		if m.kept.find(e.ref, h) != nil || !m.keep(m.inv, e) {
			continue
		}
		start := len(m.refs)
		m.refs = append(m.refs, e.ref...)
		m.kept.add(ventry{ref: m.refs[start:len(m.refs):len(m.refs)], value: e.value, undefined: e.undefined, hash: h})
	}
}

// sightings tells which refs of an evaluation's cache are worth keeping: the invariant
// ones found for the second time (a function called on one user's values is not).
type sightings struct {
	seen map[int]struct{} // hashes of keepable refs found once, not yet kept
	not  map[int]struct{} // hashes of refs found not invariant (a collision only keeps less)
}

func newSightings() sightings {
	return sightings{seen: map[int]struct{}{}, not: map[int]struct{}{}}
}

// keep reports whether e is to be kept: invariant under inv, and found before.
func (s *sightings) keep(inv *invariance, e *ventry) bool {
	if _, ok := s.not[e.hash]; ok {
		return false
	}
	if !inv.invariant(e.ref) {
		remember(s.not, e.hash)
		return false
	}
	if _, ok := s.seen[e.hash]; !ok {
		remember(s.seen, e.hash)
		return false
	}
	return true
}

func (s *sightings) reset() {
	clear(s.seen)
	clear(s.not)
}

// remember adds h to set, forgetting the rest when memoMaxSeen accumulate.
func remember(set map[int]struct{}, h int) {
	if len(set) >= memoMaxSeen {
		clear(set)
	}
	set[h] = struct{}{}
}

// perInput are the input fields a Memo's inputs may differ in.
var perInput = map[string]bool{"resource": true, "previous": true, "native_id": true}

// invariance tells the rules whose values do not depend on perInput fields nor on a
// nondeterministic builtin: with the other input fields and the data fixed, each has one
// value (a function: one per list of arguments).
type invariance struct {
	tree  *ast.TreeNode
	nodes map[*ast.TreeNode]bool // a node of tree: every rule at and below it is invariant
}

// invariance computes, once, which rules of the compiled policy are invariant; nil when
// the policy was not compiled here (no rule is then kept).
func (c *compiled) invariance() *invariance {
	c.invariantOnce.Do(func() {
		if c.comp == nil || c.comp.RuleTree == nil {
			return
		}
		c.invariant = newInvariance(c.comp, func(field string) bool { return perInput[field] })
	})
	return c.invariant
}

// newInvariance tells the rules of comp that read no input field varies reports true for
// (nor the whole input, nor a nondeterministic builtin).
func newInvariance(comp *ast.Compiler, varies func(field string) bool) *invariance {
	const (
		unknown = iota
		visiting
		yes
		no
	)
	state := map[*ast.Rule]int{}
	var ruleInvariant func(r *ast.Rule) bool
	ruleInvariant = func(r *ast.Rule) bool {
		switch state[r] {
		case visiting, no: // a cycle cannot be (Rego has no recursion): assume the worst
			return false
		case yes:
			return true
		}
		state[r] = visiting
		ok := true
		ast.WalkRefs(r, func(ref ast.Ref) bool {
			if !ok {
				return true
			}
			ok = refInvariant(comp, ref, r, varies, ruleInvariant)
			return !ok
		})
		if ok {
			state[r] = yes
		} else {
			state[r] = no
		}
		return ok
	}
	inv := &invariance{tree: comp.RuleTree, nodes: map[*ast.TreeNode]bool{}}
	var walk func(n *ast.TreeNode) bool
	walk = func(n *ast.TreeNode) bool {
		ok := true
		for _, r := range n.Values {
			ok = ruleInvariant(r) && ok
		}
		for _, child := range n.Children {
			ok = walk(child) && ok
		}
		inv.nodes[n] = ok
		return ok
	}
	walk(comp.RuleTree)
	return inv
}

// refInvariant reports whether reading ref (inside rule self) keeps self invariant: an
// input field that does not vary (shared by a Memo's inputs, or by a run of live
// decisions), data whose rules are all invariant, a deterministic builtin, a local
// variable.
func refInvariant(comp *ast.Compiler, ref ast.Ref, self *ast.Rule, varies func(string) bool, ruleInvariant func(*ast.Rule) bool) bool {
	switch {
	case ref.HasPrefix(ast.InputRootRef):
		if len(ref) < 2 {
			return false // the whole input
		}
		s, ok := ref[1].Value.(ast.String)
		return ok && !varies(string(s))
	case ref.HasPrefix(ast.DefaultRootRef):
		for _, r := range comp.GetRulesDynamicWithOpts(ref, ast.RulesOptions{IncludeHiddenModules: true}) {
			if r != self && !ruleInvariant(r) {
				return false
			}
		}
		return true
	}
	if b, ok := ast.BuiltinMap[ref.String()]; ok {
		return !b.IsNondeterministic() && !varyingBuiltins[b.Name]
	}
	return true
}

// varyingBuiltins are the builtins, besides those OPA marks nondeterministic, whose calls
// a Memo must not skip: output (print, trace), and certificate checks against the clock.
var varyingBuiltins = map[string]bool{
	ast.InternalPrint.Name: true, ast.Print.Name: true, ast.Trace.Name: true,
	ast.CryptoX509ParseAndVerifyCertificates.Name:            true,
	ast.CryptoX509ParseAndVerifyCertificatesWithOptions.Name: true,
}

// invariant reports whether the value cached under ref (a rule's, or a function's for its
// arguments) is invariant: the first rules on ref's path, and every rule below them, are.
func (inv *invariance) invariant(ref ast.Ref) bool {
	if len(ref) > 0 {
		if fn, ok := ref[0].Value.(ast.Ref); ok { // a function's: [name, arguments..., (output)]
			ref = fn
		}
	}
	n := inv.tree
	for _, t := range ref {
		if n = n.Child(t.Value); n == nil {
			return false
		}
		if len(n.Values) > 0 {
			return inv.nodes[n]
		}
	}
	return false
}
