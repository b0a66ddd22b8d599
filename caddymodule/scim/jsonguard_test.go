package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckJSON(t *testing.T) {
	deep := strings.Repeat("[", 500000) + strings.Repeat("]", 500000)
	cases := []struct {
		name, body, detail string
	}{
		{"ok", `{"userName":"a","emails":[{"value":"x"}]}`, ""},
		{"ok braces in strings", `{"a":"{{{[[[\"]]]"}`, ""},
		{"empty", ``, "empty"},
		{"only whitespace", " \t\r\n ", "empty"},
		{"bad utf8", "{\"a\":\"\xff\"}", "UTF-8"},
		{"byte order mark", "\ufeff{\"a\":1}", "starts with a byte order mark (U+FEFF); send the JSON without it"},
		{"byte order mark after space", " \ufeff{}", "byte order mark"},
		{"U+FEFF inside a string ok", "{\"a\":\"\ufeff\"}", ""},
		{"deep array", deep, "deeper than 64"},
		{"deep object", strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100), "deeper than 64"},
		{"deep object offset", strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100), "(at byte 320)"},
		{"depth at bound", strings.Repeat("[", 64) + strings.Repeat("]", 64), ""},
		{"depth over bound", strings.Repeat("[", 65) + strings.Repeat("]", 65), "deeper than 64 levels (at byte 64)"},
		{"invalid", `{"acve": tre}`, "not valid JSON"},
		{"invalid offset", `{"acve": tre}`, "at byte 11: expected true, found 'e'"},
		{"truncated", `{"a":`, "not valid JSON"},
		{"truncated offset", `{"a":`, "at byte 5: expected a JSON value, found end of input"},
		{"duplicate", `{"userName":"a","userName":"b"}`, `repeats the attribute "userName"`},
		{"duplicate case", `{"userName":"a","USERNAME":"b"}`, `repeats the attribute "USERNAME"`},
		{"duplicate nested", `{"name":{"givenName":"a","GivenName":"b"}}`, `repeats`},
		{"same key in siblings ok", `{"emails":[{"value":"a"},{"value":"b"}]}`, ""},
		{"same key in parent and child ok", `{"value":{"value":{"value":1}},"VALUE2":1}`, ""},
		{"two values", `{} {}`, "more than one"},
		{"two scalars", `1 2`, "more than one JSON value (the second starts at byte 2)"},

		// Duplicates are found after unescaping, with strings.EqualFold's folding.
		{"duplicate via escape", `{"a":1,"\u0061":2}`, `repeats the attribute "a"`},
		{"duplicate via solidus escape", `{"a/b":1,"a\/B":2}`, `repeats the attribute "a/B"`},
		{"duplicate via escaped upper case", `{"userName":1,"\u0055SERNAME":2}`, `repeats the attribute "USERNAME"`},
		{"duplicate non-ASCII fold", `{"é":1,"\u00c9":2}`, `repeats the attribute "É"`},
		{"duplicate kelvin sign", `{"k":1,"K":2}`, `repeats the attribute "K"`},
		{"duplicate final sigma", `{"σ":1,"ς":2}`, `repeats the attribute "ς"`},
		{"dotted capital I is not i", `{"i":1,"İ":2}`, ""},
		{"duplicate surrogate pair", `{"😀":1,"\ud83d\ude00":2}`, `repeats the attribute "😀"`},
		{"lone surrogates decode alike", `{"\ud800":1,"\ufffd":2}`, `repeats the attribute "�"`},
		{"distinct escapes ok", `{"\u0061":1,"\u0062":2,"\n":3,"\t":4,"\\":5,"\"":6}`, ""},
		{"different lengths ok", `{"a":1,"aa":2,"":3}`, ""},
		{"duplicate empty key", `{"":1,"":2}`, `repeats the attribute ""`},
		{"long key cut in detail", `{"` + strings.Repeat("é", 40) + `":1,"` + strings.Repeat("É", 40) + `":2}`, `repeats the attribute "` + strings.Repeat("É", 32) + `"…`},

		// Syntax, per RFC 8259.
		{"scalar top level", `"x"`, ""},
		{"numbers ok", `[0,-0,1,-1,1.5,-1.5e10,1E+2,1e-2,0.0,123456789012345678901234567890]`, ""},
		{"leading zero", `01`, "at byte 1: a number may not have a leading zero"},
		{"negative leading zero", `[-01]`, "leading zero"},
		{"bare minus", `-`, "at byte 1: expected a digit after '-', found end of input"},
		{"minus letter", `-a`, "found 'a'"},
		{"trailing dot", `1.`, "expected a digit after the decimal point"},
		{"leading dot", `.5`, "expected a JSON value"},
		{"plus sign", `+1`, "at byte 0: expected a JSON value"},
		{"empty exponent", `1e`, "expected a digit in the exponent"},
		{"signed empty exponent", `1e+`, "expected a digit in the exponent"},
		{"hex number", `0x10`, "expected end of input after the JSON value, found 'x'"},
		{"trailing comma object", `{"a":1,}`, "at byte 7: expected a double-quoted attribute name, found '}' (JSON allows no trailing comma)"},
		{"trailing comma array", `[1,]`, "at byte 3: expected a JSON value, found ']' (JSON allows no trailing comma)"},
		{"leading comma array", `[,1]`, "expected a JSON value"},
		{"missing colon", `{"a" 1}`, `at byte 5: expected ':' after the attribute name "a", found '1'`},
		{"number key", `{1:2}`, "expected a double-quoted attribute name, found '1'"},
		{"single quotes", `{'a':1}`, "found '\\''"},
		{"missing comma array", `[1 2]`, "at byte 3: expected ',' or ']' after an array element, found '2'"},
		{"missing comma object", `{"a":1 "b":2}`, "expected ',' or '}' after an attribute value"},
		{"mismatched close", `[1}`, "expected ',' or ']'"},
		{"unclosed array", `[1`, "expected ',' or ']' after an array element, found end of input"},
		{"unclosed object", `{"a":1`, "expected ',' or '}' after an attribute value, found end of input"},
		{"unclosed string", `{"abc`, "at byte 5: found end of input inside the string that starts at byte 1"},
		{"raw newline in string", "[\"a\nb\"]", "at byte 3: found control character U+000A inside a string"},
		{"raw tab in string", "[\"a\tb\"]", "control character U+0009"},
		{"DEL in string ok", "[\"a\x7fb\"]", ""},
		{"bad escape", `["\x"]`, `invalid escape \'x' in a string`},
		{"short unicode escape", `["\u12"]`, `at byte 6: expected 4 hexadecimal digits after \u, found '"'`},
		{"bad unicode escape", `["\u12G4"]`, "expected 4 hexadecimal digits"},
		{"escape at end", `["\`, "end of input inside an escape sequence"},
		{"all escapes ok", `["\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00\ud800"]`, ""},
		{"misspelt literal", `[nul]`, "at byte 4: expected null, found ']'"},
		{"capital literal", `True`, "expected a JSON value"},
		{"trailing garbage", `{}x`, "at byte 2: expected end of input after the JSON value, found 'x'"},
		{"trailing nul", "{}\x00", "found control character U+0000"},
		{"vertical tab is not whitespace", "\v{}", "at byte 0: expected a JSON value (object, array, string, number, true, false or null), found control character U+000B"},
		{"non-breaking space is not whitespace", "\u00a0{}", "found '\\u00a0'"},
		{"all whitespace kinds ok", " \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\n2 \t\r\n] \t\r\n} \t\r\n", ""},
		{"empty containers ok", `{"a":{},"b":[],"c":[{}],"d":[[]]}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkDetail(t, CheckJSON([]byte(tc.body), 64), tc.detail)
		})
	}
}

