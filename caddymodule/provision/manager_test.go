package provision

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// fullPutMapping sends every field of a user with each update and deactivation (PUT
// replaces the whole account), the manager included: the shape for which a dangling
// manager blocked every change of a report.
const fullPutMapping = `{
  "version": 1,
  "users": {
    "events": {
      "create": {"method": "POST", "path": "/accounts", "id": "account.ref",
        "body": {"login": {"from": "userName", "required": true}, "title": "title", "manager": "manager", "enabled": "active"}},
      "update": {"method": "PUT", "path": "/accounts/{id}", "send": "all",
        "body": {"login": {"from": "userName", "required": true}, "title": "title", "manager": "manager", "enabled": "active"}},
      "deactivate": {"method": "PUT", "path": "/accounts/{id}",
        "body": {"login": {"from": "userName", "required": true}, "title": "title", "manager": "manager", "enabled": "active"}},
      "delete": {"method": "DELETE", "path": "/accounts/{id}"}
    }
  }
}`

// putApp is nativeApp with PUT /accounts/{id} replacing the whole account, and the body
// of every PUT kept.
type putApp struct {
	*nativeApp
	mu   sync.Mutex
	puts []map[string]any
}

func (p *putApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodPut || len(parts) != 2 || parts[0] != "accounts" {
		p.nativeApp.ServeHTTP(w, r)
		return
	}
	var in map[string]any
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &in)
	p.mu.Lock()
	p.puts = append(p.puts, in)
	p.mu.Unlock()
	p.nativeApp.mu.Lock()
	defer p.nativeApp.mu.Unlock()
	p.nativeApp.calls = append(p.nativeApp.calls, r.Method+" "+r.URL.Path)
	if p.nativeApp.accounts[parts[1]] == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"message":"no such account"}`)
		return
	}
	p.nativeApp.accounts[parts[1]] = in
	w.WriteHeader(http.StatusNoContent)
}

func (p *putApp) lastPut() map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.puts) == 0 {
		return nil
	}
	return p.puts[len(p.puts)-1]
}

func (p *putApp) putCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.puts)
}

func (p *putApp) account(id string) map[string]any {
	p.nativeApp.mu.Lock()
	defer p.nativeApp.mu.Unlock()
	return p.nativeApp.accounts[id]
}

func newPutTarget(t *testing.T) (*putApp, *Target) {
	t.Helper()
	return newManagerTarget(t, fullPutMapping)
}

func newManagerTarget(t *testing.T, file string) (*putApp, *Target) {
	t.Helper()
	a, _ := newNativeApp(t)
	app := &putApp{nativeApp: a}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	return app, newMappedTarget(t, srv.URL, file)
}

func withManager(managerID string) string {
	return `,"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"` + managerID + `"}}`
}

