package scim

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// expandTree returns v with every MemberList turned into the generic array it stands for.
func expandTree(v any) any {
	switch x := v.(type) {
	case MemberList:
		return x.generic()
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = expandTree(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = expandTree(e)
		}
		return out
	}
	return v
}

// countLists counts the MemberLists in v.
func countLists(v any) int {
	switch x := v.(type) {
	case MemberList:
		return 1
	case map[string]any:
		n := 0
		for _, e := range x {
			n += countLists(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range x {
			n += countLists(e)
		}
		return n
	}
	return 0
}

// patchOutcome is what a PATCH body comes to through one decoding: its decode error, or
// its parse error, or the patched Group and User (documents, deltas, errors).
type patchOutcome struct {
	DecodeErr, ParseErr error
	Group               Resource
	Delta               *MemberDelta
	GroupErr            error
	GroupExact          Resource
	DeltaExact          *MemberDelta
	GroupExactErr       error
	User                Resource
	UserErr             error
}

func patchThrough(body map[string]any, err error) patchOutcome {
	if err != nil {
		return patchOutcome{DecodeErr: err}
	}
	ops, err := ParsePatch(body)
	if err != nil {
		return patchOutcome{ParseErr: err}
	}
	var o patchOutcome
	group := Resource{"schemas": []any{GroupSchema}, "id": "g1", "displayName": "G"}
	user := Resource{"schemas": []any{UserSchema}, "id": "u1", "userName": "u@x", "emails": []any{map[string]any{"value": "old@x"}}}
	o.Group, o.Delta, o.GroupErr = ApplyPatch(GroupType, group, ops, PatchOptions{})
	o.GroupExact, o.DeltaExact, o.GroupExactErr = ApplyPatch(GroupType, group, ops, PatchOptions{MembersReplace: MembersReplaceExact})
	o.User, _, o.UserErr = ApplyPatch(UserType, user, ops, PatchOptions{})
	return o
}

// checkSamePatch fails when DecodePatchBody's result differs from DecodeBody's (once its
// MemberLists are expanded), or leads to another parse, patch, delta or error; it returns
// how many MemberLists the body was decoded with.
func checkSamePatch(t testing.TB, data []byte) int {
	t.Helper()
	compact, cerr := DecodePatchBody(data, 0)
	generic, gerr := DecodeBody(data, 0)
	if !reflect.DeepEqual(cerr, gerr) {
		t.Fatalf("%q: decode errors differ:\n compact %v\n generic %v", data, cerr, gerr)
	}
	if cerr != nil {
		return 0
	}
	if got := expandTree(compact); !reflect.DeepEqual(got, any(generic)) {
		t.Fatalf("%q:\n compact %#v\n generic %#v", data, got, generic)
	}
	if countLists(generic) != 0 {
		t.Fatalf("%q: DecodeBody made a MemberList", data)
	}
	// Twice: a patch does not modify its operations, so a second run gives the same result.
	for range 2 {
		if got, want := patchThrough(compact, nil), patchThrough(generic, nil); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n compact %+v\n generic %+v", data, got, want)
		}
	}
	return countLists(compact)
}

func patchBody(ops string) string {
	return `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[` + ops + `]}`
}

var memberPatchBodies = []struct {
	ops   string
	lists int // MemberLists it is decoded with
}{
	// (A body starting with " \n" is whole; the others are its operations.)
	{`{"op":"add","path":"members","value":[{"value":"a"},{"value":"b"}]}`, 1},
	{`{"op":"Add","path":"members","value":[{"value":"a","display":"A"},{"value":"b","displayName":"B"},"c",{"value":"d","type":"User","$ref":"../Users/d"},{"value":"e","type":"Group"}]}`, 1},
	{`{"op":"add","path":"members","value":[]}`, 1},
	// Odd whitespace, the value before the path, keys in other cases where ParsePatch takes them.
	{" \n{ \"OPERATIONS\" :\t[ { \"VALUE\" : [ { \"value\" : \"a\" } ,\r\n \"b\" ] , \"Path\" : \"members\" , \"op\" : \"add\" } ] , \"schemas\" : [ \"urn:ietf:params:scim:api:messages:2.0:PatchOp\" ] } ", 1},
	// Escapes, in values and keys.
	{`{"op":"add","path":"members","value":[{"v\u0061lue":"a\"b\\c\u00e9","display":"\ud83d\ude00"},"\u0078"]}`, 1},
	// Duplicates keep the first; across operations, the intent's order.
	{`{"op":"add","path":"members","value":[{"value":"a"},{"value":"a","display":"second"},{"value":"b"}]}`, 1},
	{`{"op":"add","path":"members","value":[{"value":"a"},{"value":"b"}]},{"op":"remove","path":"members","value":[{"value":"a"}]},{"op":"add","path":"members","value":[{"value":"a","display":"again"},{"value":"c"}]}`, 3},
	{`{"op":"remove","path":"members","value":[{"value":"x"}]},{"op":"add","path":"members","value":[{"value":"x"},{"value":"y"}]}`, 2},
	{`{"op":"remove","path":"members"},{"op":"add","path":"members","value":[{"value":"a"}]}`, 1},
	{`{"op":"replace","path":"members","value":[{"value":"a"},{"value":"b"}]},{"op":"replace","path":"members","value":[{"value":"b"}]}`, 2},
	{`{"op":"add","path":"urn:ietf:params:scim:schemas:core:2.0:Group:members","value":[{"value":"a"}]}`, 1},
	// Not the members: the generic array, as decoded.
	{`{"op":"add","path":"members[value eq \"a\"]","value":[{"value":"a"}]}`, 1},
	{`{"op":"add","path":"members[value eq \"a\"]","value":["a"]}`, 1},
	{`{"op":"add","path":"members[value eq \"a\"]","value":[{"value":"a"},{"value":"b"}]}`, 1},
	{`{"op":"add","path":"emails","value":[{"value":"n@x","display":"N"}]}`, 1},
	{`{"op":"replace","path":"displayName","value":["a"]}`, 1},
	{`{"op":"add","value":[{"value":"a"}]}`, 1},
	{`{"op":"add","path":"urn:ietf:params:scim:schemas:core:2.0:Group","value":[{"value":"a"}]}`, 1},
	{`{"op":"add","path":"members.display","value":[{"value":"a"}]}`, 1},
	// Left to the generic path, which answers as it always did.
	{`{"op":"add","path":"members","value":[{"value":""}]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"  "}]}`, 0},
	{`{"op":"add","path":"members","value":[""]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"a\u0000"}]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"` + strings.Repeat("x", MaxIDBytes+1) + `"}]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"a","type":"Role"}]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"a","type":"user"}]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"a","operation":"delete"}]}`, 0},
	{`{"op":"add","path":"members","value":[{"Value":"a"}]}`, 0},
	{`{"op":"add","path":"members","value":[null,{"value":"a"}]}`, 0},
	{`{"op":"add","path":"members","value":[1]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":1}]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"a","display":null}]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"a","display":2}]}`, 0},
	{`{"op":"add","path":"members","value":[{"display":"A"}]}`, 0},
	{`{}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"a","display":"A","displayName":"B"}]}`, 0},
	{`{"op":"add","path":"members","value":[{"value":"a","nested":{"value":"b"}}]}`, 0},
	{`{"op":"add","path":"members","value":[[{"value":"a"}]]}`, 0},
	{`{"op":"add","path":"members","value":{"value":"a"}}`, 0},
	{`{"op":"add","path":"members","value":"a"}`, 0},
	{`{"op":"remove","path":"members","value":[{"value":"a"}],"extra":[{"value":"b"}]}`, 1},
	{`{"op":"add","path":"members","value":[{"value":"a","value":"b"}]}`, 0},
	{`{"op":"bogus","path":"members","value":[{"value":"a"}]}`, 1},
}

// TestDecodePatchBody: member arrays decode into MemberLists only where the generic path
// would take their elements as members unchanged, and every body (with or without
// display, type, $ref, odd whitespace, escapes, invalid members) decodes, parses and
// patches a Group and a User as through DecodeBody: same documents, deltas and errors.
func TestDecodePatchBody(t *testing.T) {
	for _, tt := range memberPatchBodies {
		body := patchBody(tt.ops)
		if strings.HasPrefix(tt.ops, " \n") {
			body = tt.ops // a whole body
		}
		if got := checkSamePatch(t, []byte(body)); got != tt.lists {
			t.Errorf("%s: decoded with %d MemberLists, want %d", body, got, tt.lists)
		}
	}
	// Where the members are not an operation's value, they stay generic.
	for _, body := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","value":{"members":[{"value":"a"}]}}]}`,
		`{"value":[{"value":"a"}],"Operations":[{"op":"add","path":"members","value":{"value":"a"}}]}`,
		`{"Operations":{"x":{"value":[{"value":"a"}]}}}`,
		`{"Operations":[[{"value":[{"value":"a"}]}]]}`,
		`[{"Operations":[{"value":[{"value":"a"}]}]}]`,
		`{"x":{"Operations":[{"value":[{"value":"a"}]}]}}`,
	} {
		if got := checkSamePatch(t, []byte(body)); got != 0 {
			t.Errorf("%s: decoded with %d MemberLists", body, got)
		}
	}
	// Invalid JSON, repeated keys, depth: DecodeBody's errors.
	for _, body := range []string{``, `{`, `{"Operations":[{"value":[{"value":"a"},]}]}`, `{"Operations":[{"value":[{"value":"a","VALUE":"b"}]}]}`,
		`{"Operations":[{"value":[` + strings.Repeat("[", 80) + strings.Repeat("]", 80) + `]}]}`} {
		if _, err := DecodePatchBody([]byte(body), 0); err == nil {
			t.Errorf("%s: accepted", body)
		}
		checkSamePatch(t, []byte(body))
	}
}

