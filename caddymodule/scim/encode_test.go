package scim

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// encodingJSON is what encoding/json writes for v: json.Marshal with escapeHTML, an Encoder
// without HTML escaping otherwise (less its newline).
func encodingJSON(t testing.TB, v any, escapeHTML bool) ([]byte, error) {
	t.Helper()
	if escapeHTML {
		return json.Marshal(v)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), err
}

// checkSameJSON fails unless AppendJSON writes v as encoding/json does, in both modes, and
// errs when it does.
func checkSameJSON(t testing.TB, v any) {
	t.Helper()
	for _, html := range []bool{true, false} {
		want, wantErr := encodingJSON(t, v, html)
		got, err := AppendJSON([]byte("prefix:"), v, html)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("escapeHTML=%v: error %v, encoding/json's %v (value %#v)", html, err, wantErr, v)
		}
		if err == nil && string(got) != "prefix:"+string(want) {
			t.Fatalf("escapeHTML=%v:\n got  %s\n want prefix:%s", html, got, want)
		}
	}
}

// TestAppendJSONMatchesEncodingJSON: the values a SCIM document holds, with the strings
// and numbers whose encodings differ most, written byte for byte as encoding/json does.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	cases := []any{
		nil, true, false, "", "plain", `quote " and \ backslash`, "<script>&amp;</script>",
		"ctl \x00\x01\b\f\n\r\t\x1f\x7f", "bad utf8 \xff\xfe end", "sep \u2028 and \u2029", "émoji 😀 ünïcode",
		json.Number("0"), json.Number("-12.5e+3"), json.Number(""), json.Number("01"), json.Number("1."), json.Number("abc"),
		3, int64(-9), 1.5, 1e21, float32(2.5),
		[]any{}, []any(nil), []string{"a", "<b>"}, []string(nil),
		map[string]any{}, map[string]any(nil),
		map[string]any{"b": 1, "a": []any{map[string]any{"z<": "&", "y": nil}}, "A": json.Number("7"), "é": "x"},
		map[string]any{"meta": map[string]string{"version": `W/"1"`}, "when": struct{ N int }{3}},
	}
	for _, v := range cases {
		checkSameJSON(t, v)
	}
	big := map[string]any{}
	for i := range 40 {
		big[strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('0'+i%10))] = i
	}
	checkSameJSON(t, big)
}

// TestAppendJSONFixtures: every JSON fixture of the package, decoded as documents are
// (UseNumber), written as encoding/json does.
func TestAppendJSONFixtures(t *testing.T) {
	n := 0
	forEachJSONFixture(t, func(data []byte) {
		if v, err := Decode(data); err == nil { // some fixtures are bad input
			checkSameJSON(t, v)
			n++
		}
	})
	if n == 0 {
		t.Fatal("no JSON fixtures decoded: has testdata moved?")
	}
}

// forEachJSONFixture calls fn with every JSON fixture of the package.
func forEachJSONFixture(t *testing.T, fn func(data []byte)) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fn(data)
	}
}

// TestAppendJSONRandom: random documents (nested objects and arrays of strings drawn from
// an alphabet of the characters encoding/json escapes, numbers, booleans and nulls), the
// same as encoding/json's.
func TestAppendJSONRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 4))
	for range 2000 {
		checkSameJSON(t, randomDocument(r, 0))
	}
}

// FuzzAppendJSON: any JSON document, decoded as documents are, is written as encoding/json
// writes it.
func FuzzAppendJSON(f *testing.F) {
	f.Add([]byte(`{"userName":"a<b>&c","emails":[{"value":"x@y","primary":true}],"n":1.5e3}`))
	f.Add([]byte(`["\u2028\ud83d\ude00",null,-0,{"":{}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			return
		}
		checkSameJSON(t, v)
	})
}

// randomAlphabet is what random strings are made of: the characters encoding/json escapes
// (some only with escapeHTML), multi-byte ones and an invalid byte.
var randomAlphabet = []string{"a", "Z", " ", `"`, `\`, "<", ">", "&", "\n", "\x00", "\x1f", "\u2028", "é", "😀", "\xff", "/"}

// randomDocument is a random JSON value as documents hold them: nested objects and arrays
// of strings drawn from randomAlphabet, json.Numbers, booleans and nulls.
func randomDocument(r *rand.Rand, depth int) any {
	str := func() string {
		var b strings.Builder
		for range r.IntN(8) {
			b.WriteString(randomAlphabet[r.IntN(len(randomAlphabet))])
		}
		return b.String()
	}
	switch k := r.IntN(8); {
	case depth > 3 || k < 2:
		return str()
	case k == 2:
		return json.Number([]string{"0", "-1", "3.25", "6e-7", "123456789012345678901234567890"}[r.IntN(5)])
	case k == 3:
		return []any{nil, true, false}[r.IntN(3)]
	case k == 4:
		out := make([]any, r.IntN(4))
		for i := range out {
			out[i] = randomDocument(r, depth+1)
		}
		return out
	default:
		out := map[string]any{}
		for range r.IntN(6) {
			out[str()] = randomDocument(r, depth+1)
		}
		return out
	}
}
