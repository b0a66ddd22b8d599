package scim

import (
	"encoding/json"
	"testing"
)

// TestProjectionFullyQualifiedCore: attributes and excludedAttributes name core attributes
// in their fully qualified form too (RFC 7644 §3.10), as filters and PATCH paths do:
// urn:...:core:2.0:User:userName is userName. A core URN of the other resource type names
// nothing in this one; the core schema URN alone stands for all its attributes.
func TestProjectionFullyQualifiedCore(t *testing.T) {
	const user = `{"schemas":["` + UserSchema + `"],"id":"u1","userName":"ada","title":"T","name":{"givenName":"Ada","familyName":"L"},` +
		`"emails":[{"type":"work","value":"a@x"}],"meta":{"resourceType":"User"},"` + EnterpriseUserSchema + `":{"department":"R"}}`
	const group = `{"schemas":["` + GroupSchema + `"],"id":"g1","displayName":"Sales","members":[{"value":"u1"}],"meta":{"resourceType":"Group"}}`
	tests := []struct {
		name, typ, doc, attrs, excluded string
		want                            string
	}{
		{"attributes userName", UserType, user, UserSchema + ":userName", "",
			`{"id":"u1","schemas":["` + UserSchema + `"],"userName":"ada"}`},
		{"attributes in another case", UserType, user, "URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER:USERNAME", "",
			`{"id":"u1","schemas":["` + UserSchema + `"],"userName":"ada"}`},
		{"attributes sub-attribute", UserType, user, UserSchema + ":name.givenName," + UserSchema + ":emails.value", "",
			`{"emails":[{"value":"a@x"}],"id":"u1","name":{"givenName":"Ada"},"schemas":["` + UserSchema + `"]}`},
		{"attributes of a group", GroupType, group, GroupSchema + ":displayName", "",
			`{"displayName":"Sales","id":"g1","schemas":["` + GroupSchema + `"]}`},
		{"the other type's URN names nothing", GroupType, group, UserSchema + ":displayName", "",
			`{"id":"g1","schemas":["` + GroupSchema + `"]}`},
		{"excludedAttributes", UserType, user, "", UserSchema + ":title," + UserSchema + ":name.familyName," + UserSchema + ":emails",
			`{"` + EnterpriseUserSchema + `":{"department":"R"},"id":"u1","meta":{"resourceType":"User"},"name":{"givenName":"Ada"},"schemas":["` + UserSchema + `"],"userName":"ada"}`},
		{"excludedAttributes members", GroupType, group, "", GroupSchema + ":members",
			`{"displayName":"Sales","id":"g1","meta":{"resourceType":"Group"},"schemas":["` + GroupSchema + `"]}`},
		{"excludedAttributes id stays", UserType, user, "", UserSchema + ":id," + UserSchema + ":userName",
			`{"` + EnterpriseUserSchema + `":{"department":"R"},"emails":[{"type":"work","value":"a@x"}],"id":"u1","meta":{"resourceType":"User"},"name":{"familyName":"L","givenName":"Ada"},"schemas":["` + UserSchema + `"],"title":"T"}`},
		{"the core schema alone", UserType, user, UserSchema, "",
			`{"emails":[{"type":"work","value":"a@x"}],"id":"u1","meta":{"resourceType":"User"},"name":{"familyName":"L","givenName":"Ada"},"schemas":["` + UserSchema + `"],"title":"T","userName":"ada"}`},
		{"the core schema excluded", UserType, user, "", UserSchema,
			`{"` + EnterpriseUserSchema + `":{"department":"R"},"id":"u1","meta":{"resourceType":"User"},"schemas":["` + UserSchema + `"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseProjection(tt.attrs, tt.excluded)
			if err != nil {
				t.Fatal(err)
			}
			got := p.Apply(tt.typ, mustDecodeObject(t, json.RawMessage(tt.doc)))
			if g, w := canonicalJSON(t, got), canonicalJSON(t, mustDecode(t, json.RawMessage(tt.want))); g != w {
				t.Errorf("\n got  %s\n want %s", g, w)
			}
		})
	}
	wants := []struct {
		attrs, excluded, name string
		want                  bool
	}{
		{GroupSchema + ":members", "", "members", true},
		{GroupSchema + ":displayName", "", "members", false},
		{GroupSchema, "", "members", true},
		{"", GroupSchema + ":members", "members", false},
		{"", "urn:ietf:params:scim:schemas:core:2.0:group:MEMBERS", "members", false},
		{UserSchema + ":groups", "", "groups", true},
	}
	for _, w := range wants {
		p, err := ParseProjection(w.attrs, w.excluded)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Wants(w.name); got != w.want {
			t.Errorf("attributes=%q excludedAttributes=%q: Wants(%s) = %v, want %v", w.attrs, w.excluded, w.name, got, w.want)
		}
	}
}
