package scim

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// patchFixture is one testdata/patch/*.json case: a resource before, a PATCH body, and
// either the resource after (with the Group member delta) or the expected error.
type patchFixture struct {
	Description    string          `json:"description"`
	ResourceType   string          `json:"resourceType"`
	MembersReplace string          `json:"membersReplace"` // "exact" or "" (merge)
	Before         json.RawMessage `json:"before"`
	Patch          json.RawMessage `json:"patch"`
	After          json.RawMessage `json:"after"`
	Delta          *fixtureDelta   `json:"delta"`
	Error          *fixtureError   `json:"error"`
}

type fixtureDelta struct {
	Add       []fixtureMember `json:"add"`
	Remove    []string        `json:"remove"`
	RemoveAll bool            `json:"removeAll"`
}

type fixtureMember struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Display string `json:"display,omitempty"`
	Ref     string `json:"$ref,omitempty"`
}

type fixtureError struct {
	Status   int    `json:"status"`
	ScimType string `json:"scimType"`
	Detail   string `json:"detail"` // a substring the detail must contain
}

func TestPatchFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "patch", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("found %d fixtures in testdata/patch; expected the full set", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			runPatchFixture(t, file)
		})
	}
}

func runPatchFixture(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var fx patchFixture
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatalf("reading fixture: %v", err)
	}
	if (fx.Error == nil) == (fx.After == nil) {
		t.Fatal("a fixture needs exactly one of \"after\" and \"error\"")
	}
	before := mustDecodeObject(t, fx.Before)
	body := mustDecode(t, fx.Patch)
	opts := PatchOptions{}
	if fx.MembersReplace == "exact" {
		opts.MembersReplace = MembersReplaceExact
	}

	got, delta, err := parseAndApply(fx.ResourceType, before, body, opts)
	if fx.Error != nil {
		checkFixtureError(t, err, fx.Error)
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if g, w := canonicalJSON(t, got), canonicalJSON(t, mustDecode(t, fx.After)); g != w {
		t.Errorf("after:\n got  %s\n want %s", g, w)
	}
	checkFixtureDelta(t, fx.ResourceType, delta, fx.Delta)

	// Neither the resource nor the body may be modified, and a second computation (a
	// bbolt Batch function can run twice) must give the same result.
	if g, w := canonicalJSON(t, before), canonicalJSON(t, mustDecode(t, fx.Before)); g != w {
		t.Errorf("ApplyPatch modified its input resource:\n got  %s\n want %s", g, w)
	}
	if g, w := canonicalJSON(t, body), canonicalJSON(t, mustDecode(t, fx.Patch)); g != w {
		t.Errorf("ParsePatch/ApplyPatch modified the body:\n got  %s\n want %s", g, w)
	}
	again, delta2, err := parseAndApply(fx.ResourceType, before, body, opts)
	if err != nil || canonicalJSON(t, again) != canonicalJSON(t, got) || !reflect.DeepEqual(delta, delta2) {
		t.Errorf("second application differs: %v", err)
	}
}

func parseAndApply(resourceType string, before Resource, body any, opts PatchOptions) (Resource, *MemberDelta, error) {
	ops, err := ParsePatch(body)
	if err != nil {
		return nil, nil, err
	}
	return ApplyPatch(resourceType, before, ops, opts)
}

func checkFixtureError(t *testing.T, err error, want *fixtureError) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("got error %v (%T), want a *scim.Error %d %s", err, err, want.Status, want.ScimType)
	}
	t.Logf("detail: %s", se.Detail)
	if se.Status != want.Status || se.ScimType != want.ScimType {
		t.Errorf("got %d %s (%s), want %d %s", se.Status, se.ScimType, se.Detail, want.Status, want.ScimType)
	}
	if !strings.Contains(se.Detail, want.Detail) {
		t.Errorf("detail %q does not mention %q", se.Detail, want.Detail)
	}
}

