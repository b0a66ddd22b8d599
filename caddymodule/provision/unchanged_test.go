package provision

import (
	"net/http"
	"slices"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// txID is the id of the store's last committed write transaction: it moves with every
// commit (and fsync), and only then.
func (r *rig) txID() int {
	r.t.Helper()
	if teststore.Etcd() {
		r.t.Skip("counts bbolt's transactions")
	}
	var id int
	if err := r.store.DB().View(func(tx kv.Tx) error { id = kv.BoltTx(tx).ID(); return nil }); err != nil {
		r.t.Fatal(err)
	}
	return id
}

func (r *rig) put(typ, id, body string) *Result {
	r.t.Helper()
	return r.eng.Apply(testReq, &Op{Action: change.ActionReplace, Type: typ, ID: id, Resource: prepared(r.t, typ, body), Status: http.StatusOK, Render: renderDoc})
}

// renderDoc answers with the stored document, as the HTTP layer's renderer would.
func renderDoc(_ *store.Tx, _ *store.Record, doc scim.Resource) (any, error) { return doc, nil }

// TestUnchangedWritesCommitNothing (issue 18): a PATCH or PUT that leaves the resource as it
// is — Entra's periodic "active": "True", a PUT of the same body, a group PATCH re-adding a
// member as stored — is answered from a read transaction: no intent, no commit, no native
// call, no journal record unless reads are journaled; the answer is the stored resource. A
// change the app must see (a password, a member's new display, a re-added member stored
// otherwise) still goes the whole way.
func TestUnchangedWritesCommitNothing(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	body := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@contoso.example","active":true,"title":"Engineer"}`
	uid := r.mustCreate(scim.UserType, body)
	gid := r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Sales","members":[{"value":"`+uid+`"}]}`)
	version := r.eng.Apply(testReq, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: uid, Patch: patchOps(t, `[{"op":"replace","path":"title","value":"Engineer"}]`), Status: http.StatusNoContent}).Version

	calls, seq, tx := len(app.callLog()), r.last().Seq, r.txID()
	same := func(what string, res *Result) {
		t.Helper()
		if res.Err != nil {
			t.Fatalf("%s: %+v", what, res.Err)
		}
		if got := len(app.callLog()); got != calls {
			t.Errorf("%s: %d native calls, want none: %v", what, got-calls, app.callLog()[calls:])
		}
		if got := r.txID(); got != tx {
			t.Errorf("%s: the store committed %d write transactions, want none", what, got-tx)
		}
		if got := r.last().Seq; got != seq {
			t.Errorf("%s: journaled %+v", what, r.last())
		}
	}
	same("Entra's periodic active", r.patch(scim.UserType, uid, `[{"op":"replace","path":"active","value":"True"}]`))
	same("the same title (the other dialect)", r.patch(scim.UserType, uid, `[{"op":"Replace","value":{"title":"Engineer","active":true}}]`))
	res := r.put(scim.UserType, uid, body)
	same("a PUT of the same body", res)
	if doc, _ := res.Answer.(scim.Resource); res.Version != version || doc["title"] != "Engineer" {
		t.Errorf("the unchanged PUT's answer: version %d (want %d), %v", res.Version, version, res.Answer)
	}
	same("a member re-added", r.patch(scim.GroupType, gid, `[{"op":"add","path":"members","value":[{"value":"`+uid+`"}]}]`))
	same("a member removed that is not one", r.patch(scim.GroupType, gid, `[{"op":"remove","path":"members[value eq \"0d6b1b7e-0000-4000-8000-000000000000\"]"}]`))

	// Reads journaled: the unchanged write is journaled like a read, and still commits no change.
	r.eng.reads = true
	if res := r.patch(scim.UserType, uid, `[{"op":"replace","path":"active","value":"True"}]`); res.Err != nil || res.Version != version {
		t.Fatalf("journaled no-op: %+v", res)
	}
	if rec := r.last(); rec.Seq != seq+1 || rec.Outcome != change.Applied || len(rec.Events) != 0 || len(rec.Changes) != 0 || rec.Action != change.ActionPatch {
		t.Errorf("the no-op's record with reads journaled: %+v", rec)
	}
	r.eng.reads = false

	// What changes something goes the whole way.
	calls = len(app.callLog())
	if res := r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Lead"}]`); res.Err != nil || res.Version == version {
		t.Fatalf("a real change: %+v", res)
	}
	if got := app.callLog()[calls:]; len(got) != 1 || !slices.Contains(got, "PATCH /accounts/"+r.nativeID(scim.UserType, uid)) {
		t.Errorf("a real change's calls: %v", got)
	}
	tx = r.txID()
	if res := r.patch(scim.GroupType, gid, `[{"op":"add","path":"members","value":[{"value":"`+uid+`","display":"Ada"}]}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	if r.txID() == tx {
		t.Error("a member's new display was not committed")
	}
	tx = r.txID()
	if res := r.patch(scim.UserType, uid, `[{"op":"replace","path":"password","value":"n3w-Secret-value"}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	if r.txID() == tx {
		t.Error("a password change (write-only, never stored) was treated as no change")
	}
}
