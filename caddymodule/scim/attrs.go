package scim

import (
	"fmt"
	"sort"
	"strings"
)

// This file serves the policy layer: Canonical gives policies a resource whose attribute
// names are spelled one way (so `input.resource.userName` works whatever case Entra
// wrote), and DropAttributes carries out a decision's drop_attributes obligation.

// Canonical returns a deep copy of r whose attribute names are spelled as the schemas of
// resourceType define them: core and common attributes ("USERNAME" → "userName"), their
// sub-attributes, also inside every element of a multi-valued attribute, the URN keys of
// the resource type's extensions and the attributes inside them. Names the schemas do not
// define keep their spelling. When several keys of one object fold to the same canonical
// name, the one already spelled canonically wins, else the lexicographically smallest, so
// the result is deterministic. The copy never aliases r. nil r gives nil.
func Canonical(resourceType string, r Resource) Resource {
	if r == nil {
		return nil
	}
	ix := canonIndexFor(resourceType)
	if ix == nil {
		return CloneResource(r)
	}
	return canonObject(canonLevel{root: ix}, r)
}

// canonIndex holds what Canonical needs to know about one resource type, built once:
// looking attributes up through FindAttr for every key of every write would cost a
// resource-type and schema search per key.
type canonIndex struct {
	rt      *ResourceTypeDef
	attrs   attrIndex      // common attributes, then the core schema's
	schemas []*schemaIndex // the core schema and the extensions, for URN keys
	// writeOnly lists the write-only attributes among the common and core ones (a User's
	// password), for WithoutWriteOnly.
	writeOnly []*Attribute
}

type schemaIndex struct {
	schema *Schema
	attrs  attrIndex
}

// attrIndex finds an attribute by its exact canonical name in one map lookup (the usual
// case: Entra mostly spells names canonically), then by its ASCII-lowered name, so that a
// name in another case or an unknown name costs no scan of the schema either.
type attrIndex struct {
	exact map[string]*Attribute
	lower map[string]*Attribute
	list  []*Attribute
}

func newAttrIndex(lists ...[]*Attribute) attrIndex {
	ix := attrIndex{exact: map[string]*Attribute{}, lower: map[string]*Attribute{}}
	for _, list := range lists {
		for _, a := range list {
			if _, dup := ix.exact[a.Name]; !dup {
				ix.exact[a.Name] = a
			}
			if l := strings.ToLower(a.Name); ix.lower[l] == nil {
				ix.lower[l] = a
			}
			ix.list = append(ix.list, a)
		}
	}
	return ix
}

// maxFoldedName bounds the stack buffer find lowers names into; longer names, rare and
// never defined by the schemas, take the scan.
const maxFoldedName = 64

func (ix attrIndex) find(name string) *Attribute {
	if a, ok := ix.exact[name]; ok {
		return a
	}
	var buf [maxFoldedName]byte
	if lowered, ok := lowerASCII(buf[:0], name); ok {
		return ix.lower[string(lowered)] // no allocation: the compiler borrows the bytes
	}
	return findAttr(ix.list, name) // non-ASCII: strings.EqualFold's Unicode folding decides
}

