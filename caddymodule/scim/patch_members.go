package scim

import (
	"strconv"
	"strings"
)

// MemberRef is one member of a Group as a client wrote it. Display comes from "display"
// or, failing that, "displayName". Ref is kept for the record and never dereferenced.
type MemberRef struct{ Value, Type, Display, Ref string }

// MemberDelta is the change a PATCH makes to a Group's member set. The store applies
// RemoveAll first, then Remove and Add (which never share an id).
type MemberDelta struct {
	Add       []MemberRef
	Remove    []string // member ids
	RemoveAll bool     // remove every member first (then Add applies)
}

// NormalizeMembers reads a members value: an array of member objects ("value" required,
// a non-empty string; optional "type", "display" or "displayName", "$ref"), where a bare
// string stands for a member id (Microsoft's Postman collection sends "value": "id"), or
// a single such object or string. null is no members. Duplicate ids keep their first
// occurrence. Errors are 400 invalidValue.
func NormalizeMembers(v any) ([]MemberRef, error) {
	list := asList(v)
	out := make([]MemberRef, 0, len(list))
	seen := make(map[string]bool, len(list))
	for i, e := range list {
		if e == nil {
			continue
		}
		m, err := memberRef(e)
		if err != nil {
			return nil, prefixError(err, TypeInvalidValue, "members[%s]: ", strconv.Itoa(i))
		}
		if seen[m.Value] {
			continue
		}
		seen[m.Value] = true
		out = append(out, m)
	}
	return out, nil
}

func memberRef(e any) (MemberRef, error) {
	switch x := e.(type) {
	case string:
		if strings.TrimSpace(x) == "" {
			return MemberRef{}, BadRequest(TypeInvalidValue, "a member id must not be empty")
		}
		if err := checkMemberID(x); err != nil {
			return MemberRef{}, err
		}
		return MemberRef{Value: x}, nil
	case map[string]any:
		raw, _ := Get(x, "value")
		id, ok := raw.(string)
		if !ok || strings.TrimSpace(id) == "" {
			return MemberRef{}, BadRequest(TypeInvalidValue, "a member needs \"value\": the member's id as a non-empty string")
		}
		if err := checkMemberID(id); err != nil {
			return MemberRef{}, err
		}
		m := MemberRef{Value: id, Type: memberType(optString(x, "type")), Ref: optString(x, "$ref")}
		if m.Display = optString(x, "display"); m.Display == "" {
			m.Display = optString(x, "displayName")
		}
		return m, nil
	}
	return MemberRef{}, BadRequest(TypeInvalidValue, "a member must be an object with \"value\" or an id string")
}

// checkMemberID refuses a member value that cannot be a resource id (see IDProblem): no
// such member can exist, and the store refuses such keys.
func checkMemberID(id string) error {
	if p := IDProblem(id); p != "" {
		return BadRequest(TypeInvalidValue, "the member id %s cannot be a resource id: %s", QuoteForDetail(id), p)
	}
	return nil
}

// memberType spells the canonical types User and Group canonically; others are kept for
// the handler to judge.
func memberType(s string) string {
	switch {
	case strings.EqualFold(s, UserType):
		return UserType
	case strings.EqualFold(s, GroupType):
		return GroupType
	}
	return s
}

// optString returns the string value of name in m, or "" when absent or not a string.
func optString(m map[string]any, name string) string {
	v, _ := Get(m, name)
	s, _ := v.(string)
	return s
}

// memberIntent accumulates member operations in order, so that the delta says what the
// request means in the end: an add after a remove of the same id keeps the member, a
// remove after an add removes it.
type memberIntent struct {
	removeAll bool
	adds      map[string]MemberRef
	addOrder  []string
	removes   map[string]bool
	remOrder  []string
}

func newMemberIntent() *memberIntent {
	return &memberIntent{adds: map[string]MemberRef{}, removes: map[string]bool{}}
}

func (mi *memberIntent) add(m MemberRef) {
	delete(mi.removes, m.Value)
	if _, ok := mi.adds[m.Value]; !ok {
		mi.addOrder = append(mi.addOrder, m.Value)
	}
	mi.adds[m.Value] = m
}

