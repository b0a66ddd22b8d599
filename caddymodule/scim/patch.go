package scim

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// PATCH operation names, lower case. Entra's default dialect capitalises them
// (Add/Replace/Remove); ParsePatch accepts any case.
const (
	PatchAdd     = "add"
	PatchReplace = "replace"
	PatchRemove  = "remove"
)

// MaxPatchOps bounds the operations of one PATCH request. Entra sends a handful per
// request; a thousand leaves room for large membership batches.
const MaxPatchOps = 1000

// maxPatchCopyBytes bounds the bytes one PATCH may copy when it writes an object value
// into every matching element, so a small request cannot multiply one large value.
const maxPatchCopyBytes = 16 << 20

// maxPatchPathLen bounds a path before it reaches the path parser.
const maxPatchPathLen = 4096

// PatchOp is one parsed PATCH operation (RFC 7644 §3.5.2).
type PatchOp struct {
	Op      string // "add", "replace" or "remove" (lower-cased from any case)
	Path    *Path  // nil when the op has no path
	RawPath string
	Value   any // decoded JSON (json.Number numbers); nil when absent
}

// MembersReplaceMode says what a replace of a Group's members means.
type MembersReplaceMode int

const (
	// MembersReplaceMerge (the default) makes a replace on members ADD the listed
	// members and never remove any: Entra has been seen sending partial replace lists,
	// which would otherwise wipe groups.
	MembersReplaceMerge MembersReplaceMode = iota
	// MembersReplaceExact gives RFC semantics: the list becomes the member set.
	MembersReplaceExact
)

// PatchOptions tunes ApplyPatch.
type PatchOptions struct {
	MembersReplace MembersReplaceMode
}

