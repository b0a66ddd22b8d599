package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// DefaultMaxJSONDepth is the default bound on JSON nesting in request bodies.
const DefaultMaxJSONDepth = 64

// CheckJSON validates a request body before any recursive parsing: it must be valid UTF-8,
// nest no deeper than maxDepth, be exactly one syntactically valid JSON value (RFC 8259),
// and repeat no object key. SCIM attribute names are case-insensitive, so "userName" and
// "USERNAME" in one object are a duplicate too, as are "a" and "\u0061": keys are compared
// after unescaping, with the case folding of strings.EqualFold (which scim.Key uses).
// Every number must fit an IEEE 754 double (see numberFits); one that does not is 400
// invalidValue naming its attribute.
//
// The check is one iterative pass with an explicit stack bounded by maxDepth, so a
// 500,000-deep array costs one pass and no Go stack. Errors are 400 invalidSyntax with a
// detail naming the byte offset and what was expected there.
func CheckJSON(data []byte, maxDepth int) error {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxJSONDepth
	}
	start := skipJSONSpace(data, 0)
	if start == len(data) {
		return BadRequest(TypeInvalidSyntax, "the request body is empty; send a JSON object")
	}
	if !utf8.Valid(data) {
		return BadRequest(TypeInvalidSyntax, "the request body is not valid UTF-8")
	}
	if bytes.HasPrefix(data[start:], []byte("\ufeff")) {
		// RFC 8259 §8.1: a JSON text is not sent with a byte order mark (Windows tools add
		// one when they save "UTF-8"); say so rather than show an invisible character.
		return BadRequest(TypeInvalidSyntax, "the request body starts with a byte order mark (U+FEFF); send the JSON without it")
	}
	s := jsonScannerPool.Get().(*jsonScanner)
	s.reset(data, start, maxDepth)
	err := s.run()
	s.release()
	return err
}

// DecodeBody runs CheckJSON and decodes the body into a JSON object. A body that is valid
// JSON but not an object is 400 invalidSyntax.
func DecodeBody(data []byte, maxDepth int) (map[string]any, error) {
	if err := CheckJSON(data, maxDepth); err != nil {
		return nil, err
	}
	v, err := Decode(data)
	if err != nil {
		return nil, syntaxError(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, BadRequest(TypeInvalidSyntax, "the request body must be a JSON object")
	}
	return m, nil
}

// DecodePatchBody is DecodeBody for a PATCH body: the member arrays of its operations are
// decoded into MemberLists (a member per element instead of a map per member object, a
// fraction of the memory; issue 11), which ParsePatch and ApplyPatch take as the generic
// arrays they stand for. The errors are DecodeBody's.
//
// The result keeps data: its strings share data's bytes (a copy of a large body would be
// one more body's size), so data must not change afterwards. The handler hands over a
// buffer it reads each body into and never touches again.
func DecodePatchBody(data []byte, maxDepth int) (map[string]any, error) {
	if err := CheckJSON(data, maxDepth); err != nil {
		return nil, err
	}
	v, ok := decodePatchFast(unsafe.String(unsafe.SliceData(data), len(data)))
	if !ok {
		var err error
		if v, err = Decode(data); err != nil {
			return nil, syntaxError(err)
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, BadRequest(TypeInvalidSyntax, "the request body must be a JSON object")
	}
	return m, nil
}

// syntaxError turns an encoding/json error into a SCIM 400. After CheckJSON it is only a
// safety net: the decoder should never see a body the scanner accepted as broken.
func syntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return BadRequest(TypeInvalidSyntax, "the request body is not valid JSON at byte %d: %s", se.Offset, se.Error())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return BadRequest(TypeInvalidSyntax, "the request body is not valid JSON: unexpected end of input")
	}
	return BadRequest(TypeInvalidSyntax, "the request body is not valid JSON: %s", err.Error())
}

// jsonLinearKeys is how many keys an object holds before its duplicate check switches
// from a linear scan (cheapest for the dozen or so keys of a SCIM object) to a hash set
// (so an object with 100,000 keys costs linear, not quadratic, time).
const jsonLinearKeys = 16

