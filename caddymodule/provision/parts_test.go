package provision

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// idsFrom makes n member ids, not in key order (as Entra's object ids are).
func idsFrom(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%08x-%04d", prefix, uint32(i)*2654435761, i)
	}
	return out
}

// partsOf returns the parts of request id's records (0/0 for a record without one), and
// checks that each names at most MemberChunk member changes.
func (r *rig) partsOf(requestID string) []journal.Part {
	r.t.Helper()
	var out []journal.Part
	for _, rec := range r.records() {
		if rec.RequestID != requestID {
			continue
		}
		part := journal.Part{}
		if rec.Part != nil {
			part = *rec.Part
		}
		out = append(out, part)
		for _, c := range rec.Changes {
			if c.Path == "members" && strings.Count(string(c.Value), `"value"`) > MemberChunk {
				r.t.Errorf("record %d (part %+v) changes more than %d members", rec.Seq, part, MemberChunk)
			}
		}
	}
	return out
}

func wantParts(t *testing.T, got []journal.Part, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d records, want %d parts: %+v", len(got), n, got)
	}
	for i, p := range got {
		if p != (journal.Part{Index: i + 1, Count: n}) {
			t.Fatalf("record %d is part %+v, want %d of %d", i, p, i+1, n)
		}
	}
}