// TestMemberListPatchKeepsOps: a patch whose member intent changes the list an operation
// decoded (a remove after the add) leaves the operation's MemberList as it was.
func TestMemberListPatchKeepsOps(t *testing.T) {
	body, err := DecodePatchBody([]byte(patchBody(`{"op":"add","path":"members","value":[{"value":"a"},{"value":"b"}]},{"op":"remove","path":"members","value":["a"]}`)), 0)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := ParsePatch(body)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := ops[0].Value.(MemberList)
	if !ok {
		t.Fatalf("the add's value is %T", ops[0].Value)
	}
	_, d, err := ApplyPatch(GroupType, nil, ops, PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (&MemberDelta{Add: []MemberRef{{Value: "b"}}, Remove: []string{"a"}}); !reflect.DeepEqual(d, want) {
		t.Errorf("delta %+v, want %+v", d, want)
	}
	if want := []MemberRef{{Value: "a"}, {Value: "b"}}; !reflect.DeepEqual(l.refs, want) {
		t.Errorf("the operation's list became %v", l.refs)
	}
}

// TestDecodePatchBodyLarge: 10,000 members with and without display decode into one
// MemberList whose delta is the generic path's.
func TestDecodePatchBodyLarge(t *testing.T) {
	var b strings.Builder
	for i := range 10_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		if i%3 == 0 {
			fmt.Fprintf(&b, `{"value":"m%d","display":"Member %d"}`, i%7000, i)
		} else {
			fmt.Fprintf(&b, `{"value":"m%d"}`, i%7000)
		}
	}
	if n := checkSamePatch(t, []byte(patchBody(`{"op":"add","path":"members","value":[`+b.String()+`]}`))); n != 1 {
		t.Fatalf("decoded with %d MemberLists", n)
	}
}

// FuzzDecodePatchBody: whatever the body, DecodePatchBody decodes, parses and patches it as
// DecodeBody does.
func FuzzDecodePatchBody(f *testing.F) {
	for _, tt := range memberPatchBodies {
		f.Add([]byte(patchBody(tt.ops)))
	}
	f.Add([]byte(`{"Operations":[{"value":["a",{"value":"b","type":"Group"}],"path":"members","op":"remove"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) { checkSamePatch(t, data) })
}
