package scim

import (
	"slices"
	"strconv"
	"strings"
)

// MemberRef is one member of a Group as a client wrote it. Display comes from "display"
// or, failing that, "displayName" (Microsoft's Postman collection's name for it). Type is
// "", User or Group. Ref is the client's "$ref": checked, never stored (the gateway writes
// each member's $ref itself, from its type and id) and never dereferenced.
type MemberRef struct{ Value, Type, Display, Ref string }

// MemberDelta is the change a PATCH makes to a Group's member set. The store applies
// RemoveAll first, then Remove and Add (which never share an id).
type MemberDelta struct {
	Add       []MemberRef
	Remove    []string // member ids
	RemoveAll bool     // remove every member first (then Add applies)
}

// NormalizeMembers reads a members value: an array of member objects ("value" required,
// a non-empty string; optional "type", "display" or "displayName", "$ref", each a string
// or null, and nothing else), where a bare string stands for a member id (Microsoft's
// Postman collection sends "value": "id"), or a single such object or string. null is no
// members. Duplicate ids keep their first occurrence. Errors are 400 invalidValue: a
// member's sub-attribute the gateway would not keep, or a type other than User or Group,
// is refused rather than dropped.
//
// A MemberList (from DecodePatchBody) holds only members the generic path accepts; its
// members may be its own list, which callers never modify.
func NormalizeMembers(v any) ([]MemberRef, error) {
	if l, ok := v.(MemberList); ok {
		return l.members(), nil
	}
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
		m, hasValue, err := memberDetails(x)
		if err != nil {
			return MemberRef{}, err
		}
		if !hasValue || strings.TrimSpace(m.Value) == "" {
			return MemberRef{}, BadRequest(TypeInvalidValue, "a member needs \"value\": the member's id as a non-empty string")
		}
		if err := checkMemberID(m.Value); err != nil {
			return MemberRef{}, err
		}
		return m, nil
	}
	return MemberRef{}, BadRequest(TypeInvalidValue, "a member must be an object with \"value\" or an id string")
}

