package scim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Bounds on client filters and paths. Every one is checked while parsing, before any
// recursion goes deeper, so that no input can exhaust the stack (a Go stack overflow
// kills the whole Caddy process) or take more than linear time.
const (
	// MaxFilterLength is the longest filter or path accepted, in bytes.
	MaxFilterLength = 4096
	// MaxFilterDepth bounds nesting: each "(...)", "not (...)" and "attr[...]" is one level.
	// And/or chains are parsed by iteration, not recursion, and are bounded by
	// MaxFilterTerms instead.
	MaxFilterDepth = 16
	// MaxFilterTerms bounds the number of comparisons in one filter.
	MaxFilterTerms = 64
)

// filterOperators lists the comparison operators for error details.
const filterOperators = "eq, ne, co, sw, ew, pr, gt, ge, lt, le"

// ParseFilter parses a SCIM filter (RFC 7644 §3.4.2.2) as Entra sends it: keywords,
// operators and attribute names in any case, quoted JSON string values and also bare
// values (externalId eq jyoung), and the valuePath form emails[type eq "work"].value eq "x".
// Errors are *Error 400 invalidFilter with the position of the problem.
func ParseFilter(s string) (Filter, error) {
	p, err := newFilterParser(s, "filter", TypeInvalidFilter)
	if err != nil {
		return nil, err
	}
	f, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if !p.eof() {
		return nil, p.unexpectedAfterExpr()
	}
	return f, nil
}

// ParsePath parses a PATCH path (RFC 7644 §3.5.2): attrPath, or valuePath optionally
// followed by ".subAttr", each with an optional schema URN prefix. Errors are
// *Error 400 invalidPath.
func ParsePath(s string) (Path, error) {
	p, err := newFilterParser(s, "path", TypeInvalidPath)
	if err != nil {
		return Path{}, err
	}
	p.skipSpace()
	start := p.pos
	attr, err := p.parseAttrPath()
	if err != nil {
		return Path{}, err
	}
	if attr.Name == "" {
		return Path{}, p.schemaOnly(start, attr.URN)
	}
	path := Path{Attr: attr}
	if p.peek() == '[' {
		if path.Filter, err = p.parseBracket(attr, p.src[start:p.pos]); err != nil {
			return Path{}, err
		}
		if p.peek() == '.' {
			p.pos++
			if path.Sub, err = p.parseSubAttrName(); err != nil {
				return Path{}, err
			}
		}
	}
	p.skipSpace()
	if !p.eof() {
		return Path{}, p.fail(p.pos, "unexpected %s after the path %s", p.tokenAt(p.pos), quoteFilterSnippet(strings.TrimSpace(p.src[:p.pos])))
	}
	return path, nil
}

// ParseAttrPath parses one attribute name of an attributes= or excludedAttributes= list:
// [URN ":"] name ["." sub]. A known schema URN on its own (the whole enterprise extension)
// yields an AttrPath with only URN set. Errors are *Error 400 invalidPath.
func ParseAttrPath(s string) (AttrPath, error) {
	p, err := newFilterParser(s, "attribute path", TypeInvalidPath)
	if err != nil {
		return AttrPath{}, err
	}
	p.skipSpace()
	attr, err := p.parseAttrPath()
	if err != nil {
		return AttrPath{}, err
	}
	p.skipSpace()
	if !p.eof() {
		return AttrPath{}, p.fail(p.pos, "unexpected %s after the attribute name; expected [URN:]name[.subAttribute]", p.tokenAt(p.pos))
	}
	return attr, nil
}

// filterParser is a recursive-descent parser over the raw text. It lexes on demand
// because what a token is depends on where it stands: after an operator a bare value
// runs to the next space, ")" or "]", whatever characters it holds.
type filterParser struct {
	src      string
	pos      int
	what     string // "filter", "path" or "attribute path", for error details
	scimType string // scimType of every error
	depth    int    // current nesting of (...), not (...) and [...]
	terms    int    // comparisons parsed so far
	closer   byte   // what ends the current group: 0 (end of input), ')' or ']'
	open     int    // position of the "(" or "[" that closer closes
	bracket  string // attribute whose [...] is being parsed, "" outside brackets
}

