package scim

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
)

// encodingJSONDecode is what Decode made before the fast decoder: encoding/json's Decoder
// with UseNumber.
func encodingJSONDecode(data []byte) (any, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	err := dec.Decode(&v)
	return v, err
}

// checkSameDecode fails when the fast decoder accepts data but decodes it otherwise than
// encoding/json, or accepts what encoding/json refuses; it reports whether it accepted.
func checkSameDecode(t testing.TB, data []byte) bool {
	t.Helper()
	got, ok := decodeFast(data)
	want, err := encodingJSONDecode(data)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("the fast decoder accepted %q, which encoding/json refuses: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n fast          %#v\n encoding/json %#v", data, got, want)
	}
	return true
}

// TestDecodeFast: documents as the store holds them, and the strings and numbers whose
// decoding is subtle, decoded as encoding/json decodes them; what the fast decoder leaves
// to encoding/json (invalid JSON, trailing data, deep nesting) still decodes through Decode
// with encoding/json's result or error.
func TestDecodeFast(t *testing.T) {
	accepted := []string{
		`{"userName":"bjensen@example.com","active":true,"emails":[{"value":"b@x","primary":true}],"n":-1.5e+3,"z":null}`,
		`{}`, `[]`, ` [ 1 , "a" , { } , [ ] ] `, `"plain"`, `0`, `-0.0e0`, `true`, `null`,
		`{"esc":"a\"b\\c\/d\n\u00e9\ud83d\ude00","lone":"\ud800x","ctl":"\u0000"}`,
		`{"utf8":"émoji 😀","dup":1,"dup":2}`,
		"{\"bad utf8\":\"\xff\xfe\"}",
		"{\"surrogate in utf8\":\"\xed\xa0\x80\"}",
	}
	for _, s := range accepted {
		if !checkSameDecode(t, []byte(s)) {
			t.Errorf("the fast decoder left %s to encoding/json", s)
		}
	}
	refused := []string{
		``, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `-`, `tru`, `nul`, `"a` + "\n" + `"`,
		`{"a":1} {"b":2}`, `{"a":1}x`, `[` + string(bytes.Repeat([]byte("["), maxFastDepth)) + `]`,
	}
	for _, s := range refused {
		if checkSameDecode(t, []byte(s)) {
			t.Errorf("the fast decoder accepted %q", s)
		}
		got, err := Decode([]byte(s))
		want, wantErr := encodingJSONDecode([]byte(s))
		if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("Decode(%q) = %#v, %v; encoding/json: %#v, %v", s, got, err, want, wantErr)
		}
	}
}

// TestDecodeFastFixtures: every JSON fixture of the package decodes as with encoding/json.
func TestDecodeFastFixtures(t *testing.T) {
	n := 0
	forEachJSONFixture(t, func(data []byte) {
		if checkSameDecode(t, data) {
			n++
		}
	})
	if n == 0 {
		t.Fatal("no fixture took the fast decoder: has testdata moved?")
	}
}

// TestDecodeFastRandom: random documents written by AppendJSON (so with every escape
// encoding/json writes) decode as with encoding/json.
func TestDecodeFastRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 5))
	for range 2000 {
		v := randomDocument(r, 0)
		data, err := AppendJSON(nil, v, r.IntN(2) == 0)
		if err != nil {
			t.Fatal(err)
		}
		if !checkSameDecode(t, data) {
			t.Fatalf("the fast decoder left %s to encoding/json", data)
		}
	}
}

// FuzzDecodeFast: whatever the fast decoder accepts, encoding/json decodes the same way.
func FuzzDecodeFast(f *testing.F) {
	f.Add([]byte(`{"userName":"a<b>&c","emails":[{"value":"x@y","primary":true}],"n":1.5e3}`))
	f.Add([]byte(`["\u2028\ud83d\ude00",null,-0,{"":{}}]`))
	f.Add([]byte("{\"a\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, data []byte) { checkSameDecode(t, data) })
}
