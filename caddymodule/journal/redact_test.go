package journal

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := map[string]string{
		"password": "password",
		"Password": "password",
		"urn:ietf:params:scim:schemas:core:2.0:User:password":                      "password",
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value": "manager.value",
		`emails[type eq "work"].value`:                                             "emails.value",
		`emails[value eq "a:b"].value`:                                             "emails.value",
		"name.givenName":                                                           "name.givenname",
		" members ":                                                                "members",
	}
	for in, want := range tests {
		if got := normalizePath(in); got != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactChange(t *testing.T) {
	redact := redactPaths([]string{"name.givenName", "URN:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"})
	tests := []struct {
		name      string
		in        Change
		redacted  bool
		wantValue string // "" = nil
	}{
		{"password", Change{Path: "password", Value: json.RawMessage(`"x"`)}, true, ""},
		{"password with urn", Change{Path: "urn:ietf:params:scim:schemas:core:2.0:User:PASSWORD", Value: json.RawMessage(`"x"`)}, true, ""},
		{"configured sub-path", Change{Path: "name.givenName", Value: json.RawMessage(`"Al"`)}, true, ""},
		{"sub-path of redacted", Change{Path: "password.hash", Value: json.RawMessage(`"h"`)}, true, ""},
		{"prefix is not a parent", Change{Path: "passwordHint", Value: json.RawMessage(`"h"`)}, false, `"h"`},
		{"other attribute", Change{Path: "displayName", Value: json.RawMessage(`"D"`)}, false, `"D"`},
		{"removal", Change{Path: "displayName", Op: "remove"}, false, ""},
		{"inside an object", Change{Path: "", Value: json.RawMessage(`{"password":"x","active":true}`)}, true, `{"active":true,"password":"[REDACTED]"}`},
		{"inside a parent", Change{Path: "name", Value: json.RawMessage(`{"givenName":"Al","familyName":"B"}`)}, true, `{"familyName":"B","givenName":"[REDACTED]"}`},
		{"under a schema key", Change{Value: json.RawMessage(`{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7","department":"S"}}`)}, true,
			`{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"S","employeeNumber":"[REDACTED]"}}`},
		{"full urn key (Entra)", Change{Value: json.RawMessage(`{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"7"}`)}, true,
			`{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"[REDACTED]"}`},
		{"extension path with object", Change{Path: "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", Value: json.RawMessage(`{"employeeNumber":"7"}`)}, true,
			`{"employeeNumber":"[REDACTED]"}`},
		{"array of objects", Change{Path: "", Value: json.RawMessage(`[{"password":"x"}]`)}, true, `[{"password":"[REDACTED]"}]`},
		{"mention without match", Change{Path: "", Value: json.RawMessage(`{"displayName":"password"}`)}, false, `{"displayName":"password"}`},
		{"invalid JSON", Change{Path: "", Value: json.RawMessage(`{"password":`)}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []Change{tt.in}
			out := redactChanges(in, redact)
			got := out[0]
			if got.Redacted != tt.redacted || string(got.Value) != tt.wantValue {
				t.Fatalf("got redacted=%v value=%s, want %v %s", got.Redacted, got.Value, tt.redacted, tt.wantValue)
			}
			if tt.redacted && &out[0] == &in[0] {
				t.Error("input slice modified")
			}
			if string(in[0].Value) != string(tt.in.Value) {
				t.Error("input value modified")
			}
		})
	}
}

func TestRedactDeepValueBounded(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 200) + `{"password":"x"}` + strings.Repeat(`}`, 200)
	out := redactChanges([]Change{{Value: json.RawMessage(deep)}}, redactPaths(nil))
	if out[0].Value != nil || !out[0].Redacted {
		t.Fatalf("a value too deep to inspect was kept: %.80s", out[0].Value)
	}
}
