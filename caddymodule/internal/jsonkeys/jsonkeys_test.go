package jsonkeys

import (
	"reflect"
	"testing"
)

// TestFirstDuplicate: the first key given twice in one object, with the path of that
// object, the key as decoded and the offset of its second occurrence; keys of different
// objects, array elements and values are not duplicates; invalid JSON finds nothing.
func TestFirstDuplicate(t *testing.T) {
	tests := []struct {
		data string
		want *Duplicate
	}{
		{`{"a": 1, "b": {"a": 2}, "c": [{"a": 1}, {"a": 2}], "d": "a"}`, nil},
		{`{"a": 1, "a": 2}`, &Duplicate{Key: "a", Path: []Elem{}, Offset: 9}},
		{`{"x": [{"k": 1}, {"k": 1, "k": 2}]}`, &Duplicate{Key: "k", Path: []Elem{{Key: "x"}, {Index: 1, IsIndex: true}}, Offset: 26}},
		{`{"demo": {"q": "\"", "d\u0065mo": 1, "q": 2}}`, &Duplicate{Key: "q", Path: []Elem{{Key: "demo"}}, Offset: 37}},
		{`{"a": 1, "a": 2`, nil},
		{`[1, [2, {"z": {}, "z": []}]]`, &Duplicate{Key: "z", Path: []Elem{{Index: 1, IsIndex: true}, {Index: 1, IsIndex: true}}, Offset: 18}},
	}
	for _, tc := range tests {
		if got := FirstDuplicate([]byte(tc.data)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.data, got, tc.want)
		}
	}
}