// jsonKeySeed randomises the key hashes of large objects, so a client cannot choose keys that
// collide and force the collision path (a linear scan) for every key.
var jsonKeySeed = maphash.MakeSeed()

// jsonScannerPool recycles scanners with their buffers, so a check allocates nothing once the
// buffers have grown to fit the usual bodies.
var jsonScannerPool = sync.Pool{New: func() any { return new(jsonScanner) }}

// Bounds on what a pooled scanner keeps: one huge body must not pin its buffers for good.
const (
	jsonPoolMaxKeys   = 4096
	jsonPoolMaxFolded = 64 << 10
)

// jsonFrame is one open array or object on the scanner's stack.
type jsonFrame struct {
	object bool
	// hashed reports that sets[depth] holds the hashes of this object's keys.
	hashed bool
	// firstKey is the index in keys of this object's first key; keys and folded are
	// truncated back to firstKey and foldMark when the object closes.
	firstKey int
	foldMark int
}

// jsonKeySpan locates one folded key in the scanner's folded arena, and the key as the
// client wrote it (quotes included) in the body, to name its attribute in an error.
type jsonKeySpan struct{ start, end, rawStart, rawEnd int }

// jsonScanner is the state of one CheckJSON pass.
type jsonScanner struct {
	data     []byte
	pos      int
	maxDepth int
	stack    []jsonFrame
	// keys holds the folded keys of every open object, innermost object last, as spans
	// of folded. One arena serves all objects, so keys cost no allocation of their own.
	keys   []jsonKeySpan
	folded []byte
	// sets holds, per depth, the key-hash set of a large object at that depth; a set is
	// cleared and reused by the next large object at the same depth.
	sets []map[uint64]struct{}
	// hashedKeys is the most keys any hashed object held, to decide whether its set is
	// small enough to keep in the pool.
	hashedKeys int
}

// reset prepares a pooled scanner for data, to be scanned from offset start.
func (s *jsonScanner) reset(data []byte, start, maxDepth int) {
	s.data, s.pos, s.maxDepth = data, start, maxDepth
	s.stack, s.keys, s.folded = s.stack[:0], s.keys[:0], s.folded[:0]
	s.hashedKeys = 0
}

// release returns the scanner to the pool, without the body and without buffers that a
// large body grew past the pool's bounds.
func (s *jsonScanner) release() {
	s.data = nil
	if cap(s.stack) > jsonPoolMaxKeys {
		s.stack = nil
	}
	if cap(s.keys) > jsonPoolMaxKeys || cap(s.folded) > jsonPoolMaxFolded {
		s.keys, s.folded = nil, nil
	}
	if s.hashedKeys > jsonPoolMaxKeys {
		s.sets = nil
	}
	jsonScannerPool.Put(s)
}

// run scans the whole body. Each turn of the loop reads one value, or the punctuation that
// follows a value in its array or object, so the grammar's nesting lives in s.stack.
func (s *jsonScanner) run() error {
	for {
		if err := s.value(); err != nil {
			return err
		}
		if err := s.afterValue(); err != nil {
			return err
		}
		if len(s.stack) == 0 {
			return s.end()
		}
	}
}

// value scans the value at s.pos (after whitespace). A scalar is consumed whole; '{' or
// '[' opens a frame and continues to its first key or element, and an empty container is
// consumed whole.
func (s *jsonScanner) value() error {
	for {
		s.pos = skipJSONSpace(s.data, s.pos)
		if s.pos == len(s.data) {
			return s.errorf(s.pos, "expected a JSON value, found end of input")
		}
		switch c := s.data[s.pos]; c {
		case '{', '[':
			if err := s.push(c == '{'); err != nil {
				return err
			}
			closer := byte(']')
			if c == '{' {
				closer = '}'
			}
			s.pos = skipJSONSpace(s.data, s.pos)
			if s.pos < len(s.data) && s.data[s.pos] == closer {
				s.pos++
				s.pop()
				return nil
			}
			if c == '{' {
				if err := s.key(false); err != nil {
					return err
				}
			}
			// Scan the first element or member value.
		case '"':
			_, _, err := s.str()
			return err
		case 't':
			return s.literal("true")
		case 'f':
			return s.literal("false")
		case 'n':
			return s.literal("null")
		default:
			if c == '-' || isJSONDigit(c) {
				return s.number()
			}
			if c == ']' || c == '}' {
				return s.errorf(s.pos, "expected a JSON value, found %s (JSON allows no trailing comma)", s.describe(s.pos))
			}
			return s.errorf(s.pos, "expected a JSON value (object, array, string, number, true, false or null), found %s", s.describe(s.pos))
		}
	}
}

