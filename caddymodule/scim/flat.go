package scim

import (
	"sort"
	"strings"
)

// Entra writes extension attributes as flat top-level keys, "URN:attr" (custom extensions
// always, the enterprise one at times), where RFC 7643 §3.3 nests them under the schema
// URN: {"URN": {"attr": ...}}. They are one attribute. The gateway stores the nested form,
// which everything else reads (patching, filters, projection, mapping, policies), and
// nests flat keys as a resource is prepared, as a PATCH starts from a stored document, and
// as a stored document is read.

// flatMode says how nestFlat treats a flat key it cannot nest.
type flatMode int

const (
	// flatStrict is for a body the client sent (POST, PUT): one attribute in both forms
	// with different values, or a flat key that cannot be nested, is 400 invalidValue.
	flatStrict flatMode = iota
	// flatCheck only checks a PATCH's path-less value for conflicts between its extension
	// keys; core-schema keys are left to the PATCH's own path handling.
	flatCheck
	// flatLenient is for stored documents: the nested value wins a conflict (under the
	// defect this fixes, it was the later PATCH's), and a flat key that cannot be nested
	// stays as it is, so nothing stored is lost.
	flatLenient
)

// flatKey is a top-level key naming an attribute in full: "URN:attr" or "URN:attr.sub".
type flatKey struct {
	key  string     // as written
	urn  string     // container key for a new object; "" for the core schema (the root)
	name string     // attribute name, canonical when the schema defines it
	sub  string     // sub-attribute, canonical when defined; "" for none
	attr *Attribute // definition; nil for custom extension attributes
}

// NestFlatAttributes moves the flat "URN:attr" keys of a stored document into the nested
// form, in place. A value the document also holds nested stays as it is (the flat copy
// goes), and a flat key that cannot be nested is kept. Documents stored before flat keys
// were nested on write read like those stored after.
func NestFlatAttributes(resourceType string, doc Resource) {
	_ = nestFlat(ResourceTypeByName(resourceType), doc, flatLenient)
}

// nestFlat moves doc's flat keys into the nested form, in sorted key order so that the
// outcome never depends on map order. For an unknown resource type nothing is nested.
func nestFlat(rt *ResourceTypeDef, doc map[string]any, mode flatMode) error {
	if rt == nil {
		return nil
	}
	var flats []flatKey
	for k := range doc {
		if fk, ok := parseFlatKey(rt, k); ok && (mode != flatCheck || fk.urn != "") {
			flats = append(flats, fk)
		}
	}
	if len(flats) == 0 {
		return nil
	}
	sort.Slice(flats, func(i, j int) bool { return flats[i].key < flats[j].key })
	placed := map[string]string{} // attribute (lower-cased) -> the flat key that set it
	for _, fk := range flats {
		v := doc[fk.key]
		delete(doc, fk.key)
		err := placeFlat(doc, fk, v, placed)
		switch {
		case err == nil:
		case mode != flatLenient:
			return err.Error
		case !err.conflict:
			doc[fk.key] = v
		}
	}
	return nil
}

// parseFlatKey recognises k as a schema-qualified attribute of resource type rt: the core
// schema's (nested at the root), an extension's of rt, or a custom extension's (a URN in
// the schema form ...:<version>:<Resource>, which the gateway does not define). Known
// schemas of other resource types and URNs of other shapes are not attributes here.
func parseFlatKey(rt *ResourceTypeDef, k string) (flatKey, bool) {
	if !IsURN(k) || schemaURN(k) {
		return flatKey{}, false
	}
	ap, err := ParseAttrPath(k)
	if err != nil || ap.Name == "" || !schemaURN(ap.URN) {
		return flatKey{}, false
	}
	fk := flatKey{key: k, urn: ap.URN, name: ap.Name, sub: ap.Sub}
	switch s := SchemaByID(ap.URN); {
	case strings.EqualFold(ap.URN, rt.Schema):
		fk.urn = ""
		fk.attr, _ = FindAttr(rt.Name, AttrPath{Name: ap.Name})
	case s == nil: // a custom extension: stored verbatim
	case containsFold(rt.Extensions, s.ID):
		fk.urn, fk.attr = s.ID, s.Attr(ap.Name)
	default:
		return flatKey{}, false
	}
	if fk.attr != nil {
		fk.name = fk.attr.Name
		if sa := fk.attr.SubAttr(fk.sub); sa != nil {
			fk.sub = sa.Name
		}
	}
	return fk, true
}