// ParsePatch validates a decoded PATCH body (RFC 7644 §3.5.2) in both Entra dialects:
// ops in any case, "Operations" matched case-insensitively, path-less add/replace with an
// object value. Errors are 400 with an RFC scimType and a detail naming the operation.
func ParsePatch(body any) ([]PatchOp, error) {
	obj, ok := body.(map[string]any)
	if !ok {
		return nil, BadRequest(TypeInvalidSyntax, "the PATCH body must be a JSON object with \"schemas\" and \"Operations\"")
	}
	if err := checkPatchSchemas(obj); err != nil {
		return nil, err
	}
	raw, ok := Get(obj, "Operations")
	if !ok {
		return nil, BadRequest(TypeInvalidSyntax, "the PATCH body has no \"Operations\" array")
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, BadRequest(TypeInvalidSyntax, "\"Operations\" must be an array of operations")
	}
	if len(list) == 0 {
		return nil, BadRequest(TypeInvalidSyntax, "\"Operations\" is empty; send at least one operation")
	}
	if len(list) > MaxPatchOps {
		return nil, BadRequest(TypeInvalidSyntax, "%d operations in one PATCH request; at most %d are accepted, split the request", len(list), MaxPatchOps)
	}
	ops := make([]PatchOp, 0, len(list))
	for i, e := range list {
		op, err := parsePatchOp(i, e)
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// checkPatchSchemas accepts a body without "schemas" (lenient clients) but rejects one
// that names something other than a PatchOp message.
func checkPatchSchemas(obj map[string]any) error {
	v, ok := Get(obj, "schemas")
	if !ok {
		return nil
	}
	var list []any
	switch x := v.(type) {
	case []any:
		list = x
	case string:
		list = []any{x}
	}
	for _, e := range list {
		if s, isStr := e.(string); isStr && strings.EqualFold(strings.TrimSpace(s), PatchOpSchema) {
			return nil
		}
	}
	return BadRequest(TypeInvalidSyntax, "\"schemas\" must contain %s", PatchOpSchema)
}

func parsePatchOp(i int, e any) (PatchOp, error) {
	m, ok := e.(map[string]any)
	if !ok {
		return PatchOp{}, BadRequest(TypeInvalidSyntax, "Operations[%d] must be an object with \"op\", \"path\" and \"value\"", i)
	}
	rawOp, _ := Get(m, "op")
	name, ok := rawOp.(string)
	if !ok {
		return PatchOp{}, BadRequest(TypeInvalidSyntax, "Operations[%d] has no \"op\" string; use add, replace or remove", i)
	}
	op := PatchOp{Op: strings.ToLower(strings.TrimSpace(name))}
	if !validPatchOp(op.Op) {
		return PatchOp{}, BadRequest(TypeInvalidSyntax, "Operations[%d]: unknown op %q; use add, replace or remove", i, name)
	}
	var hasValue bool
	op.Value, hasValue = Get(m, "value")
	if rawPath, ok := Get(m, "path"); ok && rawPath != nil {
		s, isStr := rawPath.(string)
		if !isStr {
			return PatchOp{}, BadRequest(TypeInvalidPath, "Operations[%d]: \"path\" must be a string", i)
		}
		op.RawPath = strings.TrimSpace(s)
	}
	if op.RawPath != "" {
		p, err := parsePatchPath(op.RawPath)
		if err != nil {
			return PatchOp{}, prefixError(err, TypeInvalidPath, "Operations[%d] %s %s: ", i, op.Op, op.RawPath)
		}
		op.Path = p
		if !hasValue && op.Op != PatchRemove && !namesMembers(p) {
			// Without a value an add or replace says nothing (RFC 7644 §3.5.2.1, §3.5.2.3:
			// both carry one); "value": null is the way to unassign, and stays so.
			return PatchOp{}, BadRequest(TypeInvalidValue, "Operations[%d] %s %s needs a \"value\"; send \"value\": null to unassign the attribute, or op remove", i, op.Op, op.RawPath)
		}
		return op, nil
	}
	if op.Op == PatchRemove {
		return PatchOp{}, BadRequest(TypeNoTarget, "Operations[%d]: remove needs a \"path\" naming what to remove", i)
	}
	if _, isObj := op.Value.(map[string]any); !isObj {
		return PatchOp{}, BadRequest(TypeInvalidValue, "Operations[%d]: %s without a \"path\" needs an object \"value\" of attributes", i, op.Op)
	}
	return op, nil
}

// namesMembers reports whether p is members[value eq "id"...], whose filter names the
// members an add or replace adds, so that the op needs no value.
func namesMembers(p *Path) bool {
	return p.Filter != nil && p.Sub == "" && p.Attr.Sub == "" && strings.EqualFold(p.Attr.Name, "members") &&
		(p.Attr.URN == "" || strings.EqualFold(p.Attr.URN, GroupSchema))
}

func validPatchOp(op string) bool {
	return op == PatchAdd || op == PatchReplace || op == PatchRemove
}

// parsePatchPath parses a PATCH path. A bare schema URN (the whole enterprise extension,
// say) is a Path whose Attr has a URN and no Name.
func parsePatchPath(s string) (*Path, error) {
	if len(s) > maxPatchPathLen {
		return nil, BadRequest(TypeInvalidPath, "the path is %d bytes long; at most %d are accepted", len(s), maxPatchPathLen)
	}
	if isPatchSchemaURN(s) {
		return &Path{Attr: AttrPath{URN: s}}, nil
	}
	if s != "" && s[0] != '$' && len(s) <= MaxFilterLength && isFilterAttrName(s) {
		// A plain attribute name ("active"), as ParsePath reads it, without its parser.
		return &Path{Attr: AttrPath{Name: s}}, nil
	}
	p, err := ParsePath(s)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// isPatchSchemaURN reports whether s names a whole schema rather than an attribute in
// one: a known schema, or a URN ending in a version segment and a resource name
// ("urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User").
func isPatchSchemaURN(s string) bool {
	if !IsURN(s) || strings.ContainsAny(s, "[]\" ") {
		return false
	}
	if SchemaByID(s) != nil {
		return true
	}
	parts := strings.Split(s, ":")
	if len(parts) < 3 {
		return false
	}
	return strings.Contains(parts[len(parts)-2], ".") && !strings.Contains(parts[len(parts)-1], ".")
}

// prefixError returns err as a 400 *Error whose detail starts with the formatted prefix,
// keeping its scimType (or using fallback when err is not an *Error).
func prefixError(err error, fallback, format string, args ...any) *Error {
	prefix := BadRequest(fallback, format, args...).Detail
	if e, ok := err.(*Error); ok {
		st := e.ScimType
		if st == "" {
			st = fallback
		}
		return &Error{Status: e.Status, ScimType: st, Detail: prefix + e.Detail}
	}
	return BadRequest(fallback, "%s%s", prefix, err.Error())
}

// ApplyPatch applies ops in order to a deep copy of r (r is never modified) and returns
// the new resource. For Groups it also returns the member delta: members are edges in the
// store, so the returned Group document never has a "members" key; for other resource
// types the delta is nil. The ops are not modified either, so a retried computation (a
// store write function may run twice) gives the same result.
func ApplyPatch(resourceType string, r Resource, ops []PatchOp, opts PatchOptions) (Resource, *MemberDelta, error) {
	p := newPatcher(resourceType, r, opts)
	for i := range ops {
		if err := p.applyOp(i, &ops[i]); err != nil {
			return nil, nil, err
		}
	}
	// An attribute replaced with [] (or emptied any other way) is unassigned (RFC 7643
	// §2.5), as one whose last value was removed.
	UnassignEmpty(p.doc)
	if p.members == nil {
		return p.doc, nil, nil
	}
	return p.doc, p.members.delta(), nil
}

// patcher holds the state of one ApplyPatch call.
type patcher struct {
	resourceType string
	rt           *ResourceTypeDef // nil for an unknown type: every attribute is then verbatim
	doc          Resource
	opts         PatchOptions
	members      *memberIntent // non-nil for Groups
	copied       int           // bytes of values copied into several elements so far

	where string // "Operations[i] op path", prefixed to error details
}

func newPatcher(resourceType string, r Resource, opts PatchOptions) *patcher {
	p := &patcher{resourceType: resourceType, rt: ResourceTypeByName(resourceType), doc: CloneResource(r), opts: opts}
	if p.doc == nil {
		p.doc = Resource{}
	}
	// A document stored with flat "URN:attr" keys is patched in its nested form, so that a
	// PATCH of the same attribute replaces it instead of adding a second, nested copy.
	_ = nestFlat(p.rt, p.doc, flatLenient)
	if strings.EqualFold(resourceType, GroupType) {
		Delete(p.doc, "members")
		p.members = newMemberIntent()
	}
	return p
}

// errorf builds a 400 whose detail names the operation being applied.
func (p *patcher) errorf(scimType, format string, args ...any) *Error {
	e := BadRequest(scimType, format, args...)
	e.Detail = p.where + ": " + e.Detail
	return e
}

// wrap prefixes the current operation to an error from a helper.
func (p *patcher) wrap(err error) error {
	if err == nil {
		return nil
	}
	return prefixError(err, TypeInvalidValue, "%s: ", p.where)
}

func (p *patcher) applyOp(i int, op *PatchOp) error {
	name := strings.ToLower(op.Op)
	p.where = patchWhere(i, name, op.RawPath)
	if !validPatchOp(name) {
		return p.errorf(TypeInvalidSyntax, "unknown op %q; use add, replace or remove", op.Op)
	}
	switch {
	case op.Path == nil:
		if name == PatchRemove {
			return p.errorf(TypeNoTarget, "remove needs a \"path\" naming what to remove")
		}
		return p.applyPathless(i, name, expandMembers(op.Value))
	case op.Path.Attr.Name == "" && op.Path.Attr.URN != "":
		return p.applySchemaObject(i, name, op.Path.Attr.URN, expandMembers(op.Value))
	default:
		return p.applyPath(name, *op.Path, op.Value)
	}
}

func patchWhere(i int, op, path string) string {
	if path == "" {
		return "Operations[" + strconv.Itoa(i) + "] " + op
	}
	return "Operations[" + strconv.Itoa(i) + "] " + op + " " + path
}

// applyPathless applies an add or replace without a path: every key of the value object
// is itself a path (Entra's aadOptscim062020 dialect sends "name.givenName" and full-URN
// keys), or a bare schema URN holding that schema's attributes. A literal dotted key is
// never stored. One extension attribute set both as a full-URN key and nested under its
// URN (or by two keys) with different values is 400 invalidValue.
func (p *patcher) applyPathless(i int, op string, v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return p.errorf(TypeInvalidValue, "%s without a \"path\" needs an object \"value\" of attributes", op)
	}
	if err := checkFlatPatchValue(p.rt, obj); err != nil {
		return p.wrap(err)
	}
	for _, k := range sortedKeys(obj) {
		p.where = patchWhere(i, op, "") + " (value key " + k + ")"
		if err := p.applyKey(i, op, k, obj[k]); err != nil {
			return err
		}
	}
	return nil
}

func (p *patcher) applyKey(i int, op, key string, v any) error {
	if isPatchSchemaURN(key) {
		return p.applySchemaObject(i, op, key, v)
	}
	path, err := keyPath(key)
	if err != nil {
		return p.wrap(err)
	}
	return p.applyPath(op, path, v)
}

// keyPath parses a key of a path-less value as a path; names the SCIM grammar does not
// allow (a custom "$ref", say) are taken literally as attribute names.
func keyPath(key string) (Path, error) {
	path, err := ParsePath(key)
	if err == nil {
		return path, nil
	}
	if key != "" && !strings.ContainsAny(key, ".[]:\" ") {
		return Path{Attr: AttrPath{Name: key}}, nil
	}
	return Path{}, err
}

// applySchemaObject applies a value naming a whole schema: the core schema's URN holds
// core attributes; an extension's URN holds that extension's attributes, merged one by
// one. Removing an extension URN removes the extension's attributes.
func (p *patcher) applySchemaObject(i int, op, urn string, v any) error {
	if err := foreignSchema(p.rt, urn, TypeInvalidPath); err != nil {
		return p.wrap(err)
	}
	core := p.rt != nil && strings.EqualFold(urn, p.rt.Schema)
	if op == PatchRemove {
		if core {
			return p.errorf(TypeInvalidPath, "the core schema %s cannot be removed; remove its attributes one by one", urn)
		}
		Delete(p.doc, urn)
		return nil
	}
	if v == nil {
		if op == PatchReplace && !core {
			Delete(p.doc, urn)
		}
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return p.errorf(TypeInvalidValue, "the value of schema %s must be an object of its attributes", urn)
	}
	if core {
		return p.applyPathless(i, op, obj)
	}
	outer := p.where
	for _, k := range sortedKeys(obj) {
		p.where = outer + " (attribute " + k + ")"
		path, err := keyPath(k)
		if err != nil {
			return p.wrap(err)
		}
		if path.Attr.URN != "" {
			return p.errorf(TypeInvalidPath, "attributes inside %s must not carry a schema URN", urn)
		}
		path.Attr.URN = urn
		if err := p.applyPath(op, path, obj[k]); err != nil {
			return err
		}
	}
	return nil
}

// patchTarget is an attribute resolved against the resource type's schemas.
type patchTarget struct {
	urn  string     // extension schema URN holding the attribute; "" for the resource root
	name string     // name for a new key: the canonical one when the schemas define it
	attr *Attribute // definition; nil for attributes stored verbatim
}

// resolve finds where a is stored. An unprefixed name that the core schema lacks but an
// extension of the resource type defines (a User's "manager", Tutorial Example 5) belongs
// to that extension. Unknown attributes keep the name as written.
func (p *patcher) resolve(a AttrPath) patchTarget {
	if a.URN != "" && (p.rt == nil || !strings.EqualFold(a.URN, p.rt.Schema)) {
		attr, _ := FindAttr(p.resourceType, AttrPath{URN: a.URN, Name: a.Name})
		t := patchTarget{urn: a.URN, name: a.Name, attr: attr}
		if s := SchemaByID(a.URN); s != nil {
			t.urn = s.ID
		}
		if attr != nil {
			t.name = attr.Name
		}
		return t
	}
	if attr, _ := FindAttr(p.resourceType, AttrPath{Name: a.Name}); attr != nil {
		return patchTarget{name: attr.Name, attr: attr}
	}
	if p.rt != nil {
		for _, ext := range p.rt.Extensions {
			if attr := SchemaByID(ext).Attr(a.Name); attr != nil {
				return patchTarget{urn: ext, name: attr.Name, attr: attr}
			}
		}
	}
	return patchTarget{name: a.Name}
}

// container returns the object holding t: the resource, or its extension object, which
// is created (with its URN added to "schemas" for a known extension) when create is set.
// It returns nil when the extension is absent and create is false.
func (p *patcher) container(t patchTarget, create bool) (map[string]any, error) {
	if t.urn == "" {
		return p.doc, nil
	}
	k, ok := Key(p.doc, t.urn)
	if ok {
		if m, isObj := p.doc[k].(map[string]any); isObj {
			return m, nil
		}
		if p.doc[k] != nil {
			return nil, p.errorf(TypeInvalidValue, "%s is not an object of extension attributes", k)
		}
	} else {
		k = t.urn
	}
	if !create {
		return nil, nil
	}
	m := map[string]any{}
	p.doc[k] = m
	if SchemaByID(t.urn) != nil {
		p.addSchema(t.urn)
	}
	return m, nil
}

// addSchema lists urn in the resource's "schemas" when that list exists and lacks it.
func (p *patcher) addSchema(urn string) {
	v, ok := Get(p.doc, "schemas")
	list, isList := v.([]any)
	if !ok || !isList {
		return
	}
	for _, e := range list {
		if s, isStr := e.(string); isStr && strings.EqualFold(s, urn) {
			return
		}
	}
	Set(p.doc, "schemas", append(list, urn))
}

// dropEmptyExtension removes t's extension object once its last attribute is gone.
func (p *patcher) dropEmptyExtension(t patchTarget) {
	if t.urn == "" {
		return
	}
	if k, ok := Key(p.doc, t.urn); ok {
		if m, isObj := p.doc[k].(map[string]any); isObj && len(m) == 0 {
			delete(p.doc, k)
		}
	}
}

// applyPath applies one operation to a parsed path (from "path" or a path-less key).
func (p *patcher) applyPath(op string, path Path, v any) error {
	if err := foreignSchema(p.rt, path.Attr.URN, TypeInvalidPath); err != nil {
		return p.wrap(err)
	}
	t := p.resolve(path.Attr)
	members := p.members != nil && t.urn == "" && strings.EqualFold(t.name, "members")
	if !members || path.Filter != nil {
		v = expandMembers(v) // a compact member list is the generic path's elsewhere
	}
	skip, err := p.checkMutable(op, t, path, v)
	if err != nil || skip {
		return err
	}
	switch {
	case members:
		return p.memberOp(op, &path, v)
	case isManager(t):
		return p.managerOp(op, t, path, v)
	case op == PatchRemove:
		return p.valueOp(op, t, path, v)
	}
	before := p.primaries(t)
	if err := p.valueOp(op, t, path, v); err != nil {
		return err
	}
	return p.settlePrimary(t, before)
}

// valueOp is applyPath's dispatch for an attribute that is neither a Group's members nor
// the manager.
func (p *patcher) valueOp(op string, t patchTarget, path Path, v any) error {
	switch {
	case path.Filter != nil:
		return p.valuePathOp(op, t, path, v)
	case path.Attr.Sub != "":
		return p.subAttrOp(op, t, path.Attr.Sub, v)
	default:
		return p.attrOp(op, t, v)
	}
}

// checkMutable rejects writes to id, meta, schemas and read-only attributes such as a
// User's groups. Writing id with its current value is a no-op (skip), as some clients
// echo it back.
func (p *patcher) checkMutable(op string, t patchTarget, path Path, v any) (skip bool, err error) {
	if t.urn == "" && t.attr == nil && strings.EqualFold(t.name, "schemas") {
		return false, p.errorf(TypeMutability, "schemas cannot be changed by PATCH")
	}
	if t.attr == nil {
		return false, nil
	}
	if t.urn == "" && t.attr.Name == "id" && op != PatchRemove && path.Filter == nil && path.Attr.Sub == "" {
		if cur, ok := Get(p.doc, "id"); ok && sameScalar(cur, v) {
			return true, nil
		}
	}
	if t.attr.Mutability == ReadOnly {
		hint := ""
		if t.attr.Name == "groups" {
			hint = "; change memberships through the Group's members"
		}
		return false, p.errorf(TypeMutability, "%s is read-only%s", t.attr.Name, hint)
	}
	sub := path.Attr.Sub
	if sub == "" {
		sub = path.Sub
	}
	if sa := t.attr.SubAttr(sub); sa != nil && sa.Mutability == ReadOnly {
		return false, p.errorf(TypeMutability, "%s.%s is read-only", t.attr.Name, sa.Name)
	}
	return false, nil
}

// attrOp applies an operation to a whole attribute (no filter, no sub-attribute).
func (p *patcher) attrOp(op string, t patchTarget, v any) error {
	c, err := p.container(t, op != PatchRemove && v != nil)
	if err != nil || c == nil {
		return err
	}
	cur, has := Get(c, t.name)
	multi := isMultiTarget(t, cur, v)
	switch {
	case op == PatchRemove && v != nil && multi:
		return p.removeValues(c, t, cur, v)
	case op == PatchRemove, v == nil && (op == PatchReplace || !multi):
		// null means unassigned (RFC 7643 §2.5); add of null to a list adds nothing.
		Delete(c, t.name)
		p.dropEmptyExtension(t)
		return nil
	case v == nil:
		return nil
	}
	nv, err := p.normalize(t, v)
	if err != nil {
		return err
	}
	switch {
	case multi && op == PatchAdd && len(asList(nv)) == 0:
		return nil
	case multi && op == PatchAdd:
		Set(c, t.name, appendUnique(asList(cur), asList(nv)))
	case multi:
		Set(c, t.name, asList(nv))
	case isComplex(t.attr, cur, nv):
		obj, ok := nv.(map[string]any)
		if !ok {
			return p.errorf(TypeInvalidValue, "%s is complex: the value must be an object of sub-attributes", t.name)
		}
		if curObj, isObj := cur.(map[string]any); has && isObj {
			mergeObject(curObj, obj)
			deleteNullKeys(curObj, v)
			return nil
		}
		Set(c, t.name, obj)
	default:
		Set(c, t.name, nv)
	}
	return nil
}

// chargeCopies accounts for writing n deep copies of nv (scalars are not deep-copied).
func (p *patcher) chargeCopies(nv any, n int) error {
	switch nv.(type) {
	case map[string]any, []any:
	default:
		return nil
	}
	if n <= 1 {
		return nil
	}
	p.copied += len(jsonKey(nv)) * n
	if p.copied > maxPatchCopyBytes {
		return p.errorf(TypeInvalidValue, "the operations would copy more than %d MiB of values into matching elements; send smaller values or narrower filters", maxPatchCopyBytes>>20)
	}
	return nil
}

// isMultiTarget says whether t is multi-valued: by its definition, or for an attribute
// stored verbatim, by the shape of its current or new value.
func isMultiTarget(t patchTarget, cur, v any) bool {
	if t.attr != nil {
		return t.attr.MultiValued
	}
	if _, ok := cur.([]any); ok {
		return true
	}
	_, ok := v.([]any)
	return cur == nil && ok
}

func isComplex(a *Attribute, cur, v any) bool {
	if a != nil {
		return a.Type == "complex"
	}
	_, curObj := cur.(map[string]any)
	_, newObj := v.(map[string]any)
	return curObj && newObj
}

// mergeObject sets every key of src in dst (RFC 7644 §3.5.2.3: sub-attributes not in the
// value are left unchanged). src is already normalised, so nulls are gone.
func mergeObject(dst, src map[string]any) {
	for k, e := range src {
		Set(dst, k, e)
	}
}

// deleteNullKeys removes from dst the keys that raw (the value as the client sent it)
// sets to null: null unassigns a sub-attribute (RFC 7643 §2.5).
func deleteNullKeys(dst map[string]any, raw any) {
	obj, _ := raw.(map[string]any)
	for k, e := range obj {
		if e == nil {
			Delete(dst, k)
		}
	}
}

// subAttrOp applies an operation to a dotted sub-attribute (name.givenName). On a
// multi-valued attribute without a filter (emails.value) it applies to every element, and
// an add or replace on an empty list creates one element.
func (p *patcher) subAttrOp(op string, t patchTarget, sub string, v any) error {
	if t.attr != nil && t.attr.Type != "complex" {
		return p.errorf(TypeInvalidPath, "%s has no sub-attributes", t.name)
	}
	sa := t.attr.SubAttr(sub)
	if sa != nil {
		sub = sa.Name
	}
	remove := op == PatchRemove || v == nil
	c, err := p.container(t, !remove)
	if err != nil || c == nil {
		return err
	}
	cur, has := Get(c, t.name)
	var nv any
	if !remove {
		if nv, err = p.normalizeFor(sa, t.name+"."+sub, v); err != nil {
			return err
		}
	}
	if _, isList := cur.([]any); isList || (t.attr != nil && t.attr.MultiValued) {
		list, err := p.elements(t, cur)
		if err != nil {
			return err
		}
		return p.subAttrOfEach(c, t, list, sub, nv, remove)
	}
	parent, isObj := cur.(map[string]any)
	switch {
	case has && cur != nil && !isObj:
		return p.errorf(TypeInvalidPath, "%s is not complex, so it has no sub-attribute %s", t.name, sub)
	case remove && parent == nil:
		return nil
	case remove:
		Delete(parent, sub)
		if len(parent) == 0 {
			Delete(c, t.name)
			p.dropEmptyExtension(t)
		}
		return nil
	case parent == nil:
		parent = map[string]any{}
		Set(c, t.name, parent)
	}
	Set(parent, sub, nv)
	return nil
}

func (p *patcher) subAttrOfEach(c map[string]any, t patchTarget, list []any, sub string, nv any, remove bool) error {
	if err := p.chargeCopies(nv, len(list)); err != nil {
		return err
	}
	if len(list) == 0 {
		if !remove {
			Set(c, t.name, []any{map[string]any{sub: nv}})
		}
		return nil
	}
	for _, e := range list {
		if elem, ok := e.(map[string]any); ok {
			if remove {
				Delete(elem, sub)
			} else {
				Set(elem, sub, Clone(nv))
			}
		}
	}
	return nil
}

// valuePathOp applies an operation to the elements of a multi-valued attribute selected
// by a filter (emails[type eq "work"].value). When no element matches, add and replace
// create one from the filter's eq terms: RFC 7644 says 400 noTarget, but Entra sends
// these ops for values that do not exist yet and breaks on the error.
func (p *patcher) valuePathOp(op string, t patchTarget, path Path, v any) error {
	if t.attr != nil && !t.attr.MultiValued {
		return p.errorf(TypeInvalidPath, "%s is single-valued; a [filter] applies only to multi-valued attributes", t.name)
	}
	sub, sa := path.Sub, (*Attribute)(nil)
	if sub != "" {
		if sa = t.attr.SubAttr(sub); sa != nil {
			sub = sa.Name
		}
	}
	remove := op == PatchRemove || (v == nil && op == PatchReplace)
	if v == nil && !remove {
		return nil
	}
	c, err := p.container(t, !remove)
	if err != nil || c == nil {
		return err
	}
	cur, _ := Get(c, t.name)
	list, err := p.elements(t, cur)
	if err != nil {
		return err
	}
	matches := make([]int, 0, 1)
	for i, e := range list {
		if elem, ok := e.(map[string]any); ok && matchElement(path.Filter, elem, t.attr) {
			matches = append(matches, i)
		}
	}
	if remove {
		return p.removeMatched(c, t, list, matches, sub)
	}
	var nv any
	if sub != "" {
		nv, err = p.normalizeFor(sa, t.name+"."+sub, v)
	} else {
		nv, err = p.normalizeElement(t, v)
	}
	if err != nil {
		return err
	}
	if _, isObj := nv.(map[string]any); sub == "" && !isObj {
		return p.errorf(TypeInvalidValue, "the value for an element of %s must be an object", t.name)
	}
	if len(matches) == 0 {
		elem, err := p.newElement(t, path, sub, nv)
		if err != nil {
			return err
		}
		Set(c, t.name, append(list, elem))
		return nil
	}
	if err := p.chargeCopies(nv, len(matches)); err != nil {
		return err
	}
	for _, i := range matches {
		elem := list[i].(map[string]any)
		switch {
		case sub != "":
			Set(elem, sub, Clone(nv))
		case op == PatchReplace:
			list[i] = Clone(nv)
		default:
			mergeObject(elem, Clone(nv).(map[string]any))
		}
	}
	Set(c, t.name, list)
	return nil
}

// elements returns the current elements of a multi-valued attribute; a lone object is
// taken as a one-element list.
func (p *patcher) elements(t patchTarget, cur any) ([]any, error) {
	switch x := cur.(type) {
	case nil:
		return nil, nil
	case []any:
		return x, nil
	case map[string]any:
		return []any{x}, nil
	}
	return nil, p.errorf(TypeInvalidPath, "%s holds a single %s, not a list of values", t.name, valueSnippet(cur))
}

func (p *patcher) removeMatched(c map[string]any, t patchTarget, list []any, matches []int, sub string) error {
	if len(matches) == 0 {
		return nil
	}
	if sub != "" {
		for _, i := range matches {
			Delete(list[i].(map[string]any), sub)
		}
		Set(c, t.name, list)
		return nil
	}
	kept := make([]any, 0, len(list)-len(matches))
	next := 0
	for i, e := range list {
		if next < len(matches) && matches[next] == i {
			next++
			continue
		}
		kept = append(kept, e)
	}
	if len(kept) == 0 {
		// No values left: the attribute is unassigned (RFC 7644 §3.5.2.2).
		Delete(c, t.name)
		p.dropEmptyExtension(t)
		return nil
	}
	Set(c, t.name, kept)
	return nil
}

// newElement builds the element an add or replace creates when its filter matched
// nothing: the filter's eq terms plus the value.
func (p *patcher) newElement(t patchTarget, path Path, sub string, nv any) (map[string]any, error) {
	elem := map[string]any{}
	if !eqTerms(path.Filter, t.attr, elem) {
		return nil, p.errorf(TypeNoTarget, "no element of %s matches the filter, and only eq terms joined by and say how to create one", t.name)
	}
	if sub != "" {
		Set(elem, sub, nv)
		return elem, nil
	}
	mergeObject(elem, nv.(map[string]any)) // valuePathOp checked that nv is an object
	return elem, nil
}

// eqTerms collects the attr eq value terms of a filter made of eq terms joined by and
// into elem. It reports false for any other filter, which cannot describe one element.
func eqTerms(f Filter, a *Attribute, elem map[string]any) bool {
	switch x := f.(type) {
	case *AndFilter:
		return eqTerms(x.Left, a, elem) && eqTerms(x.Right, a, elem)
	case *CompareFilter:
		if x.Op != OpEq || x.Value == nil || x.Attr.Sub != "" || x.Attr.URN != "" {
			return false
		}
		name, val := x.Attr.Name, x.Value
		if sa := a.SubAttr(name); sa != nil {
			name = sa.Name
			if sa.Type == "boolean" {
				b, ok := Bool(val)
				if !ok {
					return false
				}
				val = b
			}
		}
		if prev, ok := Get(elem, name); ok && !sameScalar(prev, val) {
			return false
		}
		Set(elem, name, val)
		return true
	}
	return false
}

// removeValues is Entra's non-RFC remove of a multi-valued attribute with a value list:
// only elements whose "value" equals a listed value go (elements given without a
// "value" go when exactly equal). The attribute as a whole is never removed for it.
func (p *patcher) removeValues(c map[string]any, t patchTarget, cur, v any) error {
	list, isList := cur.([]any)
	if !isList || len(list) == 0 {
		return nil
	}
	caseExact := false
	if sa := t.attr.SubAttr("value"); sa != nil {
		caseExact = sa.CaseExact
	}
	values := map[string]bool{}
	var whole []any // listed elements without a "value": removed when exactly equal
	for _, e := range asList(v) {
		if obj, ok := e.(map[string]any); ok {
			if val, has := Get(obj, "value"); has {
				values[scalarKey(val, caseExact)] = true
			} else {
				whole = append(whole, e)
			}
			continue
		}
		values[scalarKey(e, caseExact)] = true
	}
	kept := make([]any, 0, len(list))
	for _, e := range list {
		if !elementListed(e, values, whole, caseExact) {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		Delete(c, t.name)
		p.dropEmptyExtension(t)
		return nil
	}
	Set(c, t.name, kept)
	return nil
}

func elementListed(e any, values map[string]bool, whole []any, caseExact bool) bool {
	obj, ok := e.(map[string]any)
	if !ok {
		return values[scalarKey(e, caseExact)]
	}
	if val, has := Get(obj, "value"); has && values[scalarKey(val, caseExact)] {
		return true
	}
	return containsJSON(whole, e)
}

// scalarKey is a comparison key for a scalar that keeps types apart ("1" is not 1).
func scalarKey(v any, caseExact bool) string {
	switch x := v.(type) {
	case string:
		if !caseExact {
			x = strings.ToLower(x)
		}
		return "s" + x
	case json.Number:
		return "n" + x.String()
	case bool:
		if x {
			return "btrue"
		}
		return "bfalse"
	case nil:
		return "z"
	}
	return "j" + jsonKey(v)
}

// jsonKey is the canonical JSON of v (object keys sorted).
func jsonKey(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// appendUnique appends the elements of add to list, skipping any exactly equal to an
// element already there (or earlier in add). list belongs to the patched copy, so it is
// extended in place.
func appendUnique(list, add []any) []any {
	for _, e := range add {
		if !containsJSON(list, e) {
			list = append(list, e)
		}
	}
	return list
}

func containsJSON(list []any, v any) bool {
	for _, e := range list {
		if jsonEqual(e, v) {
			return true
		}
	}
	return false
}

// jsonEqual reports whether two decoded JSON values are exactly equal. It stops at the
// first difference, so comparing an element against a long list stays cheap.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, e := range x {
			f, has := y[k]
			if !has || !jsonEqual(e, f) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case nil:
		return b == nil
	}
	return sameScalar(a, b)
}

// asList returns v as a list: nil is empty, a non-array is one element.
func asList(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	}
	return []any{v}
}

// isManager reports whether t is the enterprise extension's manager.
func isManager(t patchTarget) bool {
	return t.attr != nil && strings.EqualFold(t.urn, EnterpriseUserSchema) && t.attr.Name == "manager"
}

// managerOp handles the enterprise manager in all of Entra's forms (see ManagerValue): a
// bare id, {"value": id}, an array of one object with "$ref" (Tutorial Example 5), and
// "", {"value": ""}, null or [] meaning remove. manager.value takes the id alone. The
// manager is stored as {"value": id} only: a "$ref" or "displayName" in the value is
// ignored, and so is an add or replace of manager.$ref (manager.displayName is read-only:
// 400 mutability, from checkMutable).
func (p *patcher) managerOp(op string, t patchTarget, path Path, v any) error {
	sub := path.Attr.Sub
	if sub == "" {
		sub = path.Sub
	}
	if op == PatchRemove {
		if strings.EqualFold(sub, "$ref") {
			return p.dropManagerRef(t)
		}
		return p.removeManager(t, path)
	}
	if path.Filter != nil {
		return p.errorf(TypeInvalidPath, "manager is single-valued: set it with path manager and the manager's id as value")
	}
	switch {
	case sub == "" || strings.EqualFold(sub, "value"):
	case strings.EqualFold(sub, "$ref"):
		return nil // never stored: the manager is {"value": id}
	default:
		return p.errorf(TypeInvalidPath, "manager has no writable sub-attribute %s; use manager or manager.value", sub)
	}
	if sub != "" {
		if _, isStr := v.(string); !isStr && v != nil {
			return p.errorf(TypeInvalidValue, "manager.value must be the manager's id as a string")
		}
	}
	m, err := ManagerValue(v)
	if err != nil {
		return p.wrap(err)
	}
	if m == nil {
		return p.removeManager(t, Path{})
	}
	c, err := p.container(t, true)
	if err != nil {
		return err
	}
	Set(c, t.name, m)
	return nil
}

// removeManager removes the manager; with a filter (manager[value eq "x"]) only when the
// current manager matches it.
func (p *patcher) removeManager(t patchTarget, path Path) error {
	c, err := p.container(t, false)
	if err != nil || c == nil {
		return err
	}
	if path.Filter != nil {
		cur, _ := Get(c, t.name)
		m, ok := cur.(map[string]any)
		if !ok || !matchElement(path.Filter, m, t.attr) {
			return nil
		}
	}
	Delete(c, t.name)
	p.dropEmptyExtension(t)
	return nil
}

// dropManagerRef removes the manager's $ref, which only a manager stored by an earlier
// version can still have; the manager itself stays.
func (p *patcher) dropManagerRef(t patchTarget) error {
	c, err := p.container(t, false)
	if err != nil || c == nil {
		return err
	}
	cur, _ := Get(c, t.name)
	if m, ok := cur.(map[string]any); ok {
		Delete(m, "$ref") // p.doc is the patch's own deep copy
	}
	return nil
}

// normalize returns a copy of v fit to store as t (see normalizeFor).
func (p *patcher) normalize(t patchTarget, v any) (any, error) {
	return p.normalizeFor(t.attr, t.name, v)
}

// normalizeElement normalises one element of a multi-valued attribute.
func (p *patcher) normalizeElement(t patchTarget, v any) (any, error) {
	if t.attr == nil {
		return Clone(v), nil
	}
	single := *t.attr
	single.MultiValued = false
	return p.normalizeFor(&single, t.name, v)
}

// normalizeFor returns a copy of v fit to store as attribute a (see normalizeValue). A
// single-valued simple attribute also accepts the legacy Microsoft SCIM library shape
// [{"$ref": null, "value": x}] (entra-wire.md §9 quirk 14), which stands for x; any other
// array or object there is 400 invalidValue.
func (p *patcher) normalizeFor(a *Attribute, name string, v any) (any, error) {
	if a != nil && !a.MultiValued && a.Type != "complex" {
		if list, ok := v.([]any); ok {
			v = legacySingleValue(list)
		}
		switch v.(type) {
		case []any:
			return nil, p.errorf(TypeInvalidValue, "%s is single-valued: send one value, not an array", name)
		case map[string]any:
			return nil, p.errorf(TypeInvalidValue, "%s is a simple attribute: send a %s, not an object", name, a.Type)
		}
	}
	nv, err := normalizeValue(a, name, v)
	return nv, p.wrap(err)
}

// legacySingleValue unwraps [{"value": x}] to x; any other list is returned as it is.
func legacySingleValue(list []any) any {
	if len(list) != 1 {
		return list
	}
	obj, ok := list[0].(map[string]any)
	if !ok {
		return list
	}
	if val, has := Get(obj, "value"); has {
		return val
	}
	return list
}

// normalizeValue returns a deep copy of v fit to store as attribute a: booleans as JSON
// booleans (Entra sends "True"/"False"), known sub-attribute keys in their canonical case,
// and null members of objects dropped (null means unassigned). Values of attributes the
// schemas do not define are copied verbatim.
func normalizeValue(a *Attribute, name string, v any) (any, error) {
	if a == nil {
		return Clone(v), nil
	}
	if list, ok := v.([]any); ok && a.MultiValued {
		single := *a
		single.MultiValued = false
		out := make([]any, 0, len(list))
		for i, e := range list {
			if e == nil {
				continue
			}
			ne, err := normalizeValue(&single, name+"["+strconv.Itoa(i)+"]", e)
			if err != nil {
				return nil, err
			}
			out = append(out, ne)
		}
		return out, nil
	}
	switch {
	case v == nil:
		return nil, nil
	case a.Type == "boolean":
		b, ok := Bool(v)
		if !ok {
			return nil, BadRequest(TypeInvalidValue, "%s must be a boolean (true or false), got %s", name, valueSnippet(v))
		}
		return b, nil
	case a.Type == "complex":
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, BadRequest(TypeInvalidValue, "%s is complex: send an object of sub-attributes, got %s", name, valueSnippet(v))
		}
		return normalizeObject(a, name, obj)
	}
	return Clone(v), nil
}

