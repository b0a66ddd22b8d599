package scim

import (
	"errors"
	"strings"
	"testing"
)

func TestIDProblem(t *testing.T) {
	cases := []struct{ name, id, problem string }{
		{"uuid", "2819c223-7f76-453a-919d-413861904646", ""},
		{"Entra's hex id", "2441309d85324e7793ae", ""},
		{"non-ASCII", "ünïcode-id", ""},
		{"space inside", "a b", ""},
		{"at the limit", strings.Repeat("x", MaxIDBytes), ""},
		{"empty", "", "cannot be empty"},
		{"over the limit", strings.Repeat("x", MaxIDBytes+1), "at most 256 bytes, this one has 257"},
		{"15,000 characters", strings.Repeat("a", 15000), "at most 256 bytes"},
		{"NUL", "abc\x00", "control characters, this one holds U+0000"},
		{"newline", "a\nb", "U+000A"},
		{"DEL", "a\x7fb", "U+007F"},
		{"C1 control", "a\u0085b", "U+0085"},
		{"not UTF-8", "a\xffb", "not"},
		{"truncated rune", "\xc3", "UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := IDProblem(tc.id)
			if tc.problem == "" && got != "" || tc.problem != "" && !strings.Contains(got, tc.problem) {
				t.Fatalf("IDProblem(%q) = %q, want %q", QuoteForDetail(tc.id), got, tc.problem)
			}
		})
	}
}

func TestQuoteForDetail(t *testing.T) {
	cases := []struct{ in, want string }{
		{"abc", `"abc"`},
		{"a\x00b", `"a\x00b"`},
		{"a\xffb", `"a\xffb"`},
		{strings.Repeat("x", 70), `"` + strings.Repeat("x", 64) + `"…`},
		{strings.Repeat("é", 40), `"` + strings.Repeat("é", 32) + `"…`}, // cut at a rune boundary
	}
	for _, tc := range cases {
		if got := QuoteForDetail(tc.in); got != tc.want {
			t.Errorf("QuoteForDetail(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestMemberIDsAreIDs(t *testing.T) {
	for _, bad := range []string{"a\x00b", strings.Repeat("m", MaxIDBytes+1), "\xff\xfe"} {
		for _, in := range []any{bad, []any{map[string]any{"value": bad}}} {
			_, err := NormalizeMembers(in)
			var se *Error
			if !errors.As(err, &se) || se.ScimType != TypeInvalidValue || !strings.Contains(se.Detail, "cannot be a resource id") {
				t.Errorf("NormalizeMembers(%s): %v, want invalidValue", QuoteForDetail(bad), err)
			}
		}
		// members[value eq "..."] in a PATCH path, for add and for remove.
		for _, op := range []string{"add", "remove"} {
			ops, err := ParsePatch(map[string]any{"Operations": []any{map[string]any{
				"op": op, "path": `members[value eq "` + strings.ReplaceAll(bad, "\x00", `\u0000`) + `"]`,
			}}})
			if err != nil {
				if !strings.Contains(err.Error(), "UTF-8") {
					t.Fatalf("ParsePatch: %v", err)
				}
				continue // a filter must be UTF-8 anyway
			}
			_, _, err = ApplyPatch(GroupType, Resource{"displayName": "g"}, ops, PatchOptions{})
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Detail, "cannot be a resource id") {
				t.Errorf("%s members[value eq %s]: %v, want 400", op, QuoteForDetail(bad), err)
			}
		}
	}
}
