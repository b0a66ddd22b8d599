package scim

import "strings"

// ApplyPatchShared is ApplyPatch for a caller that does not modify the resource it gets
// back: when the ops provably leave r as it is (see patchKeeps), it returns r itself,
// uncopied, with kept set, and the member delta ApplyPatch would return (empty for a
// Group, nil otherwise); r then holds no write-only attribute either (WithoutWriteOnly
// returns it as it is). Otherwise it is ApplyPatch, r untouched.
//
// Entra re-sends unchanged values routinely (its periodic "active": "True" to every active
// user); such a PATCH then costs neither a deep copy of the resource nor a diff.
func ApplyPatchShared(resourceType string, r Resource, ops []PatchOp, opts PatchOptions) (out Resource, d *MemberDelta, kept bool, err error) {
	if r != nil && patchKeeps(resourceType, r, ops) {
		if strings.EqualFold(resourceType, GroupType) {
			d = newMemberIntent().delta()
		}
		return r, d, true, nil
	}
	out, d, err = ApplyPatch(resourceType, r, ops, opts)
	return out, d, false, err
}

// patchKeeps reports whether ApplyPatch(resourceType, r, ops, ...) would succeed and return
// a document deep-equal to r: every operation is an add or replace that sets a single-valued
// attribute defined by the schemas (or a sub-attribute of a single-valued complex one) to
// the value, of the same JSON type, that r already holds, and r is already in the form
// ApplyPatch leaves a document in and the one it is stored in (see settled; a Group
// without members). It only reads r and the ops. It is conservative: false means "not known",
// and ApplyPatch then decides (and reports any error).
func patchKeeps(resourceType string, r Resource, ops []PatchOp) bool {
	if len(ops) == 0 {
		return false
	}
	ix := canonIndexFor(resourceType)
	if ix == nil || !settled(ix, r) {
		return false
	}
	p := &patcher{resourceType: resourceType, rt: ix.rt, doc: r}
	if strings.EqualFold(resourceType, GroupType) {
		if _, ok := Key(r, "members"); ok {
			return false
		}
		p.members = &memberIntent{} // only tested for nil: member ops are never kept
	}
	for i := range ops {
		if !p.keepsOp(&ops[i]) {
			return false
		}
	}
	return true
}

// keepsOp is patchKeeps for one operation (applyOp's dispatch).
func (p *patcher) keepsOp(op *PatchOp) bool {
	name := strings.ToLower(op.Op)
	if name != PatchAdd && name != PatchReplace {
		return false
	}
	switch {
	case op.Path == nil:
		return p.keepsPathless(name, op.Value)
	case op.Path.Attr.Name == "" && op.Path.Attr.URN != "":
		return p.keepsSchemaObject(name, op.Path.Attr.URN, op.Value)
	default:
		return p.keepsPath(name, *op.Path, op.Value)
	}
}

// keepsPathless is applyPathless's patchKeeps: every key of the value keeps r.
func (p *patcher) keepsPathless(op string, v any) bool {
	obj, ok := v.(map[string]any)
	if !ok || checkFlatPatchValue(p.rt, obj) != nil {
		return false
	}
	for k, e := range obj {
		if isPatchSchemaURN(k) {
			if !p.keepsSchemaObject(op, k, e) {
				return false
			}
			continue
		}
		path, err := keyPath(k)
		if err != nil || !p.keepsPath(op, path, e) {
			return false
		}
	}
	return true
}

// keepsSchemaObject is applySchemaObject's patchKeeps: an object of the core schema's or
// an extension's attributes, each of which keeps r.
func (p *patcher) keepsSchemaObject(op, urn string, v any) bool {
	obj, ok := v.(map[string]any)
	if !ok {
		return false // null (an extension removed), or an error
	}
	if strings.EqualFold(urn, p.rt.Schema) {
		return p.keepsPathless(op, obj)
	}
	for k, e := range obj {
		path, err := keyPath(k)
		if err != nil || path.Attr.URN != "" {
			return false
		}
		path.Attr.URN = urn
		if !p.keepsPath(op, path, e) {
			return false
		}
	}
	return true
}

// keepsPath is applyPath's patchKeeps for one attribute: a single-valued attribute of the
// schemas, or a sub-attribute of a single-valued complex one, set to the value it holds.
func (p *patcher) keepsPath(op string, path Path, v any) bool {
	if path.Filter != nil || path.Sub != "" || v == nil {
		return false
	}
	if _, compact := v.(MemberList); compact {
		return false
	}
	t := p.resolve(path.Attr)
	if t.attr == nil || t.attr.MultiValued || isManager(t) ||
		(p.members != nil && t.urn == "" && strings.EqualFold(t.name, "members")) {
		return false
	}
	if skip, err := p.checkMutable(op, t, path, v); err != nil || skip {
		return false // an error is ApplyPatch's to report; a skipped id is not worth a rule
	}
	c, err := p.container(t, false)
	if err != nil || c == nil {
		return false
	}
	cur, has := Get(c, t.name)
	if !has {
		return false
	}
	if path.Attr.Sub == "" {
		if t.attr.Type == "complex" {
			return p.keepsObject(t, cur, v)
		}
		nv, err := p.normalize(t, v)
		return err == nil && sameScalar(cur, nv)
	}
	// subAttrOp on a single-valued complex attribute: Set(parent, sub, normalized v).
	parent, isObj := cur.(map[string]any)
	if t.attr.Type != "complex" || !isObj {
		return false
	}
	sub := path.Attr.Sub
	sa := t.attr.SubAttr(sub)
	if sa != nil {
		sub = sa.Name
	}
	curSub, has := Get(parent, sub)
	if !has {
		return false
	}
	nv, err := p.normalizeFor(sa, t.name+"."+sub, v)
	return err == nil && sameScalar(curSub, nv)
}

// keepsObject is attrOp's merge of an object into a single-valued complex attribute: every
// sub-attribute it sets holds that value already, and none it unassigns (null) is held.
func (p *patcher) keepsObject(t patchTarget, cur, v any) bool {
	curObj, isObj := cur.(map[string]any)
	if !isObj {
		return false
	}
	nv, err := p.normalize(t, v)
	if err != nil {
		return false
	}
	obj, ok := nv.(map[string]any)
	if !ok {
		return false
	}
	for k, e := range obj {
		have, has := Get(curObj, k)
		if !has || !sameScalar(have, e) {
			return false
		}
	}
	raw, _ := v.(map[string]any)
	for k, e := range raw {
		if _, held := Key(curObj, k); e == nil && held {
			return false
		}
	}
	return true
}

// settled reports whether r is in the form ApplyPatch leaves a document in, and the form it
// is stored in: no key nestFlat would move, no empty array or object, which UnassignEmpty
// may drop, and no write-only attribute, which WithoutWriteOnly drops.
func settled(ix *canonIndex, r map[string]any) bool {
	for k, v := range r {
		if ix.isWriteOnly(k) {
			return false
		}
		switch x := v.(type) {
		case []any:
			if len(x) == 0 {
				return false
			}
		case map[string]any:
			if len(x) == 0 || hasEmpty(x) {
				return false
			}
		}
		if _, flat := parseFlatKey(ix.rt, k); flat {
			return false
		}
	}
	return true
}

// hasEmpty reports whether UnassignEmpty would change doc: an empty array or object in it.
func hasEmpty(doc map[string]any) bool {
	for _, v := range doc {
		switch x := v.(type) {
		case []any:
			if len(x) == 0 {
				return true
			}
		case map[string]any:
			if len(x) == 0 || hasEmpty(x) {
				return true
			}
		}
	}
	return false
}
