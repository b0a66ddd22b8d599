package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestInputConversion(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		want string // the input document as the policy must see it
	}{
		{"empty input has every key", Input{}, `{
			"action": "", "resource_type": "", "events": [], "client": "", "target": "", "native_id": "",
			"resource": null, "previous": null, "changed": [], "members": {"add": [], "remove": []},
			"stats": {"window": "1h", "last_hour": {"create": 0, "update": 0, "deactivate": 0, "reactivate": 0,
				"delete": 0, "rename": 0, "add_members": 0, "remove_members": 0}}}`},
		{"user patch", Input{
			Action: "patch", ResourceType: "User", Events: []string{"update", "rename"},
			Client: "entra", Target: "demo", NativeID: "42",
			Resource: decodeJSON(t, `{"userName": "a@b.c", "active": true, "n": 12345678901234567890, "f": 0.5,
				"emails": [{"value": "a@b.c", "primary": true}], "x": null}`),
			Previous: decodeJSON(t, `{"userName": "old@b.c", "active": false}`),
			Changed:  []string{"userName", "active"},
			Stats:    Stats{LastHour: map[string]int64{"update": 7, "delete": 3, "future_event": 1}},
		}, `{
			"action": "patch", "resource_type": "User", "events": ["update", "rename"], "client": "entra",
			"target": "demo", "native_id": "42",
			"resource": {"userName": "a@b.c", "active": true, "n": 12345678901234567890, "f": 0.5,
				"emails": [{"value": "a@b.c", "primary": true}], "x": null},
			"previous": {"userName": "old@b.c", "active": false},
			"changed": ["userName", "active"], "members": {"add": [], "remove": []},
			"stats": {"window": "1h", "last_hour": {"create": 0, "update": 7, "deactivate": 0, "reactivate": 0,
				"delete": 3, "rename": 0, "add_members": 0, "remove_members": 0, "future_event": 1}}}`},
		// Go types a JSON decoder never produces still convert (through OPA's eager path).
		{"non-JSON Go types", Input{
			Resource: map[string]any{"members": []map[string]any{{"value": "u1"}}, "n": json.Number("5"), "tags": map[string]string{"a": "b"}},
		}, `{
			"action": "", "resource_type": "", "events": [], "client": "", "target": "", "native_id": "",
			"resource": {"members": [{"value": "u1"}], "n": 5, "tags": {"a": "b"}}, "previous": null,
			"changed": [], "members": {"add": [], "remove": []},
			"stats": {"window": "1h", "last_hour": {"create": 0, "update": 0, "deactivate": 0, "reactivate": 0,
				"delete": 0, "rename": 0, "add_members": 0, "remove_members": 0}}}`},
		{"group members", Input{
			Action: "patch", ResourceType: "Group", Events: []string{"add_members", "remove_members"},
			Members: Members{
				Add:    []Member{{ID: "u1", Type: "User", Display: "alice"}, {ID: "g1", Type: "Group", Display: "admins"}},
				Remove: []Member{{ID: "u2"}},
			},
		}, `{
			"action": "patch", "resource_type": "Group", "events": ["add_members", "remove_members"], "client": "",
			"target": "", "native_id": "", "resource": null, "previous": null, "changed": [],
			"members": {"add": [{"id": "u1", "type": "User", "display": "alice"}, {"id": "g1", "type": "Group", "display": "admins"}],
				"remove": [{"id": "u2", "type": "", "display": ""}]},
			"stats": {"window": "1h", "last_hour": {"create": 0, "update": 0, "deactivate": 0, "reactivate": 0,
				"delete": 0, "rename": 0, "add_members": 0, "remove_members": 0}}}`},
	}
	resync := decodeJSON(t, `{"userName": "a@b.c", "emails": [{"value": "a@b.c"}]}`)
	tests = append(tests, struct {
		name string
		in   Input
		want string
	}{"re-sync: previous is the resource", Input{
		Action: "replace", ResourceType: "User", Events: []string{"update"}, Resource: resync, Previous: resync,
	}, `{
			"action": "replace", "resource_type": "User", "events": ["update"], "client": "", "target": "", "native_id": "",
			"resource": {"userName": "a@b.c", "emails": [{"value": "a@b.c"}]},
			"previous": {"userName": "a@b.c", "emails": [{"value": "a@b.c"}]},
			"changed": [], "members": {"add": [], "remove": []},
			"stats": {"window": "1h", "last_hour": {"create": 0, "update": 0, "deactivate": 0, "reactivate": 0,
				"delete": 0, "rename": 0, "add_members": 0, "remove_members": 0}}}`})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := ast.MustParseTerm(tt.want).Value
			got, err := tt.in.astValue()
			if err != nil {
				t.Fatal(err)
			}
			if got.Compare(want) != 0 {
				t.Errorf("got  %v\nwant %v", got, want)
			}
			// Prepare (eager, for several policies in turn) yields the same document.
			prepared, err := tt.in.Prepare()
			if err != nil {
				t.Fatal(err)
			}
			if prepared.value.Compare(want) != 0 {
				t.Errorf("prepared %v\nwant     %v", prepared.value, want)
			}
			// PrepareLike after any other input yields it too, whatever it can share.
			for _, other := range tests {
				before, err := other.in.Prepare()
				if err != nil {
					t.Fatal(err)
				}
				like, err := tt.in.PrepareLike(before)
				if err != nil {
					t.Fatal(err)
				}
				if like.value.Compare(want) != 0 {
					t.Errorf("prepared like %q: %v\nwant %v", other.name, like.value, want)
				}
			}
		})
	}
}