// lowerASCII appends name in lower case to dst when name is ASCII and fits dst's capacity.
func lowerASCII(dst []byte, name string) ([]byte, bool) {
	if len(name) > cap(dst) {
		return nil, false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 0x80 {
			return nil, false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

var canonIndexes = buildCanonIndexes()

func buildCanonIndexes() []*canonIndex {
	out := make([]*canonIndex, 0, len(resourceTypes))
	for _, rt := range resourceTypes {
		core := SchemaByID(rt.Schema)
		ix := &canonIndex{rt: rt, attrs: newAttrIndex(commonAttributes, core.Attributes)}
		for _, a := range ix.attrs.list {
			if a.Mutability == WriteOnly {
				ix.writeOnly = append(ix.writeOnly, a)
			}
		}
		for _, id := range append([]string{rt.Schema}, rt.Extensions...) {
			s := SchemaByID(id)
			ix.schemas = append(ix.schemas, &schemaIndex{schema: s, attrs: newAttrIndex(s.Attributes)})
		}
		out = append(out, ix)
	}
	return out
}

func canonIndexFor(resourceType string) *canonIndex {
	for _, ix := range canonIndexes {
		if ix.rt.Name == resourceType {
			return ix
		}
	}
	for _, ix := range canonIndexes {
		if strings.EqualFold(ix.rt.Name, resourceType) {
			return ix
		}
	}
	return nil
}

func (ix *canonIndex) schemaFor(urn string) *schemaIndex {
	for _, s := range ix.schemas {
		if s.schema.ID == urn {
			return s
		}
	}
	for _, s := range ix.schemas {
		if strings.EqualFold(s.schema.ID, urn) {
			return s
		}
	}
	return nil
}

// canonLevel says which names an object may hold: the resource root, the attributes of
// one schema (an extension object) or the sub-attributes of one complex attribute. The
// zero value knows no names: its values are copied verbatim.
type canonLevel struct {
	root    *canonIndex
	schema  *schemaIndex
	complex *Attribute
}

// resolve returns the canonical spelling of key k at this level and the level of its
// value.
func (l canonLevel) resolve(k string) (string, canonLevel) {
	switch {
	case l.root != nil:
		return l.root.resolve(k)
	case l.schema != nil:
		return attrLevel(l.schema.attrs.find(k), k)
	case l.complex != nil:
		return attrLevel(subAttrExact(l.complex, k), k)
	}
	return k, canonLevel{}
}

func (ix *canonIndex) resolve(k string) (string, canonLevel) {
	if IsURN(k) {
		if s := ix.schemaFor(k); s != nil {
			return s.schema.ID, canonLevel{schema: s}
		}
		return k, canonLevel{}
	}
	if k == "schemas" || strings.EqualFold(k, "schemas") {
		return "schemas", canonLevel{}
	}
	return attrLevel(ix.attrs.find(k), k)
}

// subAttrExact is SubAttr with an exact-spelling pass first, which settles the usual
// canonically spelled key with plain string compares.
func subAttrExact(a *Attribute, name string) *Attribute {
	for _, sa := range a.SubAttributes {
		if sa.Name == name {
			return sa
		}
	}
	return a.SubAttr(name)
}

func attrLevel(a *Attribute, k string) (string, canonLevel) {
	switch {
	case a == nil:
		return k, canonLevel{}
	case a.Type == "complex":
		return a.Name, canonLevel{complex: a}
	}
	return a.Name, canonLevel{}
}

// canonValue deep-copies v, renaming keys where level l knows them. A list under a
// complex attribute is its multi-valued form (or Entra's one-element manager array): each
// object in it is renamed like the attribute itself.
func canonValue(l canonLevel, v any) any {
	if l == (canonLevel{}) {
		return Clone(v)
	}
	switch x := v.(type) {
	case map[string]any:
		return canonObject(l, x)
	case []any:
		if l.complex == nil {
			return Clone(x)
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = canonValue(l, e)
		}
		return out
	}
	return v
}

func canonObject(l canonLevel, m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	var clashes []string
	for k, v := range m {
		name, child := l.resolve(k)
		n := len(out)
		out[name] = canonValue(child, v)
		if len(out) == n { // a second key folded onto name: settled below
			clashes = append(clashes, name)
		}
	}
	for _, name := range clashes {
		k := clashWinner(l, m, name)
		_, child := l.resolve(k)
		out[name] = canonValue(child, m[k])
	}
	return out
}

// clashWinner picks, among the keys of m that resolve to name, the one whose value
// Canonical keeps: the key spelled canonically, else the smallest. Map iteration order is
// random, so "whichever came first" would make the stored resource depend on luck.
func clashWinner(l canonLevel, m map[string]any, name string) string {
	if _, ok := m[name]; ok {
		return name
	}
	var keys []string
	for k := range m {
		if n, _ := l.resolve(k); n == name {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys[0]
}

// DropAttributes returns a deep copy of r without the attributes that paths name, and the
// paths that removed something, in the order given (for the journal). r is not changed.
//
// A path is attr, attr.sub, URN:attr or URN:attr.sub (RFC 7644 §3.10), names compared
// case-insensitively, or a bare extension URN for the whole extension object.
// attr.sub on a multi-valued attribute removes sub from every element ("emails.display");
// an element, attribute or extension object left empty by the removal goes too ("schemas"
// is left as it is). An unprefixed name that the core schema lacks but an extension of the
// resource type defines ("department", "manager.value") is also removed from that
// extension: a policy author who forgets the URN still gets the attribute dropped. A custom
// extension attribute is found nested under its URN key or as a flat "URN:attr" key.
//
// Paths naming nothing present are fine. A path that does not parse, and any path naming
// id, schemas or meta (the gateway needs them), is an error naming the path; then nothing
// is dropped. The error is not a *Error: the paths come from the operator's policy, not
// from the client, so it must not be answered as the client's 400.
func DropAttributes(resourceType string, r Resource, paths []string) (Resource, []string, error) {
	rt := ResourceTypeByName(resourceType)
	parsed := make([]AttrPath, len(paths))
	for i, p := range paths {
		ap, err := parseDropPath(rt, p)
		if err != nil {
			return nil, nil, err
		}
		parsed[i] = ap
	}
	if r == nil {
		return nil, nil, nil
	}
	out := CloneResource(r)
	var dropped []string
	for i, ap := range parsed {
		if dropPath(rt, out, ap) {
			dropped = append(dropped, paths[i])
		}
	}
	return out, dropped, nil
}

// parseDropPath parses one drop_attributes entry and refuses the attributes the gateway
// cannot do without.
func parseDropPath(rt *ResourceTypeDef, path string) (AttrPath, error) {
	ap, err := ParseAttrPath(path)
	if err != nil {
		detail := err.Error()
		if e, ok := err.(*Error); ok {
			detail = e.Detail
		}
		return AttrPath{}, fmt.Errorf("cannot drop attribute %q: %s", path, detail)
	}
	if ap.Name == "" && isCoreURN(rt, ap.URN) {
		return AttrPath{}, fmt.Errorf("cannot drop attribute %q: it names the whole resource; name an attribute of it", path)
	}
	if (ap.URN == "" || isCoreURN(rt, ap.URN)) && isProtectedAttr(ap.Name) {
		return AttrPath{}, fmt.Errorf("cannot drop attribute %q: id, schemas and meta are kept, the gateway needs them", path)
	}
	return ap, nil
}

// isCoreURN reports whether urn is the core schema of rt. For an unknown resource type
// both core schemas count, so that id, schemas and meta stay protected either way.
func isCoreURN(rt *ResourceTypeDef, urn string) bool {
	if rt == nil {
		return strings.EqualFold(urn, UserSchema) || strings.EqualFold(urn, GroupSchema)
	}
	return strings.EqualFold(urn, rt.Schema)
}

func isProtectedAttr(name string) bool {
	return strings.EqualFold(name, "id") || strings.EqualFold(name, "schemas") || strings.EqualFold(name, "meta")
}

// dropPath removes what ap names from doc and reports whether anything was removed.
func dropPath(rt *ResourceTypeDef, doc Resource, ap AttrPath) bool {
	switch {
	case ap.Name == "":
		return deleteFold(doc, ap.URN)
	case ap.URN == "" || isCoreURN(rt, ap.URN):
		removed := dropFrom(doc, ap.Name, ap.Sub)
		if ap.URN == "" {
			removed = dropUnprefixedExtension(rt, doc, ap) || removed
		}
		return removed
	}
	removed := dropFromExtension(doc, ap.URN, ap.Name, ap.Sub)
	flat := ap.URN + ":" + ap.Name
	return dropFrom(doc, flat, ap.Sub) || removed
}

// dropUnprefixedExtension removes an unprefixed attribute from the extension that defines
// it, when the core schema (and the common attributes) do not.
func dropUnprefixedExtension(rt *ResourceTypeDef, doc Resource, ap AttrPath) bool {
	if rt == nil {
		return false
	}
	if a, _ := FindAttr(rt.Name, AttrPath{Name: ap.Name}); a != nil {
		return false
	}
	removed := false
	for _, id := range rt.Extensions {
		if SchemaByID(id).Attr(ap.Name) != nil && dropFromExtension(doc, id, ap.Name, ap.Sub) {
			removed = true
		}
	}
	return removed
}

// dropFromExtension removes name[.sub] from every object stored under a key equal to urn,
// and the object itself once the removal leaves it empty.
func dropFromExtension(doc Resource, urn, name, sub string) bool {
	removed := false
	for _, k := range foldKeys(doc, urn) {
		ext, ok := doc[k].(map[string]any)
		if !ok || !dropFrom(ext, name, sub) {
			continue
		}
		removed = true
		if len(ext) == 0 {
			delete(doc, k)
		}
	}
	return removed
}

// dropFrom removes attribute name (every case variant) from obj, or only its sub-attribute
// sub when sub is set: from the object, or from each object element of a multi-valued
// attribute. Elements and attributes the removal leaves empty are removed as well.
func dropFrom(obj map[string]any, name, sub string) bool {
	if sub == "" {
		return deleteFold(obj, name)
	}
	removed := false
	for _, k := range foldKeys(obj, name) {
		var empty bool
		switch v := obj[k].(type) {
		case map[string]any:
			if !deleteFold(v, sub) {
				continue
			}
			empty = len(v) == 0
		case []any:
			list, ok := dropFromElements(v, sub)
			if !ok {
				continue
			}
			obj[k], empty = list, len(list) == 0
		default:
			continue
		}
		removed = true
		if empty {
			delete(obj, k)
		}
	}
	return removed
}

// dropFromElements removes sub from every object element of list (which belongs to the
// caller's copy, so it is filtered in place), dropping elements it leaves empty. ok is
// false when no element held sub.
func dropFromElements(list []any, sub string) ([]any, bool) {
	out := list[:0]
	removed := false
	for _, e := range list {
		if m, isObj := e.(map[string]any); isObj && deleteFold(m, sub) {
			removed = true
			if len(m) == 0 {
				continue
			}
		}
		out = append(out, e)
	}
	clear(list[len(out):])
	return out, removed
}

// deleteFold removes every key of m equal to name case-insensitively. Unlike Delete it
// does not stop at the first: dropping must not leave a second spelling behind.
func deleteFold(m map[string]any, name string) bool {
	keys := foldKeys(m, name)
	for _, k := range keys {
		delete(m, k)
	}
	return len(keys) > 0
}

// foldKeys returns the keys of m equal to name case-insensitively.
func foldKeys(m map[string]any, name string) []string {
	var keys []string
	for k := range m {
		if strings.EqualFold(k, name) {
			keys = append(keys, k)
		}
	}
	return keys
}

// isWriteOnly reports whether FindAttr resolves the top-level key k of a resource to a
// write-only attribute. A key that does not fold to a write-only name cannot, and most
// differ from each at their first letter: they cost no lookup.
func (ix *canonIndex) isWriteOnly(k string) bool {
	for _, a := range ix.writeOnly {
		if strings.EqualFold(k, a.Name) {
			found, _ := FindAttr(ix.rt.Name, AttrPath{Name: k})
			return found != nil && found.Mutability == WriteOnly
		}
	}
	return false
}