// afterValue consumes what may follow a value: closing brackets of the frames the value
// completes, up to a ',' that starts the next element or member (which it also consumes,
// with the next member's key). It returns with the stack empty or a value expected.
func (s *jsonScanner) afterValue() error {
	for len(s.stack) > 0 {
		s.pos = skipJSONSpace(s.data, s.pos)
		top := &s.stack[len(s.stack)-1]
		closer, what := byte(']'), "an array element"
		if top.object {
			closer, what = '}', "an attribute value"
		}
		if s.pos == len(s.data) {
			return s.errorf(s.pos, "expected ',' or '%c' after %s, found end of input", closer, what)
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			if top.object {
				return s.key(true)
			}
			return nil
		case closer:
			s.pos++
			s.pop()
		default:
			return s.errorf(s.pos, "expected ',' or '%c' after %s, found %s", closer, what, s.describe(s.pos))
		}
	}
	return nil
}

// end accepts only whitespace after the top-level value.
func (s *jsonScanner) end() error {
	s.pos = skipJSONSpace(s.data, s.pos)
	if s.pos == len(s.data) {
		return nil
	}
	if startsJSONValue(s.data[s.pos]) {
		return BadRequest(TypeInvalidSyntax, "the request body holds more than one JSON value (the second starts at byte %d); send exactly one object", s.pos)
	}
	return s.errorf(s.pos, "expected end of input after the JSON value, found %s", s.describe(s.pos))
}

// push opens an array or object at s.pos, enforcing the depth bound.
func (s *jsonScanner) push(object bool) error {
	if len(s.stack) >= s.maxDepth {
		return BadRequest(TypeInvalidSyntax, "the request body nests JSON deeper than %d levels (at byte %d); SCIM resources need far fewer", s.maxDepth, s.pos)
	}
	s.stack = append(s.stack, jsonFrame{object: object, firstKey: len(s.keys), foldMark: len(s.folded)})
	s.pos++
	return nil
}

// pop closes the innermost frame, releasing its keys.
func (s *jsonScanner) pop() {
	top := s.stack[len(s.stack)-1]
	s.stack = s.stack[:len(s.stack)-1]
	if top.object {
		s.keys = s.keys[:top.firstKey]
		s.folded = s.folded[:top.foldMark]
	}
}

// key scans an object member's name and the ':' after it, and records the name in the
// innermost object. afterComma only sharpens the error for a trailing comma.
func (s *jsonScanner) key(afterComma bool) error {
	s.pos = skipJSONSpace(s.data, s.pos)
	if s.pos == len(s.data) || s.data[s.pos] != '"' {
		hint := ""
		if afterComma && s.pos < len(s.data) && s.data[s.pos] == '}' {
			hint = " (JSON allows no trailing comma)"
		}
		return s.errorf(s.pos, "expected a double-quoted attribute name, found %s%s", s.describe(s.pos), hint)
	}
	start := s.pos
	end, escaped, err := s.str()
	if err != nil {
		return err
	}
	if err := s.addKey(start, end, escaped); err != nil {
		return err
	}
	s.pos = skipJSONSpace(s.data, s.pos)
	if s.pos == len(s.data) || s.data[s.pos] != ':' {
		return s.errorf(s.pos, "expected ':' after the attribute name %s, found %s", keyForDetail(s.data[start:end]), s.describe(s.pos))
	}
	s.pos++
	return nil
}