func normalizeObject(a *Attribute, name string, obj map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(obj))
	for _, k := range sortedKeys(obj) {
		e := obj[k]
		if e == nil {
			continue
		}
		sa := a.SubAttr(k)
		key := k
		if sa != nil {
			key = sa.Name
			if _, exact := obj[key]; exact && key != k {
				continue // the canonically spelled key wins over a case variant
			}
		}
		ne, err := normalizeValue(sa, name+"."+key, e)
		if err != nil {
			return nil, err
		}
		out[key] = ne
	}
	return out, nil
}

// NormalizeBooleans turns Entra's string booleans ("True", "false", ...) into JSON
// booleans in place, wherever the schemas of resourceType define a boolean (active,
// emails[].primary, roles[].primary, ...). Any other non-boolean value there is 400
// invalidValue. Attributes the schemas do not define are left as they are.
func NormalizeBooleans(resourceType string, r Resource) error {
	rt := ResourceTypeByName(resourceType)
	if rt == nil {
		return nil
	}
	for k, v := range r {
		if IsURN(k) {
			ext, ok := v.(map[string]any)
			if !ok {
				continue
			}
			for ek, ev := range ext {
				attr, _ := FindAttr(resourceType, AttrPath{URN: k, Name: ek})
				nv, err := fixBooleans(attr, ek, ev)
				if err != nil {
					return err
				}
				ext[ek] = nv
			}
			continue
		}
		attr, _ := FindAttr(resourceType, AttrPath{Name: k})
		nv, err := fixBooleans(attr, k, v)
		if err != nil {
			return err
		}
		r[k] = nv
	}
	return nil
}

