package provision

// Tests of the engine without HTTP: a real bbolt store and journal in a temporary
// directory, real Rego policies, and, where a target is needed, a real HTTP app on
// loopback with a shape unlike the demo app's (prefixed string ids, a lookup by login,
// roles with members added one at a time).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// rig is an engine on a fresh store, with what a test needs to look behind it.
type rig struct {
	t     testing.TB
	dir   string
	store *store.Store
	j     *journal.Journal
	share *Shared
	eng   *Engine
	// limited is the store's kv wrapper when the rig bounds its transactions (limit).
	limited *teststore.Limited
}

type rigOptions struct {
	target *Target
	policy *policy.Engine
	shared *Shared
	// limit, when set, bounds the store's transactions to that many writes, as etcd's are
	// (teststore.Limited), on either backend.
	limit int
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	dir := t.TempDir()
	var (
		s       *store.Store
		limited *teststore.Limited
	)
	if o.limit > 0 {
		s, limited = teststore.OpenLimited(t, dir, o.limit)
	} else {
		s = teststore.Open(t, dir)
	}
	j, err := journal.Open(s.DB(), journal.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = j.Close()
		_ = s.Close()
	})
	r := &rig{t: t, dir: dir, store: s, j: j, share: o.shared, limited: limited}
	if r.share == nil {
		r.share = NewShared(nil)
	}
	t.Cleanup(r.share.Close) // before the store closes (cleanups run last first)
	r.eng = r.build(o)
	return r
}

// build makes an engine on the rig's store (a new configuration on the open store).
func (r *rig) build(o rigOptions) *Engine {
	r.t.Helper()
	eng, err := New(Config{Store: r.store, Journal: r.j, Shared: r.share, Target: o.target, Policy: o.policy, MemberChunk: MemberChunk})
	if err != nil {
		r.t.Fatal(err)
	}
	return eng
}

var testReq = Request{ID: "req-1", Client: "entra"}

func prepared(t testing.TB, typ string, body string) *scim.Prepared {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	p, err := scim.PrepareResource(typ, m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func patchOps(t testing.TB, ops string) []scim.PatchOp {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":`+ops+`}`), &body); err != nil {
		t.Fatal(err)
	}
	out, err := scim.ParsePatch(body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (r *rig) create(typ, body string) *Result {
	r.t.Helper()
	return r.eng.Apply(testReq, &Op{Action: change.ActionCreate, Type: typ, Resource: prepared(r.t, typ, body), Status: http.StatusCreated})
}

func (r *rig) mustCreate(typ, body string) string {
	r.t.Helper()
	res := r.create(typ, body)
	if res.Err != nil {
		r.t.Fatalf("create %s: %v", typ, res.Err)
	}
	return res.ID
}

func (r *rig) patch(typ, id, ops string) *Result {
	r.t.Helper()
	return r.eng.Apply(testReq, &Op{Action: change.ActionPatch, Type: typ, ID: id, Patch: patchOps(r.t, ops), Status: http.StatusNoContent})
}

func (r *rig) members(groupID string) []string {
	r.t.Helper()
	var out []string
	err := r.store.View(func(tx *store.Tx) error {
		return tx.Members(groupID, func(m store.Member) error { out = append(out, m.ID); return nil })
	})
	if err != nil {
		r.t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func (r *rig) records() []journal.Record {
	r.t.Helper()
	var out []journal.Record
	if err := scanRecords(r.j, journal.Query{}, func(rec *journal.Record) { out = append(out, *rec) }); err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *rig) last() journal.Record {
	r.t.Helper()
	recs := r.records()
	if len(recs) == 0 {
		r.t.Fatal("the journal is empty")
	}
	return recs[len(recs)-1]
}

func user(name string, extra ...string) string {
	return `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"` + name + `","active":true` + strings.Join(extra, "") + `}`
}

// TestApplyWithoutTarget: the four writes of users and groups against the directory alone,
// each answered and journaled with its events.
func TestApplyWithoutTarget(t *testing.T) {
	r := newRig(t, rigOptions{})
	res := r.create(scim.UserType, user("ada@contoso.example", `,"title":"Engineer"`))
	if res.Err != nil || res.Status != http.StatusCreated || res.ID == "" || res.Version == 0 {
		t.Fatalf("create: %+v", res)
	}
	uid := res.ID
	if rec := r.last(); rec.Action != change.ActionCreate || rec.Outcome != change.Applied || !slices.Equal(rec.Events, []change.Event{change.Create}) ||
		rec.SCIMID != uid || rec.Subject != "ada@contoso.example" || rec.Client != "entra" || rec.RequestID != "req-1" {
		t.Fatalf("create record: %+v", rec)
	}
	if res.Record == nil || res.Record.Outcome != change.Applied {
		t.Fatalf("result record: %+v", res.Record)
	}

	res = r.patch(scim.UserType, uid, `[{"op":"replace","path":"active","value":"False"},{"op":"replace","path":"title","value":"Lead"}]`)
	if res.Err != nil || res.Status != http.StatusNoContent {
		t.Fatalf("patch: %+v", res)
	}
	if rec := r.last(); !slices.Equal(rec.Events, []change.Event{change.Update, change.Deactivate}) {
		t.Fatalf("patch events: %v", rec.Events)
	}
	// A PATCH that changes nothing keeps the version and is not journaled (reads are not).
	before, seq := res.Version, r.last().Seq
	res = r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Lead"}]`)
	if res.Err != nil || res.Version != before || r.last().Seq != seq {
		t.Fatalf("no-op patch: %+v, journaled %+v", res, r.last())
	}

	gid := r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Sales","members":[{"value":"`+uid+`"}]}`)
	if rec := r.last(); !slices.Equal(rec.Events, []change.Event{change.Create, change.AddMembers}) {
		t.Fatalf("group create events: %v", rec.Events)
	}
	if got := r.members(gid); !slices.Equal(got, []string{uid}) {
		t.Fatalf("members after create: %v", got)
	}
	// PUT with a member list replaces the set; the rename is an event of its own.
	vid := r.mustCreate(scim.UserType, user("vera@contoso.example"))
	res = r.eng.Apply(testReq, &Op{Action: change.ActionReplace, Type: scim.GroupType, ID: gid, Status: http.StatusOK,
		Resource: prepared(t, scim.GroupType, `{"displayName":"Sales EMEA","members":[{"value":"`+vid+`"}]}`)})
	if res.Err != nil {
		t.Fatalf("replace: %v", res.Err)
	}
	if got, rec := r.members(gid), r.last(); !slices.Equal(got, []string{vid}) ||
		!slices.Equal(rec.Events, []change.Event{change.Update, change.Rename, change.AddMembers, change.RemoveMembers}) {
		t.Fatalf("after replace: members %v, events %v", got, rec.Events)
	}
	res = r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: uid, Status: http.StatusNoContent})
	if res.Err != nil || res.Version != 0 || r.last().Outcome != change.Applied || !slices.Equal(r.last().Events, []change.Event{change.Delete}) {
		t.Fatalf("delete: %+v, %+v", res, r.last())
	}
}

// TestApplyErrors: every failure is answered as the SCIM error it means and journaled.
func TestApplyErrors(t *testing.T) {
	r := newRig(t, rigOptions{})
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Ops"}`)
	cases := []struct {
		name     string
		op       *Op
		status   int
		scimType string
		detail   string
	}{
		{"missing user", &Op{Action: change.ActionPatch, Type: scim.UserType, ID: "nope", Patch: patchOps(t, `[{"op":"replace","path":"title","value":"x"}]`)},
			404, "", "User nope not found"},
		{"stale If-Match", &Op{Action: change.ActionDelete, Type: scim.UserType, ID: uid, IfMatch: `W/"999"`}, 412, "", "does not match the current version"},
		{"taken userName", &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("ADA@contoso.example"))},
			409, scim.TypeUniqueness, "already used"},
		{"group in itself", &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Patch: patchOps(t, `[{"op":"add","path":"members","value":[{"value":"`+gid+`"}]}]`)},
			400, scim.TypeInvalidValue, "member of itself"},
		{"required attribute removed", &Op{Action: change.ActionPatch, Type: scim.UserType, ID: uid, Patch: patchOps(t, `[{"op":"remove","path":"userName"}]`)},
			400, "", "userName"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := r.eng.Apply(testReq, c.op)
			if res.Err == nil || res.Status != c.status || res.Err.Status != c.status || !strings.Contains(res.Err.Detail, c.detail) ||
				(c.scimType != "" && res.Err.ScimType != c.scimType) {
				t.Fatalf("got %+v (%v), want %d %s %q", res, res.Err, c.status, c.scimType, c.detail)
			}
			rec := r.last()
			if rec.Outcome != change.Rejected || rec.Status != c.status || rec.Action != c.op.Action || rec.Error != res.Err.Detail {
				t.Fatalf("record: %+v", rec)
			}
		})
	}
	// A storage failure is a 503 with Retry-After, never a 500: the journal is closed here.
	if err := r.j.Close(); err != nil {
		t.Fatal(err)
	}
	res := r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"x"}]`)
	if res.Err == nil || res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
		t.Fatalf("with the journal closed: %+v", res)
	}
}

// TestFailNamesRequestsOutsideApply: Fail journals what the HTTP layer rejected before the
// engine when the trail names the request, and only maps the error without one.
func TestFailNamesRequestsOutsideApply(t *testing.T) {
	r := newRig(t, rigOptions{})
	res := r.eng.Fail(testReq, &Trail{Action: change.ActionCreate, Type: scim.UserType}, scim.BadRequest(scim.TypeInvalidSyntax, "not JSON"))
	if res.Status != 400 || r.last().Outcome != change.Rejected || r.last().Error != "not JSON" {
		t.Fatalf("journaled rejection: %+v, %+v", res, r.last())
	}
	n := len(r.records())
	res = r.eng.Fail(testReq, nil, fmt.Errorf("disk on fire"))
	if res.Status != http.StatusServiceUnavailable || res.RetryAfter != storageRetryAfter || len(r.records()) != n {
		t.Fatalf("unjournaled failure: %+v, records %d -> %d", res, n, len(r.records()))
	}
	if err := r.eng.Read(testReq, &Trail{Action: change.ActionList, Type: scim.UserType, Filter: `userName eq "x"`}); err != nil {
		t.Fatal(err)
	}
	if rec := r.last(); rec.Action != change.ActionList || rec.FilterHash == "" || strings.Contains(rec.FilterHash, "userName") {
		t.Fatalf("read record: %+v", rec)
	}
}

// TestRedecide: the commit applies the plan decided before the native calls when the
// stored resource is still that version, and decides again when it moved.
func TestRedecide(t *testing.T) {
	r := newRig(t, rigOptions{})
	id := r.mustCreate(scim.UserType, user("redecide@contoso.example"))
	j := r.eng.newJob(testReq, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: id, Patch: patchOps(t, `[{"op":"replace","path":"displayName","value":"A"}]`)})
	p, err := r.eng.decideView(j)
	if err != nil {
		t.Fatal(err)
	}
	check := func(wantFresh bool) {
		t.Helper()
		err := r.store.View(func(tx *store.Tx) error {
			got, err := r.eng.redecide(tx, j, p)
			if err == nil && (got != p) != wantFresh {
				t.Errorf("redecide made a fresh plan: %v, want %v", got != p, wantFresh)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check(false) // unchanged: the plan stands
	if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"displayName","value":"Moved"}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	check(true) // the resource moved on: decide again
}

// TestRedecideMemberChanges: a group's member change decided before other member changes
// of the group committed stands at its commit (the document is as it was and its members
// still change the same way); a rename since, or its own member changed since, makes a
// fresh decision.
func TestRedecideMemberChanges(t *testing.T) {
	r := newRig(t, rigOptions{})
	u1 := r.mustCreate(scim.UserType, user("redecide1@contoso.example"))
	u2 := r.mustCreate(scim.UserType, user("redecide2@contoso.example"))
	u3 := r.mustCreate(scim.UserType, user("redecide3@contoso.example"))
	g := r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Redecide"}`)
	add := func(u string) string { return `[{"op":"Add","path":"members","value":[{"value":"` + u + `"}]}]` }
	decided := func() (*job, *plan) {
		t.Helper()
		j := r.eng.newJob(testReq, &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: g, Patch: patchOps(t, add(u1))})
		p, err := r.eng.decideView(j)
		if err != nil {
			t.Fatal(err)
		}
		return j, p
	}
	fresh := func(j *job, p *plan) bool {
		t.Helper()
		var got *plan
		if err := r.store.View(func(tx *store.Tx) (err error) { got, err = r.eng.redecide(tx, j, p); return err }); err != nil {
			t.Fatal(err)
		}
		return got != p
	}
	mustPatch := func(ops string) {
		t.Helper()
		if res := r.patch(scim.GroupType, g, ops); res.Err != nil {
			t.Fatal(res.Err)
		}
	}

	j, p := decided()
	mustPatch(add(u2))
	if fresh(j, p) {
		t.Error("another member's add committed first: the plan should stand")
	}
	mustPatch(`[{"op":"replace","path":"displayName","value":"Renamed"}]`)
	if !fresh(j, p) {
		t.Error("the group was renamed since: the plan should be decided again")
	}
	j, p = decided()
	mustPatch(add(u1))
	if !fresh(j, p) {
		t.Error("the member itself was added since: the plan should be decided again")
	}
	j, p = decided() // u1 is a member now: the plan adds nothing
	mustPatch(add(u3))
	if fresh(j, p) {
		t.Error("another member's add committed first: the plan should stand")
	}
}