// TestMemberChangesInParts: without a target, member changes larger than MemberChunk edges
// (a PATCH's adds and removes, a "remove all", a PUT's member list, a create with members)
// are written in parts of at most MemberChunk edges, each journaled with the request's id
// and its place; a change of MemberChunk edges is one transaction, journaled as one record
// without a part; the answer and the stored group are the whole change's.
func TestMemberChangesInParts(t *testing.T) {
	r := newRig(t, rigOptions{})
	req := func(id string) Request { return Request{ID: id, Client: "entra"} }
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Parts"}`)
	version := func() uint64 {
		var v uint64
		_ = r.store.View(func(tx *store.Tx) error { v, _ = tx.Version(scim.GroupType, gid); return nil })
		return v
	}

	one := idsFrom("one", MemberChunk)
	res := r.eng.Apply(req("small"), &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent,
		Patch: patchOps(t, `[{"op":"add","path":"members","value":`+memberValues(one)+`}]`)})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := r.partsOf("small"); len(got) != 1 || got[0] != (journal.Part{}) {
		t.Errorf("a change of %d edges is journaled as %+v, want one record without a part", MemberChunk, got)
	}

	many := idsFrom("many", 3*MemberChunk+7)
	v0 := version()
	res = r.eng.Apply(req("add"), &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent,
		Patch: patchOps(t, `[{"op":"add","path":"members","value":`+memberValues(many)+`},{"op":"remove","path":"members","value":`+memberValues(one[:5])+`},{"op":"replace","path":"displayName","value":"Parts renamed"}]`)})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	nparts := (5 + len(many) + MemberChunk - 1) / MemberChunk
	wantParts(t, r.partsOf("add"), nparts)
	if v := version(); v != v0+uint64(nparts) || res.Version != v {
		t.Errorf("version %d, answered %d, want %d: one per part", v, res.Version, v0+uint64(nparts))
	}
	want := slices.Concat(one[5:], many)
	slices.Sort(want)
	if got := r.members(gid); !slices.Equal(got, want) {
		t.Fatalf("members: %d, want %d", len(got), len(want))
	}
	recs := r.records()
	if last := recs[len(recs)-1]; last.Subject != "Parts renamed" || !change.Has(last.Events, change.Rename) {
		t.Errorf("the last part does not carry the rename: %+v", last)
	}
	if first := recs[len(recs)-nparts]; first.Subject != "Parts" || change.Has(first.Events, change.Rename) || !change.Has(first.Events, change.RemoveMembers) {
		t.Errorf("the first part: %+v", first)
	}

	// The same PATCH again changes nothing: no part is written.
	n := len(r.records())
	res = r.eng.Apply(req("add-again"), &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent,
		Patch: patchOps(t, `[{"op":"add","path":"members","value":`+memberValues(many)+`}]`)})
	if res.Err != nil || len(r.records()) != n {
		t.Errorf("an unchanged large PATCH: %v, %d records written", res.Err, len(r.records())-n)
	}

	// A PUT's member list: the members it leaves out are removed, in parts.
	keep := slices.Concat(many[:10], idsFrom("put", 2*MemberChunk))
	res = r.eng.Apply(req("put"), &Op{Action: change.ActionReplace, Type: scim.GroupType, ID: gid, Status: http.StatusOK,
		Resource: prepared(t, scim.GroupType, `{"displayName":"Parts put","members":`+memberValues(keep)+`}`)})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := len(r.partsOf("put")); got < 2 {
		t.Errorf("a PUT of %d edges in %d part(s)", len(want)+len(keep), got)
	}
	slices.Sort(keep)
	if got := r.members(gid); !slices.Equal(got, keep) {
		t.Fatalf("members after PUT: %d, want %d", len(got), len(keep))
	}

	// Remove all: resolved to the members the group has.
	res = r.eng.Apply(req("clear"), &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent,
		Patch: patchOps(t, `[{"op":"remove","path":"members"}]`)})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	wantParts(t, r.partsOf("clear"), (len(keep)+MemberChunk-1)/MemberChunk)
	if got := r.members(gid); len(got) != 0 {
		t.Errorf("%d members left after remove all", len(got))
	}

	// A create with members: the first part creates, the others add; the answer is the
	// whole group.
	ids := idsFrom("new", 2*MemberChunk+1)
	res = r.eng.Apply(req("create"), &Op{Action: change.ActionCreate, Type: scim.GroupType, Status: http.StatusCreated,
		Resource: prepared(t, scim.GroupType, `{"displayName":"Created in parts","members":`+memberValues(ids)+`}`),
		Render: func(tx *store.Tx, rec *store.Record, _ scim.Resource) (any, error) {
			n := 0
			err := tx.Members(rec.ID, func(store.Member) error { n++; return nil })
			return n, err
		}})
	if res.Err != nil || res.Status != http.StatusCreated || res.Answer != len(ids) {
		t.Fatalf("create: %v, status %d, answer %v", res.Err, res.Status, res.Answer)
	}
	wantParts(t, r.partsOf("create"), 3)
	actions := []change.Action{}
	for _, rec := range r.records() {
		if rec.RequestID == "create" {
			actions = append(actions, rec.Action)
		}
	}
	if !slices.Equal(actions, []change.Action{change.ActionCreate, change.ActionPatch, change.ActionPatch}) {
		t.Errorf("the create's parts are %v", actions)
	}
	if got := r.members(res.ID); len(got) != len(ids) {
		t.Errorf("the created group has %d members, want %d", len(got), len(ids))
	}

	// A group cannot be its own member: refused before any part is written.
	n = len(r.records())
	res = r.eng.Apply(req("self"), &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent,
		Patch: patchOps(t, `[{"op":"add","path":"members","value":`+memberValues(append(idsFrom("self", 2*MemberChunk), gid))+`}]`)})
	if res.Status != http.StatusBadRequest || len(r.members(gid)) != 0 || len(r.records()) != n+1 {
		t.Errorf("a group made its own member: %d, %d members, %d records", res.Status, len(r.members(gid)), len(r.records())-n)
	}
	r.verify()
}

// nthFailingApp is a nativeApp whose nth member call (PUT or DELETE of a role's holder)
// answers 500, once.
type nthFailingApp struct {
	*nativeApp
	mu    sync.Mutex
	n     int
	calls int
	seen  []string // the member calls' paths, in order
}