// fixBooleans converts boolean attributes inside v in place and returns v.
func fixBooleans(a *Attribute, name string, v any) (any, error) {
	if a == nil || v == nil {
		return v, nil
	}
	switch x := v.(type) {
	case []any:
		if !a.MultiValued {
			return v, nil
		}
		single := *a
		single.MultiValued = false
		for i, e := range x {
			ne, err := fixBooleans(&single, name+"["+strconv.Itoa(i)+"]", e)
			if err != nil {
				return nil, err
			}
			x[i] = ne
		}
		return x, nil
	case map[string]any:
		if a.Type != "complex" {
			break
		}
		for k, e := range x {
			ne, err := fixBooleans(a.SubAttr(k), name+"."+k, e)
			if err != nil {
				return nil, err
			}
			x[k] = ne
		}
		return x, nil
	}
	if a.Type != "boolean" {
		return v, nil
	}
	b, ok := Bool(v)
	if !ok {
		return nil, BadRequest(TypeInvalidValue, "%s must be a boolean (true or false), got %s", name, valueSnippet(v))
	}
	return b, nil
}

// valueSnippet renders a client value for an error detail, cut to a readable length.
func valueSnippet(v any) string {
	const maxLen = 60
	s := jsonKey(v)
	if len(s) <= maxLen {
		return s
	}
	cut := maxLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sameScalar reports whether a and b are the same string, number or boolean. Unlike ==
// on interfaces it cannot panic on maps or slices, which are never equal here.
func sameScalar(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	}
	return false
}