// TestPlanMembers: the member ids a request really adds and removes, from its delta and
// the stored edges.
func TestPlanMembers(t *testing.T) {
	r := newRig(t, rigOptions{})
	gid := r.mustCreate(scim.GroupType, `{"displayName":"G","members":[{"value":"a"},{"value":"b"}]}`)
	ref := func(ids ...string) []scim.MemberRef {
		var out []scim.MemberRef
		for _, id := range ids {
			out = append(out, scim.MemberRef{Value: id})
		}
		return out
	}
	cases := []struct {
		name           string
		delta          *scim.MemberDelta
		added, removed []string
		err            string
	}{
		{"none", nil, nil, nil, ""},
		{"add new and existing", &scim.MemberDelta{Add: ref("b", "c", "c")}, []string{"c"}, nil, ""},
		{"add repeated ids out of order", &scim.MemberDelta{Add: ref("e", "d", "a", "e", "d", "c", "e")}, []string{"e", "d", "c"}, nil, ""},
		{"remove present and absent", &scim.MemberDelta{Remove: []string{"a", "z"}}, nil, []string{"a"}, ""},
		{"remove all", &scim.MemberDelta{RemoveAll: true}, nil, []string{"a", "b"}, ""},
		{"remove all then re-add one", &scim.MemberDelta{RemoveAll: true, Add: ref("a", "d")}, []string{"d"}, []string{"b"}, ""},
		{"remove and re-add", &scim.MemberDelta{Remove: []string{"a"}, Add: ref("a")}, nil, nil, ""},
		{"itself", &scim.MemberDelta{Add: ref(gid)}, nil, nil, "member of itself"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &plan{id: gid, delta: c.delta}
			err := r.store.View(p.planMembers)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || !slices.Equal(p.added, c.added) || !slices.Equal(p.removed, c.removed) {
				t.Fatalf("added %v removed %v (err %v), want %v %v", p.added, p.removed, err, c.added, c.removed)
			}
		})
	}
	// The delta is applied as asked: an existing member's display follows the request.
	res := r.patch(scim.GroupType, gid, `[{"op":"add","path":"members","value":[{"value":"a","display":"Ada"}]}]`)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	_ = r.store.View(func(tx *store.Tx) error {
		return tx.Members(gid, func(m store.Member) error {
			if m.ID == "a" && m.Display != "Ada" {
				t.Errorf("member a's display = %q", m.Display)
			}
			return nil
		})
	})
}

