package reconcile

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/policytest"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestFixCountsSkippedRepairsAsNotFixed: a scope narrowed by a new policy leaves an
// account in the app whose changes the policy now skips, so it drifts; a fix's repair of
// it is skipped too, and the app gets nothing. The report counts it as not fixed (and
// says why), not as fixed: before, "fixed" counted every repair that did not fail, and a
// fix after a scope change reported hundreds of accounts fixed that were never sent.
func TestFixCountsSkippedRepairsAsNotFixed(t *testing.T) {
	r := newRig(t)
	inScope := r.create(r.eng, scim.UserType, user("u000", "Engineer", true))
	leaving := r.create(r.eng, scim.UserType, user("bob", "Engineer", true))
	r.app.call("PATCH", "/api/v1/accounts/"+r.nativeID(scim.UserType, leaving), `{"org":{"title":"Hacker"}}`, 200)
	r.app.call("PATCH", "/api/v1/accounts/"+r.nativeID(scim.UserType, inScope), `{"org":{"title":"Hacker"}}`, 200)

	// The new policy draws the scope by department: u000 is in Eng, bob is not.
	pol, err := policy.Load(policy.Options{Dir: policytest.CopyShipped(t, `{"defaults": {"scoping": {"enabled": true, "departments": ["Eng"]}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pol.Close() })
	r.patch(r.eng, scim.UserType, inScope, `[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Eng"}]`)
	scoped, err := provision.New(provision.Config{Store: r.store, Journal: r.j, Shared: r.shared, Target: r.target, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := New(r.store, r.j, scoped, r.target, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rc.Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.Drifted != 2 || rep.Counts.Fixed != 1 || rep.Counts.FixSkipped != 1 || rep.Counts.FixFailed != 0 {
		t.Fatalf("drifted %d, fixed %d, not fixed %d, failed %d; want 2 drifted, 1 fixed, 1 skipped", rep.Counts.Drifted, rep.Counts.Fixed, rep.Counts.FixSkipped, rep.Counts.FixFailed)
	}
	for _, f := range rep.Findings {
		switch f.Subject {
		case "bob@example.com":
			if !strings.HasPrefix(f.Fix, string(change.Skipped)+": ") || !strings.Contains(f.Fix, "scoping.departments") {
				t.Errorf("bob's fix %q: want skipped with the policy's reason", f.Fix)
			}
		case "u000@example.com":
			if f.Fix != string(change.Applied) {
				t.Errorf("u000's fix %q, want applied", f.Fix)
			}
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "fixed 1, fix failed 0, not fixed 1") {
		t.Errorf("the table's summary does not say what was not fixed:\n%s", table.String())
	}
}
