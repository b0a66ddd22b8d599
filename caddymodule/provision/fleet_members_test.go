package provision

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// memberFleet is two gateways of a fleet on one store, each with its own target (its own
// way to the one app): on a shared bbolt store or on a real etcd, each gateway with its own
// connection and cache.
type memberFleet struct {
	t     *testing.T
	a, b  *Engine
	store *store.Store // what the test reads the directory through
	app   *nativeApp
}

// fleetBackends are the stores the member races run on.
var fleetBackends = []string{"bbolt", "etcd"}

func newMemberFleet(t *testing.T, backend string, app *nativeApp, targetA, targetB *Target) *memberFleet {
	t.Helper()
	f := &memberFleet{t: t, app: app}
	switch backend {
	case "bbolt":
		r := newRig(t, rigOptions{})
		f.a, f.b, f.store = r.fleetGateway(targetA, nil), r.fleetGateway(targetB, nil), r.store
	case "etcd":
		c := etcdtest.Start(t, 1)
		prefix := "/fleet-members-" + t.Name() + "/"
		ga, gb := openEtcdGateway(t, c.Endpoints(), prefix), openEtcdGateway(t, c.Endpoints(), prefix)
		var err error
		if f.a, err = New(Config{Store: ga.store, Journal: ga.j, Shared: ga.share, Target: targetA, SharedStore: true}); err != nil {
			t.Fatal(err)
		}
		if f.b, err = New(Config{Store: gb.store, Journal: gb.j, Shared: gb.share, Target: targetB, SharedStore: true}); err != nil {
			t.Fatal(err)
		}
		f.store = gb.store
	default:
		t.Fatalf("backend %q", backend)
	}
	return f
}

// create creates a resource through gateway B.
func (f *memberFleet) create(typ, body string) string {
	f.t.Helper()
	res := f.b.Apply(Request{ID: "create-" + body, Client: "entra"},
		&Op{Action: change.ActionCreate, Type: typ, Resource: prepared(f.t, typ, body), Status: http.StatusCreated})
	if res.Err != nil {
		f.t.Fatalf("create %s: %d %+v", typ, res.Status, res.Err)
	}
	return res.ID
}

// patchGroup sends Entra's PATCH of group g through eng.
func (f *memberFleet) patchGroup(eng *Engine, requestID, g, ops string) *Result {
	return eng.Apply(Request{ID: requestID, Client: "entra"},
		&Op{Action: change.ActionPatch, Type: scim.GroupType, ID: g, Patch: patchOps(f.t, ops), Status: http.StatusNoContent})
}

// retried is Entra's retry of a change answered 503 with Retry-After: once more, which
// must go through now that nothing is in flight.
func (f *memberFleet) retried(res *Result, what string, again func() *Result) {
	f.t.Helper()
	if res.Err == nil {
		return
	}
	if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
		f.t.Fatalf("%s: %d (Retry-After %v) %+v; want success or 503 with Retry-After", what, res.Status, res.RetryAfter, res.Err)
	}
	if res = again(); res.Err != nil {
		f.t.Fatalf("Entra's retry of %s: %d %+v", what, res.Status, res.Err)
	}
}

// wantMembers checks that group g has exactly the members want, in the directory and in
// the app (the holders of its role).
func (f *memberFleet) wantMembers(g string, want ...string) {
	f.t.Helper()
	var dir, holders, inApp []string
	var role string
	if err := f.store.View(func(tx *store.Tx) error {
		role, _ = tx.NativeID("native/"+scim.GroupType, g)
		return tx.Members(g, func(m store.Member) error { dir = append(dir, m.ID); return nil })
	}); err != nil {
		f.t.Fatal(err)
	}
	f.app.mu.Lock()
	for holder := range f.app.roles[role] {
		holders = append(holders, holder)
	}
	f.app.mu.Unlock()
	if err := f.store.View(func(tx *store.Tx) error {
		for _, n := range holders {
			id, err := tx.SCIMIDOf("native/"+scim.UserType, n)
			if err != nil {
				id = "unmapped account " + n
			}
			inApp = append(inApp, id)
		}
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	slices.Sort(dir)
	slices.Sort(inApp)
	slices.Sort(want)
	if !slices.Equal(dir, want) || !slices.Equal(inApp, want) {
		f.t.Fatalf("group %s: the directory lists %v, the app's role %v; want %v in both", g, dir, inApp, want)
	}
}

// awaitResult waits for a change run in the background.
func awaitResult(t *testing.T, ch <-chan *Result, what string) *Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never ended", what)
		return nil
	}
}

