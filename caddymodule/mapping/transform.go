package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// maxRegexLen bounds regex_replace patterns; RE2 matching is linear in the input anyway.
const maxRegexLen = 1024

// transform is one compiled step of a field's pipeline.
type transform struct {
	name    string
	apply   func(ev *evalCtx, v any, ok bool) (any, bool, error)
	sources []*source // SCIM paths the step reads itself (first_non_empty, template)
}

// transformSpec is a transform as written: "lower", or {"name": arg} / {"name": [args]}.
type transformSpec struct {
	name string
	args []any
}

// parseTransformSpec reads one element of "transforms".
func parseTransformSpec(raw json.RawMessage) (transformSpec, error) {
	v, err := decodeValue(raw)
	if err != nil {
		return transformSpec{}, err
	}
	switch x := v.(type) {
	case string:
		return transformSpec{name: x}, nil
	case map[string]any:
		if len(x) != 1 {
			return transformSpec{}, fmt.Errorf("a transform with arguments is an object with exactly one key, its name, e.g. {\"default\": \"n/a\"}; got %d keys", len(x))
		}
		for name, a := range x {
			if list, ok := a.([]any); ok {
				return transformSpec{name: name, args: list}, nil
			}
			return transformSpec{name: name, args: []any{a}}, nil
		}
	}
	return transformSpec{}, fmt.Errorf("a transform is a name (\"lower\") or an object ({\"join\": \", \"}), not %s", typeName(v))
}

// transformNames lists every transform, for the "unknown transform" message.
var transformNames = []string{"bool", "constant", "date", "default", "first", "first_non_empty", "join", "lookup",
	"lower", "not", "regex_replace", "split", "template", "to_int", "to_string", "trim", "upper"}

