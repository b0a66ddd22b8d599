package scim

import (
	"reflect"
	"testing"
)

// TestManagerStoredAsValueOnly: however the enterprise manager arrives (a bare id, an object,
// Tutorial Example 5's array with $ref, the legacy [{"$ref": null, "value": id}], flat or
// nested, with or without a path, in either of Entra's dialects), POST, PUT and PATCH keep
// {"value": id} alone: a client's $ref (which could point anywhere) and displayName
// (read-only) are never stored, so never returned.
func TestManagerStoredAsValueOnly(t *testing.T) {
	const mgrPath = EnterpriseUserSchema + ":manager"
	evil := map[string]any{"value": "abc", "$ref": "javascript:alert(1)", "displayName": "Fake Boss"}
	want := map[string]any{"value": "abc"}

	t.Run("POST and PUT", func(t *testing.T) {
		bodies := []struct {
			name string
			body map[string]any
		}{
			{"object with $ref and displayName", map[string]any{EnterpriseUserSchema: map[string]any{"manager": evil}}},
			{"array with $ref", map[string]any{EnterpriseUserSchema: map[string]any{"manager": []any{map[string]any{"$ref": "https://evil.example/phish", "value": "abc"}}}}},
			{"flat URN key", map[string]any{mgrPath: map[string]any{"value": "abc", "$ref": "https://evil.example/phish"}}},
			{"flat $ref sub-attribute", map[string]any{mgrPath + ".$ref": "https://evil.example/phish", EnterpriseUserSchema: map[string]any{"manager": map[string]any{"value": "abc"}}}},
			{"bare id", map[string]any{EnterpriseUserSchema: map[string]any{"manager": "abc"}}},
			{"key case", map[string]any{EnterpriseUserSchema: map[string]any{"Manager": map[string]any{"Value": "abc", "$REF": "x", "DisplayName": "y"}}}},
		}
		for _, b := range bodies {
			t.Run(b.name, func(t *testing.T) {
				body := CloneResource(b.body)
				body["userName"] = "rita@contoso.example"
				p, err := PrepareResource(UserType, body)
				if err != nil {
					t.Fatal(err)
				}
				ext, _ := Get(p.Doc, EnterpriseUserSchema)
				got, _ := Get(ext.(map[string]any), "manager")
				if !reflect.DeepEqual(got, want) {
					t.Errorf("stored manager %v, want %v", got, want)
				}
			})
		}
	})

	t.Run("PATCH", func(t *testing.T) {
		before := Resource{"userName": "rita@contoso.example",
			EnterpriseUserSchema: map[string]any{"manager": map[string]any{"value": "old"}}}
		ops := []struct {
			name string
			op   map[string]any
		}{
			{"Tutorial Example 5", map[string]any{"op": "Add", "path": "manager", "value": []any{map[string]any{"$ref": "https://evil.example/phish", "value": "abc"}}}},
			{"full path object", map[string]any{"op": "replace", "path": mgrPath, "value": evil}},
			{"full path, legacy $ref null", map[string]any{"op": "Replace", "path": mgrPath, "value": []any{map[string]any{"$ref": nil, "value": "abc"}}}},
			{"bare id", map[string]any{"op": "Add", "path": mgrPath, "value": "abc"}},
			{"path-less, URN key", map[string]any{"op": "replace", "value": map[string]any{mgrPath: evil}}},
			{"path-less, extension object", map[string]any{"op": "add", "value": map[string]any{EnterpriseUserSchema: map[string]any{"manager": evil}}}},
			{"extension path", map[string]any{"op": "Replace", "path": EnterpriseUserSchema, "value": map[string]any{"manager": evil}}},
			{"manager.value", map[string]any{"op": "replace", "path": mgrPath + ".value", "value": "abc"}},
		}
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				got, _, err := parseAndApply(UserType, before, map[string]any{"Operations": []any{o.op}}, PatchOptions{})
				if err != nil {
					t.Fatal(err)
				}
				ext, _ := Get(got, EnterpriseUserSchema)
				m, _ := Get(ext.(map[string]any), "manager")
				if !reflect.DeepEqual(m, want) {
					t.Errorf("stored manager %v, want %v", m, want)
				}
			})
		}
	})

	t.Run("PATCH manager.$ref", func(t *testing.T) {
		legacy := Resource{"userName": "rita@contoso.example",
			EnterpriseUserSchema: map[string]any{"manager": map[string]any{"value": "abc", "$ref": "https://evil.example/old"}}}
		for _, op := range []string{"add", "Replace"} {
			got, _, err := parseAndApply(UserType, legacy, map[string]any{"Operations": []any{
				map[string]any{"op": "remove", "path": "manager.$ref"},
				map[string]any{"op": op, "path": mgrPath + ".$ref", "value": "https://evil.example/phish"},
			}}, PatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ext, _ := Get(got, EnterpriseUserSchema)
			if m, _ := Get(ext.(map[string]any), "manager"); !reflect.DeepEqual(m, want) {
				t.Errorf("%s manager.$ref: stored manager %v, want %v", op, m, want)
			}
		}
	})
}