func (mi *memberIntent) remove(id string) {
	delete(mi.adds, id)
	if mi.removeAll {
		return // already gone with every other member
	}
	if !mi.removes[id] {
		mi.remOrder = append(mi.remOrder, id)
	}
	mi.removes[id] = true
}

func (mi *memberIntent) clear() {
	mi.removeAll = true
	clear(mi.adds)
	clear(mi.removes)
	mi.addOrder, mi.remOrder = mi.addOrder[:0], mi.remOrder[:0]
}

// delta returns the final intent, in the order ids were first mentioned.
func (mi *memberIntent) delta() *MemberDelta {
	d := &MemberDelta{RemoveAll: mi.removeAll}
	emitted := make(map[string]bool, len(mi.adds)+len(mi.removes))
	for _, id := range mi.addOrder {
		if m, ok := mi.adds[id]; ok && !emitted[id] {
			emitted[id] = true
			d.Add = append(d.Add, m)
		}
	}
	for _, id := range mi.remOrder {
		if mi.removes[id] && !emitted[id] {
			emitted[id] = true
			d.Remove = append(d.Remove, id)
		}
	}
	return d
}

// memberOp applies an operation on a Group's members (path "members", a
// members[value eq "id"] filter, or a "members" key of a path-less value). Entra's default
// dialect removes with a value list, which removes only those members; a remove without
// a value removes all (RFC 7644 §3.5.2.2). Replace adds only, unless the options ask for
// RFC semantics (see MembersReplaceMode).
func (p *patcher) memberOp(op string, path *Path, v any) error {
	if path != nil && (path.Sub != "" || path.Attr.Sub != "") {
		return p.errorf(TypeInvalidPath, "members are added or removed whole; a member's sub-attributes cannot be changed")
	}
	if path != nil && path.Filter != nil {
		return p.filteredMemberOp(op, path.Filter, v)
	}
	if op == PatchRemove && v == nil {
		p.members.clear()
		return nil
	}
	refs, err := NormalizeMembers(v)
	if err != nil {
		return p.wrap(err)
	}
	switch {
	case op == PatchRemove:
		for _, m := range refs {
			p.members.remove(m.Value)
		}
		return nil
	case op == PatchReplace && p.opts.MembersReplace == MembersReplaceExact:
		p.members.clear()
	}
	for _, m := range refs {
		p.members.add(m)
	}
	return nil
}

// filteredMemberOp handles members[value eq "id"] (also or-combined): remove drops those
// members, add and replace add them (with details from an object value).
func (p *patcher) filteredMemberOp(op string, f Filter, v any) error {
	ids, ok := memberFilterIDs(f, nil)
	if !ok {
		return p.errorf(TypeInvalidFilter, "members filters support only value eq \"id\", optionally joined by or")
	}
	for _, id := range ids {
		if err := checkMemberID(id); err != nil {
			return p.wrap(err)
		}
	}
	if op == PatchRemove {
		for _, id := range ids {
			p.members.remove(id)
		}
		return nil
	}
	var details MemberRef
	if obj, isObj := v.(map[string]any); isObj {
		details = MemberRef{Type: memberType(optString(obj, "type")), Display: optString(obj, "display"), Ref: optString(obj, "$ref")}
		if details.Display == "" {
			details.Display = optString(obj, "displayName")
		}
	}
	for _, id := range ids {
		m := details
		m.Value = id
		p.members.add(m)
	}
	return nil
}

// memberFilterIDs collects the ids of a filter made only of value eq "id" terms joined
// by or.
func memberFilterIDs(f Filter, ids []string) ([]string, bool) {
	switch x := f.(type) {
	case *OrFilter:
		ids, ok := memberFilterIDs(x.Left, ids)
		if !ok {
			return nil, false
		}
		return memberFilterIDs(x.Right, ids)
	case *CompareFilter:
		id, isStr := x.Value.(string)
		if x.Op != OpEq || !strings.EqualFold(x.Attr.Name, "value") || x.Attr.Sub != "" || x.Attr.URN != "" || !isStr || id == "" {
			return nil, false
		}
		return append(ids, id), true
	}
	return nil, false
}
