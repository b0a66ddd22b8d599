package scim

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestPrepareResourceOnePrimary: a POST or PUT body with two values of one multi-valued
// attribute marked primary (RFC 7643 §2.4: at most one) is 400 invalidValue naming the
// attribute, Entra's string booleans included; one primary per attribute is fine.
func TestPrepareResourceOnePrimary(t *testing.T) {
	tests := []struct {
		name string
		body string
		bad  string // the attribute the error names; "" for a valid body
	}{
		{"two primary emails", `{"emails":[{"value":"a@x","primary":true},{"value":"b@x","primary":true}]}`, "emails"},
		{"string booleans", `{"phoneNumbers":[{"value":"1","primary":"True"},{"value":"2","primary":"true"}]}`, "phoneNumbers"},
		{"addresses", `{"addresses":[{"type":"work","primary":true},{"type":"home","primary":true}]}`, "addresses"},
		{"roles", `{"roles":[{"value":"a","primary":"True"},{"value":"b","primary":true}]}`, "roles"},
		{"key case", `{"EMAILS":[{"value":"a@x","Primary":true},{"value":"b@x","PRIMARY":"True"}]}`, "EMAILS"},
		{"one primary each", `{"emails":[{"value":"a@x","primary":true},{"value":"b@x","primary":false}],"phoneNumbers":[{"value":"1","primary":true}]}`, ""},
		{"False strings", `{"emails":[{"value":"a@x","primary":"False"},{"value":"b@x","primary":"False"}]}`, ""},
		{"attribute stored verbatim", `{"custom":[{"value":"a","primary":true},{"value":"b","primary":true}]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body map[string]any
			if err := json.Unmarshal([]byte(tt.body), &body); err != nil {
				t.Fatal(err)
			}
			body["userName"] = "ada@contoso.example"
			_, err := PrepareResource(UserType, body)
			if tt.bad == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 || se.ScimType != TypeInvalidValue ||
				!strings.HasPrefix(se.Detail, tt.bad+" ") || !strings.Contains(se.Detail, "primary") {
				t.Fatalf("got %v, want 400 invalidValue naming %s", err, tt.bad)
			}
		})
	}
}

// TestApplyPatchOnePrimary: a PATCH that makes a value primary makes the attribute's other
// values primary false (RFC 7644 §3.5.2), whatever form it takes; other attributes, and
// operations that make nothing primary, are left alone.
func TestApplyPatchOnePrimary(t *testing.T) {
	const before = `{"userName":"ada","emails":[{"type":"work","value":"w@x","primary":true},{"type":"other","value":"o@x"}],` +
		`"phoneNumbers":[{"type":"work","value":"1","primary":true}]}`
	tests := []struct {
		name   string
		ops    string
		emails string // the emails after, as JSON
	}{
		{"add a primary email", `[{"op":"Add","path":"emails","value":[{"type":"home","value":"h@x","primary":"True"}]}]`,
			`[{"type":"work","value":"w@x","primary":false},{"type":"other","value":"o@x"},{"type":"home","value":"h@x","primary":true}]`},
		{"path-less add (aadOptscim062020)", `[{"op":"add","value":{"emails":[{"type":"home","value":"h@x","primary":true}]}}]`,
			`[{"type":"work","value":"w@x","primary":false},{"type":"other","value":"o@x"},{"type":"home","value":"h@x","primary":true}]`},
		{"filtered sub-attribute", `[{"op":"Replace","path":"emails[type eq \"other\"].primary","value":"True"}]`,
			`[{"type":"work","value":"w@x","primary":false},{"type":"other","value":"o@x","primary":true}]`},
		{"filtered element", `[{"op":"replace","path":"emails[type eq \"other\"]","value":{"type":"other","value":"o@x","primary":true}}]`,
			`[{"type":"work","value":"w@x","primary":false},{"type":"other","value":"o@x","primary":true}]`},
		{"filter creating the element", `[{"op":"Add","path":"emails[type eq \"home\"].primary","value":true}]`,
			`[{"type":"work","value":"w@x","primary":false},{"type":"other","value":"o@x"},{"type":"home","primary":true}]`},
		{"replace the list", `[{"op":"replace","path":"emails","value":[{"type":"home","value":"h@x","primary":true}]}]`,
			`[{"type":"home","value":"h@x","primary":true}]`},
		{"the primary re-sent", `[{"op":"Replace","path":"emails[type eq \"work\"].primary","value":"True"}]`,
			`[{"type":"work","value":"w@x","primary":true},{"type":"other","value":"o@x"}]`},
		{"nothing made primary", `[{"op":"Add","path":"emails","value":[{"type":"home","value":"h@x"}]}]`,
			`[{"type":"work","value":"w@x","primary":true},{"type":"other","value":"o@x"},{"type":"home","value":"h@x"}]`},
		{"the primary moves and back", `[{"op":"Add","path":"emails[type eq \"other\"].primary","value":true},{"op":"Replace","path":"emails[type eq \"work\"].primary","value":"True"}]`,
			`[{"type":"work","value":"w@x","primary":true},{"type":"other","value":"o@x","primary":false}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustDecodeObject(t, json.RawMessage(before))
			got, _, err := parseAndApply(UserType, r, mustDecode(t, json.RawMessage(`{"Operations":`+tt.ops+`}`)), PatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if g, w := canonicalJSON(t, got["emails"]), canonicalJSON(t, mustDecode(t, json.RawMessage(tt.emails))); g != w {
				t.Errorf("emails:\n got  %s\n want %s", g, w)
			}
			if g := canonicalJSON(t, got["phoneNumbers"]); g != `[{"primary":true,"type":"work","value":"1"}]` {
				t.Errorf("phoneNumbers changed: %s", g)
			}
		})
	}
	t.Run("two made primary at once", func(t *testing.T) {
		r := mustDecodeObject(t, json.RawMessage(before))
		_, _, err := parseAndApply(UserType, r, mustDecode(t, json.RawMessage(`{"Operations":[{"op":"add","path":"emails","value":`+
			`[{"value":"a@x","primary":true},{"value":"b@x","primary":"True"}]}]}`)), PatchOptions{})
		var se *Error
		if !errors.As(err, &se) || se.ScimType != TypeInvalidValue || !strings.Contains(se.Detail, "emails") {
			t.Fatalf("got %v, want 400 invalidValue naming emails", err)
		}
	})
}