// TestPrepareLikeShares: inputs that differ only in their resources and native id share
// the rest of the converted document; any other difference converts it anew.
func TestPrepareLikeShares(t *testing.T) {
	base := Input{Action: "replace", ResourceType: "User", Events: []string{"update"}, Client: "c", Target: "t",
		Resource: decodeJSON(t, `{"userName": "a@b.c"}`), Stats: Stats{LastHour: map[string]int64{"update": 1}}}
	first, err := base.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	next := base
	next.Resource, next.Previous, next.NativeID = decodeJSON(t, `{"userName": "d@e.f"}`), decodeJSON(t, `{"userName": "x"}`), "n1"
	if p, err := next.PrepareLike(first); err != nil || p.rest != first.rest {
		t.Errorf("an input differing only in its resources: not shared (%v)", err)
	}
	for name, change := range map[string]func(*Input){
		"action": func(in *Input) { in.Action = "patch" }, "type": func(in *Input) { in.ResourceType = "Group" },
		"events": func(in *Input) { in.Events = []string{"update", "rename"} }, "client": func(in *Input) { in.Client = "d" },
		"target": func(in *Input) { in.Target = "u" }, "changed": func(in *Input) { in.Changed = []string{"title"} },
		"members": func(in *Input) { in.Members.Add = []Member{{ID: "u1"}} },
		"stats":   func(in *Input) { in.Stats.LastHour = map[string]int64{"update": 2} },
	} {
		other := base
		change(&other)
		p, err := other.PrepareLike(first)
		if err != nil {
			t.Fatal(err)
		}
		if p.rest == first.rest {
			t.Errorf("%s differs: the converted document was shared", name)
		}
		if want, _ := other.Prepare(); p.value.Compare(want.value) != 0 {
			t.Errorf("%s differs: %v, want %v", name, p.value, want.value)
		}
	}
}

// TestInputAsPolicySeesIt checks the conversion end to end through a policy that echoes its
// input with json.marshal.
func TestInputAsPolicySeesIt(t *testing.T) {
	e := load(t, Options{Dir: "testdata/decide"})
	in := userPatchInput(t)
	in.Client = "echo"
	d, err := e.Decide(context.Background(), in)
	if err != nil || len(d.Reasons) != 1 {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	var got map[string]any
	dec := json.NewDecoder(bytes.NewReader([]byte(d.Reasons[0])))
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	ent := got["resource"].(map[string]any)["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)
	if ent["department"] != "Platform" || ent["manager"].(map[string]any)["value"] != "8f5b2c1a-6d7e-4f80-9a1b-2c3d4e5f6a7b" {
		t.Errorf("enterprise extension as seen by the policy: %v", ent)
	}
	if got["stats"].(map[string]any)["last_hour"].(map[string]any)["update"] != json.Number("12") {
		t.Errorf("stats as seen by the policy: %v", got["stats"])
	}
	prepared, err := in.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	if dp, err := e.DecidePrepared(context.Background(), prepared); err != nil || !equalDecision(dp, d) {
		t.Errorf("DecidePrepared = %+v, %v; Decide gave %+v", dp, err, d)
	}
}

// decodeJSON decodes like the gateway does: UseNumber, so numbers arrive as json.Number.
func decodeJSON(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding %s: %v", s, err)
	}
	return m
}

func readJSON(t testing.TB, file string) map[string]any {
	t.Helper()
	bs, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return decodeJSON(t, string(bs))
}

// userPatchInput is a realistic Entra user update: a department change on a full user.
func userPatchInput(t testing.TB) *Input {
	return &Input{
		Action:       "patch",
		ResourceType: "User",
		Events:       []string{"update"},
		Client:       "entra",
		Target:       "demo",
		NativeID:     "42",
		Resource:     readJSON(t, "testdata/input/user_after.json"),
		Previous:     readJSON(t, "testdata/input/user_before.json"),
		Changed:      []string{"title", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"},
		Stats:        Stats{LastHour: map[string]int64{"create": 3, "update": 12, "deactivate": 1}},
	}
}

// groupAddInput is a realistic Entra membership change: one user added to a group.
func groupAddInput(t testing.TB) *Input {
	return &Input{
		Action:       "patch",
		ResourceType: "Group",
		Events:       []string{"add_members"},
		Client:       "entra",
		Target:       "demo",
		NativeID:     "g-7",
		Resource:     readJSON(t, "testdata/input/group_after.json"),
		Previous:     readJSON(t, "testdata/input/group_before.json"),
		Changed:      []string{"members"},
		Members: Members{Add: []Member{
			{ID: "7f4a0c0a-5e65-4a2a-9c75-2e9e4d3f1d33", Type: "User", Display: "carol@contoso.com"},
		}},
		Stats: Stats{LastHour: map[string]int64{"add_members": 5}},
	}
}