func TestSemanticEvents(t *testing.T) {
	u := func(kv ...any) scim.Resource {
		m := scim.Resource{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name           string
		typ            string
		before, after  scim.Resource
		added, removed int
		want           []change.Event
	}{
		{"create", scim.UserType, nil, u("userName", "a"), 0, 0, []change.Event{change.Create}},
		{"delete", scim.UserType, u("userName", "a"), nil, 0, 0, []change.Event{change.Delete}},
		{"nothing", scim.UserType, u("userName", "a"), u("userName", "a"), 0, 0, nil},
		{"update", scim.UserType, u("title", "x"), u("title", "y"), 0, 0, []change.Event{change.Update}},
		{"deactivate", scim.UserType, u("active", true), u("active", false), 0, 0, []change.Event{change.Update, change.Deactivate}},
		{"reactivate from absent false", scim.UserType, u("active", false), u(), 0, 0, []change.Event{change.Update, change.Reactivate}},
		{"rename", scim.GroupType, u("displayName", "A"), u("displayName", "B"), 0, 0, []change.Event{change.Update, change.Rename}},
		{"members only", scim.GroupType, u("displayName", "A"), u("displayName", "A"), 2, 1, []change.Event{change.AddMembers, change.RemoveMembers}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := semanticEvents(c.typ, c.before, c.after, diffChanges(c.before, c.after), c.added, c.removed)
			if !slices.Equal(got, c.want) {
				t.Fatalf("events = %v, want %v", got, c.want)
			}
		})
	}
	if got := nativeEvents([]change.Event{change.Rename, change.AddMembers}); !slices.Equal(got, []change.Event{change.Update, change.AddMembers}) {
		t.Fatalf("a rename alone is an update: %v", got)
	}
	if got := nativeEvents([]change.Event{change.Update, change.Rename}); !slices.Equal(got, []change.Event{change.Update}) {
		t.Fatalf("a rename with an update is that update: %v", got)
	}
}

func TestNextMark(t *testing.T) {
	cases := []struct {
		deleted, hasAccount  bool
		current              change.Mark
		skipped, deactivated bool
		want                 change.Mark
	}{
		{true, true, change.MarkDeactivated, false, false, change.MarkNone},
		{true, false, change.MarkSkipped, true, false, change.MarkNone},
		{false, false, change.MarkNone, true, false, change.MarkSkipped},
		{false, true, change.MarkNone, true, false, change.MarkStale},
		{false, true, change.MarkDeactivated, true, false, change.MarkDeactivated},
		{false, true, change.MarkNone, false, true, change.MarkDeactivated},
		{false, false, change.MarkNone, false, true, change.MarkSkipped},
		{false, true, change.MarkStale, false, false, change.MarkNone},
		{false, true, change.MarkDeactivated, false, false, change.MarkNone},
	}
	for _, c := range cases {
		if got := nextMark(c.deleted, c.hasAccount, c.current, c.skipped, c.deactivated); got != c.want {
			t.Errorf("nextMark(%+v) = %q, want %q", c, got, c.want)
		}
	}
}

// nativeApp is a legacy app of another shape than the demo app: accounts with prefixed
// string ids, looked up by login; roles whose members are added one call at a time.
type nativeApp struct {
	mu       sync.Mutex
	next     int
	accounts map[string]map[string]any
	roles    map[string]map[string]bool
	calls    []string
	fail     map[string]int // method+" "+path prefix -> status to answer instead
	// createThen is what the next account create does after making the account: "drop"
	// the connection, answer too "slow"ly, answer "500", or answer without the id ("noid").
	createThen string
	// beforeCreate, when set, runs (once, without the app's lock) before an account create.
	beforeCreate func()
	notes        int // POST /accounts/{id}/notes: a call that must not be repeated
	// refuse lists logins whose account create the app refuses (400: its own validation).
	refuse map[string]bool
	// unique: the app refuses (409) an account with a login another account has, and a
	// role with a name another role has, as real apps do.
	unique bool
	// roleNames are the roles' names.
	roleNames map[string]string
	// softDelete: DELETE /accounts/{id} only deactivates the account (enabled false,
	// deleted true) and keeps it, with its login, as legacy apps often do.
	softDelete bool
}

// taken reports whether another account than self has login; a.mu is held.
func (a *nativeApp) taken(login any, self string) bool {
	for id, acc := range a.accounts {
		if l, ok := acc["login"].(string); ok && id != self && strings.EqualFold(l, fmt.Sprint(login)) {
			return true
		}
	}
	return false
}

func newNativeApp(t testing.TB) (*nativeApp, *httptest.Server) {
	a := &nativeApp{accounts: map[string]map[string]any{}, roles: map[string]map[string]bool{}, fail: map[string]int{}, refuse: map[string]bool{}, roleNames: map[string]string{}}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv
}