// TestFleetMemberAddThenRemove: Entra adds ada to a group through gateway A (its call has
// reached the app, its commit not yet) and removes her through gateway B. One gateway
// would make the remove wait for the add (each member of a group is locked); in a fleet
// each gateway locks for itself, and B, deciding before A's commit, found no member to
// remove, made no call and answered 204, after which A committed the add: the remove was
// lost, ada stayed in the group in the directory and the app. B must decide on what A did:
// it answers 503 with Retry-After while A's change of that member is in flight, and
// Entra's retry removes her from both.
func TestFleetMemberAddThenRemove(t *testing.T) {
	for _, backend := range fleetBackends {
		t.Run(backend, func(t *testing.T) {
			app, srv := newNativeApp(t)
			held, heldSrv := newHeldApp(t, app, "PUT /roles/")
			f := newMemberFleet(t, backend, app, newTarget(t, heldSrv.URL, false), newTarget(t, srv.URL, false))
			ada := f.create(scim.UserType, user("ada@contoso.example"))
			g := f.create(scim.GroupType, group("Team"))
			add, remove := entraDialects[0].add(ada), entraDialects[1].remove(ada)

			resA := make(chan *Result, 1)
			go func() { resA <- f.patchGroup(f.a, "add", g, add) }()
			waitOrFail(t, held.acted, "gateway A's member add reaching the app")
			resB := f.patchGroup(f.b, "remove", g, remove)
			held.release()
			if ra := awaitResult(t, resA, "gateway A's member add"); ra.Err != nil {
				t.Fatalf("gateway A's member add: %d %+v", ra.Status, ra.Err)
			}
			f.retried(resB, "gateway B's member remove", func() *Result { return f.patchGroup(f.b, "remove", g, remove) })
			f.wantMembers(g)
		})
	}
}

// TestFleetMemberRemoveThenAdd is the mirror: ada is a member; Entra removes her through A
// (the app has acted, A has not committed) and adds her again through B. B found her still
// a member, answered 204 without a call, and A's commit then removed her: the add was
// lost. B answers 503 instead, and its retry adds her to both.
func TestFleetMemberRemoveThenAdd(t *testing.T) {
	for _, backend := range fleetBackends {
		t.Run(backend, func(t *testing.T) {
			app, srv := newNativeApp(t)
			held, heldSrv := newHeldApp(t, app, "DELETE /roles/")
			f := newMemberFleet(t, backend, app, newTarget(t, heldSrv.URL, false), newTarget(t, srv.URL, false))
			ada := f.create(scim.UserType, user("ada@contoso.example"))
			g := f.create(scim.GroupType, group("Team"))
			add, remove := entraDialects[0].add(ada), entraDialects[0].remove(ada)
			if res := f.patchGroup(f.b, "first-add", g, add); res.Err != nil {
				t.Fatalf("first add: %d %+v", res.Status, res.Err)
			}

			resA := make(chan *Result, 1)
			go func() { resA <- f.patchGroup(f.a, "remove", g, remove) }()
			waitOrFail(t, held.acted, "gateway A's member remove reaching the app")
			resB := f.patchGroup(f.b, "add", g, add)
			held.release()
			if ra := awaitResult(t, resA, "gateway A's member remove"); ra.Err != nil {
				t.Fatalf("gateway A's member remove: %d %+v", ra.Status, ra.Err)
			}
			f.retried(resB, "gateway B's member add", func() *Result { return f.patchGroup(f.b, "add", g, add) })
			f.wantMembers(g, ada)
		})
	}
}

