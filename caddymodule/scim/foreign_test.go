package scim

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestForeignSchemaRefused: a schema of another resource type (the Group schema on a User,
// the enterprise User extension on a Group) names no attribute of the resource. It was
// stored as if it were an extension: a PATCH of urn:...:core:2.0:Group:displayName on a
// User answered 200 and the user read back with a Group "displayName" and the Group schema
// in its schemas.
func TestForeignSchemaRefused(t *testing.T) {
	const (
		groupAttr = "urn:ietf:params:scim:schemas:core:2.0:Group:displayName"
		entAttr   = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
	)
	patches := []struct{ name, typ, ops string }{
		{"Group path on a User", UserType, `[{"op":"Replace","path":"` + groupAttr + `","value":"x"}]`},
		{"Group members path on a User", UserType, `[{"op":"add","path":"urn:ietf:params:scim:schemas:core:2.0:Group:members","value":[{"value":"u"}]}]`},
		{"Group schema object on a User", UserType, `[{"op":"add","path":"urn:ietf:params:scim:schemas:core:2.0:Group","value":{"displayName":"x"}}]`},
		{"path-less Group key on a User", UserType, `[{"op":"replace","value":{"` + groupAttr + `":"x"}}]`},
		{"enterprise path on a Group", GroupType, `[{"op":"Add","path":"` + entAttr + `","value":"Retail"}]`},
		{"User schema path on a Group", GroupType, `[{"op":"replace","path":"urn:ietf:params:scim:schemas:core:2.0:User:userName","value":"x"}]`},
	}
	for _, tc := range patches {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]any{"userName": "ada", "displayName": "Ada"}
			_, _, err := parseAndApply(tc.typ, before, mustDecode(t, json.RawMessage(`{"Operations":`+tc.ops+`}`)), PatchOptions{})
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 || se.ScimType != TypeInvalidPath || !strings.Contains(se.Detail, "is the schema of") {
				t.Fatalf("err = %v, want 400 invalidPath saying whose schema it is", err)
			}
		})
	}
	bodies := []struct{ name, typ, body string }{
		{"Group schema object on a User", UserType, `{"userName":"ada","urn:ietf:params:scim:schemas:core:2.0:Group":{"displayName":"x"}}`},
		{"flat Group key on a User", UserType, `{"userName":"ada","` + groupAttr + `":"x"}`},
		{"Group in a User's schemas", UserType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:core:2.0:Group"],"userName":"ada"}`},
		{"enterprise extension on a Group", GroupType, `{"displayName":"g","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"x"}}`},
		{"flat enterprise key on a Group", GroupType, `{"displayName":"g","` + entAttr + `":"x"}`},
	}
	for _, tc := range bodies {
		t.Run("POST "+tc.name, func(t *testing.T) {
			_, err := PrepareResource(tc.typ, mustDecodeObject(t, json.RawMessage(tc.body)))
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 || se.ScimType != TypeInvalidValue || !strings.Contains(se.Detail, "is the schema of") {
				t.Fatalf("err = %v, want 400 invalidValue saying whose schema it is", err)
			}
		})
	}
	// What stays accepted: the type's own schemas, custom extensions, Entra's ADSCIM group
	// schema.
	for _, body := range []struct{ typ, body string }{
		{UserType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"userName":"ada","` + entAttr + `":"x","urn:ietf:params:scim:schemas:core:2.0:User:title":"T","urn:ietf:params:scim:schemas:extension:Custom:2.0:User:tag":"t"}`},
		{GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],"displayName":"g","urn:ietf:params:scim:schemas:extension:Custom:2.0:Group:tag":"t"}`},
	} {
		if _, err := PrepareResource(body.typ, mustDecodeObject(t, json.RawMessage(body.body))); err != nil {
			t.Errorf("PrepareResource(%s, %s): %v", body.typ, body.body, err)
		}
	}
	ops := `[{"op":"Add","path":"` + entAttr + `","value":"Retail"},{"op":"replace","value":{"urn:ietf:params:scim:schemas:core:2.0:User:title":"T","urn:ietf:params:scim:schemas:extension:Custom:2.0:User:tag":"t"}}]`
	if _, _, err := parseAndApply(UserType, map[string]any{"userName": "ada"}, mustDecode(t, json.RawMessage(`{"Operations":`+ops+`}`)), PatchOptions{}); err != nil {
		t.Errorf("a User's own schemas: %v", err)
	}
}
