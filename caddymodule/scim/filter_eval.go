package scim

import (
	"cmp"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Bounds for filter trees that did not come from ParseFilter (built by hand in Go):
// a parsed filter is at most MaxFilterTerms-1 and/or nodes, MaxFilterDepth not nodes and
// a valuePath deep on any branch, and every node costs at least two bytes of input. The
// margins only stop a malformed tree from recursing without end.
const (
	maxFilterTreeDepth = 2 * (MaxFilterTerms + MaxFilterDepth)
	maxFilterNodes     = MaxFilterLength
)

// Match reports whether the fully rendered resource r (with id, schemas and meta) of
// type resourceType matches f. Attribute names compare case-insensitively; values compare
// as the schema says (caseExact, boolean, dateTime); a multi-valued attribute matches when
// any element does. The filter is checked against the schema before any resource data is
// looked at, so an error (*Error 400 invalidFilter, for operators that make no sense on an
// attribute, such as gt on a boolean) does not depend on which resource is evaluated.
// Unexpected value shapes in r never panic; they simply do not match.
func Match(f Filter, resourceType string, r Resource) (bool, error) {
	m := matcher{rtName: resourceType, rt: ResourceTypeByName(resourceType), r: r}
	if err := m.check(f, matchScope{}, 0); err != nil {
		return false, err
	}
	return m.eval(f, matchScope{}, 0), nil
}

// ValidateFilter runs the schema checks of Match without a resource, so a handler can
// answer 400 for a misused operator even when no candidate resource exists.
func ValidateFilter(f Filter, resourceType string) error {
	m := matcher{rtName: resourceType, rt: ResourceTypeByName(resourceType)}
	return m.check(f, matchScope{}, 0)
}

// EqualityTerms returns the eq comparisons with string values that f cannot match
// without: those reached from the root through AndFilters only (never under or or not).
// A top-level ValuePathFilter contributes its own necessary terms re-rooted on its
// attribute: emails[type eq "work"].value eq "x" yields emails.type eq "work" and
// emails.value eq "x". The handler picks an index from these and then runs Match on the
// candidates, so leaving a term out is always safe and adding one never is. Numbers are
// left out because a stored number would not be found under its text in a string index.
// The results are fresh copies; f is not shared.
func EqualityTerms(f Filter) []*CompareFilter {
	var out []*CompareFilter
	collectEqualityTerms(f, nil, 0, &out)
	return out
}

func collectEqualityTerms(f Filter, root *AttrPath, depth int, out *[]*CompareFilter) {
	if depth > maxFilterTreeDepth || len(*out) >= MaxFilterTerms {
		return
	}
	switch x := f.(type) {
	case *AndFilter:
		if x != nil {
			collectEqualityTerms(x.Left, root, depth+1, out)
			collectEqualityTerms(x.Right, root, depth+1, out)
		}
	case *ValuePathFilter:
		if x != nil && root == nil && x.Attr.Sub == "" {
			collectEqualityTerms(x.Inner, &x.Attr, depth+1, out)
		}
	case *CompareFilter:
		if x == nil || x.Op != OpEq {
			return
		}
		s, ok := x.Value.(string)
		if !ok {
			return
		}
		attr := x.Attr
		if root != nil {
			if attr.URN != "" || attr.Sub != "" {
				return
			}
			attr = AttrPath{URN: root.URN, Name: root.Name, Sub: x.Attr.Name}
		}
		*out = append(*out, &CompareFilter{Attr: attr, Op: OpEq, Value: s})
	}
}

// matcher evaluates filters against one resource.
type matcher struct {
	rtName string
	rt     *ResourceTypeDef // nil for an unknown type: every attribute is then untyped
	r      Resource
	nodes  int
}

// matchScope is where attribute paths are resolved: the resource itself, or one element
// of a multi-valued complex attribute inside attr[...].
type matchScope struct {
	inElem bool
	elem   map[string]any
	parent *Attribute // definition of the attribute whose element this is (may be nil)
	name   string     // that attribute as written, for error details
}

// attrRef is what an attribute path resolves to in the schema.
type attrRef struct {
	def      *Attribute // definition of the named attribute; nil when unknown
	eff      *Attribute // definition of the values compared (sub-attribute or "value")
	urn      string     // extension object holding the attribute; "" for the top level
	implicit bool       // urn was inferred: an unprefixed extension attribute (manager)
}

// resolve finds the schema definition of p. An unprefixed name that the core schema does
// not define but an extension of the resource type does (manager for Users) resolves to
// that extension, because Entra writes "manager eq <id>".
func (m *matcher) resolve(p AttrPath, sc matchScope) attrRef {
	var ref attrRef
	switch {
	case sc.inElem:
		ref.def = sc.parent.SubAttr(p.Name)
	case p.URN != "" && m.rt != nil && strings.EqualFold(p.URN, m.rt.Schema):
		ref.def, _ = FindAttr(m.rtName, AttrPath{Name: p.Name})
	case p.URN != "":
		ref.def, _ = FindAttr(m.rtName, p)
		ref.urn = p.URN
	default:
		ref.def, _ = FindAttr(m.rtName, p)
		if ref.def == nil && m.rt != nil {
			for _, ext := range m.rt.Extensions {
				if a := SchemaByID(ext).Attr(p.Name); a != nil {
					ref.def, ref.urn, ref.implicit = a, ext, true
					break
				}
			}
		}
	}
	ref.eff = ref.def
	switch {
	case p.Sub != "":
		ref.eff = ref.def.SubAttr(p.Sub)
	case ref.def != nil && ref.def.Type == "complex":
		ref.eff = ref.def.SubAttr("value")
	}
	return ref
}

// lookup returns the raw value of the attribute p (its sub-attribute is applied later).
func (m *matcher) lookup(p AttrPath, ref attrRef, sc matchScope) any {
	if sc.inElem {
		v, _ := Get(sc.elem, p.Name)
		return v
	}
	if ref.urn == "" {
		v, _ := Get(m.r, p.Name)
		return v
	}
	if ext, ok := Get(m.r, ref.urn); ok {
		if em, ok := ext.(map[string]any); ok {
			if v, ok := Get(em, p.Name); ok {
				return v
			}
		}
	}
	if ref.implicit {
		v, _ := Get(m.r, p.Name)
		return v
	}
	return nil
}

// displayName writes p as the client did, for error details.
func (sc matchScope) displayName(p AttrPath) string {
	var b strings.Builder
	if sc.inElem {
		b.WriteString(sc.name + "[...].")
	}
	if p.URN != "" {
		b.WriteString(p.URN + ":")
	}
	b.WriteString(p.Name)
	if p.Sub != "" {
		b.WriteString("." + p.Sub)
	}
	return b.String()
}

func filterError(format string, args ...any) *Error {
	return BadRequest(TypeInvalidFilter, format, args...)
}

// check validates f against the schema: node shapes, operators, and operator/type pairs
// that can never be meaningful.
func (m *matcher) check(f Filter, sc matchScope, depth int) error {
	m.nodes++
	if depth > maxFilterTreeDepth || m.nodes > maxFilterNodes {
		return filterError("the filter is too large or nested too deeply")
	}
	switch x := f.(type) {
	case *CompareFilter:
		if x != nil {
			return m.checkCompare(x, sc)
		}
	case *AndFilter:
		if x != nil {
			if err := m.check(x.Left, sc, depth+1); err != nil {
				return err
			}
			return m.check(x.Right, sc, depth+1)
		}
	case *OrFilter:
		if x != nil {
			if err := m.check(x.Left, sc, depth+1); err != nil {
				return err
			}
			return m.check(x.Right, sc, depth+1)
		}
	case *NotFilter:
		if x != nil {
			return m.check(x.Inner, sc, depth+1)
		}
	case *ValuePathFilter:
		if x != nil {
			return m.checkValuePath(x, sc, depth)
		}
	}
	return filterError("the filter has an empty or unsupported expression")
}

func (m *matcher) checkValuePath(x *ValuePathFilter, sc matchScope, depth int) error {
	name := sc.displayName(x.Attr)
	switch {
	case sc.inElem:
		return filterError("nested [...] filters are not supported (%s)", name)
	case x.Attr.Name == "":
		return filterError("a [...] filter needs an attribute name")
	case x.Attr.Sub != "":
		return filterError("a [...] filter must follow an attribute, not the sub-attribute %s", name)
	}
	ref := m.resolve(x.Attr, sc)
	if ref.def != nil && ref.def.Type != "complex" {
		return filterError("%s is not a complex attribute, so it cannot take a [...] filter", name)
	}
	return m.check(x.Inner, matchScope{inElem: true, parent: ref.def, name: name}, depth+1)
}

func (m *matcher) checkCompare(c *CompareFilter, sc matchScope) error {
	name := sc.displayName(c.Attr)
	if c.Attr.Name == "" {
		return filterError("a comparison needs an attribute name")
	}
	if !isFilterOperator(c.Op) {
		return filterError("unknown comparison operator %q on %s; use one of %s", c.Op, name, filterOperators)
	}
	switch c.Value.(type) {
	case nil, string, bool, json.Number:
	default:
		return filterError("unsupported value of type %T compared with %s", c.Value, name)
	}
	ref := m.resolve(c.Attr, sc)
	if c.Attr.Sub != "" && ref.def != nil && ref.def.Type != "complex" {
		return filterError("%s has no sub-attributes, so %s cannot be compared", sc.displayName(AttrPath{URN: c.Attr.URN, Name: c.Attr.Name}), name)
	}
	if c.Op == OpPr {
		return nil
	}
	if c.Value == nil {
		if c.Op != OpEq && c.Op != OpNe {
			return filterError("%s: null can only be compared with eq or ne", name)
		}
		return nil
	}
	complexWhole := c.Attr.Sub == "" && ref.def != nil && ref.def.Type == "complex"
	if complexWhole && ref.eff == nil {
		return filterError("%s is a complex attribute without a value; compare one of its sub-attributes, e.g. %s.%s", name, name, firstSubAttr(ref.def))
	}
	typ := ""
	if ref.eff != nil {
		typ = ref.eff.Type
	}
	_, boolValue := c.Value.(bool)
	switch c.Op {
	case OpEq, OpNe:
		if _, ok := Bool(c.Value); typ == "boolean" && !ok {
			return filterError("%s is a boolean; compare it with true or false", name)
		}
	case OpCo, OpSw, OpEw:
		if typ == "boolean" || boolValue {
			return filterError("%s compares strings; it cannot be used with the boolean %s", c.Op, name)
		}
	default: // gt, ge, lt, le
		switch {
		case typ == "boolean" || boolValue:
			return filterError("%s cannot be ordered: booleans have no order; use eq or ne", name)
		case complexWhole:
			return filterError("%s is a complex attribute and cannot be ordered; compare one of its sub-attributes", name)
		case typ == "dateTime":
			if _, ok := parseSCIMTime(c.Value); !ok {
				return filterError("%s is a dateTime; compare it with an RFC 3339 time such as \"2024-01-02T03:04:05Z\"", name)
			}
		}
	}
	return nil
}

func firstSubAttr(a *Attribute) string {
	if len(a.SubAttributes) == 0 {
		return "subAttribute"
	}
	return a.SubAttributes[0].Name
}

// eval evaluates a checked filter.
func (m *matcher) eval(f Filter, sc matchScope, depth int) bool {
	if depth > maxFilterTreeDepth {
		return false
	}
	switch x := f.(type) {
	case *AndFilter:
		return m.eval(x.Left, sc, depth+1) && m.eval(x.Right, sc, depth+1)
	case *OrFilter:
		return m.eval(x.Left, sc, depth+1) || m.eval(x.Right, sc, depth+1)
	case *NotFilter:
		return !m.eval(x.Inner, sc, depth+1)
	case *CompareFilter:
		return m.evalCompare(x, sc)
	case *ValuePathFilter:
		return m.evalValuePath(x, sc, depth)
	}
	return false
}

// evalValuePath is true when some element of the attribute matches the inner filter. A
// single complex value (manager[value eq "x"]) counts as a one-element list.
func (m *matcher) evalValuePath(x *ValuePathFilter, sc matchScope, depth int) bool {
	ref := m.resolve(x.Attr, sc)
	inner := matchScope{inElem: true, parent: ref.def}
	switch v := m.lookup(x.Attr, ref, sc).(type) {
	case map[string]any:
		inner.elem = v
		return m.eval(x.Inner, inner, depth+1)
	case []any:
		for _, e := range v {
			if em, ok := e.(map[string]any); ok {
				inner.elem = em
				if m.eval(x.Inner, inner, depth+1) {
					return true
				}
			}
		}
	}
	return false
}

func (m *matcher) evalCompare(c *CompareFilter, sc matchScope) bool {
	ref := m.resolve(c.Attr, sc)
	raw := m.lookup(c.Attr, ref, sc)
	sub := c.Attr.Sub
	switch {
	case c.Op == OpPr:
		if sub == "" {
			return present(raw)
		}
		return anyOperand(raw, sub, presentScalar)
	case c.Value == nil:
		has := hasNonNull(raw, sub)
		return has == (c.Op == OpNe)
	case c.Op == OpNe:
		return !anyOperand(raw, sub, func(v any) bool { return scalarMatches(OpEq, v, c.Value, ref.eff) })
	}
	return anyOperand(raw, sub, func(v any) bool { return scalarMatches(c.Op, v, c.Value, ref.eff) })
}

// anyOperand calls fn on the values a comparison looks at and reports whether any call
// was true: each element of a multi-valued attribute; of a complex value, its sub
// sub-attribute, or its "value" sub-attribute when sub is empty.
func anyOperand(raw any, sub string, fn func(any) bool) bool {
	if list, ok := raw.([]any); ok {
		for _, e := range list {
			if operandOf(e, sub, fn) {
				return true
			}
		}
		return false
	}
	return operandOf(raw, sub, fn)
}

func operandOf(v any, sub string, fn func(any) bool) bool {
	obj, ok := v.(map[string]any)
	if !ok {
		return sub == "" && fn(v)
	}
	key := sub
	if key == "" {
		key = "value"
	}
	sv, ok := Get(obj, key)
	if !ok {
		return false
	}
	if list, ok := sv.([]any); ok {
		for _, e := range list {
			if fn(e) {
				return true
			}
		}
		return false
	}
	return fn(sv)
}

// present implements pr: assigned, and not null, "", [] or {}.
func present(raw any) bool {
	if list, ok := raw.([]any); ok {
		for _, e := range list {
			if presentScalar(e) {
				return true
			}
		}
		return false
	}
	return presentScalar(raw)
}

func presentScalar(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// hasNonNull is false when the attribute is absent, null or an empty list: what
// "eq null" matches.
func hasNonNull(raw any, sub string) bool {
	if sub != "" {
		return anyOperand(raw, sub, func(v any) bool { return v != nil })
	}
	if list, ok := raw.([]any); ok {
		for _, e := range list {
			if e != nil {
				return true
			}
		}
		return false
	}
	return raw != nil
}

// scalarMatches applies op to one stored value and the filter value, as the definition
// eff (nil when unknown: a case-insensitive string) says.
func scalarMatches(op string, stored, want any, eff *Attribute) bool {
	stored = normalizeNumber(stored)
	switch stored.(type) {
	case string, bool, json.Number:
	default:
		return false
	}
	typ, caseExact := "", false
	if eff != nil {
		typ, caseExact = eff.Type, eff.CaseExact
	}
	switch op {
	case OpEq:
		return valuesEqual(stored, want, typ, caseExact)
	case OpCo, OpSw, OpEw:
		return substringMatches(op, stored, want, caseExact)
	case OpGt, OpGe, OpLt, OpLe:
		c, ok := valuesOrder(stored, want, typ, caseExact)
		if !ok {
			return false
		}
		switch op {
		case OpGt:
			return c > 0
		case OpGe:
			return c >= 0
		case OpLt:
			return c < 0
		default:
			return c <= 0
		}
	}
	return false
}

// normalizeNumber turns numbers decoded without UseNumber into json.Number.
func normalizeNumber(v any) any {
	switch x := v.(type) {
	case float64:
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
	case int:
		return json.Number(strconv.Itoa(x))
	case int64:
		return json.Number(strconv.FormatInt(x, 10))
	}
	return v
}

// valueText is a string, or a number's text: a number compared with a string attribute
// compares as written ("externalId eq 12345").
func valueText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	}
	return "", false
}