// str scans the string whose opening quote is at s.pos. end is the offset just past the
// closing quote; escaped reports whether the string holds any escape sequence.
func (s *jsonScanner) str() (end int, escaped bool, err error) {
	start := s.pos
	i := start + 1
	for {
		for i < len(s.data) && !jsonStringSpecial[s.data[i]] {
			i++
		}
		if i == len(s.data) {
			return 0, false, s.errorf(i, "found end of input inside the string that starts at byte %d; close it with '\"'", start)
		}
		switch c := s.data[i]; c {
		case '"':
			s.pos = i + 1
			return s.pos, escaped, nil
		case '\\':
			n, err := s.escape(i)
			if err != nil {
				return 0, false, err
			}
			escaped = true
			i += n
		default:
			return 0, false, s.errorf(i, "found control character U+%04X inside a string; escape it as \\u%04X", c, c)
		}
	}
}

// escape validates the escape sequence at i and returns its length.
func (s *jsonScanner) escape(i int) (int, error) {
	if i+1 == len(s.data) {
		return 0, s.errorf(i+1, "found end of input inside an escape sequence")
	}
	switch s.data[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
		for j := i + 2; j < i+6; j++ {
			if j == len(s.data) || !isJSONHex(s.data[j]) {
				return 0, s.errorf(j, "expected 4 hexadecimal digits after \\u, found %s", s.describe(j))
			}
		}
		return 6, nil
	}
	return 0, s.errorf(i, "invalid escape \\%s in a string; JSON allows \\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t and \\uXXXX", s.describe(i+1))
}

// number scans a number per RFC 8259 §6: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?
// and checks that a double can hold it (see numberFits): a number no attribute can hold
// is 400 invalidValue here, before anything (the policy included) sees it.
func (s *jsonScanner) number() error {
	d, start, i := s.data, s.pos, s.pos
	exponent := false
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
		if i < len(d) && isJSONDigit(d[i]) {
			return s.errorf(i, "a number may not have a leading zero")
		}
	case i < len(d) && isJSONDigit(d[i]):
		i = skipJSONDigits(d, i)
	default:
		return s.errorf(i, "expected a digit after '-', found %s", s.describe(i))
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i == len(d) || !isJSONDigit(d[i]) {
			return s.errorf(i, "expected a digit after the decimal point, found %s", s.describe(i))
		}
		i = skipJSONDigits(d, i)
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		exponent = true
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i == len(d) || !isJSONDigit(d[i]) {
			return s.errorf(i, "expected a digit in the exponent, found %s", s.describe(i))
		}
		i = skipJSONDigits(d, i)
	}
	s.pos = i
	if (exponent || i-start > maxPlainNumberLen) && !numberFits(string(d[start:i])) {
		return s.numberRangeError(d[start:i], start)
	}
	return nil
}

// maxPlainNumberLen is the longest number without an exponent that numberFits need not
// check: 300 characters hold neither a magnitude of 1e300 nor a non-zero number below 1e-298,
// both well inside a double's range. The usual numbers (and Entra sends few) cost nothing.
const maxPlainNumberLen = 300

// numberFits reports whether the JSON number s is one an IEEE 754 double holds, which is
// what RFC 8259 §6 says interoperable JSON numbers are: not beyond its range (about
// ±1.8e308), and not so close to zero (below about 4.9e-324) that it would become 0. The
// policy engine, the legacy app's JSON parser and most SCIM clients read numbers as
// doubles: a number that overflows or vanishes there is a value no attribute can hold.
func numberFits(s string) bool {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return false // the syntax is checked: only a range error is possible
	}
	if f != 0 {
		return true
	}
	for i := 0; i < len(s) && s[i]|0x20 != 'e'; i++ {
		if '1' <= s[i] && s[i] <= '9' {
			return false // a non-zero number that underflows to 0
		}
	}
	return true
}

// numberRangeError is the 400 invalidValue for the number num at byte offset at, naming
// the attribute it is the value of.
func (s *jsonScanner) numberRangeError(num []byte, at int) error {
	where := ""
	if path := s.attributePath(); path != "" {
		where = " of the attribute " + quoteCut(path, 256)
	}
	shown := string(num)
	if len(shown) > 32 {
		shown = shown[:32] + "…"
	}
	return BadRequest(TypeInvalidValue, "the number %s%s (at byte %d) is out of range: JSON numbers must fit an IEEE 754 double (magnitude at most about 1.8e308, non-zero ones at least about 4.9e-324)", shown, where, at)
}