// matchElement evaluates a value filter against one element of a multi-valued attribute
// defined by a (nil when stored verbatim); the filter's attribute paths are relative to
// the element. Strings compare case-insensitively unless the sub-attribute is caseExact,
// booleans accept Entra's "True"/"False", and numbers compare numerically.
func matchElement(f Filter, elem map[string]any, a *Attribute) bool {
	switch x := f.(type) {
	case *AndFilter:
		return matchElement(x.Left, elem, a) && matchElement(x.Right, elem, a)
	case *OrFilter:
		return matchElement(x.Left, elem, a) || matchElement(x.Right, elem, a)
	case *NotFilter:
		return !matchElement(x.Inner, elem, a)
	case *CompareFilter:
		v, has := Get(elem, x.Attr.Name)
		sa := a.SubAttr(x.Attr.Name)
		if x.Attr.Sub != "" {
			obj, _ := v.(map[string]any)
			v, has = Get(obj, x.Attr.Sub)
			sa = sa.SubAttr(x.Attr.Sub)
		}
		if list, ok := v.([]any); ok {
			for _, e := range list {
				if compareElementValue(x.Op, e, true, x.Value, sa) {
					return true
				}
			}
			return false
		}
		return compareElementValue(x.Op, v, has, x.Value, sa)
	}
	return false
}

