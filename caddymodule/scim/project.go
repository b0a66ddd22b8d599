package scim

import (
	"maps"
	"slices"
	"strings"
)

// Projection is a parsed attributes= or excludedAttributes= parameter (RFC 7644 §3.4.2.5).
// The zero value returns every attribute whose "returned" characteristic is default.
type Projection struct {
	include []AttrPath
	exclude []AttrPath
}

// MaxProjectionAttrs bounds the number of names in attributes=/excludedAttributes=.
const MaxProjectionAttrs = 100

// ParseProjection parses the comma-separated attributes and excludedAttributes lists. Names
// may carry a schema URN and a sub-attribute; a value filter (emails[type eq "work"]) is
// accepted and selects the attribute as a whole. Both lists at once are 400 invalidSyntax.
func ParseProjection(attributes, excluded string) (Projection, error) {
	var p Projection
	if strings.TrimSpace(attributes) != "" && strings.TrimSpace(excluded) != "" {
		return p, BadRequest(TypeInvalidSyntax, "attributes and excludedAttributes cannot be used together; send one of them")
	}
	var err error
	if p.include, err = parseAttrList(attributes); err != nil {
		return p, err
	}
	if p.exclude, err = parseAttrList(excluded); err != nil {
		return p, err
	}
	return p, nil
}

func parseAttrList(list string) ([]AttrPath, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	parts := splitAttrList(list)
	if len(parts) > MaxProjectionAttrs {
		return nil, BadRequest(TypeInvalidPath, "too many attribute names (%d, at most %d)", len(parts), MaxProjectionAttrs)
	}
	out := make([]AttrPath, 0, len(parts))
	for _, part := range parts {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if SchemaByID(part) != nil || (IsURN(part) && !strings.Contains(part[strings.LastIndex(part, ":")+1:], ".") && looksLikeSchemaURN(part)) {
			out = append(out, AttrPath{URN: part})
			continue
		}
		if strings.Contains(part, "[") {
			pth, err := ParsePath(part)
			if err != nil {
				return nil, err
			}
			a := pth.Attr
			a.Sub = pth.Sub
			out = append(out, a)
			continue
		}
		ap, err := ParseAttrPath(part)
		if err != nil {
			return nil, err
		}
		out = append(out, ap)
	}
	return out, nil
}

// looksLikeSchemaURN: a bare extension schema URN ends with a version-like segment followed
// by the resource name, e.g. "...:extension:Custom:2.0:User".
func looksLikeSchemaURN(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) < 3 {
		return false
	}
	return strings.Contains(parts[len(parts)-2], ".") && !strings.Contains(parts[len(parts)-1], ".")
}

