package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scimgate/scimgate/caddymodule/internal/policytest"
)

// liveConfig sets the shipped guardrails so that every one of them decides something in
// liveInputs: scoping and the allowlist on, a target with its own sections (a brake of 3,
// other domains, privileged groups skipped rather than denied).
const liveConfig = `{"defaults": {"scoping": {"enabled": true, "domains": ["contoso.example"]},
	"attribute_allowlist": {"enabled": true, "User": ["userName", "active", "emails", "name.givenName"]},
	"break_glass": {"user_names": ["bg@contoso.example"]}},
	"targets": {"b": {"scoping": {"domains": ["fabrikam.example"], "on_exit": "ignore"},
		"mass_deprovision": {"max_per_hour": 3}, "privileged_groups": {"effect": "skip"}}}}`

// TestLiveMemoDecidesAlike: with the live memo, Decide's decisions, errors and prints are
// those of an evaluation of every rule, input by input, over requests of every kind, from
// goroutines deciding at once (run with -race), for the shipped guardrails and a policy
// that reads the input every way the memo must tell apart. And the memo does keep values.
func TestLiveMemoDecidesAlike(t *testing.T) {
	dir := t.TempDir()
	writeMemoPolicy(t, dir)
	var prints atomic.Int64
	memo := load(t, Options{Dir: dir, Print: func(string, string) { prints.Add(1) }})
	shipped := load(t, Options{Dir: policytest.CopyShipped(t, liveConfig)})
	inputs := liveInputs(400)
	for _, e := range []*Engine{memo, shipped} {
		want := make([]string, len(inputs))
		for i := range inputs {
			want[i] = decided(decideEvery(e, context.Background(), &inputs[i]))
		}
		printed := prints.Swap(0)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range inputs {
					i = (i + g*97) % len(inputs) // each goroutine in another order
					if got := decided(e.Decide(context.Background(), &inputs[i])); got != want[i] {
						t.Errorf("input %d (%+v): with the live memo %s; without %s", i, inputs[i], got, want[i])
						return
					}
				}
			})
		}
		wg.Wait()
		if got := prints.Swap(0); got != 4*printed {
			t.Errorf("%d prints from 4 rounds with the live memo; %d from one without", got, printed)
		}
		kept := 0
		e.policy.live().runs.Range(func(_, r any) bool {
			if f := r.(*liveRun).keptFrame(); f != nil {
				kept += len(f.entries)
			}
			return true
		})
		if kept == 0 {
			t.Error("the live memo kept nothing")
		}
	}
}

// TestLiveMemoCatchesABrokenMemo: the comparison above fails when the memo keeps what it
// must not (here: rules reading the resource, as if it were shared by a run), so its
// passing means something.
func TestLiveMemoCatchesABrokenMemo(t *testing.T) {
	liveFields["resource"] = true
	defer delete(liveFields, "resource")
	dir := policytest.CopyShipped(t, liveConfig)
	// Content of its own, so that it is compiled (and its invariance computed) anew.
	writeFile(t, filepath.Join(dir, "scimgate", "zz_broken.rego"), "package scimgate.zz\n\nbroken := true\n")
	e := load(t, Options{Dir: dir})
	differ := 0
	inputs := liveInputs(200)
	for range 2 {
		for i := range inputs {
			if decided(e.Decide(context.Background(), &inputs[i])) != decided(decideEvery(e, context.Background(), &inputs[i])) {
				differ++
			}
		}
	}
	if differ == 0 {
		t.Fatal("a memo keeping the resource's rules decided as the policy does: the comparison cannot tell")
	}
}

// TestLiveMemoInvariance: the live memo keeps rules reading the action, type, events,
// client and target, never those reading the stats, the changed paths, the members, the
// resource or the whole input.
func TestLiveMemoInvariance(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "scimgate"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "scimgate", "p.rego"), `package scimgate

kind := concat("/", [input.action, input.resource_type, input.client, input.target, concat(",", input.events)])

busy if input.stats.last_hour.delete > 3

touched := count(input.changed)

adding := count(input.members.add)

whole := object.get(input, "target", "")

decision := {"allow": true, "reasons": [kind, format_int(touched, 10), format_int(adding, 10), whole], "deactivate": busy}
`)
	inv := load(t, Options{Dir: dir}).policy.live().inv
	for rule, want := range map[string]bool{"kind": true, "busy": false, "touched": false, "adding": false, "whole": false, "decision": false} {
		if got := inv.invariant(ast.MustParseRef("data.scimgate." + rule)); got != want {
			t.Errorf("%s: invariant %v, want %v", rule, got, want)
		}
	}
}

// decideEvery is Decide evaluating every rule, without the live memo.
func decideEvery(e *Engine, ctx context.Context, in *Input) (Decision, error) {
	input, err := in.astValue()
	if err != nil {
		return e.deny(err)
	}
	return e.decide(ctx, input, nil)
}

// decided renders a decision and its error for comparison.
func decided(d Decision, err error) string { return fmt.Sprintf("%+v %v", d, err) }