func newFilterParser(s, what, scimType string) (*filterParser, error) {
	if len(s) > MaxFilterLength {
		return nil, BadRequest(scimType, "invalid %s: it is %d bytes long; the limit is %d bytes", what, len(s), MaxFilterLength)
	}
	if !utf8.ValidString(s) {
		return nil, BadRequest(scimType, "invalid %s: it is not valid UTF-8", what)
	}
	p := &filterParser{src: s, what: what, scimType: scimType}
	p.skipSpace()
	if p.eof() {
		return nil, BadRequest(scimType, "invalid %s: it is empty", what)
	}
	p.pos = 0
	return p, nil
}

// fail builds the 400 error for a problem at byte offset pos, reported as a 1-based
// character position because that is what a person counts in the filter they wrote.
func (p *filterParser) fail(pos int, format string, args ...any) *Error {
	return BadRequest(p.scimType, "invalid %s at position %d: %s", p.what, p.column(pos), fmt.Sprintf(format, args...))
}

func (p *filterParser) column(pos int) int {
	pos = min(pos, len(p.src))
	return utf8.RuneCountInString(p.src[:pos]) + 1
}

func (p *filterParser) eof() bool { return p.pos >= len(p.src) }

// peek returns the current byte, or 0 at the end of input.
func (p *filterParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.pos]
}

func isFilterSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func (p *filterParser) skipSpace() {
	for !p.eof() && isFilterSpace(p.src[p.pos]) {
		p.pos++
	}
}

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// wordAt returns the run of ASCII letters starting at pos (keywords and operators).
func (p *filterParser) wordAt(pos int) string {
	end := pos
	for end < len(p.src) && isASCIILetter(p.src[end]) {
		end++
	}
	return p.src[pos:end]
}

// tokenAt describes what stands at pos for an error detail: the next run of non-space
// characters (shortened), or "the end of the <what>".
func (p *filterParser) tokenAt(pos int) string {
	if pos >= len(p.src) {
		return "the end of the " + p.what
	}
	end := pos + 1
	if c := p.src[pos]; c != '(' && c != ')' && c != '[' && c != ']' {
		for end < len(p.src) && !isFilterSpace(p.src[end]) && !strings.ContainsRune("()[]", rune(p.src[end])) {
			end++
		}
	}
	return quoteFilterSnippet(p.src[pos:end])
}

// quoteFilterSnippet quotes client text for an error detail, cut to a readable length.
func quoteFilterSnippet(s string) string {
	const maxRunes = 100
	if utf8.RuneCountInString(s) > maxRunes {
		runes := []rune(s)
		s = string(runes[:maxRunes]) + "..."
	}
	return strconv.Quote(s)
}

// acceptKeyword consumes the logical operator kw ("and", "or") when it is the next word,
// followed by a space or "(". Otherwise it leaves the position unchanged.
func (p *filterParser) acceptKeyword(kw string) bool {
	save := p.pos
	p.skipSpace()
	w := p.wordAt(p.pos)
	end := p.pos + len(w)
	if strings.EqualFold(w, kw) && end < len(p.src) && (isFilterSpace(p.src[end]) || p.src[end] == '(') {
		p.pos = end
		return true
	}
	p.pos = save
	return false
}

// parseOr parses a chain of and-terms joined by "or"; "and" binds tighter.
func (p *filterParser) parseOr() (Filter, error) {
	left, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.acceptKeyword("or") {
		right, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		left = &OrFilter{Left: left, Right: right}
	}
	return left, nil
}

func (p *filterParser) parseAnd() (Filter, error) {
	left, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for p.acceptKeyword("and") {
		right, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		left = &AndFilter{Left: left, Right: right}
	}
	return left, nil
}