// attributePath names the attribute whose value the scanner is in, the way SCIM writes
// paths: names joined by dots, an extension's attributes after its URN and a colon, and
// nothing for array elements (emails.value).
func (s *jsonScanner) attributePath() string {
	var b strings.Builder
	afterURN := false
	for i, f := range s.stack {
		if !f.object {
			continue
		}
		end := len(s.keys) // the object's current key is its last one so far
		if i+1 < len(s.stack) {
			end = s.stack[i+1].firstKey
		}
		if end <= f.firstKey {
			continue
		}
		k := s.keys[end-1]
		name := unquoteKey(s.data[k.rawStart:k.rawEnd])
		if b.Len() > 0 {
			if afterURN {
				b.WriteByte(':')
			} else {
				b.WriteByte('.')
			}
		}
		b.WriteString(name)
		afterURN = IsURN(name)
	}
	return b.String()
}

// literal scans true, false or null.
func (s *jsonScanner) literal(word string) error {
	for j := 0; j < len(word); j++ {
		if i := s.pos + j; i == len(s.data) || s.data[i] != word[j] {
			return s.errorf(i, "expected %s, found %s", word, s.describe(i))
		}
	}
	s.pos += len(word)
	return nil
}

// addKey records the key data[start:end] (quotes included) in the innermost object, or
// reports it as a duplicate. Keys are stored folded, so equal folds mean a duplicate.
func (s *jsonScanner) addKey(start, end int, escaped bool) error {
	mark := len(s.folded)
	raw := s.data[start+1 : end-1]
	if escaped {
		s.folded = appendUnescapedKeyFold(s.folded, raw)
	} else {
		s.folded = appendKeyFold(s.folded, raw)
	}
	k := s.folded[mark:]
	depth := len(s.stack) - 1
	top := &s.stack[depth]
	if s.isDuplicate(top, depth, k) {
		return duplicateKeyError(s.data[start:end])
	}
	s.keys = append(s.keys, jsonKeySpan{mark, len(s.folded), start, end})
	if n := len(s.keys) - top.firstKey; top.hashed {
		s.hashedKeys = max(s.hashedKeys, n)
	} else if n > jsonLinearKeys {
		s.hashKeys(top, depth)
	}
	return nil
}

// isDuplicate reports whether the folded key k is already among top's keys.
func (s *jsonScanner) isDuplicate(top *jsonFrame, depth int, k []byte) bool {
	if top.hashed {
		set := s.sets[depth]
		h := maphash.Bytes(jsonKeySeed, k)
		if _, hit := set[h]; !hit {
			set[h] = struct{}{}
			return false
		}
		// A hit is a duplicate or, with odds of about 2^-64 per pair, a collision.
	}
	for _, e := range s.keys[top.firstKey:] {
		if bytes.Equal(s.folded[e.start:e.end], k) {
			return true
		}
	}
	return false
}

// hashKeys moves a large object's duplicate check to a hash set, reusing the set left by
// an earlier large object at the same depth.
func (s *jsonScanner) hashKeys(top *jsonFrame, depth int) {
	for len(s.sets) <= depth {
		s.sets = append(s.sets, nil)
	}
	set := s.sets[depth]
	if set == nil {
		set = make(map[uint64]struct{}, 4*jsonLinearKeys)
		s.sets[depth] = set
	}
	clear(set)
	for _, e := range s.keys[top.firstKey:] {
		set[maphash.Bytes(jsonKeySeed, s.folded[e.start:e.end])] = struct{}{}
	}
	top.hashed = true
}

// duplicateKeyError is the error for the repeated key quoted (a JSON string), named as
// the client wrote it.
func duplicateKeyError(quoted []byte) error {
	return BadRequest(TypeInvalidSyntax, "the request body repeats the attribute %s in one object (names are case-insensitive); send each attribute once", keyForDetail(quoted))
}

// keyForDetail unescapes the validated JSON string quoted and quotes it again, Go style,
// cut to a length that keeps an error detail readable.
func keyForDetail(quoted []byte) string {
	return QuoteForDetail(unquoteKey(quoted))
}