// TestCheckJSONLargeObjects covers objects past jsonLinearKeys, whose duplicate check uses
// a hash set, including the reuse of that set by a later object at the same depth.
func TestCheckJSONLargeObjects(t *testing.T) {
	// members lists n distinct keys; wide wraps them, extra and a last key in an object.
	members := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `"key%d":%d,`, i, i)
		}
		return b.String()
	}
	wide := func(n int, extra string) string {
		return "{" + members(n) + extra + `"last":0}`
	}
	cases := []struct {
		name, body, detail string
	}{
		{"just over the linear bound", wide(jsonLinearKeys, ""), ""},
		{"ten thousand keys", wide(10000, ""), ""},
		{"duplicate of an early key", wide(5000, `"KEY3":1,`), `repeats the attribute "KEY3"`},
		{"duplicate of the key that switched to hashing", wide(jsonLinearKeys+1, fmt.Sprintf(`"key%d":1,`, jsonLinearKeys)), "repeats"},
		{"duplicate via escape", wide(100, `"\u006bey7":1,`), `repeats the attribute "key7"`},
		{"siblings reuse the set", "[" + wide(100, "") + "," + wide(100, "") + "," + wide(20, "") + "]", ""},
		{"small sibling after large", "[" + wide(100, "") + `,{"key1":1,"KEY1":2}]`, `repeats the attribute "KEY1"`},
		{"large parent and large child", "{" + members(50) + `"child":` + wide(50, "") + "}", ""},
		{"large parent keeps keys across child", `{"a":1,` + members(30) + `"child":` + wide(30, "") + `,"A":2}`, `repeats the attribute "A"`},
		{"large child keeps parent keys", `{"a":1,"child":` + wide(30, "") + `,"key1":2,"A":2}`, `repeats the attribute "A"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkDetail(t, CheckJSON([]byte(tc.body), 64), tc.detail)
		})
	}
}

// checkDetail fails unless err is nil when detail is empty, or else a 400 invalidSyntax
// *Error whose detail contains detail.
func checkDetail(t *testing.T, err error, detail string) {
	t.Helper()
	if detail == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("want *Error containing %q, got %v", detail, err)
	}
	if se.Status != 400 || se.ScimType != TypeInvalidSyntax || !strings.Contains(se.Detail, detail) {
		t.Fatalf("got %d %s %q, want 400 invalidSyntax containing %q", se.Status, se.ScimType, se.Detail, detail)
	}
}

func TestCheckJSONDefaultDepth(t *testing.T) {
	ok := strings.Repeat("[", DefaultMaxJSONDepth) + strings.Repeat("]", DefaultMaxJSONDepth)
	checkDetail(t, CheckJSON([]byte(ok), 0), "")
	checkDetail(t, CheckJSON([]byte("["+ok+"]"), 0), "deeper than 64")
}

func TestDecodeBodyNotObject(t *testing.T) {
	if _, err := DecodeBody([]byte(`[1,2]`), 64); err == nil {
		t.Fatal("array body accepted")
	}
	m, err := DecodeBody([]byte(`{"n":12345678901234567890}`), 64)
	if err != nil {
		t.Fatal(err)
	}
	if got := m["n"]; got == nil || got.(interface{ String() string }).String() != "12345678901234567890" {
		t.Fatalf("number not kept verbatim: %v", got)
	}
}

func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":[{"b":"c"}]}`, `[[[`, `{"a":"\u0000"}`, `{"a":1,"A":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeBody(data, 16)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 {
				t.Fatalf("error is not a SCIM 400: %v", err)
			}
			return
		}
		if m == nil {
			t.Fatal("nil object without error")
		}
	})
}

// fuzzSeeds is the seed corpus of FuzzCheckJSONAgreesWithStdlib: the grammar's corners,
// where a hand-written scanner and encoding/json are most likely to disagree.
var fuzzSeeds = []string{
	// Numbers, valid and not.
	`0`, `-0`, `1e5`, `1.5E-3`, `-1.5e+3`, `1E+2`, `123456789012345678901234567890`, `0.0`,
	`01`, `-01`, `1.`, `.5`, `+1`, `-`, `1e`, `1e+`, `1.e5`, `0x1F`, `1_000`, `Infinity`, `NaN`, `[-]`,
	`1E700`, `[-1e999999]`, `{"a":1e-999999}`, `0e999999`, `[0.000e-999999]`,
	// Literals.
	`true`, `false`, `null`, `tru`, `nulll`, `True`, `[true,false,null]`,
	// Strings and escapes.
	`""`, `"a"`, `"\"\\\/\b\f\n\r\t"`, `"\u0000"`, `"\u00e9"`, `"\uD83D\uDE00"`, `"\ud800"`,
	`"\udc00\ud800"`, `"\ud800\u0041"`, `"\u12"`, `"\u12G4"`, `"\x"`, `"\'"`, "\"a\nb\"", "\"a\x7fb\"",
	`"abc`, `"\`, `'a'`,
	// Structure.
	`{}`, `[]`, `{"a":{}}`, `[[]]`, `{"a":[{"b":[1,{"c":null}]}]}`, `[1,]`, `{"a":1,}`, `[,1]`,
	`{,}`, `{"a" 1}`, `{"a":}`, `{1:2}`, `[1 2]`, `[1}`, `{"a":1]`, `{} {}`, `{}x`, `1 2`, ``, ` `,
	"\v{}", "{}\x00", " \t\r\n{ \"a\" : [ 1 , 2 ] } \r\n",
	strings.Repeat("[", 16) + strings.Repeat("]", 16),
	strings.Repeat(`{"a":`, 16) + "1" + strings.Repeat("}", 16),
	// Duplicate keys, plain, case-folded and escaped.
	`{"a":1,"a":2}`, `{"a":1,"A":2}`, `{"a":1,"\u0061":2}`, `{"a":1,"\u0041":2}`, `{"k":1,"\u212a":2}`,
	`{"σ":1,"ς":2}`, `{"i":1,"İ":2}`, `{"\ud800":1,"\ufffd":2}`, `{"😀":1,"\ud83d\ude00":2}`,
	`{"a":{"a":1},"b":{"a":1}}`, `[{"x":1},{"X":1}]`, `{"userName":"a","emails":[{"value":"x"}]}`,
	`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"K3":3}`,
}

// FuzzCheckJSONAgreesWithStdlib is a differential test: on UTF-8 input nested no deeper
// than the bound, CheckJSON must accept exactly what json.Valid accepts, the reference
// duplicate-key check passes and whose numbers a double can hold. Any other input must be
// rejected; every rejection must be a 400 invalidSyntax *Error, or 400 invalidValue for a
// number out of range.
func FuzzCheckJSONAgreesWithStdlib(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	const bound = 16
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckJSON(data, bound)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 ||
				(se.ScimType != TypeInvalidSyntax && (se.ScimType != TypeInvalidValue || !refMentionsOutOfRangeNumber(data))) {
				t.Fatalf("error is not a 400 invalidSyntax *Error (or invalidValue for a number out of range): %v", err)
			}
		}
		inScope := utf8.Valid(data) && refDepth(data) <= bound
		want := inScope && json.Valid(data) && !refHasDuplicateKey(data) && !refHasOutOfRangeNumber(data)
		if got := err == nil; got != want {
			t.Fatalf("CheckJSON(%q) accepted=%v (%v), want accepted=%v (in scope %v, json.Valid %v)",
				data, got, err, want, inScope, json.Valid(data))
		}
	})
}

// BenchmarkCheckJSON compares the scanner with the reference (the former Token-walk
// implementation) and with decoding the same body, on an Entra Validator user body
// (entra-wire.md §2.2) and on a PATCH adding 1,000 members; compare the ns/op figures.
func BenchmarkCheckJSON(b *testing.B) {
	user, err := os.ReadFile("testdata/jsonguard/entra-validator-user.json")
	if err != nil {
		b.Fatal(err)
	}
	var members strings.Builder
	members.WriteString(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[`)
	for i := range 1000 {
		if i > 0 {
			members.WriteString(",")
		}
		fmt.Fprintf(&members, `{"value":"7fce0092-d52e-4f76-b727-%012d"}`, i)
	}
	members.WriteString(`]}]}`)
	bodies := []struct {
		name string
		data []byte
	}{
		{"entra-user", user},
		{"add-1000-members", []byte(members.String())},
	}
	for _, body := range bodies {
		b.Run(body.name+"/reference", func(b *testing.B) {
			benchCheck(b, body.data, refCheckJSON)
		})
		b.Run(body.name+"/scanner", func(b *testing.B) {
			benchCheck(b, body.data, CheckJSON)
		})
		b.Run(body.name+"/decode-only", func(b *testing.B) {
			benchCheck(b, body.data, func(data []byte, _ int) error {
				_, err := Decode(data)
				return err
			})
		})
	}
}