// parseUnary parses "(" filter ")", "not" "(" filter ")" or an attribute expression.
func (p *filterParser) parseUnary() (Filter, error) {
	p.skipSpace()
	if p.eof() {
		return nil, p.fail(p.pos, "expected an attribute name, \"not\" or \"(\" but the %s ends here", p.what)
	}
	switch p.src[p.pos] {
	case '(':
		return p.parseGroup()
	case ')', ']', '[', '"':
		return nil, p.fail(p.pos, "expected an attribute name, \"not\" or \"(\", found %s", p.tokenAt(p.pos))
	}
	if w := p.wordAt(p.pos); strings.EqualFold(w, "not") {
		after := p.pos + len(w)
		for after < len(p.src) && isFilterSpace(p.src[after]) {
			after++
		}
		if after < len(p.src) && p.src[after] == '(' {
			p.pos = after
			inner, err := p.parseGroup()
			if err != nil {
				return nil, err
			}
			return &NotFilter{Inner: inner}, nil
		}
		if next := p.wordAt(after); after == len(p.src) || (after > p.pos+len(w) && !isFilterOperator(strings.ToLower(next))) {
			// "not userName eq ..." or "not not (...)": not is the keyword here, not an
			// attribute named "not" (which an operator would follow)
			return nil, p.fail(after, "\"not\" takes a filter in parentheses, found %s; write not (%s)", p.tokenAt(after), "...")
		}
	}
	return p.parseAttrExpr()
}

// parseGroup parses "(" filter ")" at the current position.
func (p *filterParser) parseGroup() (Filter, error) {
	return p.parseEnclosed(')')
}

// parseEnclosed parses opener filter closer, counting one level of depth. The depth is
// checked before recursing, so a flood of openers fails after MaxFilterDepth of them.
func (p *filterParser) parseEnclosed(closer byte) (Filter, error) {
	open := p.pos
	if p.depth >= MaxFilterDepth {
		return nil, p.fail(open, "the %s nests parentheses, \"not\" and [...] more than %d levels deep", p.what, MaxFilterDepth)
	}
	p.depth++
	p.pos++
	savedCloser, savedOpen := p.closer, p.open
	p.closer, p.open = closer, open
	f, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.peek() != closer {
		return nil, p.unexpectedAfterExpr()
	}
	p.pos++
	p.closer, p.open = savedCloser, savedOpen
	p.depth--
	return f, nil
}

// unexpectedAfterExpr explains what is wrong at p.pos, where a complete expression has
// been parsed and only "and", "or" or the current closer may follow.
func (p *filterParser) unexpectedAfterExpr() *Error {
	want := "the end of the " + p.what
	switch p.closer {
	case ')':
		want = fmt.Sprintf("\")\" to close the \"(\" at position %d", p.column(p.open))
	case ']':
		want = fmt.Sprintf("\"]\" to close the \"[\" at position %d", p.column(p.open))
	}
	if p.eof() {
		return p.fail(p.pos, "missing %s", want)
	}
	switch c := p.src[p.pos]; {
	case c == ')' && p.closer == 0:
		return p.fail(p.pos, "unbalanced \")\": no \"(\" is open")
	case c == ']' && p.closer == 0:
		return p.fail(p.pos, "unbalanced \"]\": no \"[\" is open")
	}
	if w := p.wordAt(p.pos); strings.EqualFold(w, "and") || strings.EqualFold(w, "or") {
		// "and"/"or" with nothing after it (acceptKeyword wants a space or "(" after one)
		if end := p.pos + len(w); end == len(p.src) || p.src[end] == ')' || p.src[end] == ']' {
			return p.fail(end, "%s must be followed by another comparison, found %s; add one after it or remove it", quoteFilterSnippet(w), p.tokenAt(end))
		}
	}
	return p.fail(p.pos, "expected \"and\", \"or\" or %s, found %s", want, p.tokenAt(p.pos))
}

// schemaOnly rejects a path that names a whole schema where an attribute is needed.
func (p *filterParser) schemaOnly(pos int, urn string) *Error {
	return p.fail(pos, "%s names a schema, not an attribute; write %s", quoteFilterSnippet(urn), quoteFilterSnippet(urn+":attributeName"))
}

