package scim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// sharedAgrees checks that ApplyPatchShared gives what ApplyPatch gives (the document, the
// member delta, the error), that a kept result is r itself, and that r is left as it was.
func sharedAgrees(t *testing.T, resourceType string, r Resource, ops []PatchOp) (kept bool) {
	t.Helper()
	orig := canonicalJSON(t, r)
	want, wantDelta, wantErr := ApplyPatch(resourceType, r, ops, PatchOptions{})
	got, delta, kept, err := ApplyPatchShared(resourceType, r, ops, PatchOptions{})
	if !reflect.DeepEqual(err, wantErr) {
		t.Fatalf("error %v, ApplyPatch's %v", err, wantErr)
	}
	if err != nil {
		if kept {
			t.Fatal("kept a patch that fails")
		}
		return false
	}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(delta, wantDelta) {
		t.Fatalf("ApplyPatchShared gave %v (delta %+v), ApplyPatch %v (delta %+v)", got, delta, want, wantDelta)
	}
	if kept && reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(r).UnsafePointer() {
		t.Fatal("kept, but the result is a copy")
	}
	if g := canonicalJSON(t, r); g != orig {
		t.Fatalf("the resource changed:\n got  %s\n want %s", g, orig)
	}
	return kept
}

// TestApplyPatchSharedAgrees (issue 18): on every PATCH fixture, and on each fixture's
// patch applied again to its own result (often a no-op), ApplyPatchShared answers what
// ApplyPatch answers.
func TestApplyPatchSharedAgrees(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "patch", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("fixtures: %v", err)
	}
	keptAgain := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var fx patchFixture
		if err := json.Unmarshal(data, &fx); err != nil {
			t.Fatal(err)
		}
		ops, err := ParsePatch(mustDecode(t, fx.Patch))
		if err != nil {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			before := mustDecodeObject(t, fx.Before)
			sharedAgrees(t, fx.ResourceType, before, ops)
			after, _, err := ApplyPatch(fx.ResourceType, before, ops, PatchOptions{})
			if err != nil {
				return
			}
			if sharedAgrees(t, fx.ResourceType, after, ops) {
				keptAgain++
			}
		})
	}
	if keptAgain == 0 {
		t.Error("no fixture's patch was kept when applied to its own result")
	}
}

