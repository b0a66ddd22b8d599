package scim

import (
	"cmp"
	"slices"
	"strings"
)

// MemberList is the value of a PATCH operation's member array decoded compactly (issue 11):
// one MemberRef per element instead of a map per member object, which costs several times
// the body's size. DecodePatchBody makes one only for an array whose every element the
// generic path would accept as a member as it is (see memberElem), so NormalizeMembers
// gives the same members from it and the patcher turns it back into the generic []any,
// exactly as decoded, wherever the value is not a Group's members.
type MemberList struct {
	refs []MemberRef // as NormalizeMembers makes them from each element, in order
	keys []uint8     // per element: the keys it was written with (memberKey bits)
}

// The keys of a compact member element; memberBare marks an element that is an id string.
const (
	memberKeyValue uint8 = 1 << iota
	memberKeyDisplay
	memberKeyDisplayName
	memberKeyType
	memberKeyRef
	memberBare
)

// Len is the number of elements in l.
func (l MemberList) Len() int { return len(l.refs) }

// generic returns l as the generic decoder makes it: the elements as []any of id strings
// and map[string]any objects with the keys as written.
func (l MemberList) generic() []any {
	out := make([]any, len(l.refs))
	for i, m := range l.refs {
		k := l.keys[i]
		if k&memberBare != 0 {
			out[i] = m.Value
			continue
		}
		obj := make(map[string]any, 4)
		obj["value"] = m.Value
		if k&memberKeyDisplay != 0 {
			obj["display"] = m.Display
		}
		if k&memberKeyDisplayName != 0 {
			obj["displayName"] = m.Display
		}
		if k&memberKeyType != 0 {
			obj["type"] = m.Type
		}
		if k&memberKeyRef != 0 {
			obj["$ref"] = m.Ref
		}
		out[i] = obj
	}
	return out
}

// expandMembers returns v in its generic form when it is a MemberList.
func expandMembers(v any) any {
	if l, ok := v.(MemberList); ok {
		return l.generic()
	}
	return v
}

// members returns l's members as NormalizeMembers does (duplicate ids keep their first
// occurrence). Without duplicates the result is l's own list: callers never modify it.
// Duplicates are found through an index of the ids in order (4 bytes a member, where a set
// of the ids cost about 40; issue 11).
func (l MemberList) members() []MemberRef {
	order := make([]int32, len(l.refs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		return cmp.Or(strings.Compare(l.refs[a].Value, l.refs[b].Value), cmp.Compare(a, b))
	})
	var dup []bool
	for k := 1; k < len(order); k++ {
		if l.refs[order[k]].Value == l.refs[order[k-1]].Value {
			if dup == nil {
				dup = make([]bool, len(l.refs))
			}
			dup[order[k]] = true // a later occurrence: equal ids are in index order
		}
	}
	if dup == nil {
		return l.refs
	}
	out := make([]MemberRef, 0, len(l.refs)-1)
	for i, m := range l.refs {
		if !dup[i] {
			out = append(out, m)
		}
	}
	return out
}

// memberList decodes the array at d.i into a MemberList, or reports false (d.i is then
// anywhere: the caller decodes the array again the generic way). Only elements the
// generic path accepts as members unchanged are taken: an id string, or an object of
// string values under the keys value (a valid id), display or displayName (not both),
// type (exactly User or Group) and $ref, each spelt so. Anything else (null, other keys or
// spellings, a type to canonicalise, an invalid id) is left to the generic path, which
// then gives its own answer or error.
func (d *fastDecoder) memberList() (MemberList, bool) {
	n := d.countElements()
	if n < 0 {
		return MemberList{}, false
	}
	l := MemberList{refs: make([]MemberRef, 0, n), keys: make([]uint8, 0, n)}
	d.i++ // [
	d.space()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return l, true
	}
	for {
		m, k, ok := d.memberElem()
		if !ok {
			return MemberList{}, false
		}
		l.refs = append(l.refs, m)
		l.keys = append(l.keys, k)
		more, ok := d.next(']')
		switch {
		case !ok:
			return MemberList{}, false
		case !more:
			return l, true
		}
	}
}

// memberElem decodes one element of a compact member list (see memberList).
func (d *fastDecoder) memberElem() (MemberRef, uint8, bool) {
	d.space()
	if d.i >= len(d.s) {
		return MemberRef{}, 0, false
	}
	switch d.s[d.i] {
	case '"':
		s, ok := d.str()
		if !ok || !compactID(s) {
			return MemberRef{}, 0, false
		}
		return MemberRef{Value: s}, memberBare, true
	case '{':
	default:
		return MemberRef{}, 0, false
	}
	d.i++ // {
	var m MemberRef
	var keys uint8
	for {
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return MemberRef{}, 0, false // an empty object has no value
		}
		k, ok := d.str()
		if !ok {
			return MemberRef{}, 0, false
		}
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return MemberRef{}, 0, false
		}
		d.i++
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return MemberRef{}, 0, false
		}
		v, ok := d.str()
		if !ok {
			return MemberRef{}, 0, false
		}
		var bit uint8
		switch k {
		case "value":
			bit, m.Value = memberKeyValue, v
		case "display":
			bit, m.Display = memberKeyDisplay, v
		case "displayName":
			bit, m.Display = memberKeyDisplayName, v
		case "type":
			if v != UserType && v != GroupType {
				return MemberRef{}, 0, false
			}
			bit, m.Type = memberKeyType, v
		case "$ref":
			bit, m.Ref = memberKeyRef, v
		default:
			return MemberRef{}, 0, false
		}
		if keys&bit != 0 {
			return MemberRef{}, 0, false // a repeated key (CheckJSON refuses it first)
		}
		keys |= bit
		more, ok := d.next('}')
		switch {
		case !ok:
			return MemberRef{}, 0, false
		case !more:
			if keys&memberKeyValue == 0 || keys&(memberKeyDisplay|memberKeyDisplayName) == memberKeyDisplay|memberKeyDisplayName || !compactID(m.Value) {
				return MemberRef{}, 0, false
			}
			return m, keys, true
		}
	}
}

// compactID reports whether s is a member id the generic path accepts.
func compactID(s string) bool {
	return strings.TrimSpace(s) != "" && IDProblem(s) == ""
}

// countElements counts the elements of the array at d.i without decoding them (d.i does
// not move), or returns -1 when the array does not end.
func (d *fastDecoder) countElements() int {
	depth, n, empty := 0, 0, true
	for j := d.i; j < len(d.s); j++ {
		switch c := d.s[j]; c {
		case '"':
			for j++; j < len(d.s) && d.s[j] != '"'; j++ {
				if d.s[j] == '\\' {
					j++
				}
			}
			empty = false
		case '[', '{':
			if depth++; depth > 1 {
				empty = false
			}
		case ']', '}':
			if depth--; depth == 0 {
				if empty {
					return 0
				}
				return n + 1
			}
		case ',':
			if depth == 1 {
				n++
			}
		case ' ', '\t', '\n', '\r':
		default:
			empty = false
		}
	}
	return -1
}