func valuesEqual(stored, want any, typ string, caseExact bool) bool {
	_, storedBool := stored.(bool)
	_, wantBool := want.(bool)
	if typ == "boolean" || storedBool || wantBool {
		a, ok1 := Bool(stored)
		b, ok2 := Bool(want)
		return ok1 && ok2 && a == b
	}
	if typ == "dateTime" {
		if c, ok := compareTimes(stored, want); ok {
			return c == 0
		}
	}
	if a, ok := stored.(json.Number); ok {
		if b, ok := want.(json.Number); ok {
			if c, ok := compareJSONNumbers(a, b); ok {
				return c == 0
			}
		}
	}
	a, ok1 := valueText(stored)
	b, ok2 := valueText(want)
	if !ok1 || !ok2 {
		return false
	}
	if caseExact {
		return a == b
	}
	return strings.EqualFold(a, b)
}

func substringMatches(op string, stored, want any, caseExact bool) bool {
	s, ok1 := stored.(string)
	w, ok2 := valueText(want)
	if !ok1 || !ok2 {
		return false
	}
	if !caseExact {
		s, w = strings.ToLower(s), strings.ToLower(w)
	}
	switch op {
	case OpCo:
		return strings.Contains(s, w)
	case OpSw:
		return strings.HasPrefix(s, w)
	default:
		return strings.HasSuffix(s, w)
	}
}