func benchCheck(b *testing.B, data []byte, check func([]byte, int) error) {
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := check(data, DefaultMaxJSONDepth); err != nil {
			b.Fatal(err)
		}
	}
}

// refCheckJSON is the implementation CheckJSON replaced, kept as the fuzz reference and
// benchmark baseline: a flat bracket-depth scan, then a walk of encoding/json's token
// stream recording each object's keys. It compares keys with strings.EqualFold (the old
// code lower-cased them, which disagrees with EqualFold on a few runes such as 'ς' and 'İ').
func refCheckJSON(data []byte, maxDepth int) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return BadRequest(TypeInvalidSyntax, "the request body is empty; send a JSON object")
	}
	if !utf8.Valid(data) {
		return BadRequest(TypeInvalidSyntax, "the request body is not valid UTF-8")
	}
	if d := refDepth(data); d > maxDepth {
		return BadRequest(TypeInvalidSyntax, "the request body nests JSON deeper than %d levels", maxDepth)
	}
	return refSyntaxAndKeys(data)
}

// refDepth is the deepest bracket nesting outside strings; it does not validate syntax.
func refDepth(data []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	}
	return deepest
}

// refHasDuplicateKey reports whether valid JSON repeats a key in one object.
func refHasDuplicateKey(data []byte) bool {
	var se *Error
	return errors.As(refSyntaxAndKeys(data), &se) && strings.Contains(se.Detail, "repeats the attribute")
}