func (a *nthFailingApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/holders/") {
		a.mu.Lock()
		a.calls++
		fail := a.calls == a.n
		a.seen = append(a.seen, r.Method+" "+r.URL.Path)
		a.mu.Unlock()
		if fail {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"message":"database write timed out"}`)
			return
		}
	}
	a.nativeApp.ServeHTTP(w, r)
}

func (a *nthFailingApp) memberCalls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.seen)
}

// TestMemberPartFailsAndRetries: a PATCH of five parts whose third part's member call
// fails is answered 5xx; the two parts before it are stored and journaled as applied, the
// third has its intent and its failed outcome, and the app holds what the directory holds
// plus the third part's calls that succeeded. Entra's retry of the same PATCH makes no call
// for the members already stored and completes the change; the journal verifies and every
// intent has an outcome.
func TestMemberPartFailsAndRetries(t *testing.T) {
	native, _ := newNativeApp(t)
	app := &nthFailingApp{nativeApp: native, n: 2*MemberChunk + 3}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	users := make([]string, 5*MemberChunk)
	for i := range users {
		users[i] = r.mustCreate(scim.UserType, user(fmt.Sprintf("part%03d@contoso.example", i)))
	}
	gid := r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Failing parts"}`)
	role := r.nativeID(scim.GroupType, gid)
	holders := func() []string {
		native.mu.Lock()
		defer native.mu.Unlock()
		var out []string
		for acct := range native.roles[role] {
			out = append(out, acct)
		}
		slices.Sort(out)
		return out
	}
	accounts := func(ids []string) []string {
		out := make([]string, 0, len(ids))
		for _, id := range ids {
			out = append(out, r.nativeID(scim.UserType, id))
		}
		slices.Sort(out)
		return out
	}
	patch := &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent,
		Patch: patchOps(t, `[{"op":"add","path":"members","value":`+memberValues(users)+`}]`)}
	slices.Sort(users) // the parts' order (inKeyOrder)

	res := r.eng.Apply(Request{ID: "big", Client: "entra"}, patch)
	if res.Err == nil || res.Status < 500 {
		t.Fatalf("a failed part answered %d %v", res.Status, res.Err)
	}
	stored := r.members(gid)
	if want := accounts(users[:2*MemberChunk]); !slices.Equal(accounts(stored), want) {
		t.Fatalf("stored %d members, want the first two parts' %d", len(stored), len(want))
	}
	if got, want := holders(), accounts(users[:2*MemberChunk+2]); !slices.Equal(got, want) {
		t.Errorf("the app holds %d members, want the two parts' and the third's two calls that succeeded (%d)", len(got), len(want))
	}
	wantOutcomes := []string{"patch:pending", "patch:applied", "patch:pending", "patch:applied", "patch:pending", "patch:failed"}
	if got := r.outcomesOf("big"); !slices.Equal(got, wantOutcomes) {
		t.Errorf("journal: %v, want %v", got, wantOutcomes)
	}
	parts := r.partsOf("big")
	for i, want := range []int{1, 1, 2, 2, 3, 3} {
		if parts[i] != (journal.Part{Index: want, Count: 5}) {
			t.Errorf("record %d is part %+v, want %d of 5", i, parts[i], want)
		}
	}

	before := len(app.memberCalls())
	res = r.eng.Apply(Request{ID: "big-retry", Client: "entra"}, patch)
	if res.Err != nil {
		t.Fatalf("the retry: %v", res.Err)
	}
	retried := app.memberCalls()[before:]
	for _, c := range retried {
		for _, acct := range accounts(users[:2*MemberChunk]) {
			if strings.HasSuffix(c, "/holders/"+acct) {
				t.Fatalf("the retry called the app again for a member stored before: %s", c)
			}
		}
	}
	if len(retried) != 3*MemberChunk {
		t.Errorf("the retry made %d member calls, want %d (the third part's again, the fourth's and fifth's)", len(retried), 3*MemberChunk)
	}
	if got, want := holders(), accounts(users); !slices.Equal(got, want) {
		t.Errorf("the app holds %d members, want %d", len(got), len(want))
	}
	if got := r.members(gid); len(got) != len(users) {
		t.Errorf("stored %d members, want %d", len(got), len(users))
	}
	wantRetry := []string{"patch:pending", "patch:applied", "patch:pending", "patch:applied", "patch:pending", "patch:applied"}
	if got := r.outcomesOf("big-retry"); !slices.Equal(got, wantRetry) {
		t.Errorf("the retry's journal: %v, want %v (parts 3 to 5; 1 and 2 change nothing)", got, wantRetry)
	}
	open, err := r.j.OpenIntents("native")
	if err != nil || len(open) != 0 {
		t.Errorf("intents without an outcome: %v, %v", open, err)
	}
	r.verify()
}

