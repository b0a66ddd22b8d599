package scim

import (
	"maps"
	"slices"
	"strings"
	"unicode"
)

// Prepared is a POST or PUT body turned into what the gateway stores: the resource's own
// attributes (without id, meta, a user's groups or a group's members) and, for groups, the
// member list when the body had one.
type Prepared struct {
	Doc        Resource
	Members    []MemberRef
	HasMembers bool // the body carried a members attribute (PUT then replaces the set)
	ID         string
}

// PrepareResource validates and normalises a POST/PUT body for resourceType. Read-only
// attributes (id, meta, groups) are dropped as RFC 7643 §2.2 asks, null values and empty
// arrays are removed (both mean unassigned, RFC 7643 §2.5; a group's "members": [] still
// says "no members" to PUT), extension attributes sent as flat "URN:attr" keys are nested
// under their schema URN (RFC 7643 §3.3; one attribute in both forms with different values
// is 400 invalidValue), Entra's string booleans become booleans and the enterprise manager
// takes its object form. Two values of one multi-valued attribute with primary true are
// 400 invalidValue (RFC 7643 §2.4). Values are otherwise kept exactly as written.
func PrepareResource(resourceType string, body map[string]any) (*Prepared, error) {
	rt := ResourceTypeByName(resourceType)
	if rt == nil {
		return nil, NotFound("unknown resource type %q", resourceType)
	}
	if err := checkSchemasList(rt, body); err != nil {
		return nil, err
	}
	if err := checkSchemaKeys(rt, body); err != nil {
		return nil, err
	}
	doc := CloneResource(body)
	// "members": null, like [], says the group has no members (RFC 7643 §2.5), which a PUT
	// must hear before stripNulls forgets the key.
	membersNull := false
	if resourceType == GroupType {
		v, ok := Get(doc, "members")
		membersNull = ok && v == nil
	}
	stripNulls(doc)
	if err := nestFlat(rt, doc, flatStrict); err != nil {
		return nil, err
	}
	p := &Prepared{Doc: doc}
	if v, ok := Get(doc, "id"); ok {
		if s, isStr := v.(string); isStr {
			p.ID = s
		}
		Delete(doc, "id")
	}
	Delete(doc, "meta")
	if resourceType == UserType {
		Delete(doc, "groups")
	}
	if resourceType == GroupType {
		if v, ok := Get(doc, "members"); ok {
			members, err := NormalizeMembers(v)
			if err != nil {
				return nil, err
			}
			p.Members, p.HasMembers = members, true
			Delete(doc, "members")
		}
		p.HasMembers = p.HasMembers || membersNull
	}
	UnassignEmpty(doc)
	if err := NormalizeBooleans(resourceType, doc); err != nil {
		return nil, err
	}
	if err := normalizeManagerAttr(doc); err != nil {
		return nil, err
	}
	if err := CheckPrimary(resourceType, doc); err != nil {
		return nil, err
	}
	if err := CheckTypes(resourceType, doc); err != nil {
		return nil, err
	}
	if err := CheckRequired(resourceType, doc); err != nil {
		return nil, err
	}
	return p, nil
}

// checkSchemasList accepts a body without schemas (lenient clients) but rejects one whose
// schemas list is malformed or names the wrong resource type.
func checkSchemasList(rt *ResourceTypeDef, body map[string]any) error {
	v, ok := Get(body, "schemas")
	if !ok || v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return BadRequest(TypeInvalidSyntax, "schemas must be an array of schema URNs")
	}
	var hasCore, hasOther bool
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return BadRequest(TypeInvalidSyntax, "schemas must be an array of strings")
		}
		switch {
		case strings.EqualFold(s, rt.Schema):
			hasCore = true
		case strings.EqualFold(s, UserSchema), strings.EqualFold(s, GroupSchema):
			hasOther = true
		}
	}
	if hasOther && !hasCore {
		return BadRequest(TypeInvalidValue, "schemas names another resource type than %s; send %s resources to %s", rt.Name, rt.Name, rt.Endpoint)
	}
	for _, e := range list {
		if err := foreignSchema(rt, e.(string), TypeInvalidValue); err != nil {
			return prefixError(err, TypeInvalidValue, "schemas: ")
		}
	}
	return nil
}

// checkSchemaKeys rejects a body attribute under a schema of another resource type, nested
// ("urn:...:core:2.0:Group": {...}) or flat ("urn:...:core:2.0:Group:displayName"), as
// checkSchemasList does in "schemas".
func checkSchemaKeys(rt *ResourceTypeDef, body map[string]any) error {
	for _, k := range slices.Sorted(maps.Keys(body)) {
		if !IsURN(k) {
			continue
		}
		urn := k
		if SchemaByID(k) == nil {
			ap, err := ParseAttrPath(k)
			if err != nil || ap.URN == "" {
				continue
			}
			urn = ap.URN
		}
		if err := foreignSchema(rt, urn, TypeInvalidValue); err != nil {
			return prefixError(err, TypeInvalidValue, "attribute %s: ", quoteFilterSnippet(k))
		}
	}
	return nil
}