// TestApplyPatchSharedKeeps: the values Entra re-sends as the resource holds them, in both
// of its dialects, are kept (no copy); anything that may change the resource, or fails, is
// left to ApplyPatch.
func TestApplyPatchSharedKeeps(t *testing.T) {
	user := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],` +
		`"userName":"ada@contoso.example","active":true,"title":"Engineer","displayName":"Ada","name":{"givenName":"Ada","familyName":"Lovelace"},` +
		`"emails":[{"type":"work","value":"ada@contoso.example","primary":true}],"custom":"x",` +
		`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Research","manager":{"value":"m1"}}}`
	for _, tc := range []struct {
		name, typ, doc, ops string
		kept                bool
	}{
		{"active True with a path", UserType, user, `[{"op":"Replace","path":"active","value":"True"}]`, true},
		{"active without a path", UserType, user, `[{"op":"Replace","value":{"active":"True"}}]`, true},
		{"active as legacy list", UserType, user, `[{"op":"replace","path":"active","value":[{"$ref":null,"value":"True"}]}]`, true},
		{"several as they are", UserType, user, `[{"op":"Replace","value":{"title":"Engineer","name.givenName":"Ada",` +
			`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"Research"}},{"op":"add","path":"displayName","value":"Ada"}]`, true},
		{"extension object", UserType, user, `[{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User","value":{"department":"Research"}}]`, true},
		{"core URN key", UserType, user, `[{"op":"replace","value":{"urn:ietf:params:scim:schemas:core:2.0:User":{"title":"Engineer"}}}]`, true},
		{"complex merge", UserType, user, `[{"op":"replace","path":"name","value":{"familyName":"Lovelace"}}]`, true},
		{"key in another case", UserType, user, `[{"op":"replace","path":"TITLE","value":"Engineer"}]`, true},
		{"group displayName", GroupType, `{"displayName":"Sales"}`, `[{"op":"replace","path":"displayName","value":"Sales"}]`, true},

		{"active False", UserType, user, `[{"op":"Replace","path":"active","value":"False"}]`, false},
		{"title another case", UserType, user, `[{"op":"Replace","path":"title","value":"engineer"}]`, false},
		{"absent attribute", UserType, user, `[{"op":"add","path":"nickName","value":"A"}]`, false},
		{"one of two changes", UserType, user, `[{"op":"Replace","value":{"active":true,"title":"Manager"}}]`, false},
		{"complex merge unassigning", UserType, user, `[{"op":"replace","path":"name","value":{"familyName":"Lovelace","givenName":null}}]`, false},
		{"multi-valued", UserType, user, `[{"op":"add","path":"emails","value":[{"type":"work","value":"ada@contoso.example","primary":true}]}]`, false},
		{"filter", UserType, user, `[{"op":"replace","path":"emails[type eq \"work\"].value","value":"ada@contoso.example"}]`, false},
		{"manager", UserType, user, `[{"op":"replace","path":"manager","value":"m1"}]`, false},
		{"attribute stored verbatim", UserType, user, `[{"op":"replace","path":"custom","value":"x"}]`, false},
		{"remove", UserType, user, `[{"op":"remove","path":"nickName"}]`, false},
		{"null", UserType, user, `[{"op":"replace","path":"nickName","value":null}]`, false},
		{"read-only", UserType, user, `[{"op":"replace","path":"groups","value":"x"}]`, false},
		{"bad boolean", UserType, user, `[{"op":"replace","path":"active","value":"maybe"}]`, false},
		{"schemas", UserType, user, `[{"op":"replace","path":"schemas","value":["x"]}]`, false},
		{"flat key stored", UserType, `{"userName":"a","active":true,"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"R"}`,
			`[{"op":"replace","path":"active","value":true}]`, false},
		{"password stored", UserType, `{"userName":"a","active":true,"password":"p"}`, `[{"op":"replace","path":"active","value":true}]`, false},
		{"empty array stored", UserType, `{"userName":"a","active":true,"roles":[]}`, `[{"op":"replace","path":"active","value":true}]`, false},
		{"a primary email added", UserType, user, `[{"op":"add","path":"emails","value":[{"type":"home","value":"h@home.example","primary":"True"}]}]`, false},
		{"a primary email re-sent", UserType, user, `[{"op":"replace","path":"emails[type eq \"work\"].primary","value":"True"}]`, false},
		{"two primaries stored, title re-sent", UserType, `{"userName":"a","title":"T","emails":[{"value":"a@x","primary":true},{"value":"b@x","primary":true}]}`,
			`[{"op":"replace","path":"title","value":"T"}]`, true},
		{"group members", GroupType, `{"displayName":"Sales"}`, `[{"op":"add","path":"members","value":[{"value":"u1"}]}]`, false},
		{"group with members stored", GroupType, `{"displayName":"Sales","members":[{"value":"u1"}]}`, `[{"op":"replace","path":"displayName","value":"Sales"}]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := mustDecodeObject(t, json.RawMessage(tc.doc))
			ops, err := ParsePatch(mustDecode(t, json.RawMessage(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":`+tc.ops+`}`)))
			if err != nil {
				t.Fatal(err)
			}
			kept := sharedAgrees(t, tc.typ, doc, ops)
			if kept != tc.kept {
				t.Errorf("kept %v, want %v", kept, tc.kept)
			}
			if kept && len(WithoutWriteOnly(tc.typ, doc)) != len(doc) {
				t.Error("kept a document holding a write-only attribute")
			}
		})
	}
}

// TestProjectionLeavesNestedValues: excludedAttributes drops from copies of the objects
// below the top level, so a rendered resource may share them with one still in use.
func TestProjectionLeavesNestedValues(t *testing.T) {
	const doc = `{"id":"u1","userName":"a","name":{"givenName":"A","familyName":"B"},"emails":[{"type":"work","value":"a@b.c"}],` +
		`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"R","costCenter":"C"}}`
	shared := mustDecodeObject(t, json.RawMessage(doc))
	p, err := ParseProjection("", "name.givenName,emails.type,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
	if err != nil {
		t.Fatal(err)
	}
	r := Resource{}
	for k, v := range shared {
		r[k] = v
	}
	got := canonicalJSON(t, p.Apply(UserType, r))
	want := `{"emails":[{"value":"a@b.c"}],"id":"u1","name":{"familyName":"B"},"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"costCenter":"C"},"userName":"a"}`
	if got != want {
		t.Errorf("projected:\n got  %s\n want %s", got, want)
	}
	if g, w := canonicalJSON(t, shared), canonicalJSON(t, mustDecodeObject(t, json.RawMessage(doc))); g != w {
		t.Errorf("the projection changed the objects it shares:\n got  %s\n want %s", g, w)
	}
}

// TestParsePatchPathPlainName: a plain attribute name is the Path ParsePath makes of it.
func TestParsePatchPathPlainName(t *testing.T) {
	for _, s := range []string{"active", "userName", "x", "x-y_z9", "A1"} {
		got, err := parsePatchPath(s)
		want, werr := ParsePath(s)
		if err != nil || werr != nil || !reflect.DeepEqual(*got, want) {
			t.Errorf("%q: %+v %v, ParsePath %+v %v", s, got, err, want, werr)
		}
	}
}