// memberDetails reads a member object's sub-attributes (names case-insensitively): value,
// display (or displayName), type and $ref, each a string or null. Any other sub-attribute
// is 400 invalidValue naming it: the gateway keeps a member's value, display and type
// only, and a sub-attribute it dropped (an "operation": "delete" of SCIM 1.1, say) would
// silently change what the request means. A type must be User or Group (any case).
func memberDetails(obj map[string]any) (m MemberRef, hasValue bool, err error) {
	var display, displayName string
	for _, k := range sortedKeys(obj) {
		name := strings.ToLower(k)
		switch name {
		case "value", "display", "displayname", "type", "$ref":
		default:
			return MemberRef{}, false, BadRequest(TypeInvalidValue, "a member has no sub-attribute %s: send value, display, type or $ref", QuoteForDetail(k))
		}
		s, isStr := obj[k].(string)
		switch {
		case name == "value" && !isStr:
			return MemberRef{}, false, BadRequest(TypeInvalidValue, "a member needs \"value\": the member's id as a non-empty string")
		case obj[k] != nil && !isStr:
			return MemberRef{}, false, BadRequest(TypeInvalidValue, "a member's %q must be a string", k)
		}
		switch name {
		case "value":
			m.Value, hasValue = s, true
		case "display":
			display = s
		case "displayname":
			displayName = s
		case "type":
			if m.Type = memberType(s); m.Type != "" && m.Type != UserType && m.Type != GroupType {
				return MemberRef{}, false, BadRequest(TypeInvalidValue, "a member's type is User or Group, not %s", QuoteForDetail(s))
			}
		case "$ref":
			m.Ref = s
		}
	}
	if m.Display = display; m.Display == "" {
		m.Display = displayName
	}
	return m, hasValue, nil
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
// memberDetails to refuse.
func memberType(s string) string {
	switch {
	case strings.EqualFold(s, UserType):
		return UserType
	case strings.EqualFold(s, GroupType):
		return GroupType
	}
	return s
}

// memberIntent accumulates member operations in order, so that the delta says what the
// request means in the end: an add after a remove of the same id keeps the member, a
// remove after an add removes it. The adds of a request's first add are its own list,
// taken as it is (a PATCH adding 100,000 members needs no second list of them, nor a map);
// the index by id is made only when a later operation needs it.
type memberIntent struct {
	removeAll bool
	// adds holds the members added, in the order ids were first added; a member removed
	// again is a zero MemberRef (a re-add puts it back in place). shared reports that adds
	// is an operation's list, copied before any change.
	adds     []MemberRef
	shared   bool
	addAt    map[string]int // index in adds by id; nil until needed
	dropped  int            // zero entries in adds
	removes  map[string]bool
	remOrder []string
}

func newMemberIntent() *memberIntent {
	return &memberIntent{removes: map[string]bool{}}
}

// index makes adds' index by id, and adds the intent's own.
func (mi *memberIntent) index() {
	if mi.shared {
		mi.adds, mi.shared = slices.Clone(mi.adds), false
	}
	if mi.addAt != nil {
		return
	}
	mi.addAt = make(map[string]int, len(mi.adds))
	for i, m := range mi.adds {
		mi.addAt[m.Value] = i
	}
}

func (mi *memberIntent) add(m MemberRef) {
	delete(mi.removes, m.Value)
	mi.index()
	if i, ok := mi.addAt[m.Value]; ok {
		if mi.adds[i].Value == "" {
			mi.dropped--
		}
		mi.adds[i] = m
		return
	}
	mi.addAt[m.Value] = len(mi.adds)
	mi.adds = append(mi.adds, m)
}

// addAll adds members with distinct ids (NormalizeMembers' result, which it does not
// modify): the first add takes the list itself.
func (mi *memberIntent) addAll(refs []MemberRef) {
	if len(mi.adds) > 0 || mi.addAt != nil {
		for _, m := range refs {
			mi.add(m)
		}
		return
	}
	for _, m := range refs {
		delete(mi.removes, m.Value)
	}
	mi.adds, mi.shared = refs, true
}

func (mi *memberIntent) remove(id string) {
	if len(mi.adds) > 0 {
		mi.index()
		if i, ok := mi.addAt[id]; ok && mi.adds[i].Value != "" {
			mi.adds[i] = MemberRef{}
			mi.dropped++
		}
	}
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
	mi.adds, mi.shared, mi.addAt, mi.dropped = nil, false, nil, 0
	clear(mi.removes)
	mi.remOrder = mi.remOrder[:0]
}

// delta returns the final intent, in the order ids were first mentioned. It consumes the
// intent (the patch is over when it is called): its Add may be an operation's own list.
func (mi *memberIntent) delta() *MemberDelta {
	d := &MemberDelta{RemoveAll: mi.removeAll}
	switch n := len(mi.adds) - mi.dropped; {
	case n > 0 && mi.dropped == 0:
		d.Add = mi.adds
	case n > 0:
		d.Add = make([]MemberRef, 0, n)
		for _, m := range mi.adds {
			if m.Value != "" {
				d.Add = append(d.Add, m)
			}
		}
	}
	if len(mi.removes) > 0 {
		d.Remove = make([]string, 0, len(mi.removes))
	}
	for _, id := range mi.remOrder {
		if mi.removes[id] {
			delete(mi.removes, id)
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
	p.members.addAll(refs)
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
	details, err := filteredMemberDetails(ids, v)
	if err != nil {
		return p.wrap(err)
	}
	for _, id := range ids {
		m := details
		m.Value = id
		p.members.add(m)
	}
	return nil
}

// filteredMemberDetails reads the value of an add or replace on members[value eq "id"]:
// none, an object of the member's sub-attributes, the id itself, or an array of one such
// value. A "value" in it that is not the member the path names is 400 invalidValue.
func filteredMemberDetails(ids []string, v any) (MemberRef, error) {
	if list, isList := v.([]any); isList {
		switch len(list) {
		case 0:
			return MemberRef{}, nil
		case 1:
			v = list[0]
		default:
			return MemberRef{}, BadRequest(TypeInvalidValue, "members[value eq \"…\"] names its members; the value holds at most one member's sub-attributes")
		}
	}
	var m MemberRef
	hasValue := false
	switch x := v.(type) {
	case nil:
	case string:
		m.Value, hasValue = x, true
	case map[string]any:
		var err error
		if m, hasValue, err = memberDetails(x); err != nil {
			return MemberRef{}, err
		}
	default:
		return MemberRef{}, BadRequest(TypeInvalidValue, "members[value eq \"…\"] takes an object of the member's sub-attributes (display, type) as its value, or none")
	}
	if hasValue && (len(ids) != 1 || m.Value != ids[0]) {
		return MemberRef{}, BadRequest(TypeInvalidValue, "the value names the member %s, not the one the path names", QuoteForDetail(m.Value))
	}
	return m, nil
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