// parseAttrExpr parses attrPath op value, attrPath pr, attrPath[valFilter] and Entra's
// attrPath[valFilter].subAttr op value.
func (p *filterParser) parseAttrExpr() (Filter, error) {
	start := p.pos
	attr, err := p.parseAttrPath()
	if err != nil {
		return nil, err
	}
	text := p.src[start:p.pos]
	if attr.Name == "" {
		return nil, p.schemaOnly(start, attr.URN)
	}
	if p.bracket != "" && (attr.URN != "" || attr.Sub != "") {
		return nil, p.fail(start, "inside %s[...] name a sub-attribute of %s without a schema URN or \".\", e.g. \"type\"; found %s",
			p.bracket, quoteFilterSnippet(p.bracket), quoteFilterSnippet(text))
	}
	if p.peek() != '[' {
		return p.parseComparison(attr, text)
	}
	inner, err := p.parseBracket(attr, text)
	if err != nil {
		return nil, err
	}
	vp := &ValuePathFilter{Attr: attr, Inner: inner}
	if p.peek() == '.' {
		// Entra's emails[type eq "work"].value eq "x": the comparison applies to the
		// same element the bracket selected.
		p.pos++
		subStart := p.pos
		sub, err := p.parseSubAttrName()
		if err != nil {
			return nil, err
		}
		cmp, err := p.parseComparison(AttrPath{Name: sub}, p.src[start:subStart]+sub)
		if err != nil {
			return nil, err
		}
		vp.Inner = &AndFilter{Left: inner, Right: cmp}
		return vp, nil
	}
	if isFilterOperator(strings.ToLower(p.nextWord())) {
		return nil, p.fail(p.pos, "a value filter %s[...] cannot be compared itself; compare one of its sub-attributes, e.g. %s[...].value eq \"...\"", text, text)
	}
	return vp, nil
}

// nextWord returns the word after any spaces at p.pos without consuming it.
func (p *filterParser) nextWord() string {
	i := p.pos
	for i < len(p.src) && isFilterSpace(p.src[i]) {
		i++
	}
	return p.wordAt(i)
}

// parseBracket parses "[" valFilter "]" after the attribute attr (written as text).
func (p *filterParser) parseBracket(attr AttrPath, text string) (Filter, error) {
	if p.bracket != "" {
		return nil, p.fail(p.pos, "nested [...] filters are not allowed: %s is already inside %s[...]", quoteFilterSnippet(text), p.bracket)
	}
	if attr.Sub != "" {
		return nil, p.fail(p.pos, "a [...] filter must follow an attribute name, not the sub-attribute path %s", quoteFilterSnippet(text))
	}
	p.bracket = text
	inner, err := p.parseEnclosed(']')
	p.bracket = ""
	return inner, err
}

// parseComparison parses the " op value" or " pr" after the attribute attr (written as
// text).
func (p *filterParser) parseComparison(attr AttrPath, text string) (Filter, error) {
	if p.eof() || !isFilterSpace(p.src[p.pos]) {
		return nil, p.fail(p.pos, "expected a comparison operator (%s) after %s, found %s", filterOperators, quoteFilterSnippet(text), p.tokenAt(p.pos))
	}
	p.skipSpace()
	opStart := p.pos
	for !p.eof() && !isFilterSpace(p.src[p.pos]) && !strings.ContainsRune("()[]\"", rune(p.src[p.pos])) {
		p.pos++
	}
	opText := p.src[opStart:p.pos]
	if opText == "" {
		return nil, p.fail(opStart, "expected a comparison operator (%s) after %s, found %s", filterOperators, quoteFilterSnippet(text), p.tokenAt(opStart))
	}
	op := strings.ToLower(opText)
	if !isFilterOperator(op) {
		return nil, p.fail(opStart, "unknown comparison operator %s after %s; use one of %s", quoteFilterSnippet(opText), quoteFilterSnippet(text), filterOperators)
	}
	if p.terms >= MaxFilterTerms {
		return nil, p.fail(opStart, "the filter has more than %d comparisons", MaxFilterTerms)
	}
	p.terms++
	if op == OpPr {
		return &CompareFilter{Attr: attr, Op: OpPr}, nil
	}
	if c := p.peek(); c != '"' {
		if !isFilterSpace(c) {
			return nil, p.fail(p.pos, "expected a value after %s (a \"quoted string\", a number, true, false or null)", quoteFilterSnippet(text+" "+opText))
		}
		p.skipSpace()
	}
	v, err := p.parseValue(text + " " + opText)
	if err != nil {
		return nil, err
	}
	return &CompareFilter{Attr: attr, Op: op, Value: v}, nil
}

