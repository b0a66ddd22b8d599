package scim

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckJSONNumberRange: a number a double cannot hold (it overflows to infinity, or a
// non-zero number underflows to 0) is 400 invalidValue naming the attribute, whatever its
// place in the body; every number a double holds passes, however it is written.
func TestCheckJSONNumberRange(t *testing.T) {
	long := "1" + strings.Repeat("0", 400)        // 1e400 without an exponent
	tiny := "0." + strings.Repeat("0", 400) + "1" // 1e-401 without an exponent
	cases := []struct{ name, body, detail string }{
		{"ok plain", `{"a":12345}`, ""},
		{"ok largest double", `{"a":1.7976931348623157e308}`, ""},
		{"ok smallest subnormal", `{"a":5e-324}`, ""},
		{"ok negative", `{"a":-1.5e300}`, ""},
		{"ok zero with a huge exponent", `{"a":0e999999999}`, ""},
		{"ok negative zero", `{"a":-0.0e-999999}`, ""},
		{"ok long integer", `{"a":123456789012345678901234567890}`, ""},
		{"ok 300 digits", `{"a":` + strings.Repeat("9", 300) + `}`, ""},
		{"overflow", `{"a":1e999999}`, `the number 1e999999 of the attribute "a" (at byte 5) is out of range`},
		{"overflow negative", `{"a":-1e400}`, `the number -1e400 of the attribute "a"`},
		{"overflow capital E", `{"a":1E+309}`, "out of range"},
		{"overflow just past", `{"a":1.8e308}`, "out of range"},
		{"overflow without exponent", `{"a":` + long + `}`, "out of range"},
		{"underflow", `{"a":1e-999999}`, "out of range"},
		{"underflow just past", `{"a":2e-324}`, "out of range"},
		{"underflow without exponent", `{"a":` + tiny + `}`, "out of range"},
		{"huge exponent digits", `{"a":1e` + strings.Repeat("9", 1000) + `}`, "out of range"},
		{"long number cut in detail", `{"a":` + long + `}`, `the number ` + long[:32] + `… of`},
		{"nested path", `{"name":{"givenName":"x","age":1e999}}`, `of the attribute "name.age"`},
		{"in an array", `{"emails":[{"value":"a"},{"value":1e999}]}`, `of the attribute "emails.value"`},
		{"in a nested array", `{"a":[[1,[1e999]]]}`, `of the attribute "a"`},
		{"extension attribute", `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"costCenter":1e999}}`,
			`of the attribute "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"`},
		{"key as written", `{"na\u006De":{"X":1e999}}`, `of the attribute "name.X"`},
		{"after a sibling object", `{"a":{"b":1},"c":1e999}`, `of the attribute "c"`},
		{"many keys", `{` + manyKeys(40) + `,"last":-1e999}`, `of the attribute "last"`},
		{"patch value", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","value":{"x":1e999}}]}`,
			`of the attribute "Operations.value.x"`},
		{"top level", `1e999`, `the number 1e999 (at byte 0) is out of range`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckJSON([]byte(tc.body), 0)
			if tc.detail == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 || se.ScimType != TypeInvalidValue || !strings.Contains(se.Detail, tc.detail) {
				t.Fatalf("got %v, want 400 invalidValue containing %q", err, tc.detail)
			}
		})
	}
}

func manyKeys(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"k` + strings.Repeat("x", i) + `":1`
	}
	return strings.Join(parts, ",")
}

// TestDecodeBodyNumberRange: DecodeBody (what POST, PUT, PATCH and .search bodies go
// through) refuses the number before decoding it.
func TestDecodeBodyNumberRange(t *testing.T) {
	_, err := DecodeBody([]byte(`{"userName":"a","x":1e999999}`), 0)
	var se *Error
	if !errors.As(err, &se) || se.ScimType != TypeInvalidValue || !strings.Contains(se.Detail, `"x"`) {
		t.Fatalf("got %v, want invalidValue naming x", err)
	}
}

func TestParseFilterNumberRange(t *testing.T) {
	for _, f := range []string{`x eq 1e999999`, `x gt -1e400`, `x eq 1e-999999`, `emails[value eq 1e999].type pr`} {
		_, err := ParseFilter(f)
		var se *Error
		if !errors.As(err, &se) || se.Status != 400 || se.ScimType != TypeInvalidFilter || !strings.Contains(se.Detail, "out of range") {
			t.Errorf("ParseFilter(%q) = %v, want 400 invalidFilter out of range", f, err)
		}
	}
	for _, f := range []string{`x eq 1e308`, `x eq 0e999999`, `x eq 5e-324`, `x eq 1e999999x`} {
		if _, err := ParseFilter(f); err != nil {
			t.Errorf("ParseFilter(%q): %v", f, err)
		}
	}
	// A filtered PATCH path creates an element from its value: the same check applies.
	_, err := ParsePath(`phoneNumbers[type eq 1e999999].value`)
	var se *Error
	if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Detail, "out of range") {
		t.Errorf("ParsePath: %v, want 400 out of range", err)
	}
}
