package caddymodule

import (
	"net/http"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/store"
)

// TestRedecide: the commit applies the plan decided before the native calls when the
// stored resource is still that version, and decides again when it moved.
func TestRedecide(t *testing.T) {
	g := newTestGateway(t, nil)
	w := serve(t, g, http.MethodPost, "/scim/v2/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"redecide@contoso.example"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	id, _ := decodeJSON(t, w)["id"].(string)
	decisions := 0
	op := &writeOp{decide: func(tx *store.Tx) (*plan, error) {
		decisions++
		cur, err := tx.Get("User", id)
		if err != nil {
			return nil, err
		}
		return &plan{typ: "User", id: id, version: cur.Version, before: map[string]any{}}, nil
	}}
	var p *plan
	if err := g.store.View(func(tx *store.Tx) (err error) { p, err = op.decide(tx); return err }); err != nil {
		t.Fatal(err)
	}
	check := func(wantFresh bool) {
		t.Helper()
		before := decisions
		err := g.store.View(func(tx *store.Tx) error {
			got, err := redecide(tx, op, p)
			if err == nil && (got == p) == wantFresh {
				t.Errorf("redecide returned the old plan: %v, want a fresh decision: %v", got == p, wantFresh)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if fresh := decisions > before; fresh != wantFresh {
			t.Errorf("decided again: %v, want %v", fresh, wantFresh)
		}
	}
	check(false) // unchanged: the plan stands
	if w := serve(t, g, http.MethodPatch, "/scim/v2/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Moved"}]}`); w.Code != http.StatusOK {
		t.Fatalf("patch: %d %s", w.Code, w.Body)
	}
	check(true) // the resource moved on: decide again
}
