package journal

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// redactedValue replaces a redacted attribute nested inside a change's value (the change
// itself keeps its other attributes and is flagged Redacted).
var redactedValue = json.RawMessage(`"[REDACTED]"`)

// alwaysRedacted is redacted whatever the configuration says.
const alwaysRedacted = "password"

// redactPaths normalises the configured paths once, adding "password".
func redactPaths(extra []string) []string {
	out := []string{alwaysRedacted}
	for _, p := range extra {
		if n := normalizePath(p); n != "" && n != alwaysRedacted {
			out = append(out, n)
		}
	}
	return out
}

// normalizePath reduces a SCIM attribute path to the form redaction compares: lower case,
// without the schema URN prefix (the part up to the last ':' before any value filter) and
// without value filters, so `urn:...:User:password`, `Password` and `emails[type eq
// "work"].value` become `password` and `emails.value`.
func normalizePath(p string) string {
	p = strings.TrimSpace(p)
	attr := p
	if filter := strings.IndexByte(attr, '['); filter >= 0 {
		attr = attr[:filter]
	}
	if hasFoldPrefix(p, "urn:") {
		if i := strings.LastIndexByte(attr, ':'); i >= 0 {
			p = p[i+1:]
		}
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '[':
			depth++
		case c == ']':
			if depth > 0 {
				depth--
			}
		case depth == 0:
			b.WriteByte(lowerASCII(c))
		}
	}
	return b.String()
}

func hasFoldPrefix(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// pathRedacted reports whether the normalised path p is, or is inside, a redacted path.
func pathRedacted(p string, redact []string) bool {
	for _, r := range redact {
		if p == r || strings.HasPrefix(p, r) && len(p) > len(r) && p[len(r)] == '.' {
			return true
		}
	}
	return false
}

// redactChanges returns changes with redacted values removed. A change whose path is
// redacted loses its value; a change whose value is an object (a PATCH without a path, a
// complex attribute) has redacted members inside it replaced. The input slice is never
// modified, so callers may share it; it is returned as is when nothing needs redacting.
func redactChanges(changes []Change, redact []string) []Change {
	var out []Change
	for i, c := range changes {
		rc, changed := redactChange(c, redact)
		if !changed {
			continue
		}
		if out == nil {
			out = append([]Change(nil), changes...)
		}
		out[i] = rc
	}
	if out == nil {
		return changes
	}
	return out
}

// redactChange redacts one change; changed is false when c needs no redaction.
func redactChange(c Change, redact []string) (Change, bool) {
	path := normalizePath(c.Path)
	if pathRedacted(path, redact) {
		if c.Value == nil && c.Redacted {
			return c, false
		}
		c.Value, c.Redacted = nil, true
		return c, true
	}
	v := bytes.TrimSpace(c.Value)
	if len(v) == 0 || (v[0] != '{' && v[0] != '[') || !mentionsRedacted(v, redact) {
		return c, false
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		// Not JSON: Append's marshal rejects it; never store it unredacted.
		c.Value, c.Redacted = nil, true
		return c, true
	}
	w := redactWalker{redact: redact}
	changed := w.walk(doc, path, 0)
	if hasFoldPrefix(c.Path, "urn:") && w.walk(doc, "", 0) {
		// The path may name a schema extension itself (its members are top-level
		// attributes) rather than an attribute inside it.
		changed = true
	}
	if w.tooDeep {
		// Fail closed: what could not be inspected is not stored.
		c.Value, c.Redacted = nil, true
		return c, true
	}
	if !changed {
		return c, false
	}
	nv, err := json.Marshal(doc)
	if err != nil {
		nv = nil
	}
	c.Value, c.Redacted = nv, true
	return c, true
}

// mentionsRedacted is a cheap pre-check: a value can only hold a redacted attribute if the
// attribute's last name appears in it.
func mentionsRedacted(v []byte, redact []string) bool {
	if ascii(v) {
		// No copy: a record's value may be a list of thousands of member ids.
		for _, r := range redact {
			if containsFoldASCII(v, r[strings.LastIndexByte(r, '.')+1:]) {
				return true
			}
		}
		return false
	}
	lower := bytes.ToLower(v)
	for _, r := range redact {
		leaf := r[strings.LastIndexByte(r, '.')+1:]
		if bytes.Contains(lower, []byte(leaf)) {
			return true
		}
	}
	return false
}

// maxRedactDepth bounds the walk; values come from parsed SCIM requests, whose nesting the
// handler has already bounded, so this is only a backstop.
const maxRedactDepth = 64

// redactWalker replaces redacted members of a decoded value in place.
type redactWalker struct {
	redact  []string
	tooDeep bool // the value nests deeper than maxRedactDepth
}

// walk reports whether it replaced any member of doc. base is the normalised path of doc; a
// member under a schema URN key starts again from the top level, as the URN prefix is not
// part of a normalised path.
func (w *redactWalker) walk(doc any, base string, depth int) bool {
	if depth > maxRedactDepth {
		w.tooDeep = true
		return false
	}
	redact := w.redact
	changed := false
	switch v := doc.(type) {
	case map[string]any:
		for k, child := range v {
			p := childPath(base, k, child)
			if pathRedacted(p, redact) {
				v[k] = redactedValue
				changed = true
				continue
			}
			if w.walk(child, p, depth+1) {
				changed = true
			}
		}
	case []any:
		for _, child := range v {
			if w.walk(child, base, depth+1) {
				changed = true
			}
		}
	}
	return changed
}

// childPath is the normalised path of member k of an object at base. A URN key holding an
// object is a schema extension, whose members are top-level attributes; a URN key holding
// anything else is a full attribute path (Entra's PATCH without a path sends those).
func childPath(base, k string, child any) string {
	if hasFoldPrefix(k, "urn:") {
		if _, isObject := child.(map[string]any); isObject {
			return ""
		}
		return normalizePath(k)
	}
	k = strings.ToLower(k)
	if base == "" {
		return k
	}
	return base + "." + k
}

// hmacHex is HMAC-SHA256(key, s) in hex.
func hmacHex(key []byte, s string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// containsFoldASCII reports whether bytes.ToLower(v) contains leaf, for v of ASCII bytes.
func containsFoldASCII(v []byte, leaf string) bool {
	if leaf == "" {
		return true
	}
	for i := 0; i+len(leaf) <= len(v); i++ {
		j := 0
		for j < len(leaf) && lowerASCII(v[i+j]) == leaf[j] {
			j++
		}
		if j == len(leaf) {
			return true
		}
	}
	return false
}
