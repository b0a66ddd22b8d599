package scim

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestEqualValuesIsDeepEqual: EqualValues agrees with reflect.DeepEqual on the pairs whose
// equality is subtle and on random documents paired with copies and small edits of them.
func TestEqualValuesIsDeepEqual(t *testing.T) {
	pairs := [][2]any{
		{nil, nil}, {nil, ""}, {"a", "a"}, {"a", "b"}, {true, true}, {true, false},
		{json.Number("1"), json.Number("1")}, {json.Number("1"), json.Number("1.0")}, {json.Number("1"), "1"},
		{map[string]any{}, map[string]any(nil)}, {map[string]any(nil), map[string]any(nil)},
		{[]any{}, []any(nil)}, {[]any{"a"}, []any{"a"}}, {[]any{"a"}, []any{"a", "b"}},
		{map[string]any{"a": nil}, map[string]any{"b": nil}}, {map[string]any{"a": 1}, map[string]any{"a": 1}},
		{1.5, 1.5}, {[]string{"x"}, []string{"x"}}, {[]any{map[string]any{"v": "x"}}, []any{map[string]any{"v": "y"}}},
	}
	for _, p := range pairs {
		if got, want := EqualValues(p[0], p[1]), reflect.DeepEqual(p[0], p[1]); got != want {
			t.Errorf("EqualValues(%#v, %#v) = %v, DeepEqual %v", p[0], p[1], got, want)
		}
	}
	r := rand.New(rand.NewPCG(18, 6))
	for range 2000 {
		a := randomDocument(r, 0)
		b := Clone(a)
		if r.IntN(2) == 0 {
			b = randomDocument(r, 0)
		}
		if got, want := EqualValues(a, b), reflect.DeepEqual(a, b); got != want {
			t.Fatalf("EqualValues(%#v, %#v) = %v, DeepEqual %v", a, b, got, want)
		}
	}
}