// splitAttrList splits on commas outside brackets and quotes.
func splitAttrList(s string) []string {
	var parts []string
	depth, inQuote, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '[':
			depth++
		case c == ']':
			depth--
		case c == ',' && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// Wants reports whether the projection may return the top-level attribute name of the core
// schema (used to skip expensive work such as loading a group's members). A name in its
// fully qualified form (urn:...:core:2.0:Group:members) counts as the name.
func (p Projection) Wants(name string) bool {
	if len(p.include) > 0 {
		for _, a := range p.include {
			if coreOrNone(a.URN) && (strings.EqualFold(a.Name, name) || a.Name == "" && a.URN != "") {
				return true
			}
		}
		return false
	}
	for _, a := range p.exclude {
		if coreOrNone(a.URN) && a.Sub == "" && (strings.EqualFold(a.Name, name) || a.Name == "" && a.URN != "") {
			return false
		}
	}
	return true
}

// alwaysKept reports whether k is id, schemas or meta, which excluding a whole core schema
// leaves (meta is common to every resource, not the core schema's).
func alwaysKept(k string) bool {
	return strings.EqualFold(k, "id") || strings.EqualFold(k, "schemas") || strings.EqualFold(k, "meta")
}

// coreOrNone reports whether urn is empty or a core schema's (User or Group).
func coreOrNone(urn string) bool {
	return urn == "" || isCoreSchema(urn)
}

// forType is a as it applies to a resource of resourceType: a core attribute in its fully
// qualified form (RFC 7644 §3.10) is the attribute itself, so its URN goes; ok is false
// when a names the core schema of another resource type (urn:...:User:userName on a Group
// matches nothing), and whole is set for the type's core schema itself.
func forType(resourceType string, a AttrPath) (out AttrPath, whole, ok bool) {
	if !isCoreSchema(a.URN) {
		return a, false, true
	}
	if rt := ResourceTypeByName(resourceType); rt != nil && !strings.EqualFold(a.URN, rt.Schema) {
		return a, false, false
	}
	if a.Name == "" {
		return a, true, true
	}
	a.URN = ""
	return a, false, true
}

// Apply projects a rendered resource in place: r's top level may change, the objects and
// arrays below it do not (an excluded sub-attribute or extension attribute is dropped
// from a copy of the object holding it), so r may share them with a resource the caller
// still uses. "id" and "schemas" are always returned.
func (p Projection) Apply(resourceType string, r Resource) Resource {
	if len(p.include) > 0 {
		return p.applyInclude(resourceType, r)
	}
	for _, a := range p.exclude {
		a, whole, ok := forType(resourceType, a)
		switch {
		case !ok:
		case whole:
			for k := range r {
				if !IsURN(k) && !alwaysKept(k) {
					delete(r, k)
				}
			}
		default:
			removeAttr(resourceType, r, a)
		}
	}
	return r
}

func (p Projection) applyInclude(resourceType string, r Resource) Resource {
	out := Resource{}
	for _, k := range []string{"id", "schemas"} {
		if v, ok := r[k]; ok {
			out[k] = v
		}
	}
	for _, a := range p.include {
		a, whole, ok := forType(resourceType, a)
		switch {
		case !ok:
		case whole:
			for k, v := range r {
				if !IsURN(k) {
					out[k] = v
				}
			}
		default:
			copyAttr(resourceType, r, out, a)
		}
	}
	return out
}

// container returns the object that holds attribute a: the extension object for URN
// attributes (or unprefixed extension attributes), otherwise the resource itself.
func container(resourceType string, r Resource, a AttrPath, create bool) (map[string]any, string) {
	urn := a.URN
	if urn == "" {
		if _, schemaURN := FindAttr(resourceType, a); schemaURN != "" && !isCoreSchema(schemaURN) {
			urn = schemaURN
		}
	}
	if urn == "" {
		return r, ""
	}
	key, ok := Key(r, urn)
	if !ok {
		if !create {
			return nil, urn
		}
		key = urn
		r[key] = map[string]any{}
	}
	m, _ := r[key].(map[string]any)
	return m, key
}

func isCoreSchema(urn string) bool {
	return strings.EqualFold(urn, UserSchema) || strings.EqualFold(urn, GroupSchema)
}

func copyAttr(resourceType string, from, to Resource, a AttrPath) {
	if a.Name == "" { // a whole extension
		if k, ok := Key(from, a.URN); ok {
			to[k] = from[k]
		}
		return
	}
	src, urnKey := container(resourceType, from, a, false)
	if src == nil {
		return
	}
	k, ok := Key(src, a.Name)
	if !ok {
		return
	}
	dst := map[string]any(to)
	if urnKey != "" {
		d, _ := to[urnKey].(map[string]any)
		if d == nil {
			d = map[string]any{}
			to[urnKey] = d
		}
		dst = d
	}
	if a.Sub == "" {
		dst[k] = src[k]
		return
	}
	dst[k] = mergeSub(dst[k], src[k], a.Sub)
}

// mergeSub copies sub-attribute sub of v (an object, or each element of an array) into cur.
func mergeSub(cur, v any, sub string) any {
	switch x := v.(type) {
	case map[string]any:
		m, _ := cur.(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		if sk, ok := Key(x, sub); ok {
			m[sk] = x[sk]
		}
		return m
	case []any:
		curs, _ := cur.([]any)
		out := make([]any, len(x))
		for i, e := range x {
			var c any
			if i < len(curs) {
				c = curs[i]
			}
			out[i] = mergeSub(c, e, sub)
		}
		return out
	}
	return cur
}

func removeAttr(resourceType string, r Resource, a AttrPath) {
	if a.Name == "" {
		Delete(r, a.URN)
		return
	}
	if a.URN == "" && a.Sub == "" && (strings.EqualFold(a.Name, "id") || strings.EqualFold(a.Name, "schemas")) {
		return // returned always
	}
	m, key := container(resourceType, r, a, false)
	if m == nil {
		return
	}
	if key != "" { // an extension object: r's own from here on
		m = maps.Clone(m)
		r[key] = m
	}
	if a.Sub == "" {
		Delete(m, a.Name)
		if key != "" && len(m) == 0 {
			delete(r, key) // an extension object without attributes says nothing
		}
		return
	}
	k, ok := Key(m, a.Name)
	if !ok {
		return
	}
	switch x := m[k].(type) {
	case map[string]any:
		x = maps.Clone(x)
		Delete(x, a.Sub)
		m[k] = x
	case []any:
		x = slices.Clone(x)
		for i, e := range x {
			if em, ok := e.(map[string]any); ok {
				em = maps.Clone(em)
				Delete(em, a.Sub)
				x[i] = em
			}
		}
		m[k] = x
	}
}
