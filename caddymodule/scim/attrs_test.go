package scim

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// attrsEntraUser is the SCIM Validator's full Entra user (entra-wire.md §2.2) as the
// gateway stores it, plus what a real tenant adds: id, meta, a custom extension and a
// numeric custom attribute.
const attrsEntraUser = `{
 "id":"2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2","externalId":"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
 "userName":"julien.vonrueden@ondricka.us","active":true,"displayName":"NDSQQTECVAAC","title":"CJSGUNOAAMMQ",
 "emails":[{"type":"work","value":"thaddeus@hammes.info","primary":true}],"preferredLanguage":"hi",
 "name":{"givenName":"Elfrieda","familyName":"Urban","formatted":"Myah","middleName":"Cindy","honorificPrefix":"Minerva","honorificSuffix":"Micaela"},
 "addresses":[{"type":"work","formatted":"ZQEHBLETAAQE","streetAddress":"25928 Katlyn Row","locality":"YRAKBQCGOHZF","region":"XCCVLAIDMQYR","postalCode":"cx47 4mz","primary":true,"country":"Sierra Leone"}],
 "phoneNumbers":[{"type":"work","value":"10-040-1308","primary":true},{"type":"mobile","value":"10-040-1308"},{"type":"fax","value":"10-040-1308"}],
 "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"OXYYEGWVLTGW","department":"ZYWTBPDFHIIP","costCenter":"ASHTVSKANCGL","organization":"DPQRRHJMBXZE","division":"WXNFEJQDRAVI","manager":{"value":"XYMKVVRYDIOO"}},
 "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User":{"tag":"blue","badge":4711},
 "roles":[{"primary":true,"display":"MRONYWGFFHXQ","value":"WDEIISGWWQBE","type":"XVTUOHMYUFRL"}],
 "userType":"GZILLRZCFPNC","nickName":"FOGSIQTKHIPG","locale":"RJWNTUNNOHNZ","timezone":"America/Guayaquil","profileUrl":"BAPNQLJSRQGD",
 "meta":{"resourceType":"User","created":"2024-05-01T10:00:00Z","lastModified":"2024-05-02T10:00:00Z","version":"W/\"3\""},
 "schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]}`

const (
	entURN    = EnterpriseUserSchema
	customURN = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
)

