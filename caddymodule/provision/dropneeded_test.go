package provision

import (
	"net/http"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestDropOfWhatTheAppNeedsSaysSo: a policy that keeps from the app an attribute the
// mapping requires (an allowlist without userName) makes the change impossible to send;
// the answer names the policy's drop and what to change, not only the empty field, and
// nothing reaches the app.
func TestDropOfWhatTheAppNeedsSaysSo(t *testing.T) {
	app, srv := newNativeApp(t)
	pol := writePolicy(t, `package scimgate

decision := {"allow": true, "drop_attributes": ["userName", "title"], "reasons": ["allowlist"]}
`)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false), policy: pol})
	res := r.create(scim.UserType, user("needed@contoso.example", `,"title":"T"`))
	if res.Err == nil || res.Status != http.StatusBadRequest {
		t.Fatalf("a create whose required userName the policy dropped: %+v", res)
	}
	if strings.Contains(res.Err.Detail, "scim 400") {
		t.Errorf("the detail holds the mapping error's Go form: %s", res.Err.Detail)
	}
	for _, want := range []string{"is required by the app, but userName is empty", "drop_attributes kept userName, title from native"} {
		if !strings.Contains(res.Err.Detail, want) {
			t.Errorf("the detail does not name %q: %s", want, res.Err.Detail)
		}
	}
	if n := len(app.callLog()); n != 0 {
		t.Errorf("the app received %d calls: %v", n, app.callLog())
	}
	if rec := r.last(); rec.Outcome != change.Rejected || !strings.Contains(rec.Error, "drop_attributes") {
		t.Errorf("journaled %s, want rejected with the policy named: %+v", rec.Outcome, rec)
	}
}