// stripNulls removes null members of objects at every level and null array elements.
func stripNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			x[k] = stripNulls(e)
		}
	case []any:
		out := x[:0]
		for _, e := range x {
			if e != nil {
				out = append(out, stripNulls(e))
			}
		}
		return out
	}
	return v
}

// UnassignEmpty removes, at every level of objects, the attributes whose value is an empty
// array: assigning an empty array to a multi-valued attribute makes it unassigned (RFC 7643
// §2.5), so it is neither stored nor returned, like null. An object this leaves empty (an
// extension or complex attribute whose every sub-attribute was unassigned) goes too.
// Elements of arrays are left as they are. It reports whether doc changed.
func UnassignEmpty(doc map[string]any) bool {
	changed := false
	for k, v := range doc {
		switch x := v.(type) {
		case []any:
			if len(x) == 0 {
				delete(doc, k)
				changed = true
			}
		case map[string]any:
			if UnassignEmpty(x) {
				changed = true
				if len(x) == 0 {
					delete(doc, k)
				}
			}
		}
	}
	return changed
}

// ManagerAsValue returns doc with its enterprise manager as {"value": id} alone, for a
// document stored by a version that kept a client's "$ref" or "displayName" there (see
// ManagerValue): doc itself when there is nothing to drop, else a copy of its top level
// and extension object (doc may be shared with the change being journaled).
func ManagerAsValue(doc Resource) Resource {
	extKey, ok := Key(doc, EnterpriseUserSchema)
	if !ok {
		return doc
	}
	ext, ok := doc[extKey].(map[string]any)
	if !ok {
		return doc
	}
	mk, ok := Key(ext, "manager")
	if !ok {
		return doc
	}
	m, ok := ext[mk].(map[string]any)
	if !ok || len(m) <= 1 {
		return doc
	}
	v, err := ManagerValue(m) // what a manager stored now is
	if err != nil || v == nil {
		return doc
	}
	ext = maps.Clone(ext)
	ext[mk] = v
	out := maps.Clone(doc)
	out[extKey] = ext
	return out
}

// normalizeManagerAttr turns the enterprise manager into {"value": id} (Entra fails on a bare
// string in responses; see ManagerValue for what else is dropped) and drops an empty one.
func normalizeManagerAttr(doc Resource) error {
	extKey, ok := Key(doc, EnterpriseUserSchema)
	if !ok {
		return nil
	}
	ext, ok := doc[extKey].(map[string]any)
	if !ok {
		return BadRequest(TypeInvalidValue, "%s must be an object of enterprise attributes", EnterpriseUserSchema)
	}
	mk, ok := Key(ext, "manager")
	if !ok {
		return nil
	}
	m, err := ManagerValue(ext[mk])
	if err != nil {
		return err
	}
	if m == nil {
		delete(ext, mk)
		return nil
	}
	ext[mk] = m
	return nil
}

// ManagerValue interprets every manager form Entra sends: a bare id, {"value": id} with an
// optional "$ref", or an array holding one such object. It returns nil for an empty value,
// which means "remove the manager", and otherwise {"value": id} alone: a client's "$ref" and
// "displayName" are never kept (displayName is read-only, and a value sent for it SHALL be
// ignored, RFC 7644 §3.3; a $ref the gateway did not write could point anywhere, as a
// member's could, whose $ref the gateway writes itself). Entra compares the manager by its
// value, so what it reads back still matches what it wrote.
func ManagerValue(v any) (map[string]any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		if strings.TrimSpace(x) == "" {
			return nil, nil
		}
		return map[string]any{"value": x}, nil
	case []any:
		switch len(x) {
		case 0:
			return nil, nil
		case 1:
			return ManagerValue(x[0])
		}
		return nil, BadRequest(TypeInvalidValue, "manager takes one value, got %d", len(x))
	case map[string]any:
		raw, _ := Get(x, "value")
		id, ok := raw.(string)
		if raw != nil && !ok {
			return nil, BadRequest(TypeInvalidValue, "manager.value must be a string id")
		}
		if strings.TrimSpace(id) == "" {
			return nil, nil
		}
		return map[string]any{"value": id}, nil
	}
	return nil, BadRequest(TypeInvalidValue, "manager must be an id, an object with a value, or an array of one such object")
}