func (a *nativeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/accounts" {
		a.mu.Lock()
		hook := a.beforeCreate
		a.beforeCreate = nil
		a.mu.Unlock()
		if hook != nil {
			hook()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, r.Method+" "+r.URL.Path)
	for prefix, status := range a.fail {
		if strings.HasPrefix(r.Method+" "+r.URL.Path, prefix) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"message":"refused with %d"}`, status)
			return
		}
	}
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	_ = json.Unmarshal(body, &in)
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/accounts" && a.refuse[fmt.Sprint(in["login"])]:
		answer(http.StatusBadRequest, map[string]any{"message": "login rejected by the app's validation"})
	case r.Method == http.MethodPost && r.URL.Path == "/accounts" && a.unique && a.taken(in["login"], ""):
		answer(http.StatusConflict, map[string]any{"message": "login already in use"})
	case r.Method == http.MethodPost && r.URL.Path == "/accounts":
		a.next++
		id := fmt.Sprintf("acct-%04d", a.next)
		a.accounts[id] = in
		then := a.createThen
		a.createThen = ""
		switch then {
		case "drop":
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			_ = conn.Close()
		case "slow":
			a.mu.Unlock()
			time.Sleep(700 * time.Millisecond)
			a.mu.Lock()
			answer(http.StatusCreated, map[string]any{"account": map[string]any{"ref": id}})
		case "500":
			answer(http.StatusInternalServerError, map[string]any{"message": "database write timed out"})
		case "noid":
			answer(http.StatusCreated, map[string]any{})
		default:
			answer(http.StatusCreated, map[string]any{"account": map[string]any{"ref": id}})
		}
	case r.Method == http.MethodGet && r.URL.Path == "/accounts":
		login := r.URL.Query().Get("login")
		for _, id := range slices.Sorted(maps.Keys(a.accounts)) { // the oldest account first
			if acc := a.accounts[id]; acc["login"] == login {
				answer(http.StatusOK, map[string]any{"results": []any{map[string]any{"ref": id}}})
				return
			}
		}
		answer(http.StatusOK, map[string]any{"results": []any{}})
	case len(parts) == 2 && parts[0] == "accounts" && r.Method == http.MethodPatch:
		acc := a.accounts[parts[1]]
		if acc == nil {
			answer(http.StatusNotFound, map[string]any{"message": "no such account"})
			return
		}
		if login, ok := in["login"]; ok && a.unique && a.taken(login, parts[1]) {
			answer(http.StatusConflict, map[string]any{"message": "login already in use"})
			return
		}
		for k, v := range in {
			acc[k] = v
		}
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 3 && parts[0] == "accounts" && parts[2] == "notes" && r.Method == http.MethodPost:
		a.notes++
		answer(http.StatusCreated, map[string]any{"note": a.notes})
	case len(parts) == 2 && parts[0] == "accounts" && r.Method == http.MethodDelete && a.softDelete:
		if acc := a.accounts[parts[1]]; acc != nil {
			acc["enabled"], acc["deleted"] = false, true
		}
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 2 && parts[0] == "accounts" && r.Method == http.MethodDelete:
		delete(a.accounts, parts[1])
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 2 && parts[0] == "roles" && r.Method == http.MethodDelete:
		if a.roles[parts[1]] == nil {
			answer(http.StatusNotFound, map[string]any{"message": "no such role"})
			return
		}
		delete(a.roles, parts[1])
		delete(a.roleNames, parts[1])
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 2 && parts[0] == "roles" && r.Method == http.MethodPatch:
		if a.roles[parts[1]] == nil {
			answer(http.StatusNotFound, map[string]any{"message": "no such role"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && r.URL.Path == "/roles" && a.unique && slices.Contains(slices.Collect(maps.Values(a.roleNames)), fmt.Sprint(in["name"])):
		answer(http.StatusConflict, map[string]any{"message": "role name already in use"})
	case r.Method == http.MethodPost && r.URL.Path == "/roles":
		a.next++
		id := fmt.Sprintf("role-%04d", a.next)
		a.roles[id] = map[string]bool{}
		if a.roleNames == nil {
			a.roleNames = map[string]string{}
		}
		a.roleNames[id] = fmt.Sprint(in["name"])
		answer(http.StatusCreated, map[string]any{"account": map[string]any{"ref": id}})
	case len(parts) == 4 && parts[0] == "roles" && parts[2] == "holders":
		if a.roles[parts[1]] == nil {
			answer(http.StatusNotFound, map[string]any{"message": "no such role"})
			return
		}
		if r.Method == http.MethodPut {
			a.roles[parts[1]][parts[3]] = true
		} else {
			delete(a.roles[parts[1]], parts[3])
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		answer(http.StatusNotFound, map[string]any{"message": "no route"})
	}
}

func (a *nativeApp) callLog() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

const nativeMapping = `{
  "version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/accounts?login={userName}", "id": "results.0.ref"},
    "events": {
      "create": {"method": "POST", "path": "/accounts", "id": "account.ref",
        "body": {"login": {"from": "userName", "required": true}, "title": "title", "enabled": "active"}},
      "update": {"method": "PATCH", "path": "/accounts/{id}", "send": "changed", "body": {"title": "title", "login": "userName"}},
      "deactivate": {"method": "PATCH", "path": "/accounts/{id}", "body": {"enabled": "active"}},
      "reactivate": {"method": "PATCH", "path": "/accounts/{id}", "body": {"enabled": "active"}},
      "delete": {"method": "DELETE", "path": "/accounts/{id}"}
    }
  },
  "groups": {
    "events": {
      "create": {"method": "POST", "path": "/roles", "id": "account.ref", "body": {"name": "displayName"}},
      "add_members": {"method": "PUT", "path": "/roles/{id}/holders/{member_id}", "members": "each"},
      "remove_members": {"method": "DELETE", "path": "/roles/{id}/holders/{member_id}", "members": "each"}
    }
  }
}`

func newTarget(t testing.TB, url string, dryRun bool) *Target {
	t.Helper()
	m, err := mapping.Parse("native", []byte(nativeMapping), func(s string) (string, error) { return s, nil })
	if err != nil {
		t.Fatal(err)
	}
	c, err := legacy.New(legacy.Options{BaseURL: url, Timeout: 500 * time.Millisecond, MaxRetries: -1, CircuitFailures: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return &Target{Name: "native", DryRun: dryRun, Mapping: m, Client: c, Headers: http.Header{"X-Api-Key": {"k"}}}
}

// newMappedTarget is newTarget with its own mapping file.
func newMappedTarget(t testing.TB, url, file string) *Target {
	t.Helper()
	m, err := mapping.Parse("test", []byte(file), func(s string) (string, error) { return s, nil })
	if err != nil {
		t.Fatal(err)
	}
	target := newTarget(t, url, false)
	target.Mapping = m
	return target
}

func (r *rig) nativeID(typ, id string) string {
	r.t.Helper()
	var n string
	_ = r.store.View(func(tx *store.Tx) error { n, _ = tx.NativeID("native/"+typ, id); return nil })
	return n
}

func (r *rig) mark(typ, id string) change.Mark {
	r.t.Helper()
	var m change.Mark
	_ = r.store.View(func(tx *store.Tx) error { m = tx.Mark("native/"+typ, id); return nil })
	return m
}

// TestApplyWithTarget: an intent before the calls, the calls, and the id map, marks and
// outcome committed together; member calls with native ids.
func TestApplyWithTarget(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example", `,"title":"Engineer"`))
	recs := r.records()
	intent, outcome := recs[len(recs)-2], recs[len(recs)-1]
	if intent.Outcome != change.Pending || outcome.Outcome != change.Applied || outcome.NativeID != "acct-0001" ||
		outcome.Backend == nil || outcome.Backend.Method != http.MethodPost || outcome.Backend.Status != http.StatusCreated || outcome.Target != "native" {
		t.Fatalf("intent %+v\noutcome %+v", intent, outcome)
	}
	if got := r.nativeID(scim.UserType, uid); got != "acct-0001" {
		t.Fatalf("id map: %q", got)
	}
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Admins","members":[{"value":"`+uid+`"}]}`)
	if !app.roles["role-0002"]["acct-0001"] {
		t.Fatalf("role holders: %v; calls %v", app.roles, app.callLog())
	}
	res := r.patch(scim.GroupType, gid, `[{"op":"remove","path":"members[value eq \"`+uid+`\"]"}]`)
	if res.Err != nil || len(app.roles["role-0002"]) != 0 {
		t.Fatalf("remove member: %v, holders %v", res.Err, app.roles)
	}
	res = r.patch(scim.UserType, uid, `[{"op":"replace","path":"active","value":false}]`)
	if res.Err != nil || app.accounts["acct-0001"]["enabled"] != false {
		t.Fatalf("deactivate: %v, account %v", res.Err, app.accounts["acct-0001"])
	}
	res = r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: uid})
	if res.Err != nil || len(app.accounts) != 0 || r.nativeID(scim.UserType, uid) != "" {
		t.Fatalf("delete: %v, accounts %v", res.Err, app.accounts)
	}
	for _, c := range app.callLog() {
		if strings.Contains(c, "acct-") && !strings.Contains(c, "acct-0001") {
			t.Fatalf("a call named another account: %v", app.callLog())
		}
	}
}

// TestNativeErrorMapping: what the app answers becomes the SCIM error Entra needs, the
// directory does not change, and the journal has the call.
func TestNativeErrorMapping(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	cases := []struct {
		status   int
		want     int
		outcome  change.Outcome
		retrying bool
	}{
		{http.StatusBadRequest, 400, change.Rejected, false},
		{http.StatusConflict, 409, change.Rejected, false},
		{http.StatusServiceUnavailable, 503, change.Failed, true},
		{http.StatusUnauthorized, 503, change.Failed, true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.status), func(t *testing.T) {
			app.mu.Lock()
			app.fail = map[string]int{"PATCH /accounts/": c.status}
			app.mu.Unlock()
			res := r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"T`+fmt.Sprint(c.status)+`"}]`)
			if res.Err == nil || res.Status != c.want || (res.RetryAfter > 0) != c.retrying {
				t.Fatalf("got %+v (%v)", res, res.Err)
			}
			rec := r.last()
			if rec.Outcome != c.outcome || rec.Backend == nil || rec.Backend.Status != c.status {
				t.Fatalf("record: %+v", rec)
			}
			var title any
			_ = r.store.View(func(tx *store.Tx) error {
				cur, _ := tx.Get(scim.UserType, uid)
				doc, _ := DecodeDoc(cur)
				title = doc["title"]
				return nil
			})
			if title != nil {
				t.Fatalf("the directory changed: title %v", title)
			}
		})
	}
}

// TestDryRun: decided, mapped and journaled, nothing sent, no intent.
func TestDryRun(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, true)})
	r.mustCreate(scim.UserType, user("ada@contoso.example"))
	recs := r.records()
	if len(app.callLog()) != 0 || len(recs) != 1 || recs[0].Outcome != change.DryRun || recs[0].Backend == nil || recs[0].Backend.URL != "/accounts" {
		t.Fatalf("calls %v, records %+v", app.callLog(), recs)
	}
}

func writePolicy(t testing.TB, rego string) *policy.Engine {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "decision.rego"), []byte(rego), 0o600); err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Load(policy.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

const obligationsPolicy = `package scimgate

default decision := {"allow": true}

decision := {"allow": false, "reasons": ["break-glass accounts stay"]} if {
	input.resource.userName == "bg@contoso.example"
	"deactivate" in input.events
}

decision := {"allow": true, "skip": true, "reasons": ["out of scope"]} if endswith(input.resource.userName, "@fabrikam.example")

decision := {"allow": true, "drop_attributes": ["title"]} if input.resource.userName == "quiet@contoso.example"

decision := {"allow": true, "deactivate": true} if input.resource.userName == "leaver@contoso.example"

decision := {"allow": true, "drop_members": [m.id | some m in input.members.add; m.display == "skipme@contoso.example"]} if input.resource_type == "Group"
`

// TestPolicyDecisionsAndObligations: deny, skip and every obligation, decided by a real
// policy, with what reaches the app, what the directory keeps and what the journal says.
func TestPolicyDecisionsAndObligations(t *testing.T) {
	app, srv := newNativeApp(t)
	pol := writePolicy(t, obligationsPolicy)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false), policy: pol})

	bg := r.mustCreate(scim.UserType, user("bg@contoso.example"))
	res := r.patch(scim.UserType, bg, `[{"op":"replace","path":"active","value":false}]`)
	if res.Err == nil || res.Status != http.StatusForbidden || !strings.Contains(res.Err.Detail, "break-glass accounts stay") {
		t.Fatalf("deny: %+v", res)
	}
	if rec := r.last(); rec.Outcome != change.Denied || rec.Decision == nil || rec.Decision.Allow || rec.Decision.PolicyHash != pol.Hash() || pol.Hash() == "" {
		t.Fatalf("denied record: %+v", rec)
	}
	if app.accounts["acct-0001"]["enabled"] != true {
		t.Fatalf("a denied change reached the app: %v", app.accounts)
	}

	out := r.mustCreate(scim.UserType, user("eve@fabrikam.example"))
	if rec := r.last(); rec.Outcome != change.Skipped || r.mark(scim.UserType, out) != change.MarkSkipped || r.nativeID(scim.UserType, out) != "" {
		t.Fatalf("skip: record %+v, mark %q", rec, r.mark(scim.UserType, out))
	}

	quiet := r.mustCreate(scim.UserType, user("quiet@contoso.example", `,"title":"Secret"`))
	acc := app.accounts[r.nativeID(scim.UserType, quiet)]
	if _, has := acc["title"]; has || r.last().Decision == nil || !slices.Equal(r.last().Decision.DroppedAttributes, []string{"title"}) {
		t.Fatalf("drop_attributes: account %v, decision %+v", acc, r.last().Decision)
	}
	calls := len(app.callLog())
	if res := r.patch(scim.UserType, quiet, `[{"op":"replace","path":"title","value":"Other"}]`); res.Err != nil || len(app.callLog()) != calls {
		t.Fatalf("a change of only dropped attributes reached the app: %v, calls %v", res.Err, app.callLog()[calls:])
	}

	leaver := r.mustCreate(scim.UserType, user("leaver@contoso.example"))
	if r.nativeID(scim.UserType, leaver) != "" || r.mark(scim.UserType, leaver) != change.MarkSkipped {
		t.Fatalf("deactivate without an account: native %q mark %q", r.nativeID(scim.UserType, leaver), r.mark(scim.UserType, leaver))
	}

	skipme := r.mustCreate(scim.UserType, user("skipme@contoso.example"))
	keep := r.mustCreate(scim.UserType, user("keep@contoso.example"))
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Team","members":[{"value":"`+skipme+`"},{"value":"`+keep+`"}]}`)
	role := r.nativeID(scim.GroupType, gid)
	if holders := app.roles[role]; len(holders) != 1 || !holders[r.nativeID(scim.UserType, keep)] {
		t.Fatalf("drop_members: holders %v", holders)
	}
	if got := r.members(gid); len(got) != 2 {
		t.Fatalf("the directory keeps dropped members: %v", got)
	}
	if d := r.last().Decision; d == nil || !slices.Equal(d.DroppedMembers, []string{skipme}) {
		t.Fatalf("dropped members in the journal: %+v", d)
	}
}

