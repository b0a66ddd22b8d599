package scim

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// maxFastDepth is the nesting the fast decoder follows; deeper documents are left to
// encoding/json (a stored document is never near it: bodies are bounded before they are
// stored).
const maxFastDepth = 64

// fastDecoder decodes a JSON document into the values encoding/json's Decoder with
// UseNumber makes (map[string]any, []any, string, json.Number, bool, nil) with far fewer
// allocations: the input is turned into one string and every key, number and string
// without escapes is a substring of it; objects and arrays are made at their final size.
// It accepts only what it can decode exactly as encoding/json does, and says so: strings
// with escapes or invalid UTF-8 go through encoding/json one by one, and anything
// else unusual (invalid JSON, trailing data, deep nesting) makes the caller use
// encoding/json for the whole document, so the result and the errors stay encoding/json's.
type fastDecoder struct {
	s     string
	i     int
	depth int
	keys  []string // scratch: the keys of the objects being decoded
	vals  []any    // scratch: their values and the elements of the arrays being decoded

	// patch decodes a PATCH body: the member arrays of its operations' values become
	// MemberLists (see decodePatchFast); inOps and opElems say where the decoder is.
	patch   bool
	inOps   bool // in the value of the body's "Operations"
	opElems bool // among the elements of that array: the operations
}

// decodeFast decodes data, or reports false when encoding/json must.
func decodeFast(data []byte) (any, bool) {
	d := &fastDecoder{s: string(data)}
	v, ok := d.value()
	if !ok {
		return nil, false
	}
	d.space()
	return v, d.i == len(d.s)
}

// decodePatchFast decodes a PATCH body as decodeFast does, except that the "value" of each
// operation (an element of the body's "Operations" array) that is an array of members is
// a MemberList (keys matched case-insensitively, as ParsePatch does).
func decodePatchFast(data string) (any, bool) {
	d := &fastDecoder{s: data, patch: true}
	v, ok := d.value()
	if !ok {
		return nil, false
	}
	d.space()
	return v, d.i == len(d.s)
}

// memberValue decodes an operation's value: a MemberList when it is an array the compact
// form holds, else what value makes of it.
func (d *fastDecoder) memberValue() (any, bool) {
	d.space()
	if d.i < len(d.s) && d.s[d.i] == '[' {
		start := d.i
		if l, ok := d.memberList(); ok {
			return l, true
		}
		d.i = start
	}
	return d.value()
}

func (d *fastDecoder) space() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDecoder) value() (any, bool) {
	d.space()
	if d.i >= len(d.s) {
		return nil, false
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		s, ok := d.str()
		return s, ok
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || isDigit(c):
		return d.number()
	}
	return nil, false
}

func (d *fastDecoder) literal(word string) bool {
	if len(d.s)-d.i < len(word) || d.s[d.i:d.i+len(word)] != word {
		return false
	}
	d.i += len(word)
	return true
}

func (d *fastDecoder) number() (any, bool) {
	start := d.i
	for d.i < len(d.s) {
		c := d.s[d.i]
		if !isDigit(c) && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			break
		}
		d.i++
	}
	n := d.s[start:d.i]
	return json.Number(n), validNumber(n)
}

// str decodes the string at d.i: a substring when it has no escapes and is valid UTF-8,
// else what encoding/json makes of it.
func (d *fastDecoder) str() (string, bool) {
	start := d.i + 1
	escaped, ascii := false, true
	for j := start; j < len(d.s); j++ {
		switch c := d.s[j]; {
		case c == '"':
			d.i = j + 1
			if sub := d.s[start:j]; !escaped && (ascii || utf8.ValidString(sub)) {
				return sub, true // encoding/json keeps such a string as it is
			}
			return unquoteJSON(d.s[start-1 : j+1])
		case c == '\\':
			escaped = true
			j++ // the escaped character: never the closing quote
		case c < 0x20:
			return "", false // invalid JSON: encoding/json says why
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// unquoteJSON is encoding/json's decoding of a string literal (escapes, surrogates and
// invalid UTF-8 as it treats them).
func unquoteJSON(lit string) (string, bool) {
	var s string
	if err := json.Unmarshal([]byte(lit), &s); err != nil {
		return "", false
	}
	return s, true
}

func (d *fastDecoder) object() (any, bool) {
	if d.depth++; d.depth > maxFastDepth {
		return nil, false
	}
	defer func() { d.depth-- }()
	d.i++ // {
	base := len(d.keys)
	vbase := len(d.vals)
	defer func() { d.keys, d.vals = d.keys[:base], d.vals[:vbase] }()
	d.space()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		return map[string]any{}, true
	}
	for {
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, false
		}
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return nil, false
		}
		d.i++
		var v any
		switch {
		case d.patch && d.depth == 1 && strings.EqualFold(k, "Operations"):
			d.inOps = true
			v, ok = d.value()
			d.inOps = false
		case d.opElems && d.depth == 3 && strings.EqualFold(k, "value"):
			v, ok = d.memberValue()
		default:
			v, ok = d.value()
		}
		if !ok {
			return nil, false
		}
		d.keys = append(d.keys, k)
		d.vals = append(d.vals, v)
		more, ok := d.next('}')
		switch {
		case !ok:
			return nil, false
		case !more:
			m := make(map[string]any, len(d.keys)-base)
			for n, k := range d.keys[base:] {
				m[k] = d.vals[vbase+n] // a repeated key: the last wins, as in encoding/json
			}
			return m, true
		}
	}
}

// next reads what follows an element of an object or array: a comma (more) or the closing
// byte (done); anything else is not JSON (ok false).
func (d *fastDecoder) next(closing byte) (more, ok bool) {
	d.space()
	if d.i >= len(d.s) {
		return false, false
	}
	switch d.s[d.i] {
	case ',':
		d.i++
		return true, true
	case closing:
		d.i++
		return false, true
	}
	return false, false
}

func (d *fastDecoder) array() (any, bool) {
	if d.depth++; d.depth > maxFastDepth {
		return nil, false
	}
	defer func() { d.depth-- }()
	d.i++ // [
	base := len(d.vals)
	defer func() { d.vals = d.vals[:base] }()
	if d.inOps && d.depth == 2 {
		d.inOps, d.opElems = false, true // the operations, not anything inside them
		defer func() { d.inOps, d.opElems = true, false }()
	}
	d.space()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return []any{}, true
	}
	for {
		v, ok := d.value()
		if !ok {
			return nil, false
		}
		d.vals = append(d.vals, v)
		more, ok := d.next(']')
		switch {
		case !ok:
			return nil, false
		case !more:
			return append([]any(nil), d.vals[base:]...), true
		}
	}
}