// stored reads a user's attributes as the directory holds them (what GET answers from).
func (r *rig) stored(id string) scim.Resource {
	r.t.Helper()
	var doc scim.Resource
	err := r.store.View(func(tx *store.Tx) error {
		rec, err := tx.Get(scim.UserType, id)
		if err != nil {
			return err
		}
		doc, err = DecodeDoc(rec)
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return doc
}

func (r *rig) reportsOf(managerID string) []string {
	r.t.Helper()
	var ids []string
	if err := r.store.View(func(tx *store.Tx) (err error) {
		ids, err = tx.Lookup(scim.UserType, managerIndex, managerID)
		return err
	}); err != nil {
		r.t.Fatal(err)
	}
	return ids
}

func (r *rig) deleteUser(id string) *Result {
	r.t.Helper()
	return r.eng.Apply(Request{ID: "req-delete", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: id, Status: http.StatusNoContent})
}

// TestDeletedManagerIsDroppedFromReports: deleting a manager drops the reference from its
// reports in the delete's transaction (found by the manager index), with one cascade
// record per report; the reports' later changes go through with a full-PUT mapping, and
// the app gets no manager.
func TestDeletedManagerIsDroppedFromReports(t *testing.T) {
	app, target := newPutTarget(t)
	r := newRig(t, rigOptions{target: target})
	mid := r.mustCreate(scim.UserType, user("grace@contoso.example"))
	rid := r.mustCreate(scim.UserType, user("rita@contoso.example", `,"title":"Analyst"`, withManager(mid)))
	other := r.mustCreate(scim.UserType, user("otto@contoso.example", withManager(mid)))
	managerNative, reportNative := r.nativeID(scim.UserType, mid), r.nativeID(scim.UserType, rid)
	if got := app.account(reportNative)["manager"]; got != managerNative {
		t.Fatalf("the report's account has manager %v, want %s", got, managerNative)
	}
	if got := r.reportsOf(mid); !slices.Equal(got, sortedIDs(rid, other)) {
		t.Fatalf("the manager index finds %v, want %v", got, sortedIDs(rid, other))
	}
	before := len(r.records())

	if res := r.deleteUser(mid); res.Err != nil {
		t.Fatalf("delete the manager: %v", res.Err)
	}
	for _, id := range []string{rid, other} {
		if doc := r.stored(id); managerRef(doc) != "" {
			t.Fatalf("the directory still holds the manager of %s: %v", id, doc)
		}
	}
	if _, ok := r.stored(rid)[scim.EnterpriseUserSchema]; ok {
		t.Error("an enterprise extension left empty by the manager's removal stays")
	}
	if got := r.reportsOf(mid); len(got) != 0 {
		t.Fatalf("the manager index still finds %v", got)
	}
	recs := r.records()[before:]
	if len(recs) != 4 { // intent, outcome, and one cascade record per report
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	if recs[1].Action != change.ActionDelete || recs[1].SCIMID != mid || recs[1].Outcome != change.Applied {
		t.Fatalf("the delete's record: %+v", recs[1])
	}
	var cascaded []string
	for _, c := range recs[2:] {
		cascaded = append(cascaded, c.SCIMID)
		if c.Action != change.ActionCascade || c.RequestID != "req-delete" || c.Client != "entra" || c.Outcome != change.Applied ||
			c.Target != "" || len(c.Events) != 0 || c.Backend != nil ||
			len(c.Changes) != 1 || !strings.HasPrefix(c.Changes[0].Path, scim.EnterpriseUserSchema+":manager") || c.Changes[0].Op != "remove" {
			t.Fatalf("cascade record %+v", c)
		}
		if reason := strings.Join(c.Decision.Reasons, " "); !strings.Contains(reason, mid+" (grace@contoso.example) was deleted by this request") ||
			!strings.Contains(reason, "native is not called") {
			t.Fatalf("cascade reason: %q", reason)
		}
	}
	slices.Sort(cascaded)
	if !slices.Equal(cascaded, sortedIDs(rid, other)) {
		t.Fatalf("cascade records for %v, want %v", cascaded, sortedIDs(rid, other))
	}

	// Offboarding the report: a full PUT of its account, without a manager.
	if res := r.patch(scim.UserType, rid, `[{"op":"replace","path":"active","value":false}]`); res.Err != nil {
		t.Fatalf("deactivate the report: %v", res.Err)
	}
	put := app.lastPut()
	if _, has := put["manager"]; has || put["enabled"] != false || put["login"] != "rita@contoso.example" {
		t.Fatalf("the deactivation sent %v", put)
	}
	if acc := app.account(reportNative); acc["manager"] != nil || acc["enabled"] != false {
		t.Fatalf("the report's account: %v", acc)
	}
}

// TestDanglingManagerIsSentAsNone: a reference to a manager the directory does not have
// (written before the index existed, or re-sent by a client after the delete) is sent as no
// manager; a manager in the directory whose account the app lacks still fails the change
// (400), and the directory keeps what it had.
func TestDanglingManagerIsSentAsNone(t *testing.T) {
	app, target := newPutTarget(t)
	r := newRig(t, rigOptions{target: target})
	rid := r.mustCreate(scim.UserType, user("rita@contoso.example"))
	res := r.eng.Apply(testReq, &Op{Action: change.ActionReplace, Type: scim.UserType, ID: rid, Status: http.StatusOK,
		Resource: prepared(t, scim.UserType, user("rita@contoso.example", `,"title":"Lead"`, withManager("00000000-0000-4000-8000-00000000dead")))})
	if res.Err != nil {
		t.Fatalf("a replace naming a manager the directory does not have: %v", res.Err)
	}
	if put := app.lastPut(); put["title"] != "Lead" || put["manager"] != nil {
		t.Fatalf("the update sent %v", put)
	}

	// A manager who is in the directory without an account in the app (created while the
	// gateway had no target).
	plain := r.build(rigOptions{})
	pending := func() string {
		res := plain.Apply(testReq, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("pat@contoso.example")), Status: http.StatusCreated})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res.ID
	}()
	puts := app.putCount()
	res = r.patch(scim.UserType, rid, `[{"op":"add","path":"manager","value":"`+pending+`"}]`)
	if res.Err == nil || res.Err.Status != http.StatusBadRequest || !strings.Contains(res.Err.Detail, "has no account in the app yet") {
		t.Fatalf("a manager without an account: %+v", res.Err)
	}
	if app.putCount() != puts || managerRef(r.stored(rid)) != "00000000-0000-4000-8000-00000000dead" {
		t.Fatalf("a refused change reached the app or the directory")
	}
}

// TestDeletedManagerWithoutTarget: the directory alone (no target, no policy: one
// transaction) drops the references too, and journals them.
func TestDeletedManagerWithoutTarget(t *testing.T) {
	r := newRig(t, rigOptions{})
	mid := r.mustCreate(scim.UserType, user("grace@contoso.example"))
	rid := r.mustCreate(scim.UserType, user("rita@contoso.example", withManager(mid)))
	if res := r.deleteUser(mid); res.Err != nil {
		t.Fatal(res.Err)
	}
	if doc := r.stored(rid); managerRef(doc) != "" {
		t.Fatalf("the report still has its manager: %v", doc)
	}
	last := r.last()
	if last.Action != change.ActionCascade || last.SCIMID != rid || last.RequestID != "req-delete" ||
		strings.Contains(strings.Join(last.Decision.Reasons, " "), "is not called") {
		t.Fatalf("cascade record %+v (decision %+v)", last, last.Decision)
	}
	var rec *store.Record
	_ = r.store.View(func(tx *store.Tx) (err error) { rec, err = tx.Get(scim.UserType, rid); return err })
	if rec == nil || rec.Version != 2 {
		t.Fatalf("the report's record (a new version): %+v", rec)
	}
}

// changedMapping sends only the changed fields of an update (PATCH), the manager
// included.
const changedMapping = `{
  "version": 1,
  "users": {
    "events": {
      "create": {"method": "POST", "path": "/accounts", "id": "account.ref", "body": {"login": "userName", "manager": "manager"}},
      "update": {"method": "PATCH", "path": "/accounts/{id}", "body": {"login": "userName", "title": "title", "manager": "manager"}},
      "delete": {"method": "DELETE", "path": "/accounts/{id}"}
    }
  }
}`

// TestDeletedManagerIsClearedInTheApp: with "send": "changed", the report's next change
// that reaches the app (here Entra's own removal of the manager, which no longer changes
// the directory) clears the manager in the app, once.
func TestDeletedManagerIsClearedInTheApp(t *testing.T) {
	app, target := newManagerTarget(t, changedMapping)
	r := newRig(t, rigOptions{target: target})
	mid := r.mustCreate(scim.UserType, user("grace@contoso.example"))
	rid := r.mustCreate(scim.UserType, user("rita@contoso.example", withManager(mid)))
	reportNative := r.nativeID(scim.UserType, rid)
	if app.account(reportNative)["manager"] != r.nativeID(scim.UserType, mid) {
		t.Fatalf("the report's account: %v", app.account(reportNative))
	}
	if res := r.deleteUser(mid); res.Err != nil {
		t.Fatal(res.Err)
	}
	if m := r.mark(scim.UserType, rid); m != change.MarkManagerGone {
		t.Fatalf("the report's mark is %q", m)
	}
	if acc := app.account(reportNative); acc["manager"] == nil {
		t.Fatalf("the app was called for the report on the manager's delete: %v", acc)
	}
	calls := len(app.callLog())
	res := r.patch(scim.UserType, rid, `[{"op":"remove","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]`)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if acc := app.account(reportNative); acc["manager"] != nil || len(app.callLog()) != calls+1 {
		t.Fatalf("the removal did not clear the app's link: %v, calls %v", acc, app.callLog()[calls:])
	}
	if rec := r.last(); rec.Backend == nil || rec.Backend.Method != http.MethodPatch ||
		!strings.Contains(strings.Join(rec.Decision.Reasons, " "), "still linked a manager deleted earlier") {
		t.Fatalf("record %+v decision %+v", rec, rec.Decision)
	}
	if m := r.mark(scim.UserType, rid); m != change.MarkNone {
		t.Fatalf("the mark stays: %q", m)
	}
	// Cleared once: the next no-op change calls nothing.
	if res := r.patch(scim.UserType, rid, `[{"op":"remove","path":"manager"}]`); res.Err != nil || len(app.callLog()) != calls+1 {
		t.Fatalf("a second removal: %v, calls %v", res.Err, app.callLog()[calls:])
	}
}

func sortedIDs(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}