// CheckRequired enforces the required attributes: userName for users, displayName for
// groups, as non-empty strings. Those names and externalId identify the resource to people
// and to the app (an account's login, a lookup key, a line of the app's log or of an
// export), so they hold no control characters (a line feed, NUL, ESC, U+0085...): no
// directory has such a name, and passed on they would forge log lines or break the app's
// lookups.
func CheckRequired(resourceType string, doc Resource) error {
	name := "userName"
	if resourceType == GroupType {
		name = "displayName"
	}
	v, _ := Get(doc, name)
	s, ok := v.(string)
	if !ok || strings.TrimSpace(s) == "" {
		return BadRequest(TypeInvalidValue, "%s is required and must be a non-empty string", name)
	}
	if err := checkNoControl(name, s); err != nil {
		return err
	}
	if ext, ok := Get(doc, "externalId"); ok {
		if s, ok := ext.(string); ok {
			return checkNoControl("externalId", s)
		}
	}
	return nil
}

// checkNoControl refuses a control character in the value s of attribute name.
func checkNoControl(name, s string) error {
	for i, r := range s {
		if unicode.IsControl(r) {
			return BadRequest(TypeInvalidValue, "%s %s holds the control character U+%04X at byte %d; names and ids are printable text",
				name, QuoteForDetail(s), r, i)
		}
	}
	return nil
}

// CheckTypes verifies that attributes defined in the schemas have the JSON shape their
// definition says (strings, booleans, complex objects, arrays for multi-valued ones).
// Unknown attributes are not checked: they are stored verbatim.
func CheckTypes(resourceType string, doc Resource) error {
	ix := canonIndexFor(resourceType) // FindAttr's lookups, without finding the type per key
	if ix == nil {
		return nil
	}
	for k, v := range doc {
		if IsURN(k) {
			s := ix.schemaFor(k) // the core schema or one of the type's extensions
			if s == nil {
				continue
			}
			ext, ok := v.(map[string]any)
			if !ok {
				return BadRequest(TypeInvalidValue, "%s must be an object of that schema's attributes", k)
			}
			for ek, ev := range ext {
				if err := checkAttrType(s.attrs.find(ek), ek, ev); err != nil {
					return err
				}
			}
			continue
		}
		if err := checkAttrType(ix.attrs.find(k), k, v); err != nil {
			return err
		}
	}
	return nil
}

func checkAttrType(a *Attribute, name string, v any) error {
	return checkAttrValue(a, name, "", v)
}

// checkAttrValue is checkAttrType for the value v of attribute a named parent (and, for a
// sub-attribute, sub): the name is joined only for an error, so that a valid document is
// checked without allocating.
func checkAttrValue(a *Attribute, parent, sub string, v any) error {
	if a == nil || v == nil {
		return nil
	}
	if a.MultiValued {
		list, ok := v.([]any)
		if !ok {
			return BadRequest(TypeInvalidValue, "%s is multi-valued: send an array", attrName(parent, sub))
		}
		for _, e := range list {
			if e == nil {
				continue
			}
			if err := checkSingleValue(a, parent, sub, e); err != nil {
				return err
			}
		}
		return nil
	}
	return checkSingleValue(a, parent, sub, v)
}

// checkSingleValue checks one (non-nil) value of a, or one element of a multi-valued a.
func checkSingleValue(a *Attribute, parent, sub string, v any) error {
	switch a.Type {
	case "string", "reference", "dateTime", "binary":
		if _, ok := v.(string); !ok {
			return BadRequest(TypeInvalidValue, "%s must be a string", attrName(parent, sub))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return BadRequest(TypeInvalidValue, "%s must be a boolean (true or false)", attrName(parent, sub))
		}
	case "complex":
		m, ok := v.(map[string]any)
		if !ok {
			return BadRequest(TypeInvalidValue, "%s is complex: send an object", attrName(parent, sub))
		}
		for sk, sv := range m {
			if sub == "" {
				if err := checkAttrValue(a.SubAttr(sk), parent, sk, sv); err != nil {
					return err
				}
				continue
			}
			// Deeper than a sub-attribute (SCIM has none such): the name as it was.
			if err := checkAttrValue(a.SubAttr(sk), attrName(parent, sub), sk, sv); err != nil {
				return err
			}
		}
	}
	return nil
}

// attrName is parent, or parent.sub.
func attrName(parent, sub string) string {
	if sub == "" {
		return parent
	}
	return parent + "." + sub
}

// WithoutWriteOnly returns r without its write-only attributes (a user's password): the
// gateway accepts them, never stores them and never returns them (RFC 7643 returned
// "never"). r itself is not changed.
func WithoutWriteOnly(resourceType string, r Resource) Resource {
	ix := canonIndexFor(resourceType)
	if ix == nil || len(ix.writeOnly) == 0 {
		return r
	}
	var drop []string
	for k := range r {
		if ix.isWriteOnly(k) {
			drop = append(drop, k)
		}
	}
	if len(drop) == 0 {
		return r
	}
	out := make(Resource, len(r))
	for k, v := range r {
		out[k] = v
	}
	for _, k := range drop {
		delete(out, k)
	}
	return out
}
