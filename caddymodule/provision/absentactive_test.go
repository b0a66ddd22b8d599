package provision

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestAbsentActiveIsSentAsActive: a user created without active (SCIM leaves the default
// to the server; the engine reads it as active; Entra always sends it, other clients need
// not) reaches an app whose account is enabled by a field mapped from active as an enabled
// account, not as one without the field (which such an app may create disabled), whether
// delivered at once or queued; the directory keeps the user as it was sent. A policy that
// keeps active from the app still does.
func TestAbsentActiveIsSentAsActive(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies []map[string]any
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		data, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(data, &b)
		mu.Lock()
		bodies = append(bodies, b)
		n := len(bodies)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id": "p` + strings.Repeat("x", n) + `"}`))
	}))
	t.Cleanup(srv.Close)
	const file = `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/people", "id": "id",
	  "body": {"name": {"from": "userName"}, "enabled": {"from": "active"}}}}}}`
	noActive := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"NAME"}`
	last := func() map[string]any {
		mu.Lock()
		defer mu.Unlock()
		if len(bodies) == 0 {
			t.Fatal("the app received no create")
		}
		return bodies[len(bodies)-1]
	}

	for _, queued := range []bool{false, true} {
		target := newMappedTarget(t, srv.URL, file)
		target.Name = "native"
		if queued {
			target.Delivery = withMode(outbox.Queued)
		}
		r := newRig(t, rigOptions{target: target})
		name := map[bool]string{false: "now@contoso.example", true: "queued@contoso.example"}[queued]
		res := r.create(scim.UserType, strings.Replace(noActive, "NAME", name, 1))
		if res.Err != nil {
			t.Fatalf("queued %v: %v", queued, res.Err)
		}
		if queued {
			r.settle()
		}
		if b := last(); b["name"] != name || b["enabled"] != true {
			t.Errorf("queued %v: the app got %v, want enabled true", queued, b)
		}
		if _, ok := scim.Get(r.stored(res.ID), "active"); ok {
			t.Errorf("queued %v: the directory's user gained an active attribute", queued)
		}
	}

	pol := writePolicy(t, `package scimgate

decision := {"allow": true, "drop_attributes": ["active"], "reasons": ["the app manages its own accounts' state"]}
`)
	target := newMappedTarget(t, srv.URL, file)
	target.Name = "native"
	r := newRig(t, rigOptions{target: target, policy: pol})
	if res := r.create(scim.UserType, strings.Replace(noActive, "NAME", "kept@contoso.example", 1)); res.Err != nil {
		t.Fatal(res.Err)
	}
	if b := last(); b["name"] != "kept@contoso.example" || b["enabled"] != nil {
		t.Errorf("with active dropped by the policy the app got %v, want no enabled field", b)
	}
}
