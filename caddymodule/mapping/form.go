package mapping

import (
	"fmt"
	"mime"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"
)

const formContentType = "application/x-www-form-urlencoded"

// formEncoding sends a call's body as application/x-www-form-urlencoded, built from the
// same body rules as JSON: the JSON body is built first, then flattened in field order.
// Nested objects become "person[first]" (brackets, as PHP and Rails read them) or
// "person.first" (dots, as Spring binds them); a list becomes "ids[]=1&ids[]=2" (brackets)
// or "ids=1&ids=2" (dots); null (a cleared attribute in an update) becomes an empty value.
type formEncoding struct {
	dots bool
}

func (c *compiler) compileEncoding(cl *call, fc *fileCall) error {
	switch fc.Encoding {
	case "", "json":
		if fc.FormKeys != "" {
			return c.errf(cl.rule+".form_keys", "applies to \"encoding\": \"form\" only")
		}
		return nil
	case "form":
	default:
		return c.errf(cl.rule+".encoding", "%q is neither \"json\" (the default) nor \"form\" (application/x-www-form-urlencoded)", fc.Encoding)
	}
	if fc.Body == nil {
		return c.errf(cl.rule+".encoding", "\"form\" encodes a body, and this call has none")
	}
	f := &formEncoding{}
	switch fc.FormKeys {
	case "", "brackets":
	case "dots":
		f.dots = true
	default:
		return c.errf(cl.rule+".form_keys", "%q is neither \"brackets\" (person[first], ids[]) nor \"dots\" (person.first, repeated ids)", fc.FormKeys)
	}
	if ct := cl.header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != formContentType {
			return c.errf(cl.rule+".headers", "Content-Type %q contradicts \"encoding\": \"form\" (which sends %s)", ct, formContentType)
		}
	}
	for _, fl := range cl.fields {
		if fl.hasValue && !formable(fl.value) {
			return c.errf(fl.rule, "a constant object, or a list of lists or objects, cannot be form-encoded; set its fields one native path each")
		}
		for _, comp := range fl.comps {
			if f.ambiguous(comp) {
				return c.errf(fl.rule, "the key %q holds %s, which the form encoding (form_keys %s) reads as nesting", comp, f.separators(), f.mode())
			}
		}
	}
	cl.form = f
	return nil
}

// formable reports whether a constant has a form encoding: a scalar, or a list of them.
func formable(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return false
	case []any:
		for _, e := range x {
			switch e.(type) {
			case map[string]any, []any:
				return false
			}
		}
	}
	return true
}

// encode turns the JSON body into form pairs, in the body's order.
func (f *formEncoding) encode(body []byte) ([]byte, error) {
	var b strings.Builder
	var err error
	gjson.ParseBytes(body).ForEach(func(k, v gjson.Result) bool {
		err = f.pairs(&b, k.Str, v)
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

func (f *formEncoding) pairs(b *strings.Builder, key string, v gjson.Result) error {
	switch {
	case v.IsObject():
		var err error
		v.ForEach(func(k, sub gjson.Result) bool {
			if f.ambiguous(k.Str) {
				// Not a key of the mapping (those are checked at load): a key of the
				// client's data, which would set another field than its own
				// (prefs[a][role], prefs.class.module...).
				err = fmt.Errorf("the value of %q holds a key with %s, which the form encoding would read as another field", key, f.separators())
				return false
			}
			err = f.pairs(b, f.nest(key, k.Str), sub)
			return err == nil
		})
		return err
	case v.IsArray():
		name := key + "[]"
		if f.dots {
			name = key
		}
		var err error
		v.ForEach(func(_, e gjson.Result) bool {
			if e.IsObject() || e.IsArray() {
				err = fmt.Errorf("the value of %q is a list of objects or lists, which has no form encoding", key)
				return false
			}
			add(b, name, formText(e))
			return true
		})
		return err
	}
	add(b, key, formText(v))
	return nil
}

// ambiguous reports whether a key holds the characters the encoding nests keys with.
func (f *formEncoding) ambiguous(key string) bool {
	if f.dots {
		return strings.Contains(key, ".")
	}
	return strings.ContainsAny(key, "[]")
}

func (f *formEncoding) separators() string {
	if f.dots {
		return `a "."`
	}
	return `a "[" or "]"`
}

func (f *formEncoding) mode() string {
	if f.dots {
		return "dots"
	}
	return "brackets"
}

func (f *formEncoding) nest(key, sub string) string {
	if f.dots {
		return key + "." + sub
	}
	return key + "[" + sub + "]"
}

func add(b *strings.Builder, k, v string) {
	if b.Len() > 0 {
		b.WriteByte('&')
	}
	b.WriteString(url.QueryEscape(k))
	b.WriteByte('=')
	b.WriteString(url.QueryEscape(v))
}

// formText is a JSON scalar as form text: strings as they are, numbers as written,
// true/false, and "" for null.
func formText(v gjson.Result) string {
	switch v.Type {
	case gjson.String:
		return v.Str
	case gjson.Null:
		return ""
	}
	return v.Raw
}
