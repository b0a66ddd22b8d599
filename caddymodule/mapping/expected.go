package mapping

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Expected is what an account of the app should hold for a directory resource, as the
// mapping would send it: the fields of the update call (every one, as with "send": "all")
// and the create's fields fed by active (the account's state, which an update often does
// not carry), each at its native path, after the transforms. Without an update call, the
// create's fields are the expectation. A reconcile compares a listed account with it.
type Expected struct {
	Fields []ExpectedField
	// Unknown are the native paths whose value the directory's resource cannot give yet
	// (a manager without an account in the app): not compared.
	Unknown []string
}

// ExpectedField is one mapped field.
type ExpectedField struct {
	Native string // the native path as the mapping file writes it
	Value  any    // the value the mapping sends; nil when Present is false
	// Present is false when the mapping would leave the field out (or clear it).
	Present bool
	// State says the field is fed by active: a difference there is the account's state.
	State bool

	path  string   // the gjson path of the field in a listed item
	attrs []string // the SCIM attributes the field reads (canonical paths)
}

// Difference is a mapped field whose value in the app is not the mapping's.
type Difference struct {
	Native string          `json:"field"`
	App    json.RawMessage `json:"app"`      // what the app holds (null when absent)
	Want   json.RawMessage `json:"expected"` // what the mapping sends (null when absent)
	State  bool            `json:"state,omitempty"`
	// Attributes are the SCIM attributes the field is made from (canonical, lower-case
	// paths): the change to send (Input.Changed) to put the field right.
	Attributes []string `json:"attributes,omitempty"`
}

// Expect computes the expectation of the app's account for resource r of resourceType.
// nativeIDOf resolves references (a manager) as for Requests.
func (m *Mapping) Expect(resourceType string, r scim.Resource, nativeIDOf func(string) (string, RefState)) Expected {
	rm := m.resource(resourceType)
	var out Expected
	if rm == nil {
		return out
	}
	ev := &evalCtx{in: &Input{ResourceType: rm.typ, Event: change.Update, Resource: r, NativeIDOf: nativeIDOf}, doc: r}
	activeKey := changedKey(rm.typ, "active")
	seen := map[string]bool{}
	add := func(f *field, state bool) {
		if seen[f.native] {
			return
		}
		seen[f.native] = true
		v, ok, err := f.eval(ev)
		if err != nil {
			out.Unknown = append(out.Unknown, f.native)
			return
		}
		out.Fields = append(out.Fields, ExpectedField{Native: f.native, Value: v, Present: ok, State: state, path: rm.itemPath(f), attrs: f.deps})
	}
	feedsState := func(f *field) bool {
		for _, d := range f.deps {
			if keysOverlap(d, activeKey) {
				return true
			}
		}
		return false
	}
	updates := rm.calls[change.Update]
	for _, cl := range updates {
		if cl.members != membersNone {
			continue
		}
		for _, f := range cl.fields {
			add(f, feedsState(f))
		}
	}
	for _, cl := range rm.calls[change.Create] {
		for _, f := range cl.fields {
			if state := feedsState(f); state || len(updates) == 0 {
				add(f, state)
			}
		}
	}
	return out
}

// Compare returns the fields of the expectation whose value in item (an account as the
// app listed it) differs. Absent, null and "" are one value (an app may answer any of them
// for a field it does not hold); numbers compare by value, and a number and a string with
// the same text are equal (to_int and to_string leave the app's own type to it), as are a
// boolean and the 0/1 or "True"/"False" an app lists it as.
func (x Expected) Compare(item []byte) []Difference {
	var out []Difference
	for _, f := range x.Fields {
		got := gjson.GetBytes(item, f.path)
		if sameAsApp(f.Value, f.Present, got) {
			continue
		}
		want, _ := json.Marshal(f.Value)
		if !f.Present {
			want = []byte("null")
		}
		app := json.RawMessage("null")
		if got.Exists() {
			app = json.RawMessage(got.Raw)
		}
		out = append(out, Difference{Native: f.Native, App: app, Want: want, State: f.State, Attributes: f.attrs})
	}
	return out
}