// TestFleetMemberChangesDisagree: gateway A adds ada (in flight) while B's PATCH removes
// ada and adds bob. B decided on the group without ada (no call for her) and called the app
// for bob; A committed meanwhile, and B's commit, deciding again on A's, removed ada from
// the directory while the app kept her: the two disagreed. B must not call the app while
// A's change of a member it names is in flight (503 with Retry-After, no call), and its
// retry removes ada and adds bob in both.
func TestFleetMemberChangesDisagree(t *testing.T) {
	for _, backend := range fleetBackends {
		t.Run(backend, func(t *testing.T) {
			app, _ := newNativeApp(t)
			heldA, srvA := newHeldApp(t, app, "PUT /roles/")
			heldB, srvB := newHeldApp(t, app, "PUT /roles/") // B's first member call: its race
			f := newMemberFleet(t, backend, app, newTarget(t, srvA.URL, false), newTarget(t, srvB.URL, false))
			ada := f.create(scim.UserType, user("ada@contoso.example"))
			bob := f.create(scim.UserType, user("bob@contoso.example"))
			g := f.create(scim.GroupType, group("Team"))
			both := `[{"op":"remove","path":"members[value eq \"` + ada + `\"]"},{"op":"add","path":"members","value":[{"value":"` + bob + `"}]}]`

			resA := make(chan *Result, 1)
			go func() { resA <- f.patchGroup(f.a, "add-ada", g, entraDialects[0].add(ada)) }()
			waitOrFail(t, heldA.acted, "gateway A's member add reaching the app")
			calls := len(app.callLog())
			resB := make(chan *Result, 1)
			go func() { resB <- f.patchGroup(f.b, "swap", g, both) }()
			var ra, rb *Result
			select {
			case rb = <-resB: // refused before any call
				if got := app.callLog(); len(got) != calls {
					t.Errorf("gateway B called the app while A's change of ada was in flight: %v", got[calls:])
				}
				heldA.release()
				ra = awaitResult(t, resA, "gateway A's member add")
			case <-heldB.acted: // B called the app for bob: A commits first, then B
				heldA.release()
				ra = awaitResult(t, resA, "gateway A's member add")
				heldB.release()
				rb = awaitResult(t, resB, "gateway B's PATCH")
			case <-time.After(20 * time.Second):
				t.Fatal("gateway B's PATCH neither ended nor called the app")
			}
			if ra.Err != nil {
				t.Fatalf("gateway A's member add: %d %+v", ra.Status, ra.Err)
			}
			heldB.release()
			f.retried(rb, "gateway B's PATCH", func() *Result { return f.patchGroup(f.b, "swap", g, both) })
			f.wantMembers(g, bob)
		})
	}
}

// lockHolders counts the requests holding or waiting for key in eng's locks.
func lockHolders(eng *Engine, key string) int {
	eng.locks.mu.Lock()
	defer eng.locks.mu.Unlock()
	if e := eng.locks.locks[key]; e != nil {
		return e.refs
	}
	return 0
}

