package scim

import (
	"reflect"
	"slices"
)

// RFC 7643 §2.4: "primary" is true on at most one value of a multi-valued attribute, and
// RFC 7644 §3.5.2: a PATCH that makes a value primary makes the others non-primary.

// hasPrimary reports whether a is a multi-valued attribute whose values carry "primary"
// (emails, phoneNumbers, addresses, roles, ...).
func hasPrimary(a *Attribute) bool {
	return a != nil && a.MultiValued && a.SubAttr("primary") != nil
}

// isPrimary reports whether e is a value whose primary is true: JSON true or one of Entra's
// string booleans.
func isPrimary(e any) bool {
	m, ok := e.(map[string]any)
	if !ok {
		return false
	}
	v, _ := Get(m, "primary")
	b, ok := Bool(v)
	return ok && b
}

// CheckPrimary refuses a POST or PUT body in which more than one value of a multi-valued
// attribute has primary true: 400 invalidValue naming the attribute. Attributes the
// schemas do not define are stored verbatim and not checked.
func CheckPrimary(resourceType string, doc Resource) error {
	ix := canonIndexFor(resourceType)
	if ix == nil {
		return nil
	}
	for k, v := range doc {
		if IsURN(k) {
			s := ix.schemaFor(k)
			ext, ok := v.(map[string]any)
			if s == nil || !ok {
				continue
			}
			for ek, ev := range ext {
				if err := checkOnePrimary(s.attrs.find(ek), ek, ev); err != nil {
					return err
				}
			}
			continue
		}
		if err := checkOnePrimary(ix.attrs.find(k), k, v); err != nil {
			return err
		}
	}
	return nil
}

func checkOnePrimary(a *Attribute, name string, v any) error {
	list, ok := v.([]any)
	if !hasPrimary(a) || !ok {
		return nil
	}
	if n := len(primaryValues(list)); n > 1 {
		return BadRequest(TypeInvalidValue, "%s has %d values with \"primary\": true; at most one value may be primary (RFC 7643 §2.4)", name, n)
	}
	return nil
}

// primaries returns the values of t that are primary now, before an operation on t, for
// settlePrimary. Only a multi-valued attribute with a primary sub-attribute has any.
func (p *patcher) primaries(t patchTarget) []map[string]any {
	if !hasPrimary(t.attr) {
		return nil
	}
	c, err := p.container(t, false)
	if err != nil || c == nil {
		return nil
	}
	cur, _ := Get(c, t.name)
	list, _ := cur.([]any)
	return primaryValues(list)
}

// primaryValues returns the values of list whose primary is true.
func primaryValues(list []any) []map[string]any {
	var out []map[string]any
	for _, e := range list {
		if isPrimary(e) {
			out = append(out, e.(map[string]any))
		}
	}
	return out
}

// settlePrimary keeps primary on at most one value of t after an add or replace: when the
// operation made one value primary (a value not primary before, by identity: the same
// element of the patched document), every other value of t that is primary becomes
// "primary": false (RFC 7644 §3.5.2). An operation that makes two values primary at once
// is 400 invalidValue, as a POST or PUT with two is. Values that were primary before the
// operation, and stay so without it touching them, are left as they are.
func (p *patcher) settlePrimary(t patchTarget, before []map[string]any) error {
	if !hasPrimary(t.attr) {
		return nil
	}
	c, err := p.container(t, false)
	if err != nil || c == nil {
		return err
	}
	cur, _ := Get(c, t.name)
	list, _ := cur.([]any)
	primary := primaryValues(list)
	var made map[string]any
	fresh := 0
	for _, m := range primary {
		if !slices.ContainsFunc(before, func(b map[string]any) bool { return sameMap(b, m) }) {
			fresh++
			made = m
		}
	}
	switch {
	case len(primary) <= 1 || fresh == 0:
		return nil
	case fresh > 1:
		return p.errorf(TypeInvalidValue, "%s would have %d values with \"primary\": true; at most one value may be primary (RFC 7643 §2.4)", t.name, fresh)
	}
	for _, m := range primary {
		if !sameMap(m, made) {
			Set(m, "primary", false)
		}
	}
	return nil
}

// sameMap reports whether a and b are the same map (not merely equal ones).
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