// unquoteKey unescapes the validated JSON string quoted.
func unquoteKey(quoted []byte) string {
	var name string
	if err := json.Unmarshal(quoted, &name); err != nil {
		name = string(quoted)
	}
	return name
}

// errorf is a syntax error at byte offset at.
func (s *jsonScanner) errorf(at int, format string, args ...any) error {
	return BadRequest(TypeInvalidSyntax, "the request body is not valid JSON at byte %d: %s", at, fmt.Sprintf(format, args...))
}

// describe names the character at offset i for an error message.
func (s *jsonScanner) describe(i int) string {
	if i >= len(s.data) {
		return "end of input"
	}
	r, _ := utf8.DecodeRune(s.data[i:])
	if r < 0x20 || r == 0x7f {
		return fmt.Sprintf("control character U+%04X", r)
	}
	return strconv.QuoteRune(r)
}

// appendKeyFold appends the fold of the UTF-8 key k: every rune replaced by the smallest rune
// of its case-folding orbit, so two keys fold to the same bytes exactly when
// strings.EqualFold reports them equal.
func appendKeyFold(dst, k []byte) []byte {
	for i := 0; i < len(k); {
		c := k[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(k[i:])
		dst = utf8.AppendRune(dst, foldKeyRune(r))
		i += n
	}
	return dst
}

// appendUnescapedKeyFold is appendKeyFold of the unescaped string body k, which str has
// validated. Lone surrogates become U+FFFD, as encoding/json decodes them.
func appendUnescapedKeyFold(dst, k []byte) []byte {
	for i := 0; i < len(k); {
		if k[i] != '\\' {
			j := i + 1
			for j < len(k) && k[j] != '\\' {
				j++
			}
			dst = appendKeyFold(dst, k[i:j])
			i = j
			continue
		}
		var r rune
		r, i = unescapeJSONAt(k, i)
		dst = utf8.AppendRune(dst, foldKeyRune(r))
	}
	return dst
}

// unescapeJSONAt decodes the validated escape sequence at k[i] and returns the rune and the
// offset after it, combining a \uXXXX surrogate pair into one rune.
func unescapeJSONAt(k []byte, i int) (rune, int) {
	if c := k[i+1]; c != 'u' {
		return rune(jsonEscapes[c]), i + 2
	}
	r := jsonHex4(k[i+2 : i+6])
	i += 6
	if !utf16.IsSurrogate(r) {
		return r, i
	}
	if i+6 <= len(k) && k[i] == '\\' && k[i+1] == 'u' {
		if pair := utf16.DecodeRune(r, jsonHex4(k[i+2:i+6])); pair != unicode.ReplacementChar {
			return pair, i + 6
		}
	}
	return unicode.ReplacementChar, i
}

// jsonEscapes maps the letter of a one-letter escape (\n) to the byte it stands for.
var jsonEscapes = [256]byte{
	'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t',
}

// jsonHex4 decodes four validated hexadecimal digits.
func jsonHex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// foldKeyRune returns the smallest rune of r's simple case-folding orbit (the runes
// strings.EqualFold treats as equal to r).
func foldKeyRune(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}

// jsonStringSpecial marks the bytes that end the fast path of a string scan: the closing
// quote, an escape, and the control characters JSON forbids unescaped.
var jsonStringSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// skipJSONSpace returns the offset of the first non-whitespace byte at or after i; JSON
// whitespace is only space, tab, CR and LF.
func skipJSONSpace(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\n' || d[i] == '\r' || d[i] == '\t') {
		i++
	}
	return i
}

func skipJSONDigits(d []byte, i int) int {
	for i < len(d) && isJSONDigit(d[i]) {
		i++
	}
	return i
}

func isJSONDigit(c byte) bool { return '0' <= c && c <= '9' }

func isJSONHex(c byte) bool {
	return isJSONDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// startsJSONValue reports whether c can begin a JSON value.
func startsJSONValue(c byte) bool {
	switch c {
	case '{', '[', '"', 't', 'f', 'n', '-':
		return true
	}
	return isJSONDigit(c)
}