func compareElementValue(op string, v any, has bool, want any, sa *Attribute) bool {
	present := has && v != nil
	switch {
	case op == OpPr:
		s, isStr := v.(string)
		return present && (!isStr || s != "")
	case want == nil:
		return (op == OpEq && !present) || (op == OpNe && present)
	case !present:
		return op == OpNe
	}
	if _, isBool := want.(bool); isBool || (sa != nil && sa.Type == "boolean") {
		got, ok1 := Bool(v)
		exp, ok2 := Bool(want)
		eq := ok1 && ok2 && got == exp
		return (op == OpEq && eq) || (op == OpNe && !eq)
	}
	if got, ok := toFloat(v); ok {
		if exp, ok := toFloat(want); ok {
			return compareOrdered(op, got, exp)
		}
	}
	got, ok1 := v.(string)
	exp, ok2 := scalarString(want)
	if !ok1 || !ok2 {
		return op == OpNe
	}
	if sa == nil || !sa.CaseExact {
		got, exp = strings.ToLower(got), strings.ToLower(exp)
	}
	switch op {
	case OpCo:
		return strings.Contains(got, exp)
	case OpSw:
		return strings.HasPrefix(got, exp)
	case OpEw:
		return strings.HasSuffix(got, exp)
	}
	return compareOrdered(op, got, exp)
}

func compareOrdered[T float64 | string](op string, a, b T) bool {
	switch op {
	case OpEq:
		return a == b
	case OpNe:
		return a != b
	case OpGt:
		return a > b
	case OpGe:
		return a >= b
	case OpLt:
		return a < b
	case OpLe:
		return a <= b
	}
	return false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	}
	return 0, false
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	}
	return "", false
}
