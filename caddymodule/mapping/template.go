package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/scim"
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

// tplPart is literal text, or a placeholder when src is set: a source and the transforms
// its value passes through. query marks placeholders after the URL's "?", which are
// query-escaped rather than path-escaped.
type tplPart struct {
	lit        string
	src        *source
	transforms []*transform
	name       string // the placeholder as written between the braces, for messages
	query      bool
}

// placeholderSources maps the gateway's template names to their source spelling.
var placeholderSources = map[string]string{
	"id":        srcNativeID,
	"scim_id":   srcSCIMID,
	"member_id": srcMemberID,
}

// compileTemplate parses text. "{{" and "}}" stand for literal braces; a placeholder is a
// SCIM path or gateway value, optionally followed by transforms after "|"
// ({userName|trim|lower}, {department|lookup:["depts", "OTHER"]}); see scanPlaceholder for
// where it ends. tables are the file's named tables, for lookup.
func compileTemplate(resourceType, text string, isURL bool, tables map[string]map[string]any) (*template, error) {
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
		end, steps, err := scanPlaceholder(text, i)
		if err != nil {
			return nil, err
		}
		p, err := compilePlaceholder(resourceType, strings.TrimSpace(text[i+1:end]), steps, tables)
		if err != nil {
			return nil, err
		}
		if lit.Len() > 0 {
			t.parts = append(t.parts, tplPart{lit: lit.String()})
			lit.Reset()
		}
		p.query = inQuery
		t.parts = append(t.parts, p)
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

// scanPlaceholder reads the placeholder opened by the "{" at start. It returns the index
// of the "}" that closes it and its steps: the text between the braces split at "|". Only
// a "}" or "|" outside double-quoted strings (with JSON's backslash escapes) and outside
// [...] and {...} counts: a SCIM value filter may hold either in a value, quoted or not
// (emails[value eq "a|b"]), and a transform's JSON arguments hold strings, lists and
// objects (lookup:[{"a": "b"}]). A SCIM path itself has neither outside its brackets.
func scanPlaceholder(text string, start int) (int, []string, error) {
	var steps []string
	from, depth, inQuote := start+1, 0, false
	for j := start + 1; j < len(text); j++ {
		switch c := text[j]; {
		case inQuote && c == '\\':
			j++
		case inQuote:
			inQuote = c != '"'
		case c == '"':
			inQuote = true
		case c == '[' || c == '{':
			depth++
		case depth > 0 && (c == ']' || c == '}'):
			depth--
		case depth == 0 && c == '|':
			steps = append(steps, text[from:j])
			from = j + 1
		case depth == 0 && c == '}':
			return j, append(steps, text[from:j]), nil
		}
	}
	return 0, nil, fmt.Errorf("unclosed \"{\" at byte %d (write \"{{\" for a literal brace)", start)
}

// compilePlaceholder compiles the placeholder written between braces: its source (steps[0])
// and its transforms.
func compilePlaceholder(resourceType, written string, steps []string, tables map[string]map[string]any) (tplPart, error) {
	name := strings.TrimSpace(steps[0])
	switch {
	case written == "":
		return tplPart{}, errors.New("empty placeholder {}")
	case name == "":
		return tplPart{}, fmt.Errorf("placeholder {%s}: names no SCIM path or gateway value before the \"|\"", written)
	case strings.HasPrefix(name, "$"):
		return tplPart{}, fmt.Errorf("placeholder {%s}: templates name gateway values without \"$\" ({id}, {scim_id}, {member_id})", written)
	case name == "member_ids" || name == "role_ids":
		return tplPart{}, fmt.Errorf("placeholder {%s}: a list of ids goes in a body field (\"from\": \"$%s\"), not in a template", written, name)
	case len(steps)-1 > maxTransforms:
		return tplPart{}, fmt.Errorf("placeholder {%s}: more than %d transforms", written, maxTransforms)
	}
	if reserved, ok := placeholderSources[name]; ok {
		name = reserved
	} else if strings.HasPrefix(name, "answer.") || strings.HasPrefix(name, "header.") {
		name = "$" + name // {answer.0.user.id}, {header.0.Location}
	}
	src, err := compileSource(resourceType, name)
	if err != nil {
		return tplPart{}, err
	}
	p := tplPart{src: src, name: written}
	for _, step := range steps[1:] {
		t, err := compileStep(resourceType, step, tables)
		if err != nil {
			return tplPart{}, fmt.Errorf("placeholder {%s}: %w", written, err)
		}
		p.transforms = append(p.transforms, t)
	}
	return p, nil
}

// compileStep compiles one transform of a placeholder, "name" or "name:args" with args in
// JSON, by building the file's own form ("name" or {"name": args}): every transform and
// every check of its arguments is then the one bodies get.
func compileStep(resourceType, step string, tables map[string]map[string]any) (*transform, error) {
	step = strings.TrimSpace(step)
	if step == "" {
		return nil, errors.New("empty transform after \"|\"")
	}
	name, args, hasArgs := strings.Cut(step, ":")
	name = strings.TrimSpace(name)
	raw, err := json.Marshal(name)
	if err != nil {
		return nil, err
	}
	if hasArgs {
		args = strings.TrimSpace(args)
		// One JSON value, checked alone: the object built below must not gain keys from it.
		var v any
		if err := json.Unmarshal([]byte(args), &v); err != nil {
			return nil, fmt.Errorf("transform %s: the arguments after \":\" are not one JSON value (write them as in {%s: ...}): %s", raw, raw, strings.TrimPrefix(err.Error(), "json: "))
		}
		raw = []byte("{" + string(raw) + ":" + args + "}")
	}
	spec, err := parseTransformSpec(raw)
	if err != nil {
		return nil, err
	}
	return compileTransform(resourceType, spec, tables)
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

// uses reports whether the template references the gateway value reserved, in a
// placeholder or in the transforms of one (first_non_empty).
func (t *template) uses(reserved string) bool {
	for _, s := range t.sources() {
		if s.reserved == reserved {
			return true
		}
	}
	return false
}

// sources lists the template's placeholder sources and the paths their transforms read.
func (t *template) sources() []*source {
	var out []*source
	for _, p := range t.parts {
		if p.src == nil {
			continue
		}
		out = append(out, p.src)
		for _, tr := range p.transforms {
			out = append(out, tr.sources...)
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
		s, clientSlash, err := p.text(ev)
		if err != nil {
			return "", err
		}
		if p.query {
			b.WriteString(url.QueryEscape(s))
			continue
		}
		if s == "." || s == ".." {
			return "", dataError("%s resolves to %q, which cannot stand in a URL path", p.describe(), s)
		}
		if clientSlash && strings.ContainsAny(s, "/\\") {
			// Escaped, a slash still reaches another endpoint of an app that decodes its
			// path before routing it (every WSGI app; IIS reads a backslash as "/"): a client's
			// value must not choose the URL. Native ids and answers are the app's own, as
			// is a slash a transform writes (a table's value).
			return "", dataError("%s holds a \"/\" or a backslash, which cannot stand in a URL path segment (an app that decodes its paths would read another path); the mapping can send it in the query or the body", p.describe())
		}
		// "+" is data in a path (RFC 3986), but apps that decode their paths as forms
		// (Java's URLDecoder, PHP's urldecode) read it as a space: %2B is "+" to both.
		b.WriteString(strings.ReplaceAll(url.PathEscape(s), "+", "%2B"))
	}
	return b.String(), nil
}

// text resolves one URL placeholder to a single non-empty text, after its transforms and
// before escaping. clientSlash says a client's value it reads (its SCIM attribute, or one
// a transform reads, before the transforms) held a "/" or a backslash.
func (p *tplPart) text(ev *evalCtx) (s string, clientSlash bool, err error) {
	v, ok, err := p.src.resolve(ev)
	if err != nil {
		return "", false, err
	}
	if p.src.reserved != "" && (!ok || v == "") {
		return "", false, fmt.Errorf("%s is empty: the gateway passed no native id", p.describe())
	}
	clientSlash = p.src.reserved == "" && holdsSlash(v)
	for _, tr := range p.transforms {
		for _, src := range tr.sources { // the values a template or first_non_empty reads
			if src.reserved == "" && !clientSlash {
				other, _, err := src.resolve(ev)
				if err != nil {
					return "", false, err
				}
				clientSlash = holdsSlash(other)
			}
		}
	}
	if v, ok, err = p.transform(ev, v, ok); err != nil {
		return "", false, placeholderError(p.describe(), err)
	}
	if !ok || v == nil { // a transform may give null (default: null, a table's value)
		return "", false, dataError("%s is needed in the URL but is not set", p.describe())
	}
	s, isScalar := scalarText(v)
	if !isScalar {
		return "", false, dataError("%s is needed in the URL but is not a single value", p.describe())
	}
	if s == "" {
		return "", false, dataError("%s is needed in the URL but is empty", p.describe())
	}
	return s, clientSlash, nil
}

// holdsSlash reports whether a value, or a text in it, holds a "/" or a backslash.
func holdsSlash(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.ContainsAny(x, "/\\")
	case []any:
		for _, e := range x {
			if holdsSlash(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if holdsSlash(e) {
				return true
			}
		}
	}
	return false
}

// transform passes the placeholder's value through its transforms, in order.
func (p *tplPart) transform(ev *evalCtx, v any, ok bool) (any, bool, error) {
	for _, t := range p.transforms {
		var err error
		if v, ok, err = t.apply(ev, v, ok); err != nil {
			return nil, false, fmt.Errorf("transform %s: %w", t.name, err)
		}
	}
	return v, ok, nil
}

// placeholderError reports a transform of a placeholder that failed: errors already meant
// for the client, and the gateway's own, pass as they are; one that could not convert the
// data becomes a 400 naming the placeholder (where), never the value.
func placeholderError(where string, err error) error {
	var se *scim.Error
	if errors.As(err, &se) || errors.Is(err, errNoIDMap) {
		return err
	}
	return dataError("%s: %v", where, err)
}

func (p *tplPart) describe() string {
	return "{" + p.name + "}"
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
		if v, ok, err = p.transform(ev, v, ok); err != nil {
			return "", false, placeholderError(fmt.Sprintf("%s in template %q", p.describe(), t.text), err)
		}
		if !ok {
			continue
		}
		s, err := valueText(v, ", ")
		if err != nil {
			return "", false, dataError("%s in template %q: %v", p.describe(), t.text, err)
		}
		if s != "" {
			anyValue = true
		}
		b.WriteString(s)
	}
	return b.String(), anyValue, nil
}