func attrsDecode(t testing.TB, s string) Resource {
	t.Helper()
	v, err := Decode([]byte(s))
	if err != nil {
		t.Fatalf("decoding %s: %v", s, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is not an object", s)
	}
	return m
}

// attrsJSON renders v with sorted keys (encoding/json sorts map keys) and json.Number as
// written, so equal documents render equally.
func attrsJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %v: %v", v, err)
	}
	return string(b)
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, rt, in, want string
	}{
		{
			name: "core attributes and sub-attributes in any case",
			rt:   UserType,
			in:   `{"USERNAME":"a","Name":{"GIVENNAME":"g","familyname":"f"},"ACTIVE":true,"displayname":"d"}`,
			want: `{"userName":"a","name":{"givenName":"g","familyName":"f"},"active":true,"displayName":"d"}`,
		},
		{
			name: "every element of multi-valued attributes",
			rt:   UserType,
			in:   `{"EMAILS":[{"VALUE":"a@x","Type":"work","PRIMARY":true},{"value":"b@x","DISPLAY":"B"}],"phonenumbers":[{"Value":"1"}],"Addresses":[{"STREETADDRESS":"s","POSTALCODE":"p"}]}`,
			want: `{"emails":[{"value":"a@x","type":"work","primary":true},{"value":"b@x","display":"B"}],"phoneNumbers":[{"value":"1"}],"addresses":[{"streetAddress":"s","postalCode":"p"}]}`,
		},
		{
			name: "common attributes and schemas",
			rt:   UserType,
			in:   `{"ID":"1","EXTERNALID":"e","META":{"RESOURCETYPE":"User","lastmodified":"t","Version":"v"},"SCHEMAS":["urn:ietf:params:scim:schemas:core:2.0:User"]}`,
			want: `{"id":"1","externalId":"e","meta":{"resourceType":"User","lastModified":"t","version":"v"},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}`,
		},
		{
			name: "enterprise extension URN and its attributes",
			rt:   UserType,
			in:   `{"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER":{"DEPARTMENT":"d","Manager":{"VALUE":"m","$REF":"r","DISPLAYNAME":"n"},"employeenumber":"7"}}`,
			want: `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"d","manager":{"value":"m","$ref":"r","displayName":"n"},"employeeNumber":"7"}}`,
		},
		{
			name: "manager in Entra's one-element array form",
			rt:   UserType,
			in:   `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:user":{"MANAGER":[{"Value":"m"}]}}`,
			want: `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":[{"value":"m"}]}}`,
		},
		{
			name: "unknown attributes, custom extensions and their attributes keep their spelling",
			rt:   UserType,
			in:   `{"FooBar":{"X":1},"urn:IETF:params:scim:schemas:extension:CustomExtensionName:2.0:User":{"TAG":"t"},"Name":{"NickNAME":"n"}}`,
			want: `{"FooBar":{"X":1},"urn:IETF:params:scim:schemas:extension:CustomExtensionName:2.0:User":{"TAG":"t"},"name":{"NickNAME":"n"}}`,
		},
		{
			name: "extension attributes at the root are not moved",
			rt:   UserType,
			in:   `{"DEPARTMENT":"d"}`,
			want: `{"DEPARTMENT":"d"}`,
		},
		{
			name: "group attributes and members",
			rt:   "group",
			in:   `{"DISPLAYNAME":"g","Members":[{"VALUE":"1","$Ref":"r","TYPE":"User","Display":"u"}],"userName":"x"}`,
			want: `{"displayName":"g","members":[{"value":"1","$ref":"r","type":"User","display":"u"}],"userName":"x"}`,
		},
		{
			name: "the enterprise extension is not a Group's",
			rt:   GroupType,
			in:   `{"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER":{"DEPARTMENT":"d"}}`,
			want: `{"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER":{"DEPARTMENT":"d"}}`,
		},
		{
			name: "values of the wrong shape are copied as they are",
			rt:   UserType,
			in:   `{"NAME":"plain","EMAILS":["a@x",3,null,[{"VALUE":"v"}]],"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER":"x","Meta":[{"CREATED":"c"}]}`,
			want: `{"name":"plain","emails":["a@x",3,null,[{"value":"v"}]],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":"x","meta":[{"created":"c"}]}`,
		},
		{
			name: "unknown resource type copies verbatim",
			rt:   "Device",
			in:   `{"USERNAME":"a","Name":{"GIVENNAME":"g"}}`,
			want: `{"USERNAME":"a","Name":{"GIVENNAME":"g"}}`,
		},
		{
			name: "numbers are kept as written",
			rt:   UserType,
			in:   `{"Custom":12345678901234567890,"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"EMPLOYEENUMBER":1.50}}`,
			want: `{"Custom":12345678901234567890,"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":1.50}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := attrsDecode(t, tt.in)
			before := attrsJSON(t, in)
			got := Canonical(tt.rt, in)
			if g, w := attrsJSON(t, got), attrsJSON(t, attrsDecode(t, tt.want)); g != w {
				t.Errorf("Canonical(%s)\n got %s\nwant %s", tt.in, g, w)
			}
			if after := attrsJSON(t, in); after != before {
				t.Errorf("Canonical changed its input:\n got %s\nwant %s", after, before)
			}
		})
	}
}

func TestCanonicalNil(t *testing.T) {
	if got := Canonical(UserType, nil); got != nil {
		t.Errorf("Canonical(nil) = %v, want nil", got)
	}
}

// TestCanonicalClash builds objects whose keys fold to one canonical name. Map order is
// random, so each case runs many times: a winner that depended on iteration order would
// show up as a flaky mismatch.
func TestCanonicalClash(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "the canonical spelling wins",
			in:   `{"USERNAME":"b","userName":"a","UserName":"c"}`,
			want: `{"userName":"a"}`,
		},
		{
			name: "else the smallest key wins",
			in:   `{"UserName":"c","USERNAME":"b","username":"d"}`,
			want: `{"userName":"b"}`,
		},
		{
			name: "inside elements and complex values",
			in:   `{"emails":[{"Value":"y","VALUE":"x"}],"name":{"givenname":"2","GivenName":"1"}}`,
			want: `{"emails":[{"value":"x"}],"name":{"givenName":"1"}}`,
		},
		{
			name: "extension URNs and their attributes",
			in:   `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:user":{"DEPARTMENT":"b"},"URN:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"Department":"a","department":"c"}}`,
			want: `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"c"}}`,
		},
		{
			name: "case variants of unknown names are kept apart",
			in:   `{"foo":"1","FOO":"2"}`,
			want: `{"foo":"1","FOO":"2"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := attrsDecode(t, tt.in)
			want := attrsJSON(t, attrsDecode(t, tt.want))
			for range 50 {
				if got := attrsJSON(t, Canonical(UserType, in)); got != want {
					t.Fatalf("Canonical(%s)\n got %s\nwant %s", tt.in, got, want)
				}
			}
		})
	}
}

