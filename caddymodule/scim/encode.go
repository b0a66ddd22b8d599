package scim

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// AppendJSON appends the JSON encoding of v to dst, byte for byte what encoding/json writes
// for it (json.Marshal with escapeHTML, an Encoder with SetEscapeHTML(false) without it,
// less the Encoder's newline): object keys sorted, the same string escapes, json.Number
// verbatim. It walks the values a decoded or rendered SCIM document holds (maps, slices,
// strings, booleans, json.Number, integers, nil) without reflection, which is where
// encoding/json spends most of a write's allocations (a map's keys and values are copied
// through reflect for each entry); any other value is encoded by encoding/json.
func AppendJSON(dst []byte, v any, escapeHTML bool) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendJSONString(dst, x, escapeHTML), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case json.Number:
		s := string(x)
		if s == "" {
			s = "0" // as encoding/json writes the zero Number
		}
		if !validNumber(s) {
			return marshalFallback(dst, v, escapeHTML)
		}
		return append(dst, s...), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case map[string]any:
		return appendJSONObject(dst, x, escapeHTML)
	case []any:
		return appendJSONArray(dst, x, escapeHTML)
	case []string:
		return appendJSONArray(dst, x, escapeHTML)
	}
	return marshalFallback(dst, v, escapeHTML)
}

// appendJSONArray appends list's elements as a JSON array (nil is null).
func appendJSONArray[E any](dst []byte, list []E, escapeHTML bool) ([]byte, error) {
	if list == nil {
		return append(dst, "null"...), nil
	}
	dst = append(dst, '[')
	for i, e := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = AppendJSON(dst, e, escapeHTML); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

// MarshalJSON is AppendJSON to a new slice of the encoding's size: the encoding grows in a
// pooled scratch buffer, so a document costs one allocation however often it doubled.
func MarshalJSON(v any, escapeHTML bool) ([]byte, error) {
	if list, ok := v.([]string); ok && list != nil {
		// A list of ids (a journal record's members): its size is known, give or take
		// escapes, so it is encoded straight into its own slice.
		n := 2 + len(list)
		for _, s := range list {
			n += len(s) + 2
		}
		return appendJSONArray(make([]byte, 0, n), list, escapeHTML)
	}
	scratch := encodeScratch.Get().(*[]byte)
	out, err := AppendJSON((*scratch)[:0], v, escapeHTML)
	var owned []byte
	if err == nil {
		owned = bytes.Clone(out)
	}
	if cap(out) <= maxScratch {
		*scratch = out[:0]
		encodeScratch.Put(scratch)
	}
	return owned, err
}

// maxScratch is the largest scratch buffer kept for reuse (a group's answer with many
// members is larger, and rare).
const maxScratch = 64 << 10

var encodeScratch = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// appendJSONObject appends m with its keys sorted, as encoding/json does (nil is null).
func appendJSONObject(dst []byte, m map[string]any, escapeHTML bool) ([]byte, error) {
	if m == nil {
		return append(dst, "null"...), nil
	}
	var small [16]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k, escapeHTML)
		dst = append(dst, ':')
		var err error
		if dst, err = AppendJSON(dst, m[k], escapeHTML); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

// marshalFallback appends what encoding/json writes for v.
func marshalFallback(dst []byte, v any, escapeHTML bool) ([]byte, error) {
	if escapeHTML {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return append(dst, b...), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoder: ", \ and control characters escaped
// (\b \f \n \r \t short), <, > and & too with escapeHTML, invalid UTF-8 as U+FFFD, and
// U+2028 and U+2029 escaped always.
func appendJSONString(dst []byte, s string, escapeHTML bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!escapeHTML || (b != '<' && b != '>' && b != '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// validNumber reports whether s is a JSON number literal (RFC 8259 §6), the check
// encoding/json makes before writing a json.Number.
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		if s = s[1:]; s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && isDigit(s[0]) {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		s = s[2:]
		for len(s) > 0 && isDigit(s[0]) {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			if s = s[1:]; s == "" {
				return false
			}
		}
		for len(s) > 0 && isDigit(s[0]) {
			s = s[1:]
		}
	}
	return s == ""
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }
