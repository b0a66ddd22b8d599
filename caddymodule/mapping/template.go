package mapping

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// maxTemplateLen bounds URL and string templates in the mapping file.
const maxTemplateLen = 4096

// template is a compiled "{placeholder}" string: a URL template (placeholders escaped for
// the part of the URL they stand in) or a string template (placeholders inserted as text).
type template struct {
	text  string
	parts []tplPart
	url   bool
	nsrc  int // number of placeholders
}

// tplPart is literal text, or a placeholder when src is set. query marks placeholders
// after the URL's "?", which are query-escaped rather than path-escaped.
type tplPart struct {
	lit   string
	src   *source
	query bool
}

// placeholderSources maps the gateway's template names to their source spelling.
var placeholderSources = map[string]string{
	"id":        srcNativeID,
	"scim_id":   srcSCIMID,
	"member_id": srcMemberID,
}

// compileTemplate parses text. "{{" and "}}" stand for literal braces; a placeholder runs
// to the first "}" outside double quotes, so SCIM value filters such as
// {emails[type eq "work"].value} need no escaping.
func compileTemplate(resourceType, text string, isURL bool) (*template, error) {
	if len(text) > maxTemplateLen {
		return nil, fmt.Errorf("longer than %d bytes", maxTemplateLen)
	}
	t := &template{text: text, url: isURL}
	var lit strings.Builder
	inQuery := false
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '{' && strings.HasPrefix(text[i:], "{{"), c == '}' && strings.HasPrefix(text[i:], "}}"):
			lit.WriteByte(c)
			i += 2
			continue
		case c == '}':
			return nil, fmt.Errorf("unmatched \"}\" at byte %d (write \"}}\" for a literal brace)", i)
		case c != '{':
			if c == '?' {
				inQuery = true
			}
			lit.WriteByte(c)
			i++
			continue
		}
		end, err := placeholderEnd(text, i)
		if err != nil {
			return nil, err
		}
		src, err := compilePlaceholder(resourceType, text[i+1:end])
		if err != nil {
			return nil, err
		}
		if lit.Len() > 0 {
			t.parts = append(t.parts, tplPart{lit: lit.String()})
			lit.Reset()
		}
		t.parts = append(t.parts, tplPart{src: src, query: inQuery})
		t.nsrc++
		i = end + 1
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, tplPart{lit: lit.String()})
	}
	if isURL {
		if err := t.checkURL(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// placeholderEnd returns the index of the "}" closing the placeholder opened at start.
func placeholderEnd(text string, start int) (int, error) {
	inQuote := false
	for j := start + 1; j < len(text); j++ {
		switch c := text[j]; {
		case inQuote && c == '\\':
			j++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return j, nil
		}
	}
	return 0, fmt.Errorf("unclosed \"{\" at byte %d (write \"{{\" for a literal brace)", start)
}

// compilePlaceholder compiles the name between braces.
func compilePlaceholder(resourceType, name string) (*source, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return nil, errors.New("empty placeholder {}")
	}
	if strings.HasPrefix(name, "$") {
		return nil, fmt.Errorf("placeholder {%s}: templates name gateway values without \"$\" ({id}, {scim_id}, {member_id})", name)
	}
	if name == "member_ids" {
		return nil, errors.New("placeholder {member_ids}: a list of ids goes in a body field (\"from\": \"$member_ids\"), not in a template")
	}
	if reserved, ok := placeholderSources[name]; ok {
		return compileSource(resourceType, reserved)
	}
	return compileSource(resourceType, name)
}

// checkURL makes sure the template can only produce a path relative to the target's base
// URL: it starts with "/", names no scheme or host, and holds no fragment, spaces or
// control characters.
func (t *template) checkURL() error {
	if !strings.HasPrefix(t.text, "/") || strings.HasPrefix(t.text, "//") {
		return errors.New("must start with a single \"/\" (it is appended to the target's base URL)")
	}
	var sample strings.Builder
	for _, p := range t.parts {
		if p.src != nil {
			sample.WriteString("x")
			continue
		}
		for _, r := range p.lit {
			if r <= ' ' || r == 0x7f || r == '#' || r == '\\' {
				return fmt.Errorf("literal text holds %q, which is not allowed in a URL path or query", r)
			}
		}
		sample.WriteString(p.lit)
	}
	u, err := url.Parse(sample.String())
	if err != nil {
		return fmt.Errorf("not a valid URL path: %w", err)
	}
	if u.Scheme != "" || u.Host != "" {
		return errors.New("must be a path relative to the target's base URL, without scheme or host")
	}
	return nil
}

// uses reports whether the template references the gateway value reserved.
func (t *template) uses(reserved string) bool {
	for _, p := range t.parts {
		if p.src != nil && p.src.reserved == reserved {
			return true
		}
	}
	return false
}

// sources lists the template's placeholder sources.
func (t *template) sources() []*source {
	var out []*source
	for _, p := range t.parts {
		if p.src != nil {
			out = append(out, p.src)
		}
	}
	return out
}

// renderURL fills the URL template. Every placeholder must resolve to one non-empty
// value: an empty one would turn /accounts/{id} into /accounts/, a different endpoint,
// and "." or ".." would climb the path, so both are refused.
func (t *template) renderURL(ev *evalCtx) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.src == nil {
			b.WriteString(p.lit)
			continue
		}
		s, err := placeholderText(ev, p.src)
		if err != nil {
			return "", err
		}
		if p.query {
			b.WriteString(url.QueryEscape(s))
			continue
		}
		if s == "." || s == ".." {
			return "", dataError("%s resolves to %q, which cannot stand in a URL path", describePlaceholder(p.src), s)
		}
		b.WriteString(url.PathEscape(s))
	}
	return b.String(), nil
}

// placeholderText resolves one URL placeholder to a single non-empty text.
func placeholderText(ev *evalCtx, src *source) (string, error) {
	v, ok, err := src.resolve(ev)
	if err != nil {
		return "", err
	}
	if src.reserved != "" && (!ok || v == "") {
		return "", fmt.Errorf("%s is empty: the gateway passed no native id", describePlaceholder(src))
	}
	if !ok {
		return "", dataError("%s is needed in the URL but is not set", describePlaceholder(src))
	}
	s, isScalar := scalarText(v)
	if !isScalar {
		return "", dataError("%s is needed in the URL but is not a single value", describePlaceholder(src))
	}
	if s == "" {
		return "", dataError("%s is needed in the URL but is empty", describePlaceholder(src))
	}
	return s, nil
}

func describePlaceholder(src *source) string {
	return "{" + strings.TrimPrefix(src.text, "$") + "}"
}

// renderText fills a string template. Absent values render as nothing, lists as their
// elements separated by ", ". ok is false when every placeholder was empty, so that
// "{name.givenName} {name.familyName}" of a nameless user is absent rather than " ".
func (t *template) renderText(ev *evalCtx) (string, bool, error) {
	var b strings.Builder
	anyValue := t.nsrc == 0
	for _, p := range t.parts {
		if p.src == nil {
			b.WriteString(p.lit)
			continue
		}
		v, ok, err := p.src.resolve(ev)
		if err != nil {
			return "", false, err
		}
		if !ok {
			continue
		}
		s, err := valueText(v, ", ")
		if err != nil {
			return "", false, dataError("%s in template %q: %v", describePlaceholder(p.src), t.text, err)
		}
		if s != "" {
			anyValue = true
		}
		b.WriteString(s)
	}
	return b.String(), anyValue, nil
}
