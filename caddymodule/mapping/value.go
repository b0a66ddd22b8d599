package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Values flowing through a field are JSON values as the SCIM layer decodes them: string,
// json.Number, bool, nil, []any and map[string]any, plus an "ok" flag that is false when
// the source attribute is absent. Transforms never mutate their input (it may be the
// stored resource); they return new values.

// dataError is a problem with the data of one request rather than with the mapping: a
// value a transform cannot convert, a required field that is empty, an attribute a URL
// needs that is not set. The gateway answers it to Entra as it is (400 invalidValue).
func dataError(format string, args ...any) error {
	return scim.BadRequest(scim.TypeInvalidValue, format, args...)
}

// unresolvedError is a reference (the manager) to a resource that has no native id yet.
// It is a data error too: Entra retries the change later, by which time the manager
// usually exists.
func unresolvedError(format string, args ...any) error {
	return dataError(format, args...)
}

// scimDetail returns the human part of an error from the scim package.
func scimDetail(err error) string {
	var se *scim.Error
	if errors.As(err, &se) {
		return se.Detail
	}
	return err.Error()
}

// scalarText renders a string, number or boolean as text. ok is false for null, lists
// and objects.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// valueText renders a scalar, or a list of scalars joined by sep (nulls skipped). Objects
// have no text form.
func valueText(v any, sep string) (string, error) {
	if v == nil {
		return "", nil
	}
	if s, ok := scalarText(v); ok {
		return s, nil
	}
	list, ok := v.([]any)
	if !ok {
		return "", errors.New("an object has no text form")
	}
	var b strings.Builder
	n := 0
	for _, e := range list {
		if e == nil {
			continue
		}
		s, ok := scalarText(e)
		if !ok {
			return "", errors.New("a list of objects has no text form")
		}
		if n > 0 {
			b.WriteString(sep)
		}
		b.WriteString(s)
		n++
	}
	return b.String(), nil
}

// isEmpty is what default and first_non_empty replace: absent, null, "", or an empty list.
func isEmpty(v any, ok bool) bool {
	if !ok || v == nil {
		return true
	}
	switch x := v.(type) {
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	}
	return false
}

// typeName names a JSON value's type for messages (never its content, which may be
// personal data).
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number, int, int64, float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}