func checkFixtureDelta(t *testing.T, resourceType string, got *MemberDelta, want *fixtureDelta) {
	t.Helper()
	if resourceType != GroupType {
		if got != nil {
			t.Errorf("got a member delta %+v for a %s", got, resourceType)
		}
		return
	}
	if got == nil {
		t.Fatal("got no member delta for a Group")
	}
	if want == nil {
		want = &fixtureDelta{}
	}
	g := fixtureDelta{Remove: got.Remove, RemoveAll: got.RemoveAll}
	for _, m := range got.Add {
		g.Add = append(g.Add, fixtureMember(m))
	}
	if len(g.Add) == 0 && len(want.Add) == 0 {
		g.Add, want.Add = nil, nil
	}
	if len(g.Remove) == 0 && len(want.Remove) == 0 {
		g.Remove, want.Remove = nil, nil
	}
	if !reflect.DeepEqual(g, *want) {
		t.Errorf("delta:\n got  %+v\n want %+v", g, *want)
	}
}

func mustDecode(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	v, err := Decode(raw)
	if err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return v
}

func mustDecodeObject(t *testing.T, raw json.RawMessage) Resource {
	t.Helper()
	m, ok := mustDecode(t, raw).(map[string]any)
	if !ok {
		t.Fatalf("%s is not an object", raw)
	}
	return m
}

// canonicalJSON renders v with sorted keys, so that equal documents compare equal.
func canonicalJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParsePatchErrors(t *testing.T) {
	op := func(o map[string]any) map[string]any {
		return map[string]any{"schemas": []any{PatchOpSchema}, "Operations": []any{o}}
	}
	tooMany := make([]any, MaxPatchOps+1)
	for i := range tooMany {
		tooMany[i] = map[string]any{"op": "add", "path": "title", "value": "x"}
	}
	tests := []struct {
		name     string
		body     any
		scimType string
		detail   string
	}{
		{"not an object", []any{}, TypeInvalidSyntax, "JSON object"},
		{"null body", nil, TypeInvalidSyntax, "JSON object"},
		{"no operations", map[string]any{"schemas": []any{PatchOpSchema}}, TypeInvalidSyntax, "no \"Operations\""},
		{"operations not array", map[string]any{"Operations": map[string]any{}}, TypeInvalidSyntax, "must be an array"},
		{"empty operations", map[string]any{"Operations": []any{}}, TypeInvalidSyntax, "empty"},
		{"too many operations", map[string]any{"Operations": tooMany}, TypeInvalidSyntax, "at most 1000"},
		{"schemas wrong", map[string]any{"schemas": []any{UserSchema}, "Operations": []any{}}, TypeInvalidSyntax, PatchOpSchema},
		{"schemas not list", map[string]any{"schemas": 42, "Operations": []any{}}, TypeInvalidSyntax, PatchOpSchema},
		{"op not object", map[string]any{"Operations": []any{"add"}}, TypeInvalidSyntax, "Operations[0] must be an object"},
		{"op missing", op(map[string]any{"path": "title"}), TypeInvalidSyntax, "no \"op\""},
		{"op not string", op(map[string]any{"op": true}), TypeInvalidSyntax, "no \"op\""},
		{"op unknown", op(map[string]any{"op": "copy", "path": "title"}), TypeInvalidSyntax, "unknown op \"copy\""},
		{"path not string", op(map[string]any{"op": "add", "path": 3, "value": "x"}), TypeInvalidPath, "must be a string"},
		{"path invalid", op(map[string]any{"op": "add", "path": "emails[", "value": "x"}), TypeInvalidPath, "Operations[0] add emails["},
		{"path too long", op(map[string]any{"op": "add", "path": strings.Repeat("a", maxPatchPathLen+1), "value": "x"}), TypeInvalidPath, "at most"},
		{"remove without path", op(map[string]any{"op": "Remove"}), TypeNoTarget, "remove needs"},
		{"remove with empty path", op(map[string]any{"op": "remove", "path": "  "}), TypeNoTarget, "remove needs"},
		{"add without value", op(map[string]any{"op": "add"}), TypeInvalidValue, "object \"value\""},
		{"replace array without path", op(map[string]any{"op": "replace", "value": []any{}}), TypeInvalidValue, "object \"value\""},
		// add and replace with a path carry a value (RFC 7644 §3.5.2.1, §3.5.2.3), in both
		// dialects; without the key they used to unassign the attribute.
		{"Add path without value", op(map[string]any{"op": "Add", "path": "title"}), TypeInvalidValue, "Operations[0] add title needs a \"value\""},
		{"Replace path without value", op(map[string]any{"op": "Replace", "path": "name.givenName"}), TypeInvalidValue, "replace name.givenName needs a \"value\""},
		{"replace URN path without value", op(map[string]any{"op": "replace", "path": EnterpriseUserSchema + ":manager"}), TypeInvalidValue, "needs a \"value\""},
		{"replace filtered path without value", op(map[string]any{"op": "replace", "path": `emails[type eq "work"].value`}), TypeInvalidValue, "needs a \"value\""},
		{"replace extension without value", op(map[string]any{"op": "replace", "path": EnterpriseUserSchema}), TypeInvalidValue, "needs a \"value\""},
		{"add members without value", op(map[string]any{"op": "add", "path": "members"}), TypeInvalidValue, "needs a \"value\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePatch(tt.body)
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a *scim.Error", err)
			}
			if se.Status != 400 || se.ScimType != tt.scimType || !strings.Contains(se.Detail, tt.detail) {
				t.Errorf("got %d %s %q, want 400 %s containing %q", se.Status, se.ScimType, se.Detail, tt.scimType, tt.detail)
			}
		})
	}
}