// schemaURN reports whether s names a schema: a known one, or a URN whose last segment is
// a resource name after a version segment ("urn:...:extension:MyApp:2.0:User").
func schemaURN(s string) bool {
	if !IsURN(s) {
		return false
	}
	if SchemaByID(s) != nil {
		return true
	}
	last := strings.LastIndexByte(s, ':')
	prev := strings.LastIndexByte(s[:last], ':')
	if prev < 0 {
		return false
	}
	return strings.Contains(s[prev+1:last], ".") && !strings.Contains(s[last+1:], ".")
}

// flatError is a flat key nestFlat could not nest; conflict marks one whose attribute
// already holds another value.
type flatError struct {
	*Error
	conflict bool
}

// placeFlat stores v, the value of flat key fk, where the nested form keeps it. An
// attribute that is already set must hold an equal value (see sameFlatValue).
func placeFlat(doc map[string]any, fk flatKey, v any, placed map[string]string) *flatError {
	if fk.sub != "" && fk.attr != nil && fk.attr.MultiValued {
		return flatShapeError("the key %s names a sub-attribute of the multi-valued %s; send %s as an array of values", fk.key, fk.name, fk.name)
	}
	c, ck := doc, ""
	if fk.urn != "" {
		k, ok := Key(doc, fk.urn)
		if !ok {
			k = fk.urn
			doc[k] = map[string]any{}
		}
		m, isObj := doc[k].(map[string]any)
		if !isObj {
			return flatShapeError("%s must be an object of that schema's attributes, as the key %s names one of them", k, fk.key)
		}
		c, ck = m, k
	}
	target := strings.ToLower(ck + "\x00" + fk.name + "\x00" + fk.sub)
	if fk.sub == "" {
		if cur, has := Get(c, fk.name); has {
			return checkSame(fk, ck, cur, v, placed[target])
		}
		c[fk.name] = v
		placed[target] = fk.key
		return nil
	}
	cur, _ := Get(c, fk.name)
	parent, isObj := cur.(map[string]any)
	switch {
	case cur == nil:
		parent = map[string]any{}
		Set(c, fk.name, parent)
	case !isObj:
		return flatShapeError("the key %s names a sub-attribute of %s, which holds %s, not an object", fk.key, fk.name, valueSnippet(cur))
	}
	if cur, has := Get(parent, fk.sub); has {
		return checkSame(fk, ck, cur, v, placed[target])
	}
	parent[fk.sub] = v
	placed[target] = fk.key
	return nil
}

// checkSame accepts a flat value equal to the one already set (by the nested form, or by
// byKey, an earlier flat key) and refuses a different one naming both places.
func checkSame(fk flatKey, container string, cur, v any, byKey string) *flatError {
	if sameFlatValue(fk, cur, v) {
		return nil
	}
	other := "as the top-level attribute " + fk.name
	switch {
	case byKey != "":
		other = "as the key " + byKey
	case container != "":
		other = "inside the " + container + " object"
	}
	e := BadRequest(TypeInvalidValue, "the attribute %s is sent twice with different values: as that key and %s; send it once", fk.key, other)
	return &flatError{Error: e, conflict: true}
}

func flatShapeError(format string, args ...any) *flatError {
	return &flatError{Error: BadRequest(TypeInvalidValue, format, args...)}
}

// sameFlatValue compares two values of one attribute as the gateway will store them: an
// enterprise manager in any of its forms by its id, booleans in Entra's string form too,
// anything else exactly.
func sameFlatValue(fk flatKey, a, b any) bool {
	if fk.attr != nil && fk.sub == "" && isManager(patchTarget{urn: fk.urn, attr: fk.attr}) {
		ma, errA := ManagerValue(a)
		mb, errB := ManagerValue(b)
		if errA == nil && errB == nil {
			return jsonEqual(any(ma), any(mb))
		}
	}
	def := fk.attr
	if fk.sub != "" {
		def = fk.attr.SubAttr(fk.sub)
	}
	if def != nil && def.Type == "boolean" && !def.MultiValued {
		ba, okA := Bool(a)
		bb, okB := Bool(b)
		if okA && okB {
			return ba == bb
		}
	}
	return jsonEqual(a, b)
}

// checkFlatPatchValue refuses a PATCH's path-less value that sets one extension attribute
// both as a flat key and nested (or as two flat keys) with different values. The value is
// not changed: the PATCH applies each key as a path.
func checkFlatPatchValue(rt *ResourceTypeDef, obj map[string]any) error {
	urnKeys := map[string]any{}
	for k, v := range obj {
		if IsURN(k) {
			urnKeys[k] = Clone(v)
		}
	}
	if len(urnKeys) < 2 {
		return nil
	}
	return nestFlat(rt, urnKeys, flatCheck)
}
