package scim

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckJSON(t *testing.T) {
	deep := strings.Repeat("[", 500000) + strings.Repeat("]", 500000)
	cases := []struct {
		name, body, detail string
	}{
		{"ok", `{"userName":"a","emails":[{"value":"x"}]}`, ""},
		{"ok braces in strings", `{"a":"{{{[[[\"]]]"}`, ""},
		{"empty", ``, "empty"},
		{"bad utf8", "{\"a\":\"\xff\"}", "UTF-8"},
		{"deep array", deep, "deeper than 64"},
		{"deep object", strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100), "deeper than 64"},
		{"invalid", `{"acve": tre}`, "not valid JSON"},
		{"truncated", `{"a":`, "not valid JSON"},
		{"duplicate", `{"userName":"a","userName":"b"}`, `repeats the attribute "userName"`},
		{"duplicate case", `{"userName":"a","USERNAME":"b"}`, `repeats the attribute "USERNAME"`},
		{"duplicate nested", `{"name":{"givenName":"a","GivenName":"b"}}`, `repeats`},
		{"same key in siblings ok", `{"emails":[{"value":"a"},{"value":"b"}]}`, ""},
		{"two values", `{} {}`, "more than one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckJSON([]byte(tc.body), 64)
			if tc.detail == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("want *Error containing %q, got %v", tc.detail, err)
			}
			if se.Status != 400 || se.ScimType != TypeInvalidSyntax || !strings.Contains(se.Detail, tc.detail) {
				t.Fatalf("got %d %s %q, want 400 invalidSyntax containing %q", se.Status, se.ScimType, se.Detail, tc.detail)
			}
		})
	}
}

func TestDecodeBodyNotObject(t *testing.T) {
	if _, err := DecodeBody([]byte(`[1,2]`), 64); err == nil {
		t.Fatal("array body accepted")
	}
	m, err := DecodeBody([]byte(`{"n":12345678901234567890}`), 64)
	if err != nil {
		t.Fatal(err)
	}
	if got := m["n"]; got == nil || got.(interface{ String() string }).String() != "12345678901234567890" {
		t.Fatalf("number not kept verbatim: %v", got)
	}
}

func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":[{"b":"c"}]}`, `[[[`, `{"a":"\u0000"}`, `{"a":1,"A":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeBody(data, 16)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 {
				t.Fatalf("error is not a SCIM 400: %v", err)
			}
			return
		}
		if m == nil {
			t.Fatal("nil object without error")
		}
	})
}