type refFrame struct {
	object    bool
	expectKey bool
	keys      []string
}

// refSyntaxAndKeys walks the token stream (encoding/json's Decoder keeps its own stack in
// a slice, not on the Go stack) and records the keys of each object.
func refSyntaxAndKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*refFrame
	started := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return syntaxError(err)
		}
		if len(stack) == 0 {
			if started {
				return BadRequest(TypeInvalidSyntax, "the request body holds more than one JSON value; send exactly one object")
			}
			started = true
		}
		var top *refFrame
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		if top != nil && top.object && top.expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				refValueDone(stack)
				continue
			}
			key, _ := tok.(string)
			for _, seen := range top.keys {
				if strings.EqualFold(seen, key) {
					return BadRequest(TypeInvalidSyntax, "the request body repeats the attribute %q in one object (names are case-insensitive); send each attribute once", key)
				}
			}
			top.keys = append(top.keys, key)
			top.expectKey = false
			continue
		}
		switch d := tok.(type) {
		case json.Delim:
			switch d {
			case '{':
				stack = append(stack, &refFrame{object: true, expectKey: true})
			case '[':
				stack = append(stack, &refFrame{})
			case ']', '}':
				stack = stack[:len(stack)-1]
				refValueDone(stack)
			}
		default:
			refValueDone(stack)
		}
	}
	if len(stack) != 0 {
		return BadRequest(TypeInvalidSyntax, "the request body is not valid JSON: unexpected end of input")
	}
	return nil
}