// liveInputs are n requests of every kind: users created, updated, deactivated, deleted,
// in and out of scope, break-glass, without a userName; groups created with privileged
// names and members added and removed; for three targets and two clients, with counts
// around the brakes.
func liveInputs(n int) []Input {
	out := make([]Input, 0, n)
	for i := range n {
		domain := []string{"contoso.example", "fabrikam.example", "blocked.example", "eu.contoso.example"}[i%4]
		target := []string{"a", "b", ""}[i%3]
		in := Input{Client: []string{"entra", "preview"}[i%2], Target: target, Changed: []string{},
			Stats: Stats{LastHour: map[string]int64{"deactivate": int64(i % 7), "delete": int64(i % 5)}}}
		if i%2 == 0 {
			in.NativeID = fmt.Sprint("n", i)
		}
		user := map[string]any{"schemas": []any{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": fmt.Sprintf("u%d@%s", i, domain), "active": true}
		switch i % 6 {
		case 1:
			user["title"] = "Engineer"
			user["emails"] = []any{map[string]any{"value": fmt.Sprintf("u%d@%s", i, domain), "type": "work"}}
		case 2:
			user["userName"] = fmt.Sprintf("u%d", i)
		case 3:
			user["userName"] = "bg@contoso.example"
		case 4:
			delete(user, "userName")
		}
		group := map[string]any{"schemas": []any{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": []string{"Team", "Domain Admins", "tier0-ops", "Sales"}[(i/8)%4]}
		switch i % 8 {
		case 0:
			in.Action, in.ResourceType, in.Events, in.Resource = "create", "User", []string{"create"}, user
		case 1:
			prev := map[string]any{"userName": user["userName"], "active": true, "title": "Old"}
			in.Action, in.ResourceType, in.Events, in.Resource, in.Previous = "patch", "User", []string{"update"}, user, prev
			in.Changed = []string{"title", "emails"}
		case 2:
			off := map[string]any{"userName": user["userName"], "active": false}
			in.Action, in.ResourceType, in.Events, in.Resource, in.Previous = "patch", "User", []string{"deactivate"}, off, user
			in.Changed = []string{"active"}
		case 3:
			in.Action, in.ResourceType, in.Events, in.Previous = "delete", "User", []string{"delete"}, user
		case 4:
			in.Action, in.ResourceType, in.Events, in.Resource = "create", "Group", []string{"create"}, group
		case 5:
			in.Action, in.ResourceType, in.Events, in.Resource, in.Previous = "patch", "Group", []string{"add_members"}, group, group
			in.Members.Add = []Member{{ID: fmt.Sprint("m", i), Type: "User", Display: fmt.Sprintf("u%d@%s", i, domain)}, {ID: "g1", Type: "Group", Display: "Domain Admins"}}
		case 6:
			in.Action, in.ResourceType, in.Events, in.Resource, in.Previous = "patch", "Group", []string{"remove_members"}, group, group
			in.Members.Remove = []Member{{ID: fmt.Sprint("m", i), Type: "User"}}
		case 7:
			renamed := map[string]any{"displayName": "Renamed " + fmt.Sprint(i)}
			in.Action, in.ResourceType, in.Events, in.Resource, in.Previous = "replace", "Group", []string{"update", "rename"}, renamed, group
			in.Changed = []string{"displayName"}
		}
		out = append(out, in)
	}
	return out
}

// TestLiveKey: inputs share a run exactly when their action, type, events, client and
// target are equal, whatever those strings hold.
func TestLiveKey(t *testing.T) {
	base := Input{Action: "patch", ResourceType: "User", Events: []string{"update"}, Client: "entra", Target: "a"}
	same := base
	same.Resource, same.NativeID, same.Changed = map[string]any{"userName": "x"}, "n1", []string{"title"}
	same.Stats = Stats{LastHour: map[string]int64{"delete": 9}}
	if liveKey(&base) != liveKey(&same) {
		t.Error("inputs that differ only in what varies have different runs")
	}
	for _, other := range []Input{
		{Action: "patch", ResourceType: "User", Events: []string{"update"}, Client: "entra", Target: "b"},
		{Action: "patch", ResourceType: "User", Events: []string{"update", "rename"}, Client: "entra", Target: "a"},
		{Action: "patch", ResourceType: "User", Events: []string{"updat", "e"}, Client: "entra", Target: "a"},
		{Action: "patch", ResourceType: "User", Events: []string{}, Client: "entra", Target: "aupdate"},
		{Action: "patch", ResourceType: "User", Events: []string{"update"}, Client: "entraa", Target: ""},
		{Action: "patch\x00", ResourceType: "User", Events: []string{"update"}, Client: "entra", Target: "a"},
		{Action: "replace", ResourceType: "User", Events: []string{"update"}, Client: "entra", Target: "a"},
		{Action: "patch", ResourceType: "Group", Events: []string{"update"}, Client: "entra", Target: "a"},
	} {
		if liveKey(&other) == liveKey(&base) {
			t.Errorf("%+v shares the run of %+v", other, base)
		}
	}
}
