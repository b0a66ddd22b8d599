package mapping

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Gateway values a body field can take with "from" instead of a SCIM attribute ($role_ids:
// the user's roles, every one, in groups.roles.assign only). URL and
// string templates name the same values without the "$" ({id}, {scim_id}, {member_id},
// {answer.0.user.id}, {header.0.Location}).
const (
	srcNativeID   = "$id"
	srcSCIMID     = "$scim_id"
	srcMemberID   = "$member_id"
	srcMemberIDs  = "$member_ids"
	srcRoleIDs    = "$role_ids"
	srcAnswer     = "$answer" // $answer.N.path: a value of the answer of call N of the flow
	srcHeader     = "$header" // $header.N.Name: a header of the answer of call N of the flow
	maxSourceText = 1024
)

// source is a compiled value source: a SCIM attribute path resolved against the resource,
// or one of the gateway values above.
type source struct {
	text     string // as written in the mapping, for messages
	reserved string // one of the src* constants, or ""

	// For SCIM attributes.
	key      string                // canonical lower-case path, matched against Input.Changed
	urn      string                // extension container key, "" for the core schema
	name     string                // attribute name
	sub      string                // sub-attribute (name.givenName), "" if none
	filter   *scim.ValuePathFilter // emails[type eq "work"], nil if none
	elemSub  string                // sub-attribute after "]", "" if none
	manager  bool                  // the enterprise manager: resolves to the manager's native id
	rtype    string                // resource type, for filter evaluation
	multiVal bool                  // the attribute is multi-valued

	// For $answer and $header: the flow's call (from 0) and the gjson path or header name.
	step  int
	field string
}

// compileSource parses a "from" value, a first_non_empty argument or a template
// placeholder. Gateway values are spelled "$id" here; templates pass their placeholder
// names already mapped to these constants.
func compileSource(resourceType, text string) (*source, error) {
	if len(text) > maxSourceText {
		return nil, fmt.Errorf("the SCIM path is longer than %d bytes", maxSourceText)
	}
	if strings.HasPrefix(text, "$") {
		switch text {
		case srcNativeID, srcSCIMID, srcMemberID, srcMemberIDs, srcRoleIDs:
			return &source{text: text, reserved: text}, nil
		}
		if strings.HasPrefix(text, srcAnswer+".") || strings.HasPrefix(text, srcHeader+".") {
			return compileAnswerSource(text)
		}
		return nil, fmt.Errorf("unknown gateway value %q; use $id, $scim_id, $member_id, $member_ids, $role_ids, $answer.N.path or $header.N.Name", text)
	}
	p, err := scim.ParsePath(text)
	if err != nil {
		return nil, fmt.Errorf("bad SCIM path %q: %s", text, scimDetail(err))
	}
	s := &source{text: text, rtype: resourceType, name: p.Attr.Name, sub: p.Attr.Sub, elemSub: p.Sub}
	attr, err := s.resolveSchema(resourceType, p.Attr)
	if err != nil {
		return nil, err
	}
	if p.Filter != nil {
		if err := s.setFilter(resourceType, p, attr); err != nil {
			return nil, err
		}
	}
	s.key = canonicalKey(s.urn, s.name, s.sub)
	return s, nil
}

// compileAnswerSource parses $answer.N.path (a gjson path into the JSON answer of the
// flow's call N, from 0) and $header.N.Name (a header of that answer).
func compileAnswerSource(text string) (*source, error) {
	kind, rest, _ := strings.Cut(text, ".")
	num, field, ok := strings.Cut(rest, ".")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n < 0 || n >= maxFlowCalls || field == "" {
		return nil, fmt.Errorf("%q: write %s.N.%s, N the number of an earlier call of the flow (from 0)", text, kind, map[string]string{srcAnswer: "path", srcHeader: "Header-Name"}[kind])
	}
	switch kind {
	case srcAnswer:
		if err := compileGJSONPath(field); err != nil {
			return nil, fmt.Errorf("%q: %w", text, err)
		}
	case srcHeader:
		if !validHeaderName(field) {
			return nil, fmt.Errorf("%q: %q is not a header name", text, field)
		}
	}
	return &source{text: text, reserved: kind, step: n, field: field}, nil
}

// resolveSchema finds the attribute's schema, checks the names against it, and sets the
// container. Attributes of the core schema may be written with or without its URN;
// enterprise attributes of users may be written without theirs (Entra sends "manager"
// bare); custom extension URNs accept any attribute name, as the gateway stores them
// verbatim.
func (s *source) resolveSchema(resourceType string, a scim.AttrPath) (*scim.Attribute, error) {
	rt := scim.ResourceTypeByName(resourceType)
	if a.URN != "" && strings.EqualFold(a.URN, rt.Schema) {
		a.URN = ""
	}
	if a.URN != "" {
		if scim.SchemaByID(a.URN) == nil {
			s.urn = a.URN // a custom extension: stored verbatim, any attribute name
			return nil, nil
		}
		if !containsFold(rt.Extensions, a.URN) {
			return nil, fmt.Errorf("%s is not an extension of %s resources", a.URN, strings.ToLower(resourceType))
		}
	}
	def, urn := scim.FindAttr(resourceType, a)
	if def == nil && a.URN == "" && resourceType == scim.UserType {
		ext := scim.SchemaByID(scim.EnterpriseUserSchema)
		if def = ext.Attr(a.Name); def != nil {
			urn = ext.ID
		}
	}
	if def == nil {
		if a.URN != "" {
			return nil, fmt.Errorf("unknown attribute %q of %s", a.Name, a.URN)
		}
		return nil, fmt.Errorf("unknown attribute %q of %s resources (custom attributes need their extension URN, e.g. urn:ietf:params:scim:schemas:extension:MyApp:2.0:%s:%s)", a.Name, strings.ToLower(resourceType), resourceType, a.Name)
	}
	if urn != rt.Schema {
		s.urn = urn
	}
	s.name = def.Name
	s.multiVal = def.MultiValued
	s.manager = strings.EqualFold(urn, scim.EnterpriseUserSchema) && strings.EqualFold(def.Name, "manager")
	if err := s.checkSub(def, a.Sub); err != nil {
		return nil, err
	}
	return def, nil
}

func containsFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// checkSub checks a dotted sub-attribute against the definition and canonicalises its
// spelling.
func (s *source) checkSub(def *scim.Attribute, sub string) error {
	if sub == "" {
		return nil
	}
	if len(def.SubAttributes) == 0 {
		return fmt.Errorf("%s has no sub-attributes", def.Name)
	}
	sd := def.SubAttr(sub)
	if sd == nil {
		return fmt.Errorf("%s has no sub-attribute %q", def.Name, sub)
	}
	s.sub = sd.Name
	if s.manager && !strings.EqualFold(sd.Name, "value") {
		s.manager = false // manager.displayName is plain data
	}
	return nil
}

// setFilter compiles emails[type eq "work"].value: the value filter is checked against the
// schema once here, and evaluated per element with scim.Match at request time.
func (s *source) setFilter(resourceType string, p scim.Path, def *scim.Attribute) error {
	if def != nil && !def.MultiValued {
		return fmt.Errorf("%s is not multi-valued; a [filter] selects elements of a multi-valued attribute", def.Name)
	}
	if def != nil && p.Sub != "" {
		sd := def.SubAttr(p.Sub)
		if sd == nil {
			return fmt.Errorf("%s has no sub-attribute %q", def.Name, p.Sub)
		}
		s.elemSub = sd.Name
	}
	s.multiVal = true
	s.filter = &scim.ValuePathFilter{Attr: scim.AttrPath{URN: s.urn, Name: s.name}, Inner: p.Filter}
	if err := scim.ValidateFilter(s.filter, resourceType); err != nil {
		return fmt.Errorf("bad filter in %q: %s", s.text, scimDetail(err))
	}
	s.manager = false // an element of a multi-valued attribute is never the manager reference
	return nil
}

// canonicalKey is the lower-case dotted path used to decide whether an attribute changed.
func canonicalKey(urn, name, sub string) string {
	k := strings.ToLower(name)
	if sub != "" {
		k += "." + strings.ToLower(sub)
	}
	if urn != "" {
		k = strings.ToLower(urn) + ":" + k
	}
	return k
}

// changedKey canonicalises one entry of Input.Changed the way sources are canonicalised,
// so "name", "NAME.givenName", "manager" and the full enterprise URN path all compare.
// Entries that are not attribute paths are compared lower-cased as they are.
func changedKey(resourceType, path string) string {
	a, err := scim.ParseAttrPath(path)
	if err != nil {
		return strings.ToLower(path)
	}
	if a.Name == "" {
		return strings.ToLower(a.URN)
	}
	rt := scim.ResourceTypeByName(resourceType)
	if rt != nil && strings.EqualFold(a.URN, rt.Schema) {
		a.URN = ""
	}
	if a.URN == "" && resourceType == scim.UserType {
		if d, _ := scim.FindAttr(resourceType, a); d == nil && scim.SchemaByID(scim.EnterpriseUserSchema).Attr(a.Name) != nil {
			a.URN = scim.EnterpriseUserSchema
		}
	}
	return canonicalKey(a.URN, a.Name, a.Sub)
}

// keysOverlap reports whether one canonical path is the other or contains it: a change
// of "name" changes "name.givenname", and a change of "name.givenname" changes "name".
func keysOverlap(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	if !strings.HasPrefix(b, a) {
		return false
	}
	return len(a) == len(b) || b[len(a)] == '.' || b[len(a)] == ':'
}

// resolve returns the source's value in doc; ok is false when the attribute is absent
// or null. Values are never copied: transforms build new values instead of mutating.
func (s *source) resolve(ev *evalCtx) (any, bool, error) {
	switch s.reserved {
	case "":
	case srcAnswer, srcHeader:
		return s.resolveAnswer(ev)
	default:
		return ev.reserved(s.reserved)
	}
	doc := ev.doc
	if s.urn != "" {
		ext, ok := scim.Get(doc, s.urn)
		if !ok {
			return nil, false, nil
		}
		if doc, ok = ext.(map[string]any); !ok {
			return nil, false, nil
		}
	}
	raw, ok := scim.Get(doc, s.name)
	if !ok || raw == nil {
		return nil, false, nil
	}
	switch {
	case s.manager:
		return s.managerNativeID(ev, raw)
	case s.filter != nil:
		return s.firstMatch(raw)
	case s.sub != "":
		return subValue(raw, s.sub)
	}
	return raw, true, nil
}

// managerNativeID turns the stored manager reference into the manager's native id. A
// manager the directory no longer has (deleted, or never provisioned) is no manager: the
// field is absent, as for a user without one, so that the reports' changes (their
// offboarding) go through instead of waiting for a manager that will never come back. On
// a create, a manager the app does not know yet leaves the field out too. Otherwise a
// manager without an account in the app is an error rather than a silently missing field:
// Entra would not re-send the reference, so dropping it would lose it for good; failing
// makes Entra retry once the manager's account exists.
func (s *source) managerNativeID(ev *evalCtx, raw any) (any, bool, error) {
	ref, err := scim.ManagerValue(raw)
	if err != nil || ref == nil {
		return nil, false, nil
	}
	id, _ := ref["value"].(string)
	if ev.in.NativeIDOf == nil {
		return nil, false, errNoIDMap
	}
	native, state := ev.in.NativeIDOf(id)
	switch {
	case state == RefLinked && native != "":
		return native, true, nil
	case state == RefGone:
		return nil, false, nil
	case ev.in.Event == change.Create:
		// Entra links managers in a later PATCH (its reference pass), which retries
		// until the manager exists; a create must not fail for a link it cannot make yet.
		return nil, false, nil
	}
	return nil, false, unresolvedError("the manager (SCIM id %q) has no account in the app yet; retry after it is provisioned", id)
}

// firstMatch returns the first element of a multi-valued attribute that the value filter
// matches (or its sub-attribute). An element is matched on its own, wrapped as a one-element
// resource, so the filter compares exactly as SCIM filters do elsewhere in the gateway.
func (s *source) firstMatch(raw any) (any, bool, error) {
	list, ok := raw.([]any)
	if !ok {
		list = []any{raw}
	}
	for _, e := range list {
		elem, ok := e.(map[string]any)
		if !ok {
			continue
		}
		var wrapped scim.Resource
		if s.urn != "" {
			wrapped = scim.Resource{s.urn: map[string]any{s.name: []any{elem}}}
		} else {
			wrapped = scim.Resource{s.name: []any{elem}}
		}
		if m, err := scim.Match(s.filter, s.rtype, wrapped); err != nil || !m {
			continue
		}
		if s.elemSub == "" {
			return elem, true, nil
		}
		v, ok := scim.Get(elem, s.elemSub)
		if !ok || v == nil {
			return nil, false, nil
		}
		return v, true, nil
	}
	return nil, false, nil
}

// subValue reads name.sub: from an object, or from every element of a list (emails.value
// is the list of all addresses).
func subValue(raw any, sub string) (any, bool, error) {
	switch x := raw.(type) {
	case map[string]any:
		v, ok := scim.Get(x, sub)
		return v, ok && v != nil, nil
	case []any:
		var out []any
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				if v, ok := scim.Get(m, sub); ok && v != nil {
					out = append(out, v)
				}
			}
		}
		return out, len(out) > 0, nil
	}
	return nil, false, nil
}

// resolveAnswer reads $answer.N.path or $header.N.Name from the flow's answers so far.
// Numbers keep their digits (an id 9007199254740993 stays exact).
func (s *source) resolveAnswer(ev *evalCtx) (any, bool, error) {
	if s.step >= len(ev.in.Answers) {
		return nil, false, nil // that call was not made (its condition did not hold)
	}
	a := ev.in.Answers[s.step]
	if s.reserved == srcHeader {
		v := a.Header.Get(s.field)
		return v, v != "", nil
	}
	if !json.Valid(a.Body) {
		return nil, false, nil
	}
	r := gjson.GetBytes(a.Body, s.field)
	switch {
	case !r.Exists() || r.Type == gjson.Null:
		return nil, false, nil
	case r.Type == gjson.Number:
		return json.Number(r.Raw), true, nil
	case r.Type == gjson.String:
		return r.Str, true, nil
	case r.Type == gjson.True || r.Type == gjson.False:
		return r.Bool(), true, nil
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(r.Raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, false, nil
	}
	return v, true, nil
}