// TestMemberPartCommitFails: when the transaction of a part fails after its calls (here
// the last part's, whose answer cannot be rendered: the store's error is any error inside
// the commit), the request is answered 5xx and journaled as failed with that part, the
// parts before it stay stored, and the retry stores the rest.
func TestMemberPartCommitFails(t *testing.T) {
	native, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false)})
	users := make([]string, 2*MemberChunk+1)
	for i := range users {
		users[i] = r.mustCreate(scim.UserType, user(fmt.Sprintf("commit%03d@contoso.example", i)))
	}
	gid := r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Commit fails"}`)
	broken := true
	op := func() *Op {
		return &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Status: http.StatusOK,
			Patch: patchOps(t, `[{"op":"add","path":"members","value":`+memberValues(users)+`}]`),
			Render: func(*store.Tx, *store.Record, scim.Resource) (any, error) {
				if broken {
					return nil, fmt.Errorf("the disk is full")
				}
				return "rendered", nil
			}}
	}
	res := r.eng.Apply(Request{ID: "commit", Client: "entra"}, op())
	if res.Status < 500 {
		t.Fatalf("a part whose commit failed answered %d", res.Status)
	}
	if got := len(r.members(gid)); got != 2*MemberChunk {
		t.Errorf("stored %d members, want the first two parts' %d", got, 2*MemberChunk)
	}
	want := []string{"patch:pending", "patch:applied", "patch:pending", "patch:applied", "patch:pending", "patch:failed"}
	if got := r.outcomesOf("commit"); !slices.Equal(got, want) {
		t.Errorf("journal: %v, want %v", got, want)
	}
	if last := r.last(); last.Part == nil || *last.Part != (journal.Part{Index: 3, Count: 3}) {
		t.Errorf("the failure is journaled with part %+v, want 3 of 3", last.Part)
	}
	calls := len(native.callLog())
	broken = false
	res = r.eng.Apply(Request{ID: "commit-retry", Client: "entra"}, op())
	if res.Err != nil || res.Answer != "rendered" {
		t.Fatalf("the retry: %v, answer %v", res.Err, res.Answer)
	}
	if got := len(r.members(gid)); got != len(users) {
		t.Errorf("stored %d members, want %d", got, len(users))
	}
	if got := len(native.callLog()) - calls; got != 1 {
		t.Errorf("the retry made %d calls, want 1 (the last part's member again)", got)
	}
	r.verify()
}

// partsPolicy refuses a request that removes more than 40 members, and keeps member
// "kept-out" out of the app.
const partsPolicy = `package scimgate

default decision := {"allow": true}

decision := {"allow": false, "reasons": ["more than 40 members removed at once"]} if {
	count(input.members.remove) > 40
}

decision := {"allow": true, "drop_members": ["kept-out"]} if {
	count(input.members.remove) <= 40
	some m in input.members.add
	m.id == "kept-out"
}
`

