package scim

import (
	"cmp"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
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
	m := filterMatcher{rtName: resourceType, rt: ResourceTypeByName(resourceType), r: r}
	if err := m.check(f, filterScope{}, 0); err != nil {
		return false, err
	}
	return m.eval(f, filterScope{}, 0), nil
}

// ValidateFilter runs the schema checks of Match without a resource, so a handler can
// answer 400 for a misused operator even when no candidate resource exists.
func ValidateFilter(f Filter, resourceType string) error {
	m := filterMatcher{rtName: resourceType, rt: ResourceTypeByName(resourceType)}
	return m.check(f, filterScope{}, 0)
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

// filterMatcher evaluates filters against one resource.
type filterMatcher struct {
	rtName string
	rt     *ResourceTypeDef // nil for an unknown type: every attribute is then untyped
	r      Resource
	nodes  int
}

// filterScope is where attribute paths are resolved: the resource itself, or one element
// of a multi-valued complex attribute inside attr[...].
type filterScope struct {
	inElem     bool
	elem       map[string]any
	parent     *Attribute // definition of the attribute whose element this is (may be nil)
	parentPath AttrPath   // that attribute as written, for error details
}

// filterAttrRef is what an attribute path resolves to in the schema.
type filterAttrRef struct {
	def      *Attribute // definition of the named attribute; nil when unknown
	eff      *Attribute // definition of the values compared (sub-attribute or "value")
	urn      string     // extension object holding the attribute; "" for the top level
	implicit bool       // urn was inferred: an unprefixed extension attribute (manager)
}

// resolve finds the schema definition of p. An unprefixed name that the core schema does
// not define but an extension of the resource type does (manager for Users) resolves to
// that extension, because Entra writes "manager eq <id>".
func (m *filterMatcher) resolve(p AttrPath, sc filterScope) filterAttrRef {
	var ref filterAttrRef
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
func (m *filterMatcher) lookup(p AttrPath, ref filterAttrRef, sc filterScope) any {
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

// filterAttrName prints an attribute path as the client wrote it, for error details.
// It is a fmt.Stringer so that the text is only built when an error is.
type filterAttrName struct {
	sc   filterScope
	path AttrPath
}

func (a filterAttrName) String() string {
	var b strings.Builder
	if a.sc.inElem {
		b.WriteString(filterAttrName{path: a.sc.parentPath}.String() + "[...].")
	}
	if a.path.URN != "" {
		b.WriteString(a.path.URN + ":")
	}
	b.WriteString(a.path.Name)
	if a.path.Sub != "" {
		b.WriteString("." + a.path.Sub)
	}
	return b.String()
}

func filterError(format string, args ...any) *Error {
	return BadRequest(TypeInvalidFilter, format, args...)
}

// check validates f against the schema: node shapes, operators, and operator/type pairs
// that can never be meaningful.
func (m *filterMatcher) check(f Filter, sc filterScope, depth int) error {
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

func (m *filterMatcher) checkValuePath(x *ValuePathFilter, sc filterScope, depth int) error {
	name := filterAttrName{sc, x.Attr}
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
	return m.check(x.Inner, filterScope{inElem: true, parent: ref.def, parentPath: x.Attr}, depth+1)
}

func (m *filterMatcher) checkCompare(c *CompareFilter, sc filterScope) error {
	name := filterAttrName{sc, c.Attr}
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
		return filterError("%s has no sub-attributes, so %s cannot be compared", filterAttrName{sc, AttrPath{URN: c.Attr.URN, Name: c.Attr.Name}}, name)
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
		return filterError("%s is a complex attribute without a value; compare one of its sub-attributes, e.g. %s.%s", name, name, filterFirstSubAttr(ref.def))
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
			if _, ok := parseFilterTime(c.Value); !ok {
				return filterError("%s is a dateTime; compare it with an RFC 3339 time such as \"2024-01-02T03:04:05Z\"", name)
			}
		}
	}
	return nil
}

func filterFirstSubAttr(a *Attribute) string {
	if len(a.SubAttributes) == 0 {
		return "subAttribute"
	}
	return a.SubAttributes[0].Name
}

// eval evaluates a checked filter.
func (m *filterMatcher) eval(f Filter, sc filterScope, depth int) bool {
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
func (m *filterMatcher) evalValuePath(x *ValuePathFilter, sc filterScope, depth int) bool {
	ref := m.resolve(x.Attr, sc)
	inner := filterScope{inElem: true, parent: ref.def}
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

func (m *filterMatcher) evalCompare(c *CompareFilter, sc filterScope) bool {
	ref := m.resolve(c.Attr, sc)
	raw := m.lookup(c.Attr, ref, sc)
	sub := c.Attr.Sub
	switch {
	case c.Op == OpPr:
		if sub == "" {
			return filterPresent(raw)
		}
		return anyFilterOperand(raw, sub, filterOperandTest{kind: operandPresent})
	case c.Value == nil:
		has := filterHasNonNull(raw, sub)
		return has == (c.Op == OpNe)
	case c.Op == OpNe:
		return !anyFilterOperand(raw, sub, filterOperandTest{kind: operandCompare, op: OpEq, want: c.Value, eff: ref.eff})
	}
	return anyFilterOperand(raw, sub, filterOperandTest{kind: operandCompare, op: c.Op, want: c.Value, eff: ref.eff})
}

// filterOperandTest is what anyFilterOperand asks of each value: a comparison, pr or
// "not null". A value type rather than a closure, so that the per-resource hot path of
// a list scan does not allocate.
type filterOperandTest struct {
	kind int
	op   string
	want any
	eff  *Attribute
}

const (
	operandCompare = iota
	operandPresent
	operandNonNull
)

func (t filterOperandTest) holds(v any) bool {
	switch t.kind {
	case operandPresent:
		return filterPresentScalar(v)
	case operandNonNull:
		return v != nil
	}
	return filterScalarMatches(t.op, v, t.want, t.eff)
}

// anyFilterOperand applies t to the values a comparison looks at and reports whether any
// holds: each element of a multi-valued attribute; of a complex value, its sub
// sub-attribute, or its "value" sub-attribute when sub is empty.
func anyFilterOperand(raw any, sub string, t filterOperandTest) bool {
	if list, ok := raw.([]any); ok {
		for _, e := range list {
			if filterOperandOf(e, sub, t) {
				return true
			}
		}
		return false
	}
	return filterOperandOf(raw, sub, t)
}

func filterOperandOf(v any, sub string, t filterOperandTest) bool {
	obj, ok := v.(map[string]any)
	if !ok {
		return sub == "" && t.holds(v)
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
			if t.holds(e) {
				return true
			}
		}
		return false
	}
	return t.holds(sv)
}

// filterPresent implements pr: assigned, and not null, "", [] or {}.
func filterPresent(raw any) bool {
	if list, ok := raw.([]any); ok {
		for _, e := range list {
			if filterPresentScalar(e) {
				return true
			}
		}
		return false
	}
	return filterPresentScalar(raw)
}

func filterPresentScalar(v any) bool {
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

// filterHasNonNull is false when the attribute is absent, null or an empty list: what
// "eq null" matches.
func filterHasNonNull(raw any, sub string) bool {
	if sub != "" {
		return anyFilterOperand(raw, sub, filterOperandTest{kind: operandNonNull})
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

// filterScalarMatches applies op to one stored value and the filter value, as the definition
// eff (nil when unknown: a case-insensitive string) says.
func filterScalarMatches(op string, stored, want any, eff *Attribute) bool {
	stored = filterNumber(stored)
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
		return filterValuesEqual(stored, want, typ, caseExact)
	case OpCo, OpSw, OpEw:
		return filterSubstringMatches(op, stored, want, caseExact)
	case OpGt, OpGe, OpLt, OpLe:
		c, ok := filterValuesOrder(stored, want, typ, caseExact)
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

// filterNumber turns numbers decoded without UseNumber into json.Number.
func filterNumber(v any) any {
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

// filterValueText is a string, or a number's text: a number compared with a string attribute
// compares as written ("externalId eq 12345").
func filterValueText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	}
	return "", false
}

func filterValuesEqual(stored, want any, typ string, caseExact bool) bool {
	_, storedBool := stored.(bool)
	_, wantBool := want.(bool)
	if typ == "boolean" || storedBool || wantBool {
		a, ok1 := Bool(stored)
		b, ok2 := Bool(want)
		return ok1 && ok2 && a == b
	}
	if typ == "dateTime" {
		if c, ok := compareFilterTimes(stored, want); ok {
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
	a, ok1 := filterValueText(stored)
	b, ok2 := filterValueText(want)
	if !ok1 || !ok2 {
		return false
	}
	if caseExact {
		return a == b
	}
	return strings.EqualFold(a, b)
}

func filterSubstringMatches(op string, stored, want any, caseExact bool) bool {
	s, ok1 := stored.(string)
	w, ok2 := filterValueText(want)
	if !ok1 || !ok2 {
		return false
	}
	if !caseExact {
		s, w = foldCase(s), foldCase(w)
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

// foldCase maps each character of s to one representative of its simple case-folding
// orbit, so that co, sw and ew find exactly what eq (strings.EqualFold) equates: "ſ" and
// "s", "ς" and "Σ" are one letter, "İ" is not "i". strings.ToLower, used before, made
// `co "Σ"` miss "ς" and `co "i"` find "İ" (lowered to "i" and a combining dot) while eq
// said the opposite. The representative is the orbit's ASCII lower-case letter when it has
// one (lower-case ASCII, the common case, is its own fold and costs no copy), otherwise its
// smallest rune. Bytes that are not UTF-8 stay as they are. The store's index folds by the
// same orbits (store's fold) but to the smallest rune, upper-case ASCII, which its keys
// already hold; here lower case is the representative so that the common value costs no copy.
func foldCase(s string) string {
	ascii, folded := true, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			folded = false
		}
	}
	if ascii {
		if folded {
			return s
		}
		b := []byte(s)
		for i, c := range b {
			if 'A' <= c && c <= 'Z' {
				b[i] = c + 'a' - 'A'
			}
		}
		return string(b)
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteByte(s[i])
		} else {
			b.WriteRune(foldRune(r))
		}
		i += size
	}
	return b.String()
}

// foldRune is foldCase's representative of r's orbit.
func foldRune(r rune) rune {
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	if 'A' <= m && m <= 'Z' {
		return m + 'a' - 'A'
	}
	return m
}

// filterValuesOrder compares for gt/ge/lt/le: dateTimes as instants, numbers numerically,
// strings lexicographically (folded unless caseExact). ok is false when the two cannot be
// ordered against each other.
func filterValuesOrder(stored, want any, typ string, caseExact bool) (int, bool) {
	if typ == "dateTime" {
		return compareFilterTimes(stored, want)
	}
	if a, ok := stored.(json.Number); ok {
		b, ok := want.(json.Number)
		if !ok {
			return 0, false
		}
		return compareJSONNumbers(a, b)
	}
	a, ok1 := stored.(string)
	b, ok2 := filterValueText(want)
	if !ok1 || !ok2 {
		return 0, false
	}
	if !caseExact {
		a, b = strings.ToLower(a), strings.ToLower(b)
	}
	return strings.Compare(a, b), true
}

// parseFilterTime parses an xsd:dateTime as SCIM writes it: RFC 3339, or without an offset
// (read as UTC, as RFC 7643 §2.3.5 allows).
func parseFilterTime(v any) (time.Time, bool) {
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

func compareFilterTimes(a, b any) (int, bool) {
	ta, ok1 := parseFilterTime(a)
	tb, ok2 := parseFilterTime(b)
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
	if !filterFloatParsed(err1) || !filterFloatParsed(err2) {
		return 0, false
	}
	return cmp.Compare(x, y), true
}

// filterFloatParsed accepts out-of-range numbers, which ParseFloat returns as ±Inf or 0.
func filterFloatParsed(err error) bool { return err == nil || errors.Is(err, strconv.ErrRange) }

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