// TestPolicyStatsShared: the brake's counts are reserved before the calls, taken back when
// a change fails, and shared by the engines of one store (a reload keeps them).
func TestPolicyStatsShared(t *testing.T) {
	app, srv := newNativeApp(t)
	pol := writePolicy(t, `package scimgate

decision := {"allow": input.stats.last_hour.delete < 2, "reasons": [sprintf("%d deletions", [input.stats.last_hour.delete])]}
`)
	target := newTarget(t, srv.URL, false)
	r := newRig(t, rigOptions{target: target, policy: pol})
	var ids []string
	for i := range 4 {
		ids = append(ids, r.mustCreate(scim.UserType, user(fmt.Sprintf("u%d@contoso.example", i))))
	}
	del := func(eng *Engine, id string) *Result {
		return eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: id})
	}
	app.mu.Lock()
	app.fail = map[string]int{"DELETE": http.StatusServiceUnavailable}
	app.mu.Unlock()
	if res := del(r.eng, ids[0]); res.Status != http.StatusServiceUnavailable {
		t.Fatalf("failing delete: %+v", res)
	}
	app.mu.Lock()
	app.fail = map[string]int{}
	app.mu.Unlock()
	if res := del(r.eng, ids[0]); res.Err != nil {
		t.Fatalf("the failed delete still counted: %v", res.Err)
	}
	reloaded := r.build(rigOptions{target: target, policy: pol})
	if res := del(reloaded, ids[1]); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := del(reloaded, ids[2]); res.Status != http.StatusForbidden || !strings.Contains(res.Err.Detail, "2 deletions") {
		t.Fatalf("the brake did not hold across the reload: %+v", res)
	}
}

// TestCrashRecovery: an intent without an outcome (the gateway stopped between the call
// and the commit) is reported once when the engine starts, and Entra's retry of that
// create adopts the account the app made instead of creating a second one.
func TestCrashRecovery(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newTarget(t, srv.URL, false)
	r := newRig(t, rigOptions{})
	// The app holds the account; the journal holds only the intent.
	app.accounts["acct-0042"] = map[string]any{"login": "ada@contoso.example"}
	intent := &journal.Record{RequestID: "crashed", Client: "entra", Target: "native", Action: change.ActionCreate,
		ResourceType: scim.UserType, SCIMID: "lost", Subject: "ada@contoso.example", Events: []change.Event{change.Create}, Outcome: change.Pending}
	if err := r.store.Update(func(tx *store.Tx) error { return r.j.Append(tx.KV(), intent) }); err != nil {
		t.Fatal(err)
	}
	eng := r.build(rigOptions{target: target})
	rec := r.last()
	if rec.Action != change.ActionReconcile || rec.RequestID != "crashed" || !strings.Contains(rec.Error, "has no outcome") {
		t.Fatalf("reconcile record: %+v", rec)
	}
	n := len(r.records())
	r.build(rigOptions{target: target}) // a reload does not report it again
	if len(r.records()) != n {
		t.Fatal("a reload reported the unfinished change again")
	}
	res := eng.Apply(testReq, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("ada@contoso.example")), Status: 201})
	if res.Err != nil || r.nativeID(scim.UserType, res.ID) != "acct-0042" || len(app.accounts) != 1 {
		t.Fatalf("retry: %+v, native %q, accounts %v", res.Err, r.nativeID(scim.UserType, res.ID), app.accounts)
	}
	if slices.Contains(app.callLog(), "POST /accounts") {
		t.Fatalf("the create was sent again: %v", app.callLog())
	}
	if d := r.last().Decision; d == nil || !strings.Contains(strings.Join(d.Reasons, " "), "adopted account acct-0042") {
		t.Fatalf("the adoption is not journaled: %+v", d)
	}
	// A create of a name the gateway never tried is not adopted: a client's value must not
	// select an existing account.
	app.accounts["acct-0099"] = map[string]any{"login": "mallory@contoso.example"}
	res = eng.Apply(testReq, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("mallory@contoso.example")), Status: 201})
	if res.Err != nil || r.nativeID(scim.UserType, res.ID) == "acct-0099" {
		t.Fatalf("adopted an account the gateway never created: %v %q", res.Err, r.nativeID(scim.UserType, res.ID))
	}
}

// TestDecideOnlyJournalsWhatItRecords: the trail's changes redact nothing themselves (the
// journal does), and a password never reaches the store.
func TestPasswordNotStored(t *testing.T) {
	r := newRig(t, rigOptions{})
	id := r.mustCreate(scim.UserType, user("ada@contoso.example", `,"password":"Sup3r$ecret!"`))
	var doc []byte
	_ = r.store.View(func(tx *store.Tx) error {
		rec, _ := tx.Get(scim.UserType, id)
		doc = rec.Doc
		return nil
	})
	if bytes.Contains(doc, []byte("Sup3r")) {
		t.Fatalf("the store holds the password: %s", doc)
	}
	var buf bytes.Buffer
	if _, err := r.j.Export(context.Background(), &buf, journal.Query{}, journal.FormatJSONL); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("Sup3r")) {
		t.Fatalf("the journal holds the password: %s", buf.String())
	}
}

func (a *nativeApp) set(f func(*nativeApp)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *nativeApp) posts() int {
	n := 0
	for _, c := range a.callLog() {
		if c == "POST /accounts" {
			n++
		}
	}
	return n
}

func (a *nativeApp) accountCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.accounts)
}