// compileTransform builds one step, checking its arguments now so that a request can only
// fail on its data.
func compileTransform(resourceType string, spec transformSpec, tables map[string]map[string]any) (*transform, error) {
	t := &transform{name: spec.name}
	var err error
	switch spec.name {
	case "lower", "upper", "trim", "not", "to_int", "to_string", "first":
		err = compileNoArgs(t, spec)
	case "default", "constant":
		err = compileValueArg(t, spec)
	case "join", "split":
		err = compileSep(t, spec)
	case "lookup":
		err = compileLookup(t, spec, tables)
	case "bool":
		err = compileBool(t, spec)
	case "date":
		err = compileDate(t, spec)
	case "first_non_empty":
		err = compileFirstNonEmpty(t, spec, resourceType)
	case "regex_replace":
		err = compileRegexReplace(t, spec)
	case "template":
		err = compileTemplateTransform(t, spec, resourceType, tables)
	default:
		return nil, fmt.Errorf("unknown transform %q (known: %s)", spec.name, strings.Join(transformNames, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("transform %q: %w", spec.name, err)
	}
	return t, nil
}

func wantArgs(spec transformSpec, minArgs, maxArgs int, usage string) error {
	if n := len(spec.args); n < minArgs || n > maxArgs {
		return fmt.Errorf("takes %s, got %d argument(s)", usage, n)
	}
	return nil
}

func stringArg(spec transformSpec, i int, what string) (string, error) {
	s, ok := spec.args[i].(string)
	if !ok {
		return "", fmt.Errorf("%s must be a string, got %s", what, typeName(spec.args[i]))
	}
	return s, nil
}

func compileNoArgs(t *transform, spec transformSpec) error {
	if err := wantArgs(spec, 0, 0, "no arguments"); err != nil {
		return err
	}
	switch spec.name {
	case "lower":
		t.apply = eachString(strings.ToLower)
	case "upper":
		t.apply = eachString(strings.ToUpper)
	case "trim":
		t.apply = eachString(strings.TrimSpace)
	case "not":
		t.apply = applyNot
	case "to_int":
		t.apply = eachScalar(toInt)
	case "to_string":
		t.apply = eachScalar(toString)
	case "first":
		t.apply = applyFirst
	}
	return nil
}

// eachString applies f to a string, or to every string of a list; other values pass.
func eachString(f func(string) string) func(*evalCtx, any, bool) (any, bool, error) {
	return func(_ *evalCtx, v any, ok bool) (any, bool, error) {
		switch x := v.(type) {
		case string:
			return f(x), ok, nil
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				if s, isStr := e.(string); isStr {
					out[i] = f(s)
				} else {
					out[i] = e
				}
			}
			return out, ok, nil
		}
		return v, ok, nil
	}
}

// eachScalar applies a conversion to a scalar, or to every element of a list.
func eachScalar(f func(any) (any, error)) func(*evalCtx, any, bool) (any, bool, error) {
	return func(_ *evalCtx, v any, ok bool) (any, bool, error) {
		if !ok || v == nil {
			return v, ok, nil
		}
		list, isList := v.([]any)
		if !isList {
			out, err := f(v)
			return out, true, err
		}
		out := make([]any, len(list))
		for i, e := range list {
			var err error
			if out[i], err = f(e); err != nil {
				return nil, false, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return out, true, nil
	}
}

func applyNot(_ *evalCtx, v any, ok bool) (any, bool, error) {
	if !ok || v == nil {
		return v, ok, nil
	}
	b, isBool := scim.Bool(v)
	if !isBool {
		return nil, false, fmt.Errorf("needs a boolean, got %s", typeName(v))
	}
	return !b, true, nil
}

func applyFirst(_ *evalCtx, v any, ok bool) (any, bool, error) {
	list, isList := v.([]any)
	if !isList {
		return v, ok, nil
	}
	if len(list) == 0 {
		return nil, false, nil
	}
	return list[0], list[0] != nil, nil
}

// toInt turns a number or a numeric string into an integer JSON number: native ids are
// stored as text, and many apps want them back as numbers.
func toInt(v any) (any, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	case int, int64:
		return v, nil
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return nil, fmt.Errorf("needs a number or a numeric string, got %s", typeName(v))
	}
	n, err := integerText(s)
	if err != nil {
		return nil, errors.New("needs an integer")
	}
	return json.Number(n), nil
}

func toString(v any) (any, error) {
	s, ok := scalarText(v)
	if !ok {
		return nil, fmt.Errorf("needs a string, number or boolean, got %s", typeName(v))
	}
	return s, nil
}

// compileValueArg builds default(value) and constant(value). The value is any JSON value;
// to give a list, wrap it: {"constant": [["a", "b"]]}.
func compileValueArg(t *transform, spec transformSpec) error {
	if err := wantArgs(spec, 1, 1, "one value"); err != nil {
		return err
	}
	val := spec.args[0]
	if spec.name == "constant" {
		t.apply = func(*evalCtx, any, bool) (any, bool, error) { return val, true, nil }
		return nil
	}
	t.apply = func(_ *evalCtx, v any, ok bool) (any, bool, error) {
		if isEmpty(v, ok) {
			return val, true, nil
		}
		return v, ok, nil
	}
	return nil
}

// compileSep builds join(sep) (list to string) and split(sep) (string to list).
func compileSep(t *transform, spec transformSpec) error {
	if err := wantArgs(spec, 1, 1, "one separator string"); err != nil {
		return err
	}
	sep, err := stringArg(spec, 0, "the separator")
	if err != nil {
		return err
	}
	if spec.name == "join" {
		t.apply = func(_ *evalCtx, v any, ok bool) (any, bool, error) {
			if !ok || v == nil {
				return v, ok, nil
			}
			s, err := valueText(v, sep)
			return s, err == nil, err
		}
		return nil
	}
	if sep == "" {
		return errors.New("the separator must not be empty")
	}
	t.apply = func(_ *evalCtx, v any, ok bool) (any, bool, error) {
		s, isStr := v.(string)
		if !isStr {
			return v, ok, nil
		}
		if s == "" {
			return []any{}, true, nil
		}
		parts := strings.Split(s, sep)
		out := make([]any, len(parts))
		for i, p := range parts {
			out[i] = p
		}
		return out, true, nil
	}
	return nil
}

// compileLookup builds lookup(table, default?): the table is the name of an entry of the
// file's "tables" or an inline object. Without a default, a value missing from the table
// fails the request, so that a typo in a table never provisions a wrong value silently.
func compileLookup(t *transform, spec transformSpec, tables map[string]map[string]any) error {
	if err := wantArgs(spec, 1, 2, "a table (a name from \"tables\" or an object) and an optional default"); err != nil {
		return err
	}
	var table map[string]any
	tableName := "inline table"
	switch x := spec.args[0].(type) {
	case string:
		tbl, ok := tables[x]
		if !ok {
			return fmt.Errorf("no table %q in \"tables\"%s", x, knownTables(tables))
		}
		table, tableName = tbl, "table "+strconv.Quote(x)
	case map[string]any:
		table = x
	default:
		return fmt.Errorf("the table must be a name or an object, got %s", typeName(x))
	}
	hasDefault := len(spec.args) == 2
	var def any
	if hasDefault {
		def = spec.args[1]
	}
	t.apply = func(_ *evalCtx, v any, ok bool) (any, bool, error) {
		if !ok || v == nil {
			return v, ok, nil
		}
		key, isScalar := scalarText(v)
		if !isScalar {
			return nil, false, fmt.Errorf("needs a single value, got %s", typeName(v))
		}
		if out, found := table[key]; found {
			return out, true, nil
		}
		if hasDefault {
			return def, true, nil
		}
		return nil, false, fmt.Errorf("the value is not in the %s, which has no default", tableName)
	}
	return nil
}

func knownTables(tables map[string]map[string]any) string {
	if len(tables) == 0 {
		return " (the file defines none)"
	}
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	sort.Strings(names)
	return " (defined: " + strings.Join(names, ", ") + ")"
}

// compileBool builds bool(true_value, false_value) over SCIM booleans, including Entra's
// "True"/"False" strings.
func compileBool(t *transform, spec transformSpec) error {
	if err := wantArgs(spec, 2, 2, "two values, for true and for false"); err != nil {
		return err
	}
	yes, no := spec.args[0], spec.args[1]
	t.apply = func(_ *evalCtx, v any, ok bool) (any, bool, error) {
		if !ok || v == nil {
			return v, ok, nil
		}
		b, isBool := scim.Bool(v)
		if !isBool {
			return nil, false, fmt.Errorf("needs a boolean, got %s", typeName(v))
		}
		if b {
			return yes, true, nil
		}
		return no, true, nil
	}
	return nil
}

// Named date layouts; anything else is a Go time layout ("02.01.2006").
var namedLayouts = map[string]string{
	"rfc3339":  time.RFC3339,
	"date":     time.DateOnly,
	"datetime": time.DateTime,
	"unix":     "unix",
	"unix_ms":  "unix_ms",
}

func compileLayout(s string) (string, error) {
	if l, ok := namedLayouts[strings.ToLower(s)]; ok {
		return l, nil
	}
	probe := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if s == "" || probe.Format(s) == s {
		return "", fmt.Errorf("layout %q is neither a named layout (rfc3339, date, datetime, unix, unix_ms) nor a Go time layout such as \"02.01.2006\"", s)
	}
	return s, nil
}

// compileDate builds date(layout_out) and date(layout_in, layout_out); the input layout
// defaults to RFC 3339, SCIM's dateTime. The time zone of the input is kept.
func compileDate(t *transform, spec transformSpec) error {
	if err := wantArgs(spec, 1, 2, "an output layout, or an input and an output layout"); err != nil {
		return err
	}
	in, out := time.RFC3339, ""
	for i := range spec.args {
		s, err := stringArg(spec, i, "a layout")
		if err != nil {
			return err
		}
		l, err := compileLayout(s)
		if err != nil {
			return err
		}
		if i == len(spec.args)-1 {
			out = l
		} else {
			in = l
		}
	}
	t.apply = func(_ *evalCtx, v any, ok bool) (any, bool, error) {
		if isEmpty(v, ok) {
			return v, ok, nil
		}
		tm, err := parseTime(v, in)
		if err != nil {
			return nil, false, err
		}
		return formatTime(tm, out), true, nil
	}
	return nil
}

func parseTime(v any, layout string) (time.Time, error) {
	s, ok := scalarText(v)
	if !ok {
		return time.Time{}, fmt.Errorf("needs a date, got %s", typeName(v))
	}
	s = strings.TrimSpace(s)
	switch layout {
	case "unix", "unix_ms":
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, errors.New("needs an integer timestamp")
		}
		if layout == "unix_ms" {
			return time.UnixMilli(n).UTC(), nil
		}
		return time.Unix(n, 0).UTC(), nil
	}
	tm, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("the value does not match the layout %q", layout)
	}
	return tm, nil
}