func TestCanonicalNoAliasing(t *testing.T) {
	in := attrsDecode(t, attrsEntraUser)
	before := attrsJSON(t, in)
	got := Canonical(UserType, in)
	if g := attrsJSON(t, got); g != before {
		t.Fatalf("Canonical changed an already canonical user:\n got %s\nwant %s", g, before)
	}
	mutateEverything(got)
	if after := attrsJSON(t, in); after != before {
		t.Errorf("mutating Canonical's result changed its input:\n got %s\nwant %s", after, before)
	}
}

func TestCanonicalKeepsNumbers(t *testing.T) {
	in := attrsDecode(t, attrsEntraUser)
	got := Canonical(UserType, in)
	ext, _ := got[customURN].(map[string]any)
	if n, ok := ext["badge"].(json.Number); !ok || n != "4711" {
		t.Errorf("badge = %#v, want json.Number(\"4711\")", ext["badge"])
	}
}

// mutateEverything overwrites every value and appends to every list in v, reaching into
// every nested object and array, so that any structure shared with another value shows.
func mutateEverything(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			mutateEverything(e)
			if _, nested := e.(map[string]any); !nested {
				x[k] = "mutated"
			}
		}
		x["added"] = true
	case []any:
		for i, e := range x {
			mutateEverything(e)
			if _, nested := e.(map[string]any); !nested {
				x[i] = "mutated"
			}
		}
	}
}