// TestCreatesConverge: a create whose outcome the gateway never learned (the connection
// dropped after the app acted, the answer came too late, a 5xx after the write, an answer
// without the id, a commit that failed after the app made the account) is listed for
// adoption, and Entra's retry takes the account the app made instead of making a second
// one or answering 409 forever. A create the app refused, or that never reached it, is
// not listed. The list survives a restart.
func TestCreatesConverge(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newTarget(t, srv.URL, false)
	r := newRig(t, rigOptions{target: target})
	retry := func(eng *Engine, name string) *Result {
		return eng.Apply(testReq, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user(name)), Status: 201})
	}
	for _, then := range []string{"drop", "slow", "500", "noid"} {
		t.Run(then, func(t *testing.T) {
			name := "converge-" + then + "@contoso.example"
			posts, accounts := app.posts(), app.accountCount()
			app.set(func(a *nativeApp) { a.createThen = then })
			res := retry(r.eng, name)
			if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
				t.Fatalf("first attempt: %+v (%v)", res, res.Err)
			}
			if app.accountCount() != accounts+1 {
				t.Fatalf("the app did not make the account: %d", app.accountCount())
			}
			var listed bool
			_ = r.store.View(func(tx *store.Tx) error { _, listed = tx.Adoption("native", scim.UserType, name); return nil })
			if !listed {
				t.Fatal("the create was not listed for adoption")
			}
			res = retry(r.eng, name)
			if res.Err != nil {
				t.Fatalf("retry: %v", res.Err)
			}
			if app.posts() != posts+1 || app.accountCount() != accounts+1 {
				t.Fatalf("the retry made a second account: posts %d -> %d, accounts %d", posts, app.posts(), app.accountCount())
			}
			if n := r.nativeID(scim.UserType, res.ID); n == "" || app.accounts[n] == nil {
				t.Fatalf("the directory does not map the adopted account: %q", n)
			}
			_ = r.store.View(func(tx *store.Tx) error { _, listed = tx.Adoption("native", scim.UserType, name); return nil })
			if listed {
				t.Fatal("still listed for adoption after the create converged")
			}
		})
	}

	t.Run("refused or never sent: not listed", func(t *testing.T) {
		for _, status := range []int{http.StatusConflict, http.StatusBadRequest} {
			name := fmt.Sprintf("refused-%d@contoso.example", status)
			app.set(func(a *nativeApp) { a.fail = map[string]int{"POST /accounts": status} })
			if res := retry(r.eng, name); res.Status != status {
				t.Fatalf("%d: %+v", status, res)
			}
			var listed bool
			_ = r.store.View(func(tx *store.Tx) error { _, listed = tx.Adoption("native", scim.UserType, name); return nil })
			if listed {
				t.Fatalf("a create the app refused (%d) was listed for adoption", status)
			}
		}
		app.set(func(a *nativeApp) { a.fail = map[string]int{} })
		closed := newRig(t, rigOptions{target: newTarget(t, "http://127.0.0.1:1", false)})
		res := closed.eng.Apply(testReq, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("nowhere@contoso.example")), Status: 201})
		var listed bool
		_ = closed.store.View(func(tx *store.Tx) error {
			_, listed = tx.Adoption("native", scim.UserType, "nowhere@contoso.example")
			return nil
		})
		if res.Status != http.StatusServiceUnavailable || listed {
			t.Fatalf("a create that never reached the app: %+v, listed %v", res, listed)
		}
	})

	t.Run("commit failed after the app made the account", func(t *testing.T) {
		// While the app makes the account, another user takes the name in the directory:
		// the commit refuses it (409) although the app holds the account. The rename goes
		// through an engine without a target on the same store (the directory alone: no
		// call, so no wait for the name the create holds), as another process would.
		other := r.mustCreate(scim.UserType, user("placeholder@contoso.example"))
		name := "raced@contoso.example"
		bare := r.build(rigOptions{})
		app.set(func(a *nativeApp) {
			a.fail = map[string]int{}
			a.beforeCreate = func() {
				if res := bare.Apply(testReq, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: other, Status: http.StatusNoContent,
					Patch: patchOps(t, `[{"op":"replace","path":"userName","value":"`+name+`"}]`)}); res.Err != nil {
					t.Errorf("rename: %v", res.Err)
				}
			}
		})
		posts := app.posts()
		if res := retry(r.eng, name); res.Status != http.StatusConflict {
			t.Fatalf("the raced create: %+v", res)
		}
		if res := r.patch(scim.UserType, other, `[{"op":"replace","path":"userName","value":"placeholder@contoso.example"}]`); res.Err != nil {
			t.Fatal(res.Err)
		}
		// A restart in between: the list is in the store.
		restarted := r.build(rigOptions{target: target})
		res := retry(restarted, name)
		if res.Err != nil || app.posts() != posts+1 {
			t.Fatalf("retry after the race: %v, posts %d -> %d", res.Err, posts, app.posts())
		}
	})
}

// TestLargeMemberChangeIsSummarised: a list of members too long to record is recorded as
// its count, a hash of the sorted ids and the first ids, so that its record always fits the
// journal (a request's member change is journaled in parts of MemberChunk, but a queued
// delivery's coalesced tasks can name many more); a shorter one lists every id.
func TestLargeMemberChangeIsSummarised(t *testing.T) {
	var ids []string
	for i := range maxListedMembers + 1000 {
		ids = append(ids, fmt.Sprintf("%08d-0000-4000-8000-000000000000", (i*7919)%(maxListedMembers+1000)))
	}
	changes := memberChanges(ids, nil)
	if len(changes) != 1 || changes[0].Truncated {
		t.Fatalf("changes %+v", changes)
	}
	var sum memberSummary
	if err := json.Unmarshal(changes[0].Value, &sum); err != nil {
		t.Fatalf("the change is not a summary: %v", err)
	}
	slices.Sort(ids)
	h := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	if sum.Count != len(ids) || sum.SHA256 != hex.EncodeToString(h[:]) || !slices.Equal(sum.First, ids[:100]) {
		t.Fatalf("summary: count %d, sha %s, first %v", sum.Count, sum.SHA256, sum.First[:3])
	}
	r := newRig(t, rigOptions{})
	gid := r.mustCreate(scim.GroupType, `{"displayName":"All staff"}`)
	if res := r.patch(scim.GroupType, gid, `[{"op":"add","path":"members","value":[{"value":"`+ids[0]+`"}]}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	if c := r.last().Changes; len(c) != 1 || string(c[0].Value) != `["`+ids[0]+`"]` {
		t.Fatalf("a short change lists its ids: %+v", c)
	}
}

// TestInvalidKeysAreTheClients: an id the store cannot hold is the client's 400, never a
// storage error, when the engine is called without the HTTP layer's checks.
func TestInvalidKeysAreTheClients(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, id := range []string{"a\x00b", strings.Repeat("x", 70_000)} {
		res := r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: id})
		if res.Err == nil || res.Status != http.StatusBadRequest || res.Err.ScimType != scim.TypeInvalidValue {
			t.Fatalf("delete of an impossible id: %+v (%v), want 400 invalidValue", res.Status, res.Err)
		}
	}
}

// TestEveryCallIsJournaled: a change that makes several native calls records each of them
// (method, URL, status), the last one as the backend that decided the outcome; when the
// app is down, each record names the cause, and once the circuit opens, what opened it.
func TestEveryCallIsJournaled(t *testing.T) {
	_, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	a := r.mustCreate(scim.UserType, user("a@contoso.example"))
	b := r.mustCreate(scim.UserType, user("b@contoso.example"))
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Pair"}`)
	res := r.patch(scim.GroupType, gid, `[{"op":"add","path":"members","value":[{"value":"`+a+`"},{"value":"`+b+`"}]}]`)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	rec := r.last()
	if len(rec.Calls) != 2 || rec.Calls[0].Method != http.MethodPut || rec.Calls[1].Method != http.MethodPut ||
		rec.Calls[0].URL == rec.Calls[1].URL || rec.Calls[0].Status != http.StatusNoContent ||
		rec.Backend == nil || *rec.Backend != rec.Calls[1] {
		t.Fatalf("calls %+v, backend %+v", rec.Calls, rec.Backend)
	}

	// The app goes away: the record names the cause, then what opened the circuit.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	c, err := legacy.New(legacy.Options{BaseURL: down, Timeout: time.Second, MaxRetries: -1, CircuitFailures: 2, CircuitCooldown: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	target := newTarget(t, down, false)
	target.Client = c
	eng := r.build(rigOptions{target: target})
	for i, want := range []string{"refused: connection refused", "refused: connection refused", "circuit_open: the last failure before the pause: refused: connection refused"} {
		res := eng.Apply(testReq, &Op{Action: change.ActionPatch, Type: scim.UserType, ID: a, Patch: patchOps(t, fmt.Sprintf(`[{"op":"replace","path":"title","value":"T%d"}]`, i))})
		if res.Status != http.StatusServiceUnavailable {
			t.Fatalf("call %d: %+v", i, res)
		}
		rec := r.last()
		if len(rec.Calls) != 1 || rec.Calls[0].Error != want || rec.Backend == nil || rec.Backend.Error != want {
			t.Fatalf("call %d: calls %+v, want error %q", i, rec.Calls, want)
		}
		if i == 2 && !strings.Contains(res.Err.Detail, "connection refused") {
			t.Fatalf("the answer does not name the cause: %s", res.Err.Detail)
		}
	}
}

