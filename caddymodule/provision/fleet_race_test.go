package provision

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// heldApp fronts app for one gateway: the answer to the first call matching method and a
// path prefix is held (the app has acted on it) until released, as a gateway whose call is
// still in flight, or that has not committed its outcome yet.
type heldApp struct {
	app      http.Handler
	match    string
	once     sync.Once
	acted    chan struct{}
	released chan struct{}
}

func newHeldApp(t *testing.T, app http.Handler, match string) (*heldApp, *httptest.Server) {
	h := &heldApp{app: app, match: match, acted: make(chan struct{}), released: make(chan struct{})}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(h.release)
	return h, srv
}

func (h *heldApp) release() {
	select {
	case <-h.released:
	default:
		close(h.released)
	}
}

func (h *heldApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	h.app.ServeHTTP(rec, r)
	if strings.HasPrefix(r.Method+" "+r.URL.Path, h.match) {
		h.once.Do(func() {
			close(h.acted)
			<-h.released
		})
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// accountOf is what the app holds of account id.
func (a *nativeApp) accountOf(id string) map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]any{}
	for k, v := range a.accounts[id] {
		out[k] = v
	}
	return out
}

// logins counts the app's accounts per login.
func (a *nativeApp) logins() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for _, acc := range a.accounts {
		if l, ok := acc["login"].(string); ok {
			out[l]++
		}
	}
	return out
}

func patchThrough(t testing.TB, eng *Engine, requestID, id, ops string) *Result {
	t.Helper()
	return eng.Apply(Request{ID: requestID, Client: "entra"},
		&Op{Action: change.ActionPatch, Type: scim.UserType, ID: id, Patch: patchOps(t, ops), Status: http.StatusOK})
}

// waitOrFail waits for ch, failing the test after a bound.
func waitOrFail(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never happened", what)
	}
}