func isFilterOperator(op string) bool {
	switch op {
	case OpEq, OpNe, OpCo, OpSw, OpEw, OpPr, OpGt, OpGe, OpLt, OpLe:
		return true
	}
	return false
}

// parseValue parses a comparison value: a JSON string, or a bare token up to the next
// space, ")" or "]" (Entra sends externalId eq jyoung). A bare token that is a JSON
// number becomes json.Number and true/false/null (any case) keep their JSON meaning.
func (p *filterParser) parseValue(after string) (any, error) {
	if p.eof() || p.src[p.pos] == ')' || p.src[p.pos] == ']' {
		return nil, p.fail(p.pos, "expected a value after %s (a \"quoted string\", a number, true, false or null), found %s", quoteFilterSnippet(after), p.tokenAt(p.pos))
	}
	if p.src[p.pos] == '"' {
		s, err := p.parseString()
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c != 0 && !isFilterSpace(c) && c != ')' && c != ']' {
			return nil, p.fail(p.pos, "unexpected %s right after the closing quote of a value; separate it with a space", p.tokenAt(p.pos))
		}
		return s, nil
	}
	begin := p.pos
	for !p.eof() && !isFilterSpace(p.src[p.pos]) && p.src[p.pos] != ')' && p.src[p.pos] != ']' {
		p.pos++
	}
	v := bareFilterValue(p.src[begin:p.pos])
	if n, isNum := v.(json.Number); isNum && !numberFits(string(n)) {
		// A filtered PATCH path can create an element from its value (Entra's
		// emails[type eq "work"].value), so this is a value no attribute can hold too.
		return nil, p.fail(begin, "the number %s is out of range: numbers must fit an IEEE 754 double (magnitude at most about 1.8e308, non-zero ones at least about 4.9e-324)", quoteFilterSnippet(string(n)))
	}
	return v, nil
}