// valuesOrder compares for gt/ge/lt/le: dateTimes as instants, numbers numerically,
// strings lexicographically (folded unless caseExact). ok is false when the two cannot be
// ordered against each other.
func valuesOrder(stored, want any, typ string, caseExact bool) (int, bool) {
	if typ == "dateTime" {
		return compareTimes(stored, want)
	}
	if a, ok := stored.(json.Number); ok {
		b, ok := want.(json.Number)
		if !ok {
			return 0, false
		}
		return compareJSONNumbers(a, b)
	}
	a, ok1 := stored.(string)
	b, ok2 := valueText(want)
	if !ok1 || !ok2 {
		return 0, false
	}
	if !caseExact {
		a, b = strings.ToLower(a), strings.ToLower(b)
	}
	return strings.Compare(a, b), true
}

// parseSCIMTime parses an xsd:dateTime as SCIM writes it: RFC 3339, or without an offset
// (read as UTC, as RFC 7643 §2.3.5 allows).
func parseSCIMTime(v any) (time.Time, bool) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	if t, err := time.Parse("2006-01-02T15:04:05", s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

func compareTimes(a, b any) (int, bool) {
	ta, ok1 := parseSCIMTime(a)
	tb, ok2 := parseSCIMTime(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	return ta.Compare(tb), true
}

// compareJSONNumbers compares exactly when both are integers (ids and counters can
// exceed float64 precision), as float64 otherwise.
func compareJSONNumbers(a, b json.Number) (int, bool) {
	if isJSONInteger(string(a)) && isJSONInteger(string(b)) {
		return compareIntegerText(string(a), string(b)), true
	}
	x, err1 := strconv.ParseFloat(string(a), 64)
	y, err2 := strconv.ParseFloat(string(b), 64)
	if !floatParsed(err1) || !floatParsed(err2) {
		return 0, false
	}
	return cmp.Compare(x, y), true
}

// floatParsed accepts out-of-range numbers, which ParseFloat returns as ±Inf or 0.
func floatParsed(err error) bool { return err == nil || errors.Is(err, strconv.ErrRange) }

func isJSONInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && skipDigits(s, 0) == len(s)
}

// compareIntegerText compares two decimal integers of any length.
func compareIntegerText(a, b string) int {
	negA, negB := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-")
	a = strings.TrimLeft(strings.TrimPrefix(a, "-"), "0")
	b = strings.TrimLeft(strings.TrimPrefix(b, "-"), "0")
	negA = negA && a != ""
	negB = negB && b != ""
	if negA != negB {
		if negA {
			return -1
		}
		return 1
	}
	c := cmp.Compare(len(a), len(b))
	if c == 0 {
		c = strings.Compare(a, b)
	}
	if negA {
		return -c
	}
	return c
}
