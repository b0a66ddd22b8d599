package reconcile

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/policytest"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// allowlistPolicy is the shipped guardrails with an attribute allowlist that keeps titles
// (org.title in the demo app) from the app.
func allowlistPolicy(t *testing.T) *policy.Engine {
	t.Helper()
	pol, err := policy.Load(policy.Options{Dir: policytest.CopyShipped(t, `{"defaults": {"attribute_allowlist": {"enabled": true,
		"User": ["userName", "active", "externalId", "displayName", "name", "emails",
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
			"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"]}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pol.Close() })
	return pol
}

// TestReconcileComparesWhatThePolicyLetsThrough: with an allowlist that keeps titles from
// the app, no account ever received its title, and one holds a title of the app's own.
// Neither is drift (the app never receives the field), so the report lists only the real
// drift of an allowed field; --fix repairs it without sending any title, and a second run
// reports nothing. A repair asked to send a kept attribute (here: clear a title the
// directory does not have) is shaped by the policy like Entra's changes: the app's own
// title stays.
func TestReconcileComparesWhatThePolicyLetsThrough(t *testing.T) {
	r := newPolicyRig(t, allowlistPolicy(t))
	var ids []string
	for i := range 10 {
		u := user(fmt.Sprintf("a%02d", i), "Engineer", true)
		ext := map[string]any{"department": "Eng"}
		if i == 8 {
			ext["manager"] = map[string]any{"value": ids[7]}
		}
		u[scim.EnterpriseUserSchema] = ext
		ids = append(ids, r.create(r.eng, scim.UserType, u))
	}
	// Entra's manager pass: a PATCH of the manager's value, which the allowlist lets through.
	r.patch(r.eng, scim.UserType, ids[9], `[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":{"value":"`+ids[0]+`"}}]`)
	noTitle := user("bare", "", true)
	delete(noTitle, "title")
	bare := r.create(r.eng, scim.UserType, noTitle)
	r.app.call("PATCH", "/api/v1/accounts/"+r.nativeID(scim.UserType, ids[3]), `{"org":{"title":"Boss"}}`, 200)
	r.app.call("PATCH", "/api/v1/accounts/"+r.nativeID(scim.UserType, bare), `{"org":{"title":"Own"}}`, 200)
	r.app.call("PATCH", "/api/v1/accounts/"+r.nativeID(scim.UserType, ids[5]), `{"person":{"first":"Mallory"}}`, 200)
	r.app.call("DELETE", "/api/v1/accounts/"+r.nativeID(scim.UserType, ids[7]), "", 204)

	rc := r.reconciler(Options{})
	rep, err := rc.Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	// a07's account gone: the app dropped it as a08's manager too. Its re-creation goes
	// first, so a08's repair sends the new account's id.
	if got, want := keys(rep), []string{"drifted User a05@example.com", "drifted User a08@example.com", "missing User a07@example.com"}; !slices.Equal(got, want) {
		t.Fatalf("findings %v, want %v", got, want)
	}
	for _, f := range rep.Findings {
		for _, d := range f.Fields {
			if d.Native != "person.first" && d.Native != "org.manager_id" {
				t.Errorf("drifted field %s (app %s, expected %s): only person.first differs in what the app receives", d.Native, d.App, d.Want)
			}
		}
		if f.Fix != string(change.Applied) {
			t.Errorf("%s: fix %q", findingKey(f), f.Fix)
		}
	}
	again, err := rc.Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Findings) != 0 {
		t.Fatalf("after the fix: %v %+v; repairs %+v", keys(again), again.Findings[0].Fields, r.records(rep.Run))
	}

	// The repair a drift of the title would ask for, made directly: the allowlist drops
	// it, so the app's own title is not cleared.
	res := r.eng.Repair(provision.Request{ID: "direct", Client: "reconcile"}, provision.Repair{
		Kind: provision.RepairUpdate, Type: scim.UserType, ID: bare, Changed: []string{"title"}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	titles := map[string]string{}
	for _, a := range r.app.state().Accounts {
		titles[a.Login] = a.Org.Title
		if a.Login == "a07@example.com" && a.Org.Dept != "Eng" {
			t.Errorf("a07 made again with department %q, want Eng (the allowlist lets the extension's department through)", a.Org.Dept)
		}
	}
	for login, want := range map[string]string{"a00@example.com": "", "a03@example.com": "Boss", "a07@example.com": "", "bare@example.com": "Own"} {
		if titles[login] != want {
			t.Errorf("%s: title %q in the app, want %q", login, titles[login], want)
		}
	}
}