// TestMemberPartsFollowOnePolicyDecision: the policy decides a change applied in parts as
// a whole: a limit on the members one request removes holds (the request is denied, once,
// without a part, and nothing is applied), its stats count the request once (after a
// restart too), and an obligation applies to the part that names the member.
func TestMemberPartsFollowOnePolicyDecision(t *testing.T) {
	native, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false), policy: writePolicy(t, partsPolicy)})
	ids := make([]string, 0, 2*MemberChunk+1)
	for i := range 2 * MemberChunk {
		ids = append(ids, r.mustCreate(scim.UserType, user(fmt.Sprintf("policed%03d@contoso.example", i))))
	}
	ids = append(ids, "kept-out")
	gid := r.mustCreate(scim.GroupType, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Policed"}`)
	calls := len(native.callLog())
	res := r.eng.Apply(Request{ID: "add", Client: "entra"}, &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent,
		Patch: patchOps(t, `[{"op":"add","path":"members","value":`+memberValues(ids)+`}]`)})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	// An intent and an outcome for the first two parts; the third names kept-out alone,
	// which the policy drops: no call, no intent.
	if got := r.outcomesOf("add"); !slices.Equal(got, []string{"patch:pending", "patch:applied", "patch:pending", "patch:applied", "patch:applied"}) {
		t.Fatalf("journal: %v", got)
	}
	if got := len(native.callLog()) - calls; got != 2*MemberChunk {
		t.Errorf("%d member calls, want %d (kept-out dropped)", got, 2*MemberChunk)
	}
	recs := r.records()
	if last := recs[len(recs)-1]; last.Decision == nil || !slices.Equal(last.Decision.DroppedMembers, []string{"kept-out"}) {
		t.Errorf("the last part's decision: %+v", last.Decision)
	}
	if got := statsNow(t, r.eng.stats)[string(change.AddMembers)]; got != 1 {
		t.Errorf("the stats count %d add_members, want 1 for the request", got)
	}
	seeded, err := r.eng.seedStats()
	if err != nil {
		t.Fatal(err)
	}
	if got := statsNow(t, seeded)[string(change.AddMembers)]; got != 1 {
		t.Errorf("the stats rebuilt from the journal count %d add_members, want 1", got)
	}

	n := len(r.records())
	res = r.eng.Apply(Request{ID: "clear", Client: "entra"}, &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent,
		Patch: patchOps(t, `[{"op":"remove","path":"members"}]`)})
	if res.Status != http.StatusForbidden {
		t.Fatalf("removing %d members answered %d, want 403", len(ids), res.Status)
	}
	recs = r.records()[n:]
	if len(recs) != 1 || recs[0].Outcome != change.Denied || recs[0].Part != nil {
		t.Errorf("the denied request's records: %+v", recs)
	}
	if got := len(r.members(gid)); got != len(ids) {
		t.Errorf("%d members left after a denied removal, want %d", got, len(ids))
	}
	r.verify()
}

// statsNow is what the counter counts in the last hour (a reservation of no events).
func statsNow(t *testing.T, c eventCounter) map[string]int64 {
	t.Helper()
	before, release, err := c.reserve(nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
	return before
}

// TestMemberPartsInKeyOrder: the parts of a change hold every edge once, the removals
// first, each sorted by id, at most n a part; the change's additions (a request's own
// list) are left in the request's order.
func TestMemberPartsInKeyOrder(t *testing.T) {
	adds, removes := idsFrom("a", 23), idsFrom("r", 9)
	d := &scim.MemberDelta{Remove: slices.Clone(removes)}
	for _, id := range adds {
		d.Add = append(d.Add, scim.MemberRef{Value: id, Display: "d" + id})
	}
	given := slices.Clone(d.Add)
	mp := newMemberParts(d, 5)
	if mp.count() != 7 {
		t.Fatalf("%d parts for 32 edges of 5", mp.count())
	}
	var gotAdds []scim.MemberRef
	var gotRemoves []string
	for i := range mp.count() {
		p := mp.part(i)
		if n := len(p.Add) + len(p.Remove); n == 0 || n > 5 || (len(p.Add) > 0 && len(gotRemoves)+len(p.Remove) != len(removes)) {
			t.Fatalf("part %d: %d removals, %d additions", i, len(p.Remove), len(p.Add))
		}
		gotAdds = append(gotAdds, p.Add...)
		gotRemoves = append(gotRemoves, p.Remove...)
	}
	wantAdds := slices.Clone(given)
	slices.SortFunc(wantAdds, func(a, b scim.MemberRef) int { return strings.Compare(a.Value, b.Value) })
	wantRemoves := slices.Sorted(slices.Values(removes))
	if !slices.Equal(gotAdds, wantAdds) || !slices.Equal(gotRemoves, wantRemoves) {
		t.Errorf("parts hold adds %v removes %v", gotAdds, gotRemoves)
	}
	if !slices.Equal(d.Add, given) {
		t.Error("the change's additions were reordered")
	}
}