func formatTime(tm time.Time, layout string) any {
	switch layout {
	case "unix":
		return json.Number(strconv.FormatInt(tm.Unix(), 10))
	case "unix_ms":
		return json.Number(strconv.FormatInt(tm.UnixMilli(), 10))
	}
	return tm.Format(layout)
}

// compileFirstNonEmpty builds first_non_empty(paths...): the value so far if it is not
// empty, else the first non-empty of the given SCIM paths.
func compileFirstNonEmpty(t *transform, spec transformSpec, resourceType string) error {
	if len(spec.args) == 0 {
		return errors.New("takes one or more SCIM paths")
	}
	for i := range spec.args {
		p, err := stringArg(spec, i, "each path")
		if err != nil {
			return err
		}
		src, err := compileSource(resourceType, p)
		if err != nil {
			return err
		}
		t.sources = append(t.sources, src)
	}
	srcs := t.sources
	t.apply = func(ev *evalCtx, v any, ok bool) (any, bool, error) {
		if !isEmpty(v, ok) {
			return v, ok, nil
		}
		for _, s := range srcs {
			sv, sok, err := s.resolve(ev)
			if err != nil {
				return nil, false, err
			}
			if !isEmpty(sv, sok) {
				return sv, true, nil
			}
		}
		return v, ok, nil
	}
	return nil
}