// TestCreatedInactive: a user created inactive ends up inactive in the app: when the
// create's body cannot carry active, the create is followed by the deactivation call, in
// one flow under one intent; when it can, the create alone carries it.
func TestCreatedInactive(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newMappedTarget(t, srv.URL, `{"version": 1, "users": {"events": {
		"create": {"method": "POST", "path": "/accounts", "id": "account.ref", "body": {"login": "userName"}},
		"deactivate": {"method": "PATCH", "path": "/accounts/{id}", "body": {"enabled": "active"}},
		"reactivate": {"method": "PATCH", "path": "/accounts/{id}", "body": {"enabled": "active"}}}}}`)
	r := newRig(t, rigOptions{target: target})
	for i, active := range []string{`"False"`, `false`} {
		before := len(r.records())
		id := r.mustCreate(scim.UserType, fmt.Sprintf(`{"userName":"dormant-%d@contoso.example","active":%s}`, i, active))
		acc := app.accounts[r.nativeID(scim.UserType, id)]
		if acc == nil || acc["enabled"] != false {
			t.Fatalf("active %s: the account is %v, want it disabled", active, acc)
		}
		recs := r.records()[before:]
		if len(recs) != 2 || recs[0].Outcome != change.Pending || recs[1].Outcome != change.Applied ||
			len(recs[1].Calls) != 2 || recs[1].Calls[0].Method != http.MethodPost || recs[1].Calls[1].Method != http.MethodPatch {
			t.Fatalf("one intent and an outcome with both calls, got %+v", recs)
		}
	}
	// The shipped shape, where the create sends active: one call.
	r2 := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	calls := len(app.callLog())
	res := r2.create(scim.UserType, `{"userName":"carried-off@contoso.example","active":false}`)
	if res.Err != nil || len(app.callLog()) != calls+1 || app.accounts[r2.nativeID(scim.UserType, res.ID)]["enabled"] != false {
		t.Fatalf("a create that carries active: %v, calls %v", res.Err, app.callLog()[calls:])
	}
}