func TestParsePatchAccepts(t *testing.T) {
	body := map[string]any{
		"SCHEMAS": PatchOpSchema,
		"operations": []any{
			map[string]any{"Op": "ADD", "PATH": "nickName", "Value": "Babs"},
			map[string]any{"op": "Replace", "value": map[string]any{"name.givenName": "B"}},
			map[string]any{"op": "remove", "path": EnterpriseUserSchema},
		},
	}
	ops, err := ParsePatch(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 3 {
		t.Fatalf("got %d ops", len(ops))
	}
	if ops[0].Op != PatchAdd || ops[0].RawPath != "nickName" || ops[0].Path == nil || ops[0].Path.Attr.Name != "nickName" || ops[0].Value != "Babs" {
		t.Errorf("op 0: %+v", ops[0])
	}
	if ops[1].Op != PatchReplace || ops[1].Path != nil || ops[1].RawPath != "" {
		t.Errorf("op 1: %+v", ops[1])
	}
	if ops[2].Path == nil || ops[2].Path.Attr.URN != EnterpriseUserSchema || ops[2].Path.Attr.Name != "" {
		t.Errorf("op 2 should name the whole extension: %+v", ops[2].Path)
	}
}

// TestParsePatchExplicitNullValue: an explicit "value": null (or "" for the manager) keeps
// its meaning, unassigning the attribute; only a missing "value" key is refused.
func TestParsePatchExplicitNullValue(t *testing.T) {
	before := Resource{"userName": "u", "title": "Boss", "name": map[string]any{"givenName": "Ann"},
		EnterpriseUserSchema: map[string]any{"department": "Sales", "manager": map[string]any{"value": "m1"}}}
	tests := []struct {
		name string
		op   map[string]any
		gone func(Resource) bool
	}{
		{"replace extension null", map[string]any{"op": "replace", "path": EnterpriseUserSchema, "value": nil},
			func(r Resource) bool { _, has := r[EnterpriseUserSchema]; return !has }},
		{"replace title null", map[string]any{"op": "Replace", "path": "title", "value": nil},
			func(r Resource) bool { _, has := r["title"]; return !has }},
		{"add sub-attribute null", map[string]any{"op": "add", "path": "name.givenName", "value": nil},
			func(r Resource) bool { _, has := r["name"]; return !has }},
		{"replace manager empty string", map[string]any{"op": "Replace", "path": EnterpriseUserSchema + ":manager", "value": ""}, noManager},
		{"replace manager null", map[string]any{"op": "replace", "path": "manager", "value": nil}, noManager},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := parseAndApply(UserType, before, map[string]any{"Operations": []any{tt.op}}, PatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.gone(got) {
				t.Errorf("the attribute is still there: %v", got)
			}
		})
	}
}

func noManager(r Resource) bool {
	ext, _ := r[EnterpriseUserSchema].(map[string]any)
	_, has := ext["manager"]
	return !has
}