// bareFilterValue interprets an unquoted value token.
func bareFilterValue(tok string) any {
	switch strings.ToLower(tok) {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if isJSONNumber(tok) {
		return json.Number(tok)
	}
	return tok
}

// isJSONNumber reports whether s is a number in JSON syntax (RFC 8259 §6), so that
// "0123" or "1." stay strings.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// parseString parses a JSON string literal starting at the opening quote. Raw control
// characters are tolerated (the filter arrives URL-decoded), escapes follow JSON.
func (p *filterParser) parseString() (string, error) {
	open := p.pos
	p.pos++
	segment := p.pos
	var b strings.Builder
	for !p.eof() {
		switch p.src[p.pos] {
		case '"':
			b.WriteString(p.src[segment:p.pos])
			p.pos++
			return b.String(), nil
		case '\\':
			b.WriteString(p.src[segment:p.pos])
			if err := p.parseEscape(&b); err != nil {
				return "", err
			}
			segment = p.pos
		default:
			p.pos++
		}
	}
	return "", p.fail(open, "unterminated string: the quote opened here is never closed; add the closing \"")
}

// parseEscape decodes the JSON escape at p.pos (a backslash) into b.
func (p *filterParser) parseEscape(b *strings.Builder) error {
	at := p.pos
	if at+1 >= len(p.src) {
		return p.fail(at, "unterminated string: it ends with a lone backslash")
	}
	c := p.src[at+1]
	p.pos = at + 2
	switch c {
	case '"', '\\', '/':
		b.WriteByte(c)
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case 'u':
		r, ok := p.hex4(at + 2)
		if !ok {
			return p.fail(at, "invalid escape %s in a string: \\u needs four hex digits", p.tokenAt(at))
		}
		p.pos = at + 6
		if utf16.IsSurrogate(r) {
			if lo, ok := p.hex4(at + 8); ok && p.src[at+6] == '\\' && p.src[at+7] == 'u' {
				if pair := utf16.DecodeRune(r, lo); pair != utf8.RuneError {
					p.pos = at + 12
					r = pair
				}
			}
		}
		b.WriteRune(r) // a lone surrogate becomes U+FFFD, as encoding/json does
	default:
		return p.fail(at, "invalid escape %s in a string; JSON escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX", quoteFilterSnippet(p.src[at:at+2]))
	}
	return nil
}

// hex4 decodes four hex digits at i.
func (p *filterParser) hex4(i int) (rune, bool) {
	if i+4 > len(p.src) {
		return 0, false
	}
	n, err := strconv.ParseUint(p.src[i:i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(n), true
}

func isAttrPathChar(c byte) bool {
	return isASCIILetter(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '$' || c == ':' || c == '.'
}

// parseAttrPath reads [URN ":"] name ["." sub]. The URN is everything up to the last
// ":" (URNs hold dots, as in "2.0"), the rest is the attribute. Two legacy spellings of a
// known schema are understood: the URN alone (AttrPath with only URN set; callers that
// need an attribute reject it) and the pre-2018 Entra dot notation
// "urn:...:enterprise:2.0:User.department".
func (p *filterParser) parseAttrPath() (AttrPath, error) {
	begin := p.pos
	for !p.eof() && isAttrPathChar(p.src[p.pos]) {
		p.pos++
	}
	tok := p.src[begin:p.pos]
	if tok == "" {
		return AttrPath{}, p.fail(begin, "expected an attribute name, found %s", p.tokenAt(begin))
	}
	if s := SchemaByID(tok); s != nil {
		return AttrPath{URN: tok}, nil
	}
	var attr AttrPath
	rest := tok
	if i := strings.LastIndexByte(tok, ':'); i >= 0 {
		if !IsURN(tok) {
			return AttrPath{}, p.fail(begin, "%s contains \":\" but does not start with a schema URN (urn:...)", quoteFilterSnippet(tok))
		}
		attr.URN, rest = tok[:i], tok[i+1:]
	}
	name, sub, dotted := strings.Cut(rest, ".")
	if attr.URN != "" && dotted && SchemaByID(attr.URN+":"+name) != nil {
		attr.URN, name, sub, dotted = attr.URN+":"+name, sub, "", false
		if n, s, ok := strings.Cut(name, "."); ok {
			name, sub, dotted = n, s, true
		}
	}
	if !isFilterAttrName(name) {
		return AttrPath{}, p.fail(begin, "%s is not a valid attribute name; names start with a letter and hold letters, digits, \"_\" and \"-\"", quoteFilterSnippet(tok))
	}
	if dotted && !isFilterAttrName(sub) {
		if strings.Contains(sub, ".") {
			return AttrPath{}, p.fail(begin, "%s has more than one \".\"; write attribute or attribute.subAttribute", quoteFilterSnippet(tok))
		}
		return AttrPath{}, p.fail(begin, "%s does not end in a valid sub-attribute name", quoteFilterSnippet(tok))
	}
	attr.Name, attr.Sub = name, sub
	return attr, nil
}

// parseSubAttrName reads the sub-attribute name after "].".
func (p *filterParser) parseSubAttrName() (string, error) {
	begin := p.pos
	for !p.eof() && isAttrPathChar(p.src[p.pos]) && p.src[p.pos] != ':' && p.src[p.pos] != '.' {
		p.pos++
	}
	name := p.src[begin:p.pos]
	if !isFilterAttrName(name) {
		return "", p.fail(begin, "expected a sub-attribute name after \"].\", found %s", p.tokenAt(begin))
	}
	return name, nil
}

// isFilterAttrName checks ATTRNAME of RFC 7644 §3.10 (ALPHA *(nameChar)), also allowing the
// "$ref" spelling that RFC 7643 itself uses.
func isFilterAttrName(s string) bool {
	s = strings.TrimPrefix(s, "$")
	if s == "" || !isASCIILetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isASCIILetter(c) && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}