func TestDropAttributes(t *testing.T) {
	tests := []struct {
		name    string
		rt      string
		in      string
		paths   []string
		want    string
		dropped []string
	}{
		{
			name:    "attributes in any case, stored in any case",
			rt:      UserType,
			in:      `{"id":"1","UserName":"a","title":"t","TITLE":"T","nickName":"n"}`,
			paths:   []string{"USERNAME", "title"},
			want:    `{"id":"1","nickName":"n"}`,
			dropped: []string{"USERNAME", "title"},
		},
		{
			name:    "sub-attribute of a complex attribute",
			rt:      UserType,
			in:      `{"name":{"givenName":"g","familyName":"f"}}`,
			paths:   []string{"Name.GIVENNAME"},
			want:    `{"name":{"familyName":"f"}}`,
			dropped: []string{"Name.GIVENNAME"},
		},
		{
			name:    "complex attribute left empty goes",
			rt:      UserType,
			in:      `{"userName":"u","name":{"givenName":"g"}}`,
			paths:   []string{"name.givenName"},
			want:    `{"userName":"u"}`,
			dropped: []string{"name.givenName"},
		},
		{
			name:    "sub-attribute of every element; emptied elements go",
			rt:      UserType,
			in:      `{"emails":[{"value":"a@x","display":"A"},{"DISPLAY":"B"},{"value":"c@x"},"odd"]}`,
			paths:   []string{"emails.display"},
			want:    `{"emails":[{"value":"a@x"},{"value":"c@x"},"odd"]}`,
			dropped: []string{"emails.display"},
		},
		{
			name:    "multi-valued attribute left without elements goes",
			rt:      UserType,
			in:      `{"userName":"u","phoneNumbers":[{"value":"1"},{"Value":"2"}]}`,
			paths:   []string{"phoneNumbers.value"},
			want:    `{"userName":"u"}`,
			dropped: []string{"phoneNumbers.value"},
		},
		{
			name:    "whole multi-valued attribute",
			rt:      UserType,
			in:      `{"userName":"u","emails":[{"value":"a@x"}]}`,
			paths:   []string{"emails"},
			want:    `{"userName":"u"}`,
			dropped: []string{"emails"},
		},
		{
			name:    "enterprise manager.value leaves the extension's other attributes",
			rt:      UserType,
			in:      `{"schemas":["` + UserSchema + `","` + entURN + `"],"` + entURN + `":{"department":"d","manager":{"value":"m"}}}`,
			paths:   []string{entURN + ":manager.value"},
			want:    `{"schemas":["` + UserSchema + `","` + entURN + `"],"` + entURN + `":{"department":"d"}}`,
			dropped: []string{entURN + ":manager.value"},
		},
		{
			name:    "extension left empty goes; schemas untouched",
			rt:      UserType,
			in:      `{"schemas":["` + UserSchema + `","` + entURN + `"],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:user":{"Department":"d"}}`,
			paths:   []string{"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:DEPARTMENT"},
			want:    `{"schemas":["` + UserSchema + `","` + entURN + `"]}`,
			dropped: []string{"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:DEPARTMENT"},
		},
		{
			name:    "unprefixed extension attributes are found in their extension",
			rt:      UserType,
			in:      `{"` + entURN + `":{"department":"d","manager":{"value":"m"},"costCenter":"c"}}`,
			paths:   []string{"department", "manager.value"},
			want:    `{"` + entURN + `":{"costCenter":"c"}}`,
			dropped: []string{"department", "manager.value"},
		},
		{
			name:    "unprefixed extension attribute also stored at the root",
			rt:      UserType,
			in:      `{"department":"root","` + entURN + `":{"department":"d"}}`,
			paths:   []string{"department"},
			want:    `{}`,
			dropped: []string{"department"},
		},
		{
			name:    "whole extension by its URN",
			rt:      UserType,
			in:      `{"userName":"u","` + entURN + `":{"department":"d"}}`,
			paths:   []string{strings.ToUpper(entURN)},
			want:    `{"userName":"u"}`,
			dropped: []string{strings.ToUpper(entURN)},
		},
		{
			name:    "custom extension attribute nested under its URN",
			rt:      UserType,
			in:      `{"` + customURN + `":{"tag":"t","badge":1}}`,
			paths:   []string{customURN + ":TAG"},
			want:    `{"` + customURN + `":{"badge":1}}`,
			dropped: []string{customURN + ":TAG"},
		},
		{
			name:    "custom extension left empty goes",
			rt:      UserType,
			in:      `{"userName":"u","` + customURN + `":{"tag":"t"}}`,
			paths:   []string{customURN + ":tag"},
			want:    `{"userName":"u"}`,
			dropped: []string{customURN + ":tag"},
		},
		{
			name:    "custom extension attribute stored as a flat key",
			rt:      UserType,
			in:      `{"userName":"u","` + customURN + `:tag":"t","` + customURN + `:loc":{"city":"c","zip":"z"}}`,
			paths:   []string{customURN + ":tag", customURN + ":LOC.zip"},
			want:    `{"userName":"u","` + customURN + `:loc":{"city":"c"}}`,
			dropped: []string{customURN + ":tag", customURN + ":LOC.zip"},
		},
		{
			name:    "whole custom extension by its URN",
			rt:      UserType,
			in:      `{"userName":"u","` + customURN + `":{"tag":"t"}}`,
			paths:   []string{customURN},
			want:    `{"userName":"u"}`,
			dropped: []string{customURN},
		},
		{
			name:    "core URN prefix names a root attribute",
			rt:      UserType,
			in:      `{"userName":"u","name":{"givenName":"g","familyName":"f"}}`,
			paths:   []string{UserSchema + ":name.familyName"},
			want:    `{"userName":"u","name":{"givenName":"g"}}`,
			dropped: []string{UserSchema + ":name.familyName"},
		},
		{
			name:    "group members' display",
			rt:      GroupType,
			in:      `{"displayName":"g","members":[{"value":"1","display":"a"},{"value":"2"}]}`,
			paths:   []string{"members.display"},
			want:    `{"displayName":"g","members":[{"value":"1"},{"value":"2"}]}`,
			dropped: []string{"members.display"},
		},
		{
			name: "absent paths are fine and not reported",
			rt:   UserType,
			in:   `{"userName":"u","name":{"givenName":"g"},"emails":[{"value":"a@x"}],"` + entURN + `":{"department":"d"}}`,
			paths: []string{
				"nickName", "emails.display", "name.middleName", "userName.x", entURN + ":costCenter",
				entURN + ":manager.value", customURN + ":tag", customURN, "urn:ietf:params:scim:schemas:core:2.0:Group:members",
			},
			want: `{"userName":"u","name":{"givenName":"g"},"emails":[{"value":"a@x"}],"` + entURN + `":{"department":"d"}}`,
		},
		{
			name:    "a path given twice is reported once",
			rt:      UserType,
			in:      `{"userName":"u","title":"t"}`,
			paths:   []string{"title", "TITLE"},
			want:    `{"userName":"u"}`,
			dropped: []string{"title"},
		},
		{
			name:    "numbers are kept as written",
			rt:      UserType,
			in:      `{"userName":"u","big":12345678901234567890,"` + customURN + `":{"tag":"t","badge":1.50}}`,
			paths:   []string{customURN + ":tag"},
			want:    `{"userName":"u","big":12345678901234567890,"` + customURN + `":{"badge":1.50}}`,
			dropped: []string{customURN + ":tag"},
		},
		{
			name:  "no paths copies",
			rt:    UserType,
			in:    `{"userName":"u"}`,
			paths: nil,
			want:  `{"userName":"u"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := attrsDecode(t, tt.in)
			before := attrsJSON(t, in)
			got, dropped, err := DropAttributes(tt.rt, in, tt.paths)
			if err != nil {
				t.Fatalf("DropAttributes(%q): %v", tt.paths, err)
			}
			if g, w := attrsJSON(t, got), attrsJSON(t, attrsDecode(t, tt.want)); g != w {
				t.Errorf("DropAttributes(%q)\n got %s\nwant %s", tt.paths, g, w)
			}
			if !slices.Equal(dropped, tt.dropped) {
				t.Errorf("dropped = %q, want %q", dropped, tt.dropped)
			}
			if after := attrsJSON(t, in); after != before {
				t.Errorf("DropAttributes changed its input:\n got %s\nwant %s", after, before)
			}
		})
	}
}

func TestDropAttributesErrors(t *testing.T) {
	tests := []struct {
		name, rt, path, wantIn string
	}{
		{"empty", UserType, "", "it is empty"},
		{"value filter", UserType, `emails[type eq "work"].value`, "unexpected"},
		{"two dots", UserType, "name.givenName.x", "more than one"},
		{"colon without URN", UserType, "foo:bar", "schema URN"},
		{"bad name", UserType, "1abc", "not a valid attribute name"},
		{"id", UserType, "id", "the gateway needs them"},
		{"id in capitals", UserType, "ID", "the gateway needs them"},
		{"schemas", UserType, "Schemas", "the gateway needs them"},
		{"meta", GroupType, "meta", "the gateway needs them"},
		{"meta sub-attribute", UserType, "meta.lastModified", "the gateway needs them"},
		{"id under the core URN", UserType, UserSchema + ":id", "the gateway needs them"},
		{"id with unknown resource type", "Device", GroupSchema + ":ID", "the gateway needs them"},
		{"the core schema itself", UserType, UserSchema, "whole resource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := attrsDecode(t, `{"id":"1","userName":"u","meta":{"version":"v"}}`)
			got, dropped, err := DropAttributes(tt.rt, in, []string{"userName", tt.path})
			if err == nil {
				t.Fatalf("DropAttributes(%q) = %v, %q; want an error", tt.path, got, dropped)
			}
			if got != nil || dropped != nil {
				t.Errorf("DropAttributes(%q) returned %v, %q with its error; want nil", tt.path, got, dropped)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("%q", tt.path)) || !strings.Contains(msg, tt.wantIn) {
				t.Errorf("error %q should name %q and say %q", msg, tt.path, tt.wantIn)
			}
			var scimErr *Error
			if errors.As(err, &scimErr) {
				t.Errorf("error is a *Error (%v); a policy's path must not become the client's 400", scimErr)
			}
		})
	}
	if _, _, err := DropAttributes(UserType, nil, []string{"id"}); err == nil {
		t.Error("DropAttributes(nil resource, id) succeeded; the path must be refused anyway")
	}
}

func TestDropAttributesNil(t *testing.T) {
	got, dropped, err := DropAttributes(UserType, nil, []string{"userName"})
	if got != nil || dropped != nil || err != nil {
		t.Errorf("DropAttributes(nil) = %v, %q, %v; want nil, nil, nil", got, dropped, err)
	}
}

func TestDropAttributesNoAliasing(t *testing.T) {
	in := attrsDecode(t, attrsEntraUser)
	before := attrsJSON(t, in)
	got, dropped, err := DropAttributes(UserType, in, []string{"emails.primary", "name.givenName", entURN + ":manager.value"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 3 {
		t.Fatalf("dropped = %q, want all three paths", dropped)
	}
	mutateEverything(got)
	if after := attrsJSON(t, in); after != before {
		t.Errorf("mutating DropAttributes' result changed its input:\n got %s\nwant %s", after, before)
	}
	ext, _ := in[customURN].(map[string]any)
	if !reflect.DeepEqual(ext["badge"], json.Number("4711")) {
		t.Errorf("input badge = %#v, want json.Number(\"4711\")", ext["badge"])
	}
}

func BenchmarkCanonical(b *testing.B) {
	stored := attrsDecode(b, attrsEntraUser)
	mixed := attrsDecode(b, strings.NewReplacer(`"userName"`, `"USERNAME"`, `"givenName"`, `"GIVENNAME"`,
		`"value"`, `"Value"`, `"department"`, `"Department"`, `"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"`,
		`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"`).Replace(attrsEntraUser))
	// CloneResource is the baseline: Canonical must cost little more than the deep copy
	// every write makes anyway.
	b.Run("CloneResource", func(b *testing.B) {
		for b.Loop() {
			_ = CloneResource(stored)
		}
	})
	b.Run("canonical", func(b *testing.B) {
		for b.Loop() {
			_ = Canonical(UserType, stored)
		}
	})
	b.Run("mixed-case", func(b *testing.B) {
		for b.Loop() {
			_ = Canonical(UserType, mixed)
		}
	})
}

func BenchmarkDropAttributes(b *testing.B) {
	stored := attrsDecode(b, attrsEntraUser)
	paths := []string{"phoneNumbers", "emails.display", entURN + ":manager.value", "department", customURN + ":tag"}
	for b.Loop() {
		if _, _, err := DropAttributes(UserType, stored, paths); err != nil {
			b.Fatal(err)
		}
	}
}
