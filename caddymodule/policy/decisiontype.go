package policy

import (
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/types"
)

// decisionKeyLists are the decision keys whose value is a list of strings; every other
// key (decisionKeys) is a boolean.
var decisionKeyLists = []string{keyReasons, keyDropAttributes, keyDropMembers}

// decisionKeys are the keys a decision may have, as the errors list them.
const decisionKeys = "allow, skip, reasons, drop_attributes, drop_members, deactivate"

// shapeError names the first rule of the decision whose object the type checker knows is
// malformed: a key that is not a decision key, a key whose value can never be of its
// type, or no allow. Such a decision is refused by decodeDecision every time the rule
// applies. Only what the checker proves is reported: keys and types it cannot know (an
// object built at run time, a value from input) are checked per decision. rules are in
// file order; t is the type of the whole decision.
func shapeError(c *ast.Compiler, query ast.Ref, rules []*ast.Rule, t types.Type) error {
	var unknown *ast.Rule // the first rule whose own type the checker did not keep
	for _, r := range rules {
		rt := ruleValueType(c, r)
		if rt == nil {
			if unknown == nil {
				unknown = r
			}
			continue
		}
		if p := shapeProblem(query.String(), rt); p != "" {
			return fmt.Errorf("%s: %s, so every request it decides is denied", r.Location, p)
		}
	}
	p := shapeProblem(query.String(), t)
	if p == "" {
		return nil
	}
	if unknown == nil {
		unknown = rules[0]
	}
	return fmt.Errorf("%s: %s, so every request it decides is denied", unknown.Location, p)
}

// ruleValueType is the type of the object a complete rule's head writes literally
// (decision := {...}), or nil: the checker keeps no type for a rule's local variables,
// and a partial object rule (decision["k"] := v) writes one key's value.
func ruleValueType(c *ast.Compiler, r *ast.Rule) types.Type {
	if len(r.Head.Ref()) != 1 || r.Head.Value == nil {
		return nil
	}
	if _, ok := r.Head.Value.Value.(ast.Object); !ok {
		return nil
	}
	return c.TypeEnv.GetByValue(r.Head.Value.Value)
}

// shapeProblem says what is wrong with every decision object of type t ("" when nothing
// is known to be); query names the decision.
func shapeProblem(query string, t types.Type) string {
	for _, o := range objectTypes(t, nil) {
		for _, p := range o.StaticProperties() {
			key, ok := p.Key.(string)
			if !ok {
				return fmt.Sprintf("%s has a non-string key %v; decision keys are %s", query, p.Key, decisionKeys)
			}
			if msg := keyProblem(query, key, p.Value); msg != "" {
				return msg
			}
		}
		if o.DynamicProperties() == nil && !slices.Contains(o.Keys(), any(keyAllow)) {
			return fmt.Sprintf("%s has no %q key (its keys: %s); every decision must say allow: true or allow: false", query, keyAllow, keyList(o))
		}
	}
	return ""
}

// keyProblem says what is wrong with decision key of value type v ("" when it may be right).
func keyProblem(query, key string, v types.Type) string {
	switch {
	case slices.Contains(decisionKeyLists, key):
		if !mayBeList(v) {
			return fmt.Sprintf("%s.%s is %s; it must be a list of strings", query, key, typeNames(v))
		}
		if e := nonStringElem(v); e != nil {
			return fmt.Sprintf("%s.%s holds %s; it must be a list of strings", query, key, typeNames(e))
		}
	case key == keyAllow || key == keySkip || key == keyDeactivate:
		if !mayBe(v, func(t types.Type) bool { _, ok := t.(types.Boolean); return ok }) {
			return fmt.Sprintf("%s.%s is %s; it must be a boolean", query, key, typeNames(v))
		}
	default:
		return fmt.Sprintf("%s has unknown key %q; decision keys are %s", query, key, decisionKeys)
	}
	return ""
}

// objectTypes appends the object types t may be.
func objectTypes(t types.Type, out []*types.Object) []*types.Object {
	switch x := t.(type) {
	case *types.Object:
		out = append(out, x)
	case types.Any:
		for _, m := range x {
			out = objectTypes(m, out)
		}
	}
	return out
}

// mayBe reports whether a value of type t may satisfy is (nil and any may be anything).
func mayBe(t types.Type, is func(types.Type) bool) bool {
	if t == nil {
		return true
	}
	if a, ok := t.(types.Any); ok {
		return len(a) == 0 || slices.ContainsFunc(a, func(m types.Type) bool { return mayBe(m, is) })
	}
	return is(t)
}

func mayBeList(t types.Type) bool {
	return mayBe(t, func(t types.Type) bool {
		switch t.(type) {
		case *types.Array, *types.Set:
			return true
		}
		return false
	})
}

func mayBeString(t types.Type) bool {
	return mayBe(t, func(t types.Type) bool { _, ok := t.(types.String); return ok })
}

// nonStringElem is the type of an element a list of type t always holds and that can
// never be a string, or nil. Only a plain array or set type is judged.
func nonStringElem(t types.Type) types.Type {
	switch x := t.(type) {
	case *types.Array:
		for i := range x.Len() {
			if e := x.Select(i); !mayBeString(e) {
				return e
			}
		}
	case *types.Set:
		// A set's element type is only known when it holds some: an empty set is fine.
		if e := x.Of(); !mayBeString(e) {
			return e
		}
	}
	return nil
}

// keyList lists an object type's static keys.
func keyList(o *types.Object) string {
	var keys []string
	for _, p := range o.StaticProperties() {
		keys = append(keys, fmt.Sprint(p.Key))
	}
	if len(keys) == 0 {
		return "none"
	}
	return fmt.Sprint(keys)
}