// sameAsApp compares a value the mapping sends with the app's.
func sameAsApp(want any, present bool, got gjson.Result) bool {
	appEmpty := !got.Exists() || got.Type == gjson.Null || (got.Type == gjson.String && got.Str == "")
	if !present || want == nil {
		return appEmpty
	}
	if s, ok := want.(string); ok && s == "" {
		return appEmpty
	}
	if appEmpty {
		return false
	}
	raw, err := json.Marshal(want)
	if err != nil {
		return false
	}
	w := gjson.ParseBytes(raw)
	if w.IsBool() || got.IsBool() {
		// A boolean the app lists as 0/1 or as "True"/"False" is the same state.
		wb, wok := boolish(w)
		gb, gok := boolish(got)
		if wok && gok {
			return wb == gb
		}
	}
	switch {
	case w.Type == gjson.Number && got.Type == gjson.Number:
		return sameNumber(w.Raw, got.Raw, w.Num, got.Num)
	case w.IsArray() || w.IsObject() || got.IsArray() || got.IsObject():
		return reflect.DeepEqual(w.Value(), got.Value())
	case w.Type != got.Type && (w.Type == gjson.String || got.Type == gjson.String):
		return w.String() == got.String()
	}
	return w.Type == got.Type && w.String() == got.String()
}

// boolish reads a value as a boolean the way apps write one: true/false, the numbers 0
// and 1, or the texts "true"/"false" (in any case) and "0"/"1".
func boolish(r gjson.Result) (value, ok bool) {
	switch r.Type {
	case gjson.True, gjson.False:
		return r.Bool(), true
	case gjson.Number:
		if r.Num == 0 || r.Num == 1 {
			return r.Num == 1, true
		}
	case gjson.String:
		switch {
		case strings.EqualFold(r.Str, "true") || r.Str == "1":
			return true, true
		case strings.EqualFold(r.Str, "false") || r.Str == "0":
			return false, true
		}
	}
	return false, false
}

// sameNumber compares two JSON numbers by value: integers by their digits (ids and
// numbers beyond 2^53, which float64 rounds together: 9007199254740993 is not
// 9007199254740992), others as float64 (12.0 is 12, 1e2 is 100).
func sameNumber(a, b string, fa, fb float64) bool {
	ia, aInt := integerDigits(a)
	ib, bInt := integerDigits(b)
	if aInt && bInt {
		return ia == ib
	}
	return fa == fb
}

// integerDigits is a JSON integer literal's canonical text ("-0" is "0"); ok is false
// for a number with a fraction or an exponent.
func integerDigits(raw string) (string, bool) {
	digits := strings.TrimPrefix(raw, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", false
	}
	if digits == "0" {
		return "0", true
	}
	return raw, true
}

// gjsonPathOf builds the gjson path of a native path's components.
func gjsonPathOf(comps []string) string {
	parts := make([]string, len(comps))
	for i, c := range comps {
		parts[i] = gjson.Escape(c)
	}
	return strings.Join(parts, ".")
}

// Subject returns the name of a listed account (its login, a group's name): the value, in
// item, of the create's field fed by userName (users) or displayName (groups); "" when the
// mapping sends none.
func (m *Mapping) Subject(resourceType string, item []byte) string {
	rm := m.resource(resourceType)
	if rm == nil {
		return ""
	}
	attr := "userName"
	if rm.typ == scim.GroupType {
		attr = "displayName"
	}
	key := changedKey(rm.typ, attr)
	for _, cl := range rm.calls[change.Create] {
		for _, f := range cl.fields {
			if f.src != nil && slices.Contains(f.deps, key) {
				return gjson.GetBytes(item, rm.itemPath(f)).String()
			}
		}
	}
	return ""
}

// Without returns the expectation without the fields made only from the attributes paths
// name (a policy's drop_attributes: the app never receives them, so whatever it holds there
// is its own). A field fed by a dropped attribute and another one stays: the mapping still
// sends it, from what is left.
func (x Expected) Without(resourceType string, paths []string) Expected {
	if len(paths) == 0 {
		return x
	}
	keys := make([]string, len(paths))
	for i, p := range paths {
		keys[i] = changedKey(resourceType, p)
	}
	within := func(attr string) bool {
		return slices.ContainsFunc(keys, func(k string) bool {
			return attr == k || (strings.HasPrefix(attr, k) && (attr[len(k)] == '.' || attr[len(k)] == ':'))
		})
	}
	out := Expected{Unknown: x.Unknown}
	for _, f := range x.Fields {
		if len(f.attrs) > 0 && !slices.ContainsFunc(f.attrs, func(a string) bool { return !within(a) }) {
			continue
		}
		out.Fields = append(out.Fields, f)
	}
	return out
}