func TestApplyPatchRejectsHandBuiltOps(t *testing.T) {
	tests := []struct {
		name     string
		op       PatchOp
		scimType string
	}{
		{"unknown op", PatchOp{Op: "merge", Value: map[string]any{}}, TypeInvalidSyntax},
		{"remove without path", PatchOp{Op: "Remove"}, TypeNoTarget},
		{"pathless not object", PatchOp{Op: "add", Value: "x"}, TypeInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ApplyPatch(UserType, Resource{}, []PatchOp{tt.op}, PatchOptions{})
			var se *Error
			if !errors.As(err, &se) || se.ScimType != tt.scimType {
				t.Fatalf("got %v, want 400 %s", err, tt.scimType)
			}
		})
	}
}

func TestApplyPatchNilResource(t *testing.T) {
	ops, err := ParsePatch(map[string]any{"Operations": []any{map[string]any{"op": "add", "path": "title", "value": "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, delta, err := ApplyPatch(UserType, nil, ops, PatchOptions{})
	if err != nil || delta != nil || got["title"] != "x" {
		t.Fatalf("got %v %v %v", got, delta, err)
	}
}

func TestNormalizeMembers(t *testing.T) {
	tests := []struct {
		name    string
		in      any
		want    []MemberRef
		wantErr string
	}{
		{"null", nil, []MemberRef{}, ""},
		{"bare string", "id1", []MemberRef{{Value: "id1"}}, ""},
		{"single object", map[string]any{"value": "id1", "displayName": "One"}, []MemberRef{{Value: "id1", Display: "One"}}, ""},
		{"display wins over displayName", []any{map[string]any{"Value": "id1", "display": "D", "displayName": "N", "TYPE": "group", "$ref": "https://x/Groups/id1"}},
			[]MemberRef{{Value: "id1", Type: "Group", Display: "D", Ref: "https://x/Groups/id1"}}, ""},
		{"null ref and null elements", []any{map[string]any{"$ref": nil, "value": "id1"}, nil, "id2"}, []MemberRef{{Value: "id1"}, {Value: "id2"}}, ""},
		{"duplicates keep first", []any{map[string]any{"value": "id1", "display": "first"}, "id1"}, []MemberRef{{Value: "id1", Display: "first"}}, ""},
		// A type the gateway has no resource for was kept here and dropped when stored.
		{"other type refused", []any{map[string]any{"value": "id1", "type": "Device"}}, nil, `members[0]: a member's type is User or Group, not "Device"`},
		{"null type and display", []any{map[string]any{"value": "id1", "type": nil, "display": nil}}, []MemberRef{{Value: "id1"}}, ""},
		{"unknown sub-attribute refused", []any{"ok", map[string]any{"value": "id1", "primary": true}}, nil, `members[1]: a member has no sub-attribute "primary"`},
		{"SCIM 1.1 operation refused, not read as an add", []any{map[string]any{"value": "id1", "operation": "delete"}}, nil, `"operation"`},
		{"display not a string", []any{map[string]any{"value": "id1", "display": json.Number("5")}}, nil, `members[0]: a member's "display" must be a string`},
		{"$ref not a string", []any{map[string]any{"value": "id1", "$ref": map[string]any{}}}, nil, `"$ref" must be a string`},
		{"missing value", []any{map[string]any{"display": "x"}}, nil, "members[0]"},
		{"numeric value", []any{"ok", map[string]any{"value": json.Number("7")}}, nil, "members[1]"},
		{"empty string", []any{"  "}, nil, "members[0]"},
		{"number element", []any{json.Number("1")}, nil, "members[0]"},
		{"bool", true, nil, "members[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeMembers(tt.in)
			if tt.wantErr != "" {
				var se *Error
				if !errors.As(err, &se) || se.ScimType != TypeInvalidValue || !strings.Contains(se.Detail, tt.wantErr) {
					t.Fatalf("got %v, want invalidValue mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNormalizeBooleans(t *testing.T) {
	doc := mustDecodeObject(t, json.RawMessage(`{
		"active": "False",
		"emails": [{"value": "a@b.c", "primary": "TRUE"}, {"value": "x@y.z", "primary": true}],
		"roles": [{"primary": "True", "value": "{\"id\":\"1\"}"}],
		"addresses": [{"primary": "false"}],
		"name": {"givenName": "True"},
		"title": "True",
		"custom": "False",
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "True"}
	}`))
	if err := NormalizeBooleans(UserType, doc); err != nil {
		t.Fatal(err)
	}
	want := mustDecode(t, json.RawMessage(`{
		"active": false,
		"emails": [{"value": "a@b.c", "primary": true}, {"value": "x@y.z", "primary": true}],
		"roles": [{"primary": true, "value": "{\"id\":\"1\"}"}],
		"addresses": [{"primary": false}],
		"name": {"givenName": "True"},
		"title": "True",
		"custom": "False",
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "True"}
	}`))
	if g, w := canonicalJSON(t, doc), canonicalJSON(t, want); g != w {
		t.Errorf("got  %s\nwant %s", g, w)
	}

	for _, bad := range []string{`{"active": "yes"}`, `{"active": 1}`, `{"emails": [{"primary": "no"}]}`, `{"active": {"value": true}}`} {
		err := NormalizeBooleans(UserType, mustDecodeObject(t, json.RawMessage(bad)))
		var se *Error
		if !errors.As(err, &se) || se.ScimType != TypeInvalidValue {
			t.Errorf("%s: got %v, want 400 invalidValue", bad, err)
		}
	}
	if err := NormalizeBooleans("Device", Resource{"active": "maybe"}); err != nil {
		t.Errorf("unknown resource type: %v", err)
	}
}

func TestMatchElement(t *testing.T) {
	emails, _ := FindAttr(UserType, AttrPath{Name: "emails"})
	elem := map[string]any{"type": "Work", "value": "A@Contoso.com", "primary": "True", "n": json.Number("5")}
	tests := []struct {
		filter string
		want   bool
	}{
		{`type eq "work"`, true},
		{`type ne "work"`, false},
		{`value sw "a@"`, true},
		{`value ew "CONTOSO.COM"`, true},
		{`value co "contoso"`, true},
		{`primary eq true`, true},
		{`primary eq false`, false},
		{`display pr`, false},
		{`value pr`, true},
		{`display eq null`, true},
		{`display ne "x"`, true},
		{`n gt 4`, true},
		{`n le 4`, false},
		{`type eq "work" and not (primary eq false)`, true},
		{`type eq "home" or value eq "a@contoso.com"`, true},
		{`type gt "v"`, true},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.filter)
		if err != nil {
			t.Fatalf("%s: %v", tt.filter, err)
		}
		if got := matchElement(f, elem, emails); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.filter, got, tt.want)
		}
	}
}

func TestMemberIntentOrder(t *testing.T) {
	mi := newMemberIntent()
	mi.add(MemberRef{Value: "a"})
	mi.remove("a")
	mi.add(MemberRef{Value: "a", Display: "again"})
	mi.remove("b")
	mi.add(MemberRef{Value: "b"})
	mi.remove("b")
	want := &MemberDelta{Add: []MemberRef{{Value: "a", Display: "again"}}, Remove: []string{"b"}}
	if got := mi.delta(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// BenchmarkApplyPatch measures a typical Entra user update (default dialect plus a
// path-less flag-mode op) against the baseline of the deep copy alone, which every PATCH
// pays; compare the two ns/op figures.
func BenchmarkApplyPatch(b *testing.B) {
	before, _ := Decode([]byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		"id":"2819c223","userName":"bjensen@contoso.com","active":true,"displayName":"Barbara Jensen",
		"emails":[{"type":"work","value":"bjensen@contoso.com","primary":true},{"type":"other","value":"smtp:b@contoso.com"}],
		"name":{"givenName":"Barbara","familyName":"Jensen"},
		"phoneNumbers":[{"type":"work","value":"555-0100"},{"type":"mobile","value":"555-0101"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Tour","manager":{"value":"m1"}}}`))
	body, _ := Decode([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
		{"op":"Replace","path":"emails[type eq \"work\"].value","value":"bj@contoso.com"},
		{"op":"Replace","path":"name.familyName","value":"Jensen-Smith"},
		{"op":"Replace","path":"active","value":"False"},
		{"op":"Add","path":"phoneNumbers[type eq \"fax\"].value","value":"555-0199"},
		{"op":"replace","value":{"displayName":"BJ","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"Sales"}}]}`))
	r := before.(map[string]any)
	ops, err := ParsePatch(body)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline-clone", func(b *testing.B) {
		for b.Loop() {
			_ = CloneResource(r)
		}
	})
	b.Run("apply", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := ApplyPatch(UserType, r, ops, PatchOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("max-ops-append", func(b *testing.B) {
		// The worst case a client controls: MaxPatchOps adds to one growing list.
		list := make([]any, MaxPatchOps)
		for i := range list {
			list[i] = map[string]any{"op": "add", "path": "emails", "value": []any{map[string]any{"type": "work", "value": strconv.Itoa(i) + "@contoso.com"}}}
		}
		many, err := ParsePatch(map[string]any{"Operations": list})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, _, err := ApplyPatch(UserType, r, many, PatchOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse+apply", func(b *testing.B) {
		for b.Loop() {
			ops, _ := ParsePatch(body)
			if _, _, err := ApplyPatch(UserType, r, ops, PatchOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzApplyPatch feeds arbitrary PATCH bodies, as the handler would after CheckJSON, to
// ParsePatch and ApplyPatch on a User and a Group: no input may panic, every error must
// be a 400 *Error, and a Group document must never gain members.
func FuzzApplyPatch(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "patch", "*.json"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var fx patchFixture
		if err := json.Unmarshal(data, &fx); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(fx.Patch))
	}
	user, _ := Decode([]byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"u1","userName":"a","active":true,
		"emails":[{"type":"work","value":"a@b.c","primary":true},"odd"],"name":{"givenName":"A"},"roles":[{"value":"r"}],"title":"t",
		"custom":[1,{"value":"x"}],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"m"},"department":"d"}}`))
	group, _ := Decode([]byte(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"id":"g1","displayName":"G","members":[{"value":"u1"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if CheckJSON(data, DefaultMaxJSONDepth) != nil {
			return
		}
		body, err := Decode(data)
		if err != nil {
			return
		}
		ops, err := ParsePatch(body)
		if err != nil {
			requireBadRequest(t, err)
			return
		}
		for _, mode := range []MembersReplaceMode{MembersReplaceMerge, MembersReplaceExact} {
			if _, _, err := ApplyPatch(UserType, user.(map[string]any), ops, PatchOptions{MembersReplace: mode}); err != nil {
				requireBadRequest(t, err)
			}
			g, _, err := ApplyPatch(GroupType, group.(map[string]any), ops, PatchOptions{MembersReplace: mode})
			if err != nil {
				requireBadRequest(t, err)
			} else if _, has := Get(g, "members"); has {
				t.Fatalf("the Group document kept members: %v", g)
			}
		}
	})
}

func requireBadRequest(t *testing.T, err error) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) || se.Status != 400 || se.ScimType == "" || se.Detail == "" {
		t.Fatalf("got %v, want a 400 *scim.Error with scimType and detail", err)
	}
}

// TestApplyPatchCopyBudget: one large object written into every matching element must
// not multiply memory without bound.
func TestApplyPatchCopyBudget(t *testing.T) {
	emails := make([]any, 100)
	for i := range emails {
		emails[i] = map[string]any{"type": "work", "value": strconv.Itoa(i)}
	}
	big := map[string]any{"type": "work", "value": strings.Repeat("x", 200<<10)}
	ops := []PatchOp{{Op: PatchReplace, RawPath: `emails[type eq "work"]`, Value: big}}
	p, err := ParsePath(ops[0].RawPath)
	if err != nil {
		t.Fatal(err)
	}
	ops[0].Path = &p
	_, _, err = ApplyPatch(UserType, Resource{"emails": emails}, ops, PatchOptions{})
	var se *Error
	if !errors.As(err, &se) || se.ScimType != TypeInvalidValue || !strings.Contains(se.Detail, "MiB") {
		t.Fatalf("got %v, want 400 invalidValue about the copy budget", err)
	}
	// The same value into a few elements is fine.
	got, _, err := ApplyPatch(UserType, Resource{"emails": emails[:3]}, ops, PatchOptions{})
	if err != nil || len(got["emails"].([]any)) != 3 {
		t.Fatalf("got %v", err)
	}
}
