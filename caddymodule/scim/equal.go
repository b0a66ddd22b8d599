package scim

import (
	"encoding/json"
	"reflect"
)

// EqualValues reports whether two decoded JSON values are equal exactly as reflect.DeepEqual
// says (a nil map or slice differs from an empty one; a json.Number differs from a string
// with the same text), without reflection for the values documents hold: maps, slices,
// strings, booleans, json.Number and nil. Other values are compared by reflect.DeepEqual.
// It is the diff's equality, which the journal's changes and the unchanged-write check
// rest on; a PATCH's value matching (jsonEqual) does not tell a nil map or slice from an
// empty one.
func EqualValues(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && x == y
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || (x == nil) != (y == nil) || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, has := y[k]
			if !has || !EqualValues(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || (x == nil) != (y == nil) || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !EqualValues(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
