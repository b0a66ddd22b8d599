package scim

import (
	"strings"
	"testing"
)

const (
	flatMyApp = "urn:ietf:params:scim:schemas:extension:MyApp:2.0:User"
	flatEnt   = EnterpriseUserSchema
)

// TestPrepareResourceFlatExtensions: Entra's flat "URN:attr" keys are stored in the nested
// form under the URN (RFC 7643 §3.3), merged with a nested object for the same URN
// (matched case-insensitively); one attribute in both forms with different values is 400
// invalidValue naming it.
func TestPrepareResourceFlatExtensions(t *testing.T) {
	cases := []struct {
		name   string
		in     string // the body without userName
		want   string // the prepared document without userName
		errHas string // when set: 400 invalidValue whose detail contains this
	}{
		{
			name: "flat only",
			in:   `{"` + flatMyApp + `:hireDate":"2024-03-01"}`,
			want: `{"` + flatMyApp + `":{"hireDate":"2024-03-01"}}`,
		},
		{
			name: "nested only",
			in:   `{"` + flatMyApp + `":{"hireDate":"2024-03-01"}}`,
			want: `{"` + flatMyApp + `":{"hireDate":"2024-03-01"}}`,
		},
		{
			name: "both, equal",
			in:   `{"` + flatMyApp + `:hireDate":"2024-03-01","` + flatMyApp + `":{"hireDate":"2024-03-01","badge":"7"}}`,
			want: `{"` + flatMyApp + `":{"hireDate":"2024-03-01","badge":"7"}}`,
		},
		{
			name:   "both, different",
			in:     `{"` + flatMyApp + `:hireDate":"2024-03-01","` + flatMyApp + `":{"hireDate":"1999-12-31"}}`,
			errHas: flatMyApp + `:hireDate`,
		},
		{
			name:   "both, different, attribute name in another case",
			in:     `{"` + flatMyApp + `:HireDate":"2024-03-01","` + flatMyApp + `":{"hiredate":"1999-12-31"}}`,
			errHas: flatMyApp + `:HireDate`,
		},
		{
			name: "flat merges into the nested object spelled in another case",
			in:   `{"URN:IETF:params:scim:schemas:extension:myapp:2.0:user:hireDate":"2024-03-01","` + flatMyApp + `":{"badge":"7"}}`,
			want: `{"` + flatMyApp + `":{"hireDate":"2024-03-01","badge":"7"}}`,
		},
		{
			name: "two flat keys of one custom URN in different cases share one object",
			in:   `{"urn:ietf:params:scim:schemas:extension:myapp:2.0:user:badge":"7","` + flatMyApp + `:hireDate":"2024-03-01"}`,
			want: `{"` + flatMyApp + `":{"hireDate":"2024-03-01","badge":"7"}}`,
		},
		{
			name:   "two flat keys naming one attribute with different values",
			in:     `{"` + flatMyApp + `:hireDate":"2024-03-01","` + strings.ToLower(flatMyApp) + `:HIREDATE":"1999-12-31"}`,
			errHas: "hireDate",
		},
		{
			name: "enterprise in another case takes the canonical URN and attribute name",
			in:   `{"urn:ietf:params:scim:schemas:extension:Enterprise:2.0:user:Department":"Retail"}`,
			want: `{"` + flatEnt + `":{"department":"Retail"}}`,
		},
		{
			name: "the pre-2018 dot spelling of the enterprise URN",
			in:   `{"` + flatEnt + `.department":"Retail"}`,
			want: `{"` + flatEnt + `":{"department":"Retail"}}`,
		},
		{
			name: "enterprise and custom together, merged with a nested enterprise object",
			in: `{"` + flatEnt + `:department":"Retail","` + flatMyApp + `:hireDate":"2024-03-01",` +
				`"` + flatEnt + `":{"costCenter":"42"}}`,
			want: `{"` + flatEnt + `":{"department":"Retail","costCenter":"42"},"` + flatMyApp + `":{"hireDate":"2024-03-01"}}`,
		},
		{
			name: "enterprise manager as a flat bare id takes its object form",
			in:   `{"` + flatEnt + `:manager":"m1"}`,
			want: `{"` + flatEnt + `":{"manager":{"value":"m1"}}}`,
		},
		{
			name: "manager as a flat bare id equals a nested {value}",
			in:   `{"` + flatEnt + `:manager":"m1","` + flatEnt + `":{"manager":{"value":"m1"}}}`,
			want: `{"` + flatEnt + `":{"manager":{"value":"m1"}}}`,
		},
		{
			name: "a flat sub-attribute path",
			in:   `{"` + flatEnt + `:manager.value":"m1"}`,
			want: `{"` + flatEnt + `":{"manager":{"value":"m1"}}}`,
		},
		{
			name: "a flat sub-attribute merges into the nested complex value (the manager then keeps only its value)",
			in:   `{"` + flatEnt + `:manager.$ref":"https://x/Users/m1","` + flatEnt + `":{"manager":{"value":"m1"}}}`,
			want: `{"` + flatEnt + `":{"manager":{"value":"m1"}}}`,
		},
		{
			name:   "a flat sub-attribute differing from the nested one",
			in:     `{"` + flatEnt + `:manager.value":"m2","` + flatEnt + `":{"manager":{"value":"m1"}}}`,
			errHas: flatEnt + `:manager.value`,
		},
		{
			name: "a custom flat sub-attribute",
			in:   `{"` + flatMyApp + `:badge.level":"2"}`,
			want: `{"` + flatMyApp + `":{"badge":{"level":"2"}}}`,
		},
		{
			name:   "a flat sub-attribute of a multi-valued value",
			in:     `{"` + flatMyApp + `:badges.level":"2","` + flatMyApp + `":{"badges":[{"level":"1"}]}}`,
			errHas: flatMyApp + `:badges.level`,
		},
		{
			name:   "the nested form is not an object",
			in:     `{"` + flatMyApp + `:hireDate":"2024-03-01","` + flatMyApp + `":"x"}`,
			errHas: flatMyApp,
		},
		{
			name: "a flat object value for a custom attribute",
			in:   `{"` + flatMyApp + `:badge":{"level":"2","color":"red"}}`,
			want: `{"` + flatMyApp + `":{"badge":{"level":"2","color":"red"}}}`,
		},
		{
			name: "a null flat value is unassigned, not a conflict",
			in:   `{"` + flatMyApp + `:hireDate":null,"` + flatMyApp + `":{"hireDate":"2024-03-01"}}`,
			want: `{"` + flatMyApp + `":{"hireDate":"2024-03-01"}}`,
		},
		{
			name: "a core attribute written with the core URN is a plain attribute",
			in:   `{"urn:ietf:params:scim:schemas:core:2.0:User:DisplayName":"Ada","title":"CTO"}`,
			want: `{"displayName":"Ada","title":"CTO"}`,
		},
		{
			name:   "a core attribute in both forms with different values",
			in:     `{"urn:ietf:params:scim:schemas:core:2.0:User:title":"CTO","title":"CEO"}`,
			errHas: "urn:ietf:params:scim:schemas:core:2.0:User:title",
		},
		{
			name: "URNs that are not schema-qualified attributes stay as they are",
			in:   `{"urn:acme:extra":{"a":1},"urn:acme:flag":"x"}`,
			want: `{"urn:acme:extra":{"a":1},"urn:acme:flag":"x"}`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := attrsDecode(t, c.in)
			body["userName"] = "u@contoso.example"
			p, err := PrepareResource(UserType, body)
			if c.errHas != "" {
				e, ok := err.(*Error)
				if !ok || e.Status != 400 || e.ScimType != TypeInvalidValue || !strings.Contains(e.Detail, c.errHas) {
					t.Fatalf("err = %v, want 400 invalidValue naming %s", err, c.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			delete(p.Doc, "userName")
			if got, want := attrsJSON(t, p.Doc), attrsJSON(t, attrsDecode(t, c.want)); got != want {
				t.Fatalf("prepared\n %s\nwant\n %s", got, want)
			}
		})
	}
}

// TestNestFlatAttributes: documents stored before flat keys were nested (or holding both
// forms, the later PATCH's nested copy next to the POST's flat one) read as one nested
// attribute; the nested value, the newer one, wins; what cannot be nested stays.
func TestNestFlatAttributes(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"flat only", `{"userName":"u","` + flatMyApp + `:hireDate":"a"}`, `{"userName":"u","` + flatMyApp + `":{"hireDate":"a"}}`},
		{"both forms: the nested one wins", `{"` + flatMyApp + `:hireDate":"old","` + flatMyApp + `":{"hireDate":"new"}}`, `{"` + flatMyApp + `":{"hireDate":"new"}}`},
		{"enterprise", `{"` + flatEnt + `:department":"d","` + flatEnt + `":{"costCenter":"c"}}`, `{"` + flatEnt + `":{"department":"d","costCenter":"c"}}`},
		{"a sub-attribute of a list stays flat", `{"` + flatMyApp + `:b.x":"1","` + flatMyApp + `":{"b":[1]}}`, `{"` + flatMyApp + `:b.x":"1","` + flatMyApp + `":{"b":[1]}}`},
		{"the nested form is not an object: the flat key stays", `{"` + flatMyApp + `:a":"1","` + flatMyApp + `":"x"}`, `{"` + flatMyApp + `:a":"1","` + flatMyApp + `":"x"}`},
		{"nothing flat", `{"userName":"u","` + flatEnt + `":{"department":"d"}}`, `{"userName":"u","` + flatEnt + `":{"department":"d"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := attrsDecode(t, c.in)
			NestFlatAttributes(UserType, doc)
			if got, want := attrsJSON(t, doc), attrsJSON(t, attrsDecode(t, c.want)); got != want {
				t.Fatalf("got\n %s\nwant\n %s", got, want)
			}
		})
	}
}

// TestFlatExtensionDownstream: what PrepareResource stores from flat keys is what
// Canonical, DropAttributes and Match work on.
func TestFlatExtensionDownstream(t *testing.T) {
	body := attrsDecode(t, `{"userName":"u","`+flatMyApp+`:hireDate":"2024-03-01","urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:department":"Retail"}`)
	p, err := PrepareResource(UserType, body)
	if err != nil {
		t.Fatal(err)
	}
	canon := Canonical(UserType, p.Doc)
	if got := attrsJSON(t, canon); got != attrsJSON(t, attrsDecode(t, `{"userName":"u","`+flatMyApp+`":{"hireDate":"2024-03-01"},"`+flatEnt+`":{"department":"Retail"}}`)) {
		t.Errorf("Canonical = %s", got)
	}
	dropped, which, err := DropAttributes(UserType, p.Doc, []string{flatMyApp + ":hireDate", "department"})
	if err != nil {
		t.Fatal(err)
	}
	if got := attrsJSON(t, dropped); got != `{"userName":"u"}` || len(which) != 2 {
		t.Errorf("DropAttributes = %s, dropped %v", got, which)
	}
	for _, f := range []string{
		flatMyApp + `:hireDate eq "2024-03-01"`,
		`URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:MYAPP:2.0:USER:HIREDATE eq "2024-03-01"`,
		flatEnt + `:department eq "retail"`,
	} {
		filter, err := ParseFilter(f)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := Match(filter, UserType, p.Doc); err != nil || !ok {
			t.Errorf("%s: match %v, %v", f, ok, err)
		}
	}
}

// BenchmarkNestFlatAttributes: every read of a stored document goes through
// NestFlatAttributes, so on a document with nothing flat (all written since flat keys are
// nested) it must cost next to nothing against the Decode each read makes anyway.
func BenchmarkNestFlatAttributes(b *testing.B) {
	data := []byte(attrsEntraUser)
	b.Run("Decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := Decode(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decode+nest", func(b *testing.B) {
		for b.Loop() {
			v, err := Decode(data)
			if err != nil {
				b.Fatal(err)
			}
			NestFlatAttributes(UserType, v.(map[string]any))
		}
	})
	flat := strings.NewReplacer(
		`"urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User":{"tag":"blue","badge":4711}`,
		`"urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag":"blue","urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:badge":4711`,
	).Replace(attrsEntraUser)
	b.Run("Decode+nest two flat keys", func(b *testing.B) {
		for b.Loop() {
			v, err := Decode([]byte(flat))
			if err != nil {
				b.Fatal(err)
			}
			NestFlatAttributes(UserType, v.(map[string]any))
		}
	})
}