// TestFleetConcurrentUpdatesOfOneUser: gateway A's PATCH of a user has reached the app but
// not committed when Entra's next PATCH of the same user arrives through gateway B. B must
// not call the app while A's change is in flight (the app would apply B's before A's
// commit, and A's commit, decided again on B's, would leave the directory with A's value
// and the app with B's): B answers 503 with Retry-After and sends nothing; its retry after
// A's commit goes through. The app and the directory end with the same value.
func TestFleetConcurrentUpdatesOfOneUser(t *testing.T) {
	app, srv := newNativeApp(t)
	held, heldSrv := newHeldApp(t, app, "PATCH /accounts/")
	r := newRig(t, rigOptions{})
	a := r.fleetGateway(newTarget(t, heldSrv.URL, false), nil)
	b := r.fleetGateway(newTarget(t, srv.URL, false), nil)
	created := createThrough(t, b, "create", "ada@contoso.example")
	if created.Err != nil {
		t.Fatal(created.Err)
	}
	id := created.ID
	native := r.nativeID(scim.UserType, id)

	resA := make(chan *Result, 1)
	go func() {
		resA <- patchThrough(t, a, "patch-a", id, `[{"op":"replace","path":"title","value":"from A"}]`)
	}()
	waitOrFail(t, held.acted, "gateway A's PATCH reaching the app")
	calls := len(app.callLog())
	resB := patchThrough(t, b, "patch-b", id, `[{"op":"replace","path":"title","value":"from B"}]`)
	if resB.Status != http.StatusServiceUnavailable || resB.RetryAfter <= 0 {
		t.Errorf("gateway B's PATCH while A's is in flight: %d (Retry-After %v) %+v; want 503 with Retry-After", resB.Status, resB.RetryAfter, resB.Err)
	}
	if got := app.callLog(); len(got) != calls {
		t.Errorf("gateway B called the app while A's change was in flight: %v", got[calls:])
	}
	held.release()
	var ra *Result
	select {
	case ra = <-resA:
	case <-time.After(20 * time.Second):
		t.Fatal("gateway A's PATCH never ended")
	}
	if ra.Err != nil {
		t.Fatalf("gateway A's PATCH: %d %+v", ra.Status, ra.Err)
	}
	if resB.Err != nil { // Entra's retry
		if resB = patchThrough(t, b, "patch-b", id, `[{"op":"replace","path":"title","value":"from B"}]`); resB.Err != nil {
			t.Fatalf("gateway B's retry after A's commit: %d %+v", resB.Status, resB.Err)
		}
	}
	var stored *store.Record
	if err := r.store.View(func(tx *store.Tx) error {
		var err error
		stored, err = tx.Get(scim.UserType, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	inApp := app.accountOf(native)["title"]
	if !strings.Contains(string(stored.Doc), `"title":"from B"`) || inApp != "from B" {
		t.Fatalf("the directory holds %s, the app title %v; want both from B (the change made last)", stored.Doc, inApp)
	}
}

// TestFleetRenameRacesCreate: gateway A renames ada to bob (its call has reached the app,
// its commit not yet) while Entra creates bob through gateway B. B must not create a second
// bob in the app: it answers 503 with Retry-After (A's change of that name is in flight)
// and, once A has committed, 409 uniqueness, without a call. The app ends with one bob, the
// account the directory maps to the renamed user.
func TestFleetRenameRacesCreate(t *testing.T) {
	app, srv := newNativeApp(t)
	held, heldSrv := newHeldApp(t, app, "PATCH /accounts/")
	r := newRig(t, rigOptions{})
	a := r.fleetGateway(newTarget(t, heldSrv.URL, false), nil)
	b := r.fleetGateway(newTarget(t, srv.URL, false), nil)
	created := createThrough(t, b, "create", "ada@contoso.example")
	if created.Err != nil {
		t.Fatal(created.Err)
	}
	id := created.ID

	resA := make(chan *Result, 1)
	go func() {
		resA <- patchThrough(t, a, "rename", id, `[{"op":"replace","path":"userName","value":"bob@contoso.example"}]`)
	}()
	waitOrFail(t, held.acted, "gateway A's rename reaching the app")
	resB := createThrough(t, b, "create-bob", "bob@contoso.example")
	if resB.Err == nil {
		t.Errorf("gateway B created bob while A's rename to bob was in flight: %d", resB.Status)
	} else if resB.Status != http.StatusServiceUnavailable && resB.Status != http.StatusConflict {
		t.Errorf("gateway B's create of bob during A's rename: %d %+v", resB.Status, resB.Err)
	}
	held.release()
	var ra *Result
	select {
	case ra = <-resA:
	case <-time.After(20 * time.Second):
		t.Fatal("gateway A's rename never ended")
	}
	if ra.Err != nil {
		t.Fatalf("gateway A's rename: %d %+v", ra.Status, ra.Err)
	}
	if retry := createThrough(t, b, "create-bob", "bob@contoso.example"); retry.Status != http.StatusConflict {
		t.Errorf("Entra's retry of the create after the rename committed: %d %+v; want 409", retry.Status, retry.Err)
	}
	if n := app.logins()["bob@contoso.example"]; n != 1 || app.accountCount() != 1 {
		t.Fatalf("the app holds %d accounts named bob, %d in all; want 1 and 1", n, app.accountCount())
	}
	if got := app.accountOf(r.nativeID(scim.UserType, id))["login"]; got != "bob@contoso.example" {
		t.Fatalf("the renamed user's account is %v in the app", got)
	}
}

// TestFleetCreateRacesRename: the mirror of TestFleetRenameRacesCreate: gateway A's create
// of bob has reached the app, uncommitted, when Entra renames ada to bob through gateway B.
// B answers 503 with Retry-After without renaming the account in the app, and 409 once the
// create has committed; the app ends with one bob and ada's account unchanged.
func TestFleetCreateRacesRename(t *testing.T) {
	app, srv := newNativeApp(t)
	held, heldSrv := newHeldApp(t, app, "POST /accounts")
	r := newRig(t, rigOptions{})
	a := r.fleetGateway(newTarget(t, heldSrv.URL, false), nil)
	b := r.fleetGateway(newTarget(t, srv.URL, false), nil)
	created := createThrough(t, b, "create-ada", "ada@contoso.example")
	if created.Err != nil {
		t.Fatal(created.Err)
	}
	id := created.ID

	resA := make(chan *Result, 1)
	go func() { resA <- createThrough(t, a, "create-bob", "bob@contoso.example") }()
	waitOrFail(t, held.acted, "gateway A's create reaching the app")
	calls := len(app.callLog())
	resB := patchThrough(t, b, "rename", id, `[{"op":"replace","path":"userName","value":"bob@contoso.example"}]`)
	if resB.Status != http.StatusServiceUnavailable || resB.RetryAfter <= 0 {
		t.Errorf("gateway B's rename to bob while A's create of bob is in flight: %d (Retry-After %v) %+v", resB.Status, resB.RetryAfter, resB.Err)
	}
	if got := app.callLog(); len(got) != calls {
		t.Errorf("gateway B called the app while A's create of the name was in flight: %v", got[calls:])
	}
	held.release()
	var ra *Result
	select {
	case ra = <-resA:
	case <-time.After(20 * time.Second):
		t.Fatal("gateway A's create never ended")
	}
	if ra.Err != nil {
		t.Fatalf("gateway A's create: %d %+v", ra.Status, ra.Err)
	}
	if retry := patchThrough(t, b, "rename", id, `[{"op":"replace","path":"userName","value":"bob@contoso.example"}]`); retry.Status != http.StatusConflict {
		t.Errorf("Entra's retry of the rename after the create committed: %d %+v; want 409", retry.Status, retry.Err)
	}
	if logins := app.logins(); logins["bob@contoso.example"] != 1 || logins["ada@contoso.example"] != 1 {
		t.Fatalf("the app's logins: %v; want one ada and one bob", logins)
	}
}

// TestFleetQueuedChangeWaitsForImmediateCalls: gateway A's immediate PATCH of a user has
// reached the app, uncommitted, when Entra's next PATCH of the user arrives through gateway
// B, whose target queues. Queued now, B's change would reach the app after A's call while
// the directory holds A's change after B's: B answers 503 with Retry-After instead, and its
// retry after A's commit is queued and delivered. The app ends with the directory's title.
func TestFleetQueuedChangeWaitsForImmediateCalls(t *testing.T) {
	app, srv := newNativeApp(t)
	held, heldSrv := newHeldApp(t, app, "PATCH /accounts/")
	r := newRig(t, rigOptions{})
	if err := r.store.Update(func(tx *store.Tx) error { return tx.SetOutboxPaused("native", true) }); err != nil {
		t.Fatal(err) // the test attempts the deliveries itself
	}
	a := r.fleetGateway(newTarget(t, heldSrv.URL, false), nil)
	queued := newTarget(t, srv.URL, false)
	queued.Delivery = withMode(outbox.Queued)
	b := r.fleetGateway(queued, nil)
	created := createThrough(t, a, "create", "ada@contoso.example")
	if created.Err != nil {
		t.Fatal(created.Err)
	}
	id := created.ID
	native := r.nativeID(scim.UserType, id)

	resA := make(chan *Result, 1)
	go func() {
		resA <- patchThrough(t, a, "patch-a", id, `[{"op":"replace","path":"title","value":"from A"}]`)
	}()
	waitOrFail(t, held.acted, "gateway A's PATCH reaching the app")
	resB := patchThrough(t, b, "patch-b", id, `[{"op":"replace","path":"title","value":"from B"}]`)
	if resB.Status != http.StatusServiceUnavailable || resB.RetryAfter <= 0 {
		t.Errorf("gateway B's queued PATCH while A's calls are in flight: %d (Retry-After %v) %+v; want 503", resB.Status, resB.RetryAfter, resB.Err)
	}
	held.release()
	select {
	case ra := <-resA:
		if ra.Err != nil {
			t.Fatalf("gateway A's PATCH: %d %+v", ra.Status, ra.Err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gateway A's PATCH never ended")
	}
	if resB.Err != nil { // Entra's retry
		if resB = patchThrough(t, b, "patch-b", id, `[{"op":"replace","path":"title","value":"from B"}]`); resB.Err != nil {
			t.Fatalf("gateway B's retry: %d %+v", resB.Status, resB.Err)
		}
	}
	if rep := b.Deliver(context.Background(), r.tasks()); !rep.Done {
		t.Fatalf("delivering B's change: %+v", rep)
	}
	var stored *store.Record
	if err := r.store.View(func(tx *store.Tx) error {
		var err error
		stored, err = tx.Get(scim.UserType, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inApp := app.accountOf(native)["title"]; !strings.Contains(string(stored.Doc), fmt.Sprintf(`"title":%q`, inApp)) {
		t.Fatalf("the directory holds %s, the app title %v", stored.Doc, inApp)
	}
}

// TestFleetRolesOfOneUserThroughTwoGateways: groups are roles. Gateway A adds ada to Admins
// (its PUT of ada's roles has reached the app, uncommitted) while gateway B adds her to
// Billing: each gateway locks ada's list for itself only, so B's list lacks Admins and the
// app holds B's while the directory holds both. A's commit finds ada's other groups changed
// since it read them and answers 503; Entra's retry sends the whole list. The app ends with
// the roles the directory gives.
func TestFleetRolesOfOneUserThroughTwoGateways(t *testing.T) {
	app, srv := newRoleApp(t)
	held, heldSrv := newHeldApp(t, app, "PUT /users/")
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, roleMapping)})
	a := r.fleetGateway(newMappedTarget(t, heldSrv.URL, roleMapping), nil)
	b := r.fleetGateway(newMappedTarget(t, srv.URL, roleMapping), nil)
	ada := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	admins, billing := r.mustCreate(scim.GroupType, group("Admins")), r.mustCreate(scim.GroupType, group("Billing"))
	add := func(eng *Engine, id, g string) *Result {
		return eng.Apply(Request{ID: id, Client: "entra"}, &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: g,
			Patch: patchOps(t, entraDialects[0].add(ada)), Status: http.StatusNoContent})
	}
	resA := make(chan *Result, 1)
	go func() { resA <- add(a, "add-admins", admins) }()
	waitOrFail(t, held.acted, "gateway A's roles reaching the app")
	if res := add(b, "add-billing", billing); res.Err != nil {
		t.Fatalf("gateway B's member add: %d %+v", res.Status, res.Err)
	}
	held.release()
	var ra *Result
	select {
	case ra = <-resA:
	case <-time.After(20 * time.Second):
		t.Fatal("gateway A's member add never ended")
	}
	if ra.Err != nil { // Entra's retry
		if ra.Status != http.StatusServiceUnavailable {
			t.Fatalf("gateway A's member add: %d %+v", ra.Status, ra.Err)
		}
		if ra = add(a, "add-admins", admins); ra.Err != nil {
			t.Fatalf("Entra's retry through A: %d %+v", ra.Status, ra.Err)
		}
	}
	var want []string
	for g, role := range map[string]string{admins: "role_admin", billing: "role_billing"} {
		if slices.Contains(r.members(g), ada) {
			want = append(want, role)
		}
	}
	slices.Sort(want)
	r.wantRoles(app, map[string][]string{ada: want})
}
