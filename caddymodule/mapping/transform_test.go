package mapping

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// transformDoc is the resource the transform tests read SCIM paths from.
const transformDoc = `{
  "id": "scim-1",
  "userName": "ada@contoso.example",
  "displayName": "",
  "name": {"givenName": "Ada", "familyName": "Lovelace"},
  "emails": [{"type": "home", "value": "ada@home.example"}, {"type": "work", "value": "ada@work.example"}]
}`

func TestTransforms(t *testing.T) {
	tables := map[string]map[string]any{"depts": {"Sales": "S", "R&D": json.Number("7")}}
	doc := decodeResource(t, json.RawMessage(transformDoc))
	tests := []struct {
		name    string
		spec    string // one transform as written in the file
		in      any    // input value; absent when inMissing
		missing bool   // the input is absent
		want    any
		wantOK  bool
		wantErr string
	}{
		{name: "lower", spec: `"lower"`, in: "AdA", want: "ada", wantOK: true},
		{name: "lower list", spec: `"lower"`, in: []any{"A", json.Number("1")}, want: []any{"a", json.Number("1")}, wantOK: true},
		{name: "lower missing", spec: `"lower"`, missing: true, wantOK: false},
		{name: "upper", spec: `"upper"`, in: "ada", want: "ADA", wantOK: true},
		{name: "trim", spec: `"trim"`, in: "  a b \t", want: "a b", wantOK: true},
		{name: "trim number passes", spec: `"trim"`, in: json.Number("3"), want: json.Number("3"), wantOK: true},
		{name: "default on missing", spec: `{"default": "n/a"}`, missing: true, want: "n/a", wantOK: true},
		{name: "default on empty string", spec: `{"default": "n/a"}`, in: "", want: "n/a", wantOK: true},
		{name: "default on empty list", spec: `{"default": 0}`, in: []any{}, want: json.Number("0"), wantOK: true},
		{name: "default keeps value", spec: `{"default": "n/a"}`, in: "x", want: "x", wantOK: true},
		{name: "default null", spec: `{"default": null}`, missing: true, want: nil, wantOK: true},
		{name: "constant", spec: `{"constant": true}`, in: "x", want: true, wantOK: true},
		{name: "constant list", spec: `{"constant": [["a", "b"]]}`, missing: true, want: []any{"a", "b"}, wantOK: true},
		{name: "join", spec: `{"join": ", "}`, in: []any{"a", nil, json.Number("2"), true}, want: "a, 2, true", wantOK: true},
		{name: "join scalar", spec: `{"join": ","}`, in: "a", want: "a", wantOK: true},
		{name: "join objects", spec: `{"join": ","}`, in: []any{map[string]any{}}, wantErr: "no text form"},
		{name: "split", spec: `{"split": ";"}`, in: "a;b;;c", want: []any{"a", "b", "", "c"}, wantOK: true},
		{name: "split empty", spec: `{"split": ";"}`, in: "", want: []any{}, wantOK: true},
		{name: "lookup named", spec: `{"lookup": "depts"}`, in: "R&D", want: json.Number("7"), wantOK: true},
		{name: "lookup inline", spec: `{"lookup": [{"true": "yes"}]}`, in: true, want: "yes", wantOK: true},
		{name: "lookup default", spec: `{"lookup": ["depts", "X"]}`, in: "Legal", want: "X", wantOK: true},
		{name: "lookup no default", spec: `{"lookup": "depts"}`, in: "Legal", wantErr: `not in the table "depts"`},
		{name: "lookup is case-sensitive", spec: `{"lookup": "depts"}`, in: "sales", wantErr: "not in the table"},
		{name: "lookup missing passes", spec: `{"lookup": "depts"}`, missing: true, wantOK: false},
		{name: "bool true", spec: `{"bool": ["Y", "N"]}`, in: true, want: "Y", wantOK: true},
		{name: "bool Entra False", spec: `{"bool": [1, 0]}`, in: "False", want: json.Number("0"), wantOK: true},
		{name: "bool bad", spec: `{"bool": ["Y", "N"]}`, in: "maybe", wantErr: "needs a boolean, got a string"},
		{name: "not", spec: `"not"`, in: "True", want: false, wantOK: true},
		{name: "not false", spec: `"not"`, in: false, want: true, wantOK: true},
		{name: "not missing", spec: `"not"`, missing: true, wantOK: false},
		{name: "not bad", spec: `"not"`, in: json.Number("1"), wantErr: "needs a boolean, got a number"},
		{name: "date out only", spec: `{"date": "date"}`, in: "2024-03-01T23:30:00-05:00", want: "2024-03-01", wantOK: true},
		{name: "date go layout", spec: `{"date": ["rfc3339", "02.01.2006 15:04"]}`, in: "2024-03-01T09:05:00Z", want: "01.03.2024 09:05", wantOK: true},
		{name: "date unix out", spec: `{"date": "unix"}`, in: "1970-01-01T00:01:40Z", want: json.Number("100"), wantOK: true},
		{name: "date unix_ms in", spec: `{"date": ["unix_ms", "rfc3339"]}`, in: json.Number("1500"), want: "1970-01-01T00:00:01Z", wantOK: true},
		{name: "date custom in", spec: `{"date": ["02/01/2006", "date"]}`, in: "31/12/2025", want: "2025-12-31", wantOK: true},
		{name: "date bad", spec: `{"date": "date"}`, in: "yesterday", wantErr: `does not match the layout`},
		{name: "date empty passes", spec: `{"date": "date"}`, in: "", want: "", wantOK: true},
		{name: "first_non_empty keeps", spec: `{"first_non_empty": ["userName"]}`, in: "x", want: "x", wantOK: true},
		{name: "first_non_empty skips empty", spec: `{"first_non_empty": ["displayName", "emails[type eq \"work\"].value", "userName"]}`, in: "", want: "ada@work.example", wantOK: true},
		{name: "first_non_empty none", spec: `{"first_non_empty": ["displayName", "nickName"]}`, missing: true, wantOK: false},
		{name: "regex_replace", spec: `{"regex_replace": ["^(\\w+)@(.*)$", "$2/$1"]}`, in: "ada@contoso", want: "contoso/ada", wantOK: true},
		{name: "regex_replace list", spec: `{"regex_replace": ["[aeiou]", ""]}`, in: []any{"ada", "bob"}, want: []any{"d", "bb"}, wantOK: true},
		{name: "template", spec: `{"template": "{name.givenName} {name.familyName} <{userName}>"}`, missing: true, want: "Ada Lovelace <ada@contoso.example>", wantOK: true},
		{name: "template braces", spec: `{"template": "{{{scim_id}}}"}`, missing: true, want: "{scim-1}", wantOK: true},
		{name: "template all empty", spec: `{"template": "{displayName} {nickName}"}`, in: "x", wantOK: false},
		{name: "template list", spec: `{"template": "[{emails.value}]"}`, want: "[ada@home.example, ada@work.example]", wantOK: true},
		{name: "to_int string", spec: `"to_int"`, in: " 0042 ", want: json.Number("42"), wantOK: true},
		{name: "to_int float", spec: `"to_int"`, in: json.Number("1e3"), want: json.Number("1000"), wantOK: true},
		{name: "to_int list", spec: `"to_int"`, in: []any{"1", "2"}, want: []any{json.Number("1"), json.Number("2")}, wantOK: true},
		{name: "to_int uint64 id", spec: `"to_int"`, in: "18446744073709551615", want: json.Number("18446744073709551615"), wantOK: true},
		{name: "to_int exact decimal", spec: `"to_int"`, in: "9007199254740993.0", want: json.Number("9007199254740993"), wantOK: true},
		{name: "to_int out of range", spec: `"to_int"`, in: "18446744073709551616", wantErr: "needs an integer"},
		{name: "to_int bad", spec: `"to_int"`, in: "12a", wantErr: "needs an integer"},
		{name: "to_int fraction", spec: `"to_int"`, in: json.Number("1.5"), wantErr: "needs an integer"},
		{name: "to_int bool", spec: `"to_int"`, in: true, wantErr: "got a boolean"},
		{name: "to_int list element", spec: `"to_int"`, in: []any{"1", "x"}, wantErr: "element 1: needs an integer"},
		{name: "to_string", spec: `"to_string"`, in: json.Number("12.50"), want: "12.50", wantOK: true},
		{name: "to_string bool", spec: `"to_string"`, in: false, want: "false", wantOK: true},
		{name: "to_string object", spec: `"to_string"`, in: map[string]any{}, wantErr: "got an object"},
		{name: "first", spec: `"first"`, in: []any{"a", "b"}, want: "a", wantOK: true},
		{name: "first empty", spec: `"first"`, in: []any{}, wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := parseTransformSpec(json.RawMessage(tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := compileTransform(scim.UserType, spec, tables)
			if err != nil {
				t.Fatal(err)
			}
			ev := &evalCtx{in: &Input{ResourceType: scim.UserType, Resource: doc}, doc: doc}
			got, ok, err := tr.apply(ev, tc.in, !tc.missing)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v (value %#v)", ok, tc.wantOK, got)
			}
			if ok && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// TestTransformsDoNotMutate checks that a transform never writes into the stored resource
// it reads: the gateway hands the mapping its stored document.
func TestTransformsDoNotMutate(t *testing.T) {
	doc := decodeResource(t, json.RawMessage(`{"emails":[{"value":"A@X"}],"roles":["Admin"]}`))
	before := scim.CloneResource(doc)
	for _, spec := range []string{`"lower"`, `"trim"`, `{"regex_replace": ["A", "b"]}`, `"to_string"`} {
		s, _ := parseTransformSpec(json.RawMessage(spec))
		tr, err := compileTransform(scim.UserType, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		src, _ := compileSource(scim.UserType, "emails.value")
		ev := &evalCtx{in: &Input{}, doc: doc}
		v, ok, _ := src.resolve(ev)
		if _, _, err := tr.apply(ev, v, ok); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(doc, before) {
		t.Errorf("the resource changed: %v", doc)
	}
}