// TestUpdateBodiesFitTheCall: a deactivation that is also an update sends one full PUT,
// not two identical ones; a full update that no changed attribute feeds sends nothing.
func TestUpdateBodiesFitTheCall(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newMappedTarget(t, srv.URL, `{"version": 1, "users": {"events": {
		"create": {"method": "POST", "path": "/accounts", "id": "account.ref", "body": {"login": "userName", "enabled": "active"}},
		"update": {"method": "PATCH", "path": "/accounts/{id}", "send": "all", "body": {"login": "userName", "title": "title", "enabled": "active"}},
		"deactivate": {"method": "PATCH", "path": "/accounts/{id}", "body": {"login": "userName", "title": "title", "enabled": "active"}}}}}`)
	r := newRig(t, rigOptions{target: target})
	id := r.mustCreate(scim.UserType, user("full@contoso.example", `,"title":"Engineer"`))
	calls := len(app.callLog())
	if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"Lead"},{"op":"replace","path":"active","value":false}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := app.callLog()[calls:]; len(got) != 1 {
		t.Fatalf("an update that is also a deactivation made %d calls: %v", len(got), got)
	}
	if rec := r.last(); !slices.Equal(rec.Events, []change.Event{change.Update, change.Deactivate}) || len(rec.Calls) != 1 {
		t.Fatalf("record: events %v, calls %+v", rec.Events, rec.Calls)
	}
	calls = len(app.callLog())
	if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"nickName","value":"Ada"}]`); res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := app.callLog()[calls:]; len(got) != 0 {
		t.Fatalf("a change of an attribute the app does not hold made calls: %v", got)
	}
}

// TestCreateFlow: a create mapped to a flow (create the account, then, only when the user
// starts inactive, suspend it by the id the first answer gave) runs under one intent with
// every call journaled; when the second call fails after the first made the account, Entra
// gets the outage, the create is listed for adoption, and the retry adopts the account
// and finishes the flow instead of creating a second one.
func TestCreateFlow(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newMappedTarget(t, srv.URL, `{"version": 1, "users": {
	  "lookup": {"method": "GET", "path": "/accounts?login={userName|lower}", "id": "results.0.ref"},
	  "events": {
	    "create": [
	      {"method": "POST", "path": "/accounts", "id": "account.ref", "body": {"login": {"from": "userName", "transforms": ["lower"]}}},
	      {"method": "PATCH", "path": "/accounts/{id}", "when": {"equals": {"active": false}}, "body": {"enabled": "active"}}
	    ],
	    "deactivate": {"method": "PATCH", "path": "/accounts/{id}", "body": {"enabled": "active"}}}}}`)
	r := newRig(t, rigOptions{target: target})

	id := r.mustCreate(scim.UserType, `{"userName":"Flow@contoso.example","active":false}`)
	acc := app.accounts[r.nativeID(scim.UserType, id)]
	if acc == nil || acc["enabled"] != false || acc["login"] != "flow@contoso.example" {
		t.Fatalf("the account: %v", acc)
	}
	recs := r.records()
	if out := recs[len(recs)-1]; len(out.Calls) != 2 || out.Calls[1].Method != http.MethodPatch || recs[len(recs)-2].Outcome != change.Pending {
		t.Fatalf("one intent, both calls in the outcome: %+v", recs[len(recs)-2:])
	}
	// The suspend of the next create fails after the account was made.
	app.set(func(a *nativeApp) { a.fail = map[string]int{"PATCH /accounts/": http.StatusServiceUnavailable} })
	posts := app.posts()
	res := r.create(scim.UserType, `{"userName":"half@contoso.example","active":false}`)
	if res.Status != http.StatusServiceUnavailable {
		t.Fatalf("a flow that failed half-way: %+v", res)
	}
	if rec := r.last(); rec.Outcome != change.Failed || len(rec.Calls) != 2 || rec.Calls[0].Status != http.StatusCreated {
		t.Fatalf("the failure's record: %+v", rec)
	}
	app.set(func(a *nativeApp) { a.fail = map[string]int{} })
	res = r.create(scim.UserType, `{"userName":"half@contoso.example","active":false}`)
	if res.Err != nil || app.posts() != posts+1 {
		t.Fatalf("the retry: %v, posts %d -> %d (a second account?)", res.Err, posts, app.posts())
	}
	if acc := app.accounts[r.nativeID(scim.UserType, res.ID)]; acc == nil || acc["enabled"] != false {
		t.Fatalf("the adopted account is not suspended: %v", acc)
	}
}

// TestFlowReadsEarlierAnswers: a later call of a flow takes values from an earlier call's
// answer ($answer.N.path, {answer.N.path}) and headers ($header.N.Name).
func TestFlowReadsEarlierAnswers(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newMappedTarget(t, srv.URL, `{"version": 1, "users": {"events": {
	  "create": [
	    {"method": "POST", "path": "/accounts", "id": "account.ref", "body": {"login": "userName"}},
	    {"method": "PATCH", "path": "/accounts/{answer.0.account.ref}", "body": {"seen_type": "$header.0.Content-Type", "ref_again": "$answer.0.account.ref"}}
	  ]}}}`)
	r := newRig(t, rigOptions{target: target})
	id := r.mustCreate(scim.UserType, user("answers@contoso.example"))
	native := r.nativeID(scim.UserType, id)
	acc := app.accounts[native]
	if acc == nil || acc["ref_again"] != native || !strings.HasPrefix(fmt.Sprint(acc["seen_type"]), "application/json") {
		t.Fatalf("the account %s: %v", native, acc)
	}
	if _, err := mapping.Parse("bad", []byte(`{"version": 1, "users": {"events": {"create": [
	    {"method": "POST", "path": "/a/{answer.1.id}", "id": "id"}, {"method": "POST", "path": "/b"}]}}}`), func(s string) (string, error) { return s, nil }); err == nil ||
		!strings.Contains(err.Error(), "no call of the flow is made before this one") {
		t.Fatalf("a call reading a later answer loaded: %v", err)
	}
}

// TestFlowResumesWithoutRepeating: when an update's flow fails after a call that may not
// be repeated (a POST), the retry of the change does not make that call again; once the
// change commits, a later identical call is made again.
func TestFlowResumesWithoutRepeating(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newMappedTarget(t, srv.URL, `{"version": 1, "users": {"events": {
	  "create": {"method": "POST", "path": "/accounts", "id": "account.ref", "body": {"login": "userName"}},
	  "update": [
	    {"method": "POST", "path": "/accounts/{id}/notes", "send": "all", "body": {"title": "title"}},
	    {"method": "PATCH", "path": "/accounts/{id}", "send": "all", "body": {"title": "title"}}
	  ]}}}`)
	r := newRig(t, rigOptions{target: target})
	id := r.mustCreate(scim.UserType, user("resume@contoso.example"))
	change := `[{"op":"replace","path":"title","value":"Lead"}]`
	app.set(func(a *nativeApp) { a.fail = map[string]int{"PATCH /accounts/": http.StatusServiceUnavailable} })
	if res := r.patch(scim.UserType, id, change); res.Status != http.StatusServiceUnavailable {
		t.Fatalf("the failing attempt: %+v", res)
	}
	app.set(func(a *nativeApp) { a.fail = map[string]int{} })
	if res := r.patch(scim.UserType, id, change); res.Err != nil {
		t.Fatal(res.Err)
	}
	if app.notes != 1 {
		t.Fatalf("the POST was made %d times, want once", app.notes)
	}
	if acc := app.accounts[r.nativeID(scim.UserType, id)]; acc["title"] != "Lead" {
		t.Fatalf("the PATCH did not reach the app: %v", acc)
	}
	// The change committed: its progress is gone, and a new change makes the POST again.
	if res := r.patch(scim.UserType, id, `[{"op":"replace","path":"title","value":"Director"}]`); res.Err != nil || app.notes != 2 {
		t.Fatalf("the next change: %v, notes %d", res.Err, app.notes)
	}
}

// TestCreateFlowResumesWithoutRepeating: when a create's flow fails after the account was
// made and after a later call that may not be repeated (a POST), Entra's retry (a new
// request, with a SCIM id of its own) adopts the account and resumes the flow without
// making that POST again; the progress is forgotten when the create commits.
func TestCreateFlowResumesWithoutRepeating(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newMappedTarget(t, srv.URL, `{"version": 1, "users": {
	  "lookup": {"method": "GET", "path": "/accounts?login={userName}", "id": "results.0.ref"},
	  "events": {
	    "create": [
	      {"method": "POST", "path": "/accounts", "id": "account.ref", "body": {"login": "userName"}},
	      {"method": "POST", "path": "/accounts/{id}/notes", "body": {"title": "title"}},
	      {"method": "PATCH", "path": "/accounts/{id}", "body": {"title": "title"}}
	    ]}}}`)
	r := newRig(t, rigOptions{target: target})
	app.set(func(a *nativeApp) { a.fail = map[string]int{"PATCH /accounts/": http.StatusServiceUnavailable} })
	body := user("notes@contoso.example", `,"title":"Lead"`)
	if res := r.create(scim.UserType, body); res.Status != http.StatusServiceUnavailable {
		t.Fatalf("the failing attempt: %+v", res)
	}
	app.set(func(a *nativeApp) { a.fail = map[string]int{} })
	res := r.create(scim.UserType, body)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if app.notes != 1 || app.posts() != 1 {
		t.Fatalf("the retry repeated calls: notes %d, account creates %d", app.notes, app.posts())
	}
	if acc := app.accounts[r.nativeID(scim.UserType, res.ID)]; acc["title"] != "Lead" {
		t.Fatalf("the PATCH did not reach the app: %v", acc)
	}
	var left []byte
	_ = r.store.View(func(tx *store.Tx) error {
		left = tx.Progress("native/"+scim.UserType, "create:notes@contoso.example")
		return nil
	})
	if left != nil {
		t.Fatal("the create's progress outlived its commit")
	}
}

// TestAppReusedNativeID: an app that answers a create with an id it already gave another
// account (one that lost its data and counts from 1 again) gets a 503 that says so, not a
// storage error, and the directory and the id map stay as they were.
func TestAppReusedNativeID(t *testing.T) {
	var creates atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		creates.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id": 1, "created": true}`)) // a number, every time
	}))
	t.Cleanup(srv.Close)
	target := newMappedTarget(t, srv.URL, `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/people", "id": "id", "body": {"name": {"from": "userName"}}}}}}`)
	r := newRig(t, rigOptions{target: target})
	first := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	if got := r.nativeID(scim.UserType, first); got != "1" {
		t.Fatalf("first create mapped to %q, want 1", got)
	}
	res := r.create(scim.UserType, user("grace@contoso.example"))
	if res.Err == nil || res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
		t.Fatalf("second create: %+v (%v), want 503 with Retry-After", res, res.Err)
	}
	if msg := res.Err.Error(); !strings.Contains(msg, `native id "1"`) || !strings.Contains(msg, first) || !strings.Contains(msg, "reused") || strings.Contains(msg, "storage error") {
		t.Fatalf("detail %q: want the reused id, the resource it maps to, and what to do", msg)
	}
	var users int
	_ = r.store.View(func(tx *store.Tx) error {
		users, _ = tx.Count(scim.UserType)
		return nil
	})
	if users != 1 || r.nativeID(scim.UserType, first) != "1" || creates.Load() != 2 {
		t.Fatalf("users %d, first mapped to %q, creates %d: want 1, 1, 2", users, r.nativeID(scim.UserType, first), creates.Load())
	}
}

// TestQueuedAppReusedNativeID: in queued delivery, a create the app answers with an id it
// already gave another account is a dead letter at once that says so, not a storage error
// retried until max_age.
func TestQueuedAppReusedNativeID(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id": 1}`))
	}))
	t.Cleanup(srv.Close)
	target := newMappedTarget(t, srv.URL, `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/people", "id": "id", "body": {"name": {"from": "userName"}}}}}}`)
	target.Name = "native"
	target.Delivery = withMode(outbox.Queued)
	r := newRig(t, rigOptions{target: target})
	first := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	r.settle()
	second := r.mustCreate(scim.UserType, user("grace@contoso.example"))
	r.settle()
	tasks := r.tasks()
	if len(tasks) != 1 || tasks[0].ID != second || !tasks[0].Dead || tasks[0].Attempts != 1 ||
		!strings.Contains(tasks[0].LastError, `native id "1"`) || !strings.Contains(tasks[0].LastError, first) || !strings.Contains(tasks[0].LastError, "reused") {
		t.Fatalf("tasks: %+v", tasks)
	}
}

// TestDiffChangesPaths: change paths are written as RFC 7644 §3.10 writes attribute paths:
// an extension's attribute after its URN and a colon, a sub-attribute after a dot, also
// below an extension (manager.value, not manager:value, which a policy reads as another
// URN); a custom extension's the same way.
func TestDiffChangesPaths(t *testing.T) {
	const ent = scim.EnterpriseUserSchema
	const custom = "urn:example:params:scim:schemas:extension:acme:2.0:User"
	before := scim.Resource{"name": map[string]any{"givenName": "A"}}
	after := scim.Resource{
		"name": map[string]any{"givenName": "B"},
		ent:    map[string]any{"department": "Eng", "manager": map[string]any{"value": "m1"}},
		custom: map[string]any{"badge": map[string]any{"color": "red"}},
	}
	var got []string
	for _, c := range diffChanges(before, after) {
		got = append(got, c.Path)
	}
	want := []string{"name.givenName", custom + ":badge.color", ent + ":department", ent + ":manager.value"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("paths %q, want %q", got, want)
	}
}