// compileRegexReplace builds regex_replace(pattern, replacement) with Go's RE2 syntax
// (linear time, no backtracking); the replacement may use $1 and ${name}.
func compileRegexReplace(t *transform, spec transformSpec) error {
	if err := wantArgs(spec, 2, 2, "a pattern and a replacement"); err != nil {
		return err
	}
	pat, err := stringArg(spec, 0, "the pattern")
	if err != nil {
		return err
	}
	repl, err := stringArg(spec, 1, "the replacement")
	if err != nil {
		return err
	}
	if len(pat) > maxRegexLen {
		return fmt.Errorf("the pattern is longer than %d bytes", maxRegexLen)
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return fmt.Errorf("bad pattern: %w", err)
	}
	t.apply = eachString(func(s string) string { return re.ReplaceAllString(s, repl) })
	return nil
}

// compileTemplateTransform builds template("{name.givenName} {name.familyName}"). Its
// placeholders are those of URLs, transforms included ("{userName|lower}").
func compileTemplateTransform(t *transform, spec transformSpec, resourceType string, tables map[string]map[string]any) error {
	if err := wantArgs(spec, 1, 1, "one template string"); err != nil {
		return err
	}
	text, err := stringArg(spec, 0, "the template")
	if err != nil {
		return err
	}
	tpl, err := compileTemplate(resourceType, text, false, tables)
	if err != nil {
		return err
	}
	t.sources = tpl.sources()
	t.apply = func(ev *evalCtx, _ any, _ bool) (any, bool, error) {
		s, ok, err := tpl.renderText(ev)
		if err != nil || !ok {
			return nil, false, err
		}
		return s, true, nil
	}
	return nil
}

// decodeValue decodes one JSON value with numbers kept exact.
func decodeValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonError(err)
	}
	return v, nil
}