func refValueDone(stack []*refFrame) {
	if n := len(stack); n > 0 && stack[n-1].object {
		stack[n-1].expectKey = true
	}
}

// refHasOutOfRangeNumber reports whether valid JSON holds a number a double cannot hold:
// too large, or non-zero yet rounding to zero.
func refHasOutOfRangeNumber(data []byte) bool {
	if !json.Valid(data) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		n, ok := tok.(json.Number)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(string(n), 64)
		mantissa, _, _ := strings.Cut(strings.ToLower(string(n)), "e")
		if err != nil || (f == 0 && strings.ContainsAny(mantissa, "123456789")) {
			return true
		}
	}
}

// numberLike matches what a JSON number looks like, wherever it stands.
var numberLike = regexp.MustCompile(`-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`)

// refMentionsOutOfRangeNumber reports whether the input, valid JSON or not, holds a
// number-like token a double cannot hold: the scanner may meet it before a syntax error.
func refMentionsOutOfRangeNumber(data []byte) bool {
	for _, m := range numberLike.FindAll(data, -1) {
		f, err := strconv.ParseFloat(string(m), 64)
		mantissa, _, _ := strings.Cut(strings.ToLower(string(m)), "e")
		if err != nil || (f == 0 && strings.ContainsAny(mantissa, "123456789")) {
			return true
		}
	}
	return false
}