// TestOneGatewayMemberChangesInOrder: through one gateway, a remove of a member whose add
// is in flight (its call has reached the app, its commit not yet) waits for the add's
// commit (the member's lock) and is decided on it; so does the mirror, an add while the
// member's remove is in flight. The group ends as the later change leaves it, in the
// directory and the app.
func TestOneGatewayMemberChangesInOrder(t *testing.T) {
	for _, first := range []string{"add", "remove"} {
		t.Run(first+" first", func(t *testing.T) {
			app, _ := newNativeApp(t)
			match := "PUT /roles/"
			if first == "remove" {
				match = "DELETE /roles/"
			}
			held, heldSrv := newHeldApp(t, app, match)
			r := newRig(t, rigOptions{target: newTarget(t, heldSrv.URL, false)})
			f := &memberFleet{t: t, a: r.eng, b: r.eng, store: r.store, app: app}
			ada := f.create(scim.UserType, user("ada@contoso.example"))
			g := f.create(scim.GroupType, group("Team"))
			add, remove := entraDialects[0].add(ada), entraDialects[1].remove(ada)
			ops, then, want := add, remove, []string(nil)
			if first == "remove" {
				held.release()
				if res := f.patchGroup(r.eng, "first-add", g, add); res.Err != nil {
					t.Fatalf("first add: %d %+v", res.Status, res.Err)
				}
				held, heldSrv = newHeldApp(t, app, match)
				r.eng.target.Client = newTarget(t, heldSrv.URL, false).Client
				ops, then, want = remove, add, []string{ada}
			}
			res1, res2 := make(chan *Result, 1), make(chan *Result, 1)
			go func() { res1 <- f.patchGroup(r.eng, "first", g, ops) }()
			waitOrFail(t, held.acted, "the first change reaching the app")
			go func() { res2 <- f.patchGroup(r.eng, "then", g, then) }()
			key := scim.GroupType + ":" + g + "/member:" + ada
			for deadline := time.Now().Add(20 * time.Second); lockHolders(r.eng, key) < 2; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the second change never waited for the member's lock (%d holding)", lockHolders(r.eng, key))
				}
			}
			held.release()
			for i, ch := range []chan *Result{res1, res2} {
				if res := awaitResult(t, ch, "a change"); res.Err != nil {
					t.Fatalf("change %d: %d %+v", i+1, res.Status, res.Err)
				}
			}
			f.wantMembers(g, want...)
		})
	}
}

// TestFleetUnchangedPatchWaitsForInFlightChange: ada's title is "Engineer"; Entra sets it
// to "Manager" through gateway A (in flight) and back to "Engineer" through gateway B. B
// found the title already "Engineer" and answered 200 without a call, and A's commit then
// left "Manager" in the directory and the app: Entra's last change was lost. B answers 503
// with Retry-After while A's change is in flight, and its retry sets the title in both.
func TestFleetUnchangedPatchWaitsForInFlightChange(t *testing.T) {
	app, srv := newNativeApp(t)
	held, heldSrv := newHeldApp(t, app, "PATCH /accounts/")
	r := newRig(t, rigOptions{})
	a := r.fleetGateway(newTarget(t, heldSrv.URL, false), nil)
	b := r.fleetGateway(newTarget(t, srv.URL, false), nil)
	created := b.Apply(Request{ID: "create", Client: "entra"}, &Op{Action: change.ActionCreate, Type: scim.UserType,
		Resource: prepared(t, scim.UserType, user("ada@contoso.example", `,"title":"Engineer"`)), Status: http.StatusCreated})
	if created.Err != nil {
		t.Fatal(created.Err)
	}
	id := created.ID
	resA := make(chan *Result, 1)
	go func() {
		resA <- patchThrough(t, a, "patch-a", id, `[{"op":"replace","path":"title","value":"Manager"}]`)
	}()
	waitOrFail(t, held.acted, "gateway A's PATCH reaching the app")
	back := func() *Result {
		return patchThrough(t, b, "patch-b", id, `[{"op":"replace","path":"title","value":"Engineer"}]`)
	}
	resB := back()
	held.release()
	if ra := awaitResult(t, resA, "gateway A's PATCH"); ra.Err != nil {
		t.Fatalf("gateway A's PATCH: %d %+v", ra.Status, ra.Err)
	}
	f := &memberFleet{t: t, store: r.store, app: app}
	f.retried(resB, "gateway B's PATCH", back)
	var stored *store.Record
	if err := r.store.View(func(tx *store.Tx) error {
		var err error
		stored, err = tx.Get(scim.UserType, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	inApp := app.accountOf(r.nativeID(scim.UserType, id))["title"]
	if !strings.Contains(string(stored.Doc), `"title":"Engineer"`) || inApp != "Engineer" {
		t.Fatalf("the directory holds %s, the app's title is %v; want Engineer in both (Entra's last change)", stored.Doc, inApp)
	}
}

// TestFleetMemberChangeOvertakenAtCommit: ada is a member; gateway A's PATCH adds ada
// (already one: no edge, no call, so its intent does not name her) and bob (its call has
// reached the app, its commit not yet), while gateway B removes ada and commits. A's
// commit, deciding again on B's, added ada back in the directory, where the app has her no
// more. A answers 503 with Retry-After instead (the directory keeps B's change), and
// Entra's retry applies A's change on top of it in both.
func TestFleetMemberChangeOvertakenAtCommit(t *testing.T) {
	for _, backend := range fleetBackends {
		t.Run(backend, func(t *testing.T) {
			app, srv := newNativeApp(t)
			heldA, srvA := newHeldApp(t, app, "PUT /roles/")
			f := newMemberFleet(t, backend, app, newTarget(t, srvA.URL, false), newTarget(t, srv.URL, false))
			ada := f.create(scim.UserType, user("ada@contoso.example"))
			bob := f.create(scim.UserType, user("bob@contoso.example"))
			g := f.create(scim.GroupType, group("Team"))
			if res := f.patchGroup(f.b, "first-add", g, entraDialects[0].add(ada)); res.Err != nil {
				t.Fatalf("first add: %d %+v", res.Status, res.Err)
			}
			addBoth := entraDialects[0].add(ada, bob)
			resA := make(chan *Result, 1)
			go func() { resA <- f.patchGroup(f.a, "add-both", g, addBoth) }()
			waitOrFail(t, heldA.acted, "gateway A's add of bob reaching the app")
			if res := f.patchGroup(f.b, "remove-ada", g, entraDialects[1].remove(ada)); res.Err != nil {
				t.Fatalf("gateway B's remove of ada: %d %+v", res.Status, res.Err)
			}
			heldA.release()
			ra := awaitResult(t, resA, "gateway A's PATCH")
			if ra.Err == nil {
				f.wantMembers(g, bob) // committed as its calls made it
				return
			}
			f.retried(ra, "gateway A's PATCH", func() *Result { return f.patchGroup(f.a, "add-both", g, addBoth) })
			f.wantMembers(g, ada, bob)
		})
	}
}

// groupDeleteMapping is nativeMapping whose groups are deleted in the app too.
var groupDeleteMapping = strings.Replace(nativeMapping, `"create": {"method": "POST", "path": "/roles"`,
	`"delete": {"method": "DELETE", "path": "/roles/{id}"}, "create": {"method": "POST", "path": "/roles"`, 1)

// TestFleetMemberAddWhileGroupDeleted: gateway A's delete of a group has reached the app
// (the role is gone), uncommitted, when Entra adds a member through gateway B. B must not
// call the app for a role being deleted: it answers 503 with Retry-After, without a call,
// and its retry after the delete's commit answers 404. The app holds no role, the
// directory no group.
func TestFleetMemberAddWhileGroupDeleted(t *testing.T) {
	for _, backend := range fleetBackends {
		t.Run(backend, func(t *testing.T) {
			app, srv := newNativeApp(t)
			held, heldSrv := newHeldApp(t, app, "DELETE /roles/")
			f := newMemberFleet(t, backend, app, newMappedTarget(t, heldSrv.URL, groupDeleteMapping), newMappedTarget(t, srv.URL, groupDeleteMapping))
			ada := f.create(scim.UserType, user("ada@contoso.example"))
			g := f.create(scim.GroupType, group("Team"))
			resA := make(chan *Result, 1)
			go func() {
				resA <- f.a.Apply(Request{ID: "delete", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: g, Status: http.StatusNoContent})
			}()
			waitOrFail(t, held.acted, "gateway A's delete reaching the app")
			calls := len(app.callLog())
			add := func() *Result { return f.patchGroup(f.b, "add", g, entraDialects[0].add(ada)) }
			resB := add()
			if resB.Status != http.StatusServiceUnavailable || resB.RetryAfter <= 0 {
				t.Errorf("gateway B's member add while A's delete of the group is in flight: %d (Retry-After %v) %+v; want 503", resB.Status, resB.RetryAfter, resB.Err)
			}
			if got := app.callLog(); len(got) != calls {
				t.Errorf("gateway B called the app while A's delete of the group was in flight: %v", got[calls:])
			}
			held.release()
			if ra := awaitResult(t, resA, "gateway A's delete"); ra.Err != nil {
				t.Fatalf("gateway A's delete: %d %+v", ra.Status, ra.Err)
			}
			if res := add(); res.Status != http.StatusNotFound {
				t.Errorf("Entra's retry of the member add after the delete: %d %+v; want 404", res.Status, res.Err)
			}
			app.mu.Lock()
			roles := len(app.roles)
			app.mu.Unlock()
			if roles != 0 {
				t.Errorf("the app holds %d roles after the group's delete", roles)
			}
		})
	}
}

// managerMapping is nativeMapping whose user updates send the manager.
var managerMapping = strings.Replace(nativeMapping, `"body": {"title": "title", "login": "userName"}`,
	`"body": {"title": "title", "login": "userName", "manager": "manager"}`, 1)

// TestManagerDeletedWhileLinked: Entra sets ada's manager to max through gateway A (the
// call has linked max's account in the app, the commit is pending) while max is deleted
// through gateway B (a manager's delete locks only the manager, so one gateway races the
// same way). The delete's unlinking of its reports missed ada, whose reference was not
// committed yet: she was left naming a deleted manager, and her account in the app kept
// the link to max's deleted account with nothing to clear it. A's commit unlinks her as the
// delete unlinks its other reports: no manager in the directory, and her next change
// clears it in the app.
func TestManagerDeletedWhileLinked(t *testing.T) {
	for _, backend := range fleetBackends {
		t.Run(backend, func(t *testing.T) {
			app, srv := newNativeApp(t)
			held, heldSrv := newHeldApp(t, app, "PATCH /accounts/")
			f := newMemberFleet(t, backend, app, newMappedTarget(t, heldSrv.URL, managerMapping), newMappedTarget(t, srv.URL, managerMapping))
			ada := f.create(scim.UserType, user("ada@contoso.example"))
			maxID := f.create(scim.UserType, user("max@contoso.example"))
			resA := make(chan *Result, 1)
			go func() {
				resA <- patchThrough(t, f.a, "set-manager", ada,
					`[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"`+maxID+`"}]`)
			}()
			waitOrFail(t, held.acted, "gateway A's manager link reaching the app")
			if res := f.b.Apply(Request{ID: "delete-max", Client: "entra"},
				&Op{Action: change.ActionDelete, Type: scim.UserType, ID: maxID, Status: http.StatusNoContent}); res.Err != nil {
				t.Fatalf("gateway B's delete of the manager: %d %+v", res.Status, res.Err)
			}
			held.release()
			if ra := awaitResult(t, resA, "gateway A's PATCH"); ra.Err != nil {
				t.Fatalf("gateway A's PATCH: %d %+v", ra.Status, ra.Err)
			}
			var doc, native string
			if err := f.store.View(func(tx *store.Tx) error {
				rec, err := tx.Get(scim.UserType, ada)
				if err != nil {
					return err
				}
				doc = string(rec.Doc)
				native, err = tx.NativeID("native/"+scim.UserType, ada)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(doc, maxID) {
				t.Errorf("the directory's ada names her deleted manager: %s", doc)
			}
			if res := patchThrough(t, f.b, "next", ada, `[{"op":"replace","path":"title","value":"Engineer"}]`); res.Err != nil {
				t.Fatalf("ada's next change: %d %+v", res.Status, res.Err)
			}
			if m := app.accountOf(native)["manager"]; m != nil {
				t.Fatalf("after ada's next change her account in the app still links manager %v (deleted)", m)
			}
		})
	}
}
