package provision

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Tests of deletes whose edges do not fit one transaction of a bounded store: the rig's
// store is bounded to etcd's 128 writes a transaction (teststore.Limited), on bbolt and,
// with SCIMGATE_TEST_STORE=etcd, on etcd itself.

// etcdTxnOps is etcd's default limit of operations in one transaction.
const etcdTxnOps = 128

// deleteMapping is nativeMapping with a group delete (DELETE /roles/{id}).
var deleteMapping = strings.Replace(nativeMapping,
	`"create": {"method": "POST", "path": "/roles", "id": "account.ref", "body": {"name": "displayName"}},`,
	`"create": {"method": "POST", "path": "/roles", "id": "account.ref", "body": {"name": "displayName"}},
      "delete": {"method": "DELETE", "path": "/roles/{id}"},`, 1)

// link writes edges group -> member straight into the directory, a transaction per 40
// (the directory as earlier changes left it; the test is about the delete).
func (r *rig) link(pairs [][2]string) {
	r.t.Helper()
	for len(pairs) > 0 {
		n := min(40, len(pairs))
		err := r.store.Update(func(tx *store.Tx) error {
			for _, e := range pairs[:n] {
				if _, err := tx.AddMember(e[0], store.Member{ID: e[1], Type: scim.UserType}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			r.t.Fatal(err)
		}
		pairs = pairs[n:]
	}
}

// edgesOf counts the edges left that name id: as a group and as a member.
func (r *rig) edgesOf(id string) int {
	r.t.Helper()
	n := 0
	err := r.store.View(func(tx *store.Tx) error {
		if err := tx.Members(id, func(store.Member) error { n++; return nil }); err != nil {
			return err
		}
		return tx.GroupsOf(id, func(string) error { n++; return nil })
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// countCalls counts the app's calls that are exactly call ("DELETE /roles/role-0001").
func countCalls(app *nativeApp, call string) int {
	n := 0
	for _, c := range app.callLog() {
		if c == call {
			n++
		}
	}
	return n
}

// wantDeleteParts checks the records of a delete in parts: every record carries the
// request's part {i, n}; the parts before the last are applied without events; the last
// is the delete (with its intent when it calls the app).
func wantDeleteParts(t testing.TB, r *rig, requestID string, last []string) int {
	t.Helper()
	var recs []journal.Record
	for _, rec := range r.records() {
		if rec.RequestID == requestID && rec.Action == change.ActionDelete {
			recs = append(recs, rec)
		}
	}
	if len(recs) < len(last)+1 {
		t.Fatalf("%d records of the delete: %+v", len(recs), recs)
	}
	count := len(recs) - len(last) + 1
	for i, rec := range recs {
		index := min(i+1, count)
		if rec.Part == nil || *rec.Part != (journal.Part{Index: index, Count: count}) {
			t.Fatalf("record %d is part %+v, want %d of %d", i, rec.Part, index, count)
		}
		if index < count && (rec.Outcome != change.Applied || len(rec.Events) > 0 || rec.Decision == nil || len(rec.Decision.Reasons) == 0) {
			t.Fatalf("part %d: %+v", index, rec)
		}
	}
	var got []string
	for _, rec := range recs[count-1:] {
		got = append(got, string(rec.Outcome))
	}
	if !slices.Equal(got, last) || !change.Has(recs[len(recs)-1].Events, change.Delete) {
		t.Fatalf("the last part's records: %v (events %v), want %v", got, recs[len(recs)-1].Events, last)
	}
	return count
}

// TestDeleteGroupInParts: a group of 300 members on a store bounded as etcd is deleted in
// parts: 204, no edge left, one delete call to the app, every transaction within the
// limit, the parts journaled under the request, and the journal verifies.
func TestDeleteGroupInParts(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, deleteMapping), limit: etcdTxnOps})
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Everyone"}`)
	role := r.nativeID(scim.GroupType, gid)
	members := idsFrom("m", 300)
	var pairs [][2]string
	for _, m := range members {
		pairs = append(pairs, [2]string{gid, m})
	}
	// The group is also a member of two groups.
	pairs = append(pairs, [2]string{"outer-1", gid}, [2]string{"outer-2", gid})
	r.link(pairs)

	res := r.eng.Apply(Request{ID: "del-group", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent})
	if res.Err != nil || res.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %v", res.Status, res.Err)
	}
	if n := r.edgesOf(gid); n != 0 {
		t.Errorf("%d edges left of the deleted group", n)
	}
	for _, m := range members {
		if n := r.edgesOf(m); n != 0 {
			t.Fatalf("member %s still has %d edges", m, n)
		}
	}
	if got := r.members("outer-1"); len(got) != 0 {
		t.Errorf("outer-1 still lists %v", got)
	}
	if err := r.store.View(func(tx *store.Tx) error { _, err := tx.Get(scim.GroupType, gid); return err }); err == nil {
		t.Error("the group is still in the directory")
	}
	if n := countCalls(app, "DELETE /roles/"+role); n != 1 {
		t.Errorf("%d delete calls to the app, want 1", n)
	}
	count := wantDeleteParts(t, r, "del-group", []string{"pending", "applied"})
	if want := (302-MemberChunk+MemberChunk-1)/MemberChunk + 1; count != want {
		t.Errorf("%d parts, want %d", count, want)
	}
	if l := r.limited.Largest(); l > etcdTxnOps {
		t.Errorf("a transaction wrote %d keys", l)
	}
	if r.nativeID(scim.GroupType, gid) != "" {
		t.Error("the id map still has the group")
	}
	r.verify()
}

// TestDeleteUserInParts: a user in 150 groups who manages 30 users is deleted in parts:
// 204, no membership left, the reports' references dropped (each with its cascade record
// and mark), one delete call to the app.
func TestDeleteUserInParts(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false), limit: etcdTxnOps})
	uid := r.mustCreate(scim.UserType, user("boss@contoso.example"))
	account := r.nativeID(scim.UserType, uid)
	var reports []string
	for i := range 30 {
		reports = append(reports, r.mustCreate(scim.UserType, user(fmt.Sprintf("report%02d@contoso.example", i),
			`,"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"`+uid+`"}}`)))
	}
	groups := idsFrom("g", 150)
	var pairs [][2]string
	for _, g := range groups {
		pairs = append(pairs, [2]string{g, uid})
	}
	r.link(pairs)

	res := r.eng.Apply(Request{ID: "del-user", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: uid, Status: http.StatusNoContent})
	if res.Err != nil || res.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %v", res.Status, res.Err)
	}
	if n := r.edgesOf(uid); n != 0 {
		t.Errorf("%d edges left of the deleted user", n)
	}
	for _, g := range groups {
		if got := r.members(g); len(got) != 0 {
			t.Fatalf("group %s still lists %v", g, got)
		}
	}
	err := r.store.View(func(tx *store.Tx) error {
		for _, id := range reports {
			rec, err := tx.Get(scim.UserType, id)
			if err != nil {
				return err
			}
			doc, err := DecodeDoc(rec)
			if err != nil {
				return err
			}
			if m := managerRef(doc); m != "" {
				return fmt.Errorf("report %s still names manager %s", id, m)
			}
		}
		ids, err := tx.Lookup(scim.UserType, managerIndex, uid)
		if len(ids) > 0 {
			return fmt.Errorf("the manager index still lists %v", ids)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range reports {
		if m := r.mark(scim.UserType, id); m != change.MarkManagerGone {
			t.Fatalf("report %s has mark %q", id, m)
		}
	}
	cascades := 0
	for _, rec := range r.records() {
		if rec.RequestID == "del-user" && rec.Action == change.ActionCascade {
			cascades++
		}
	}
	if cascades != len(reports) {
		t.Errorf("%d cascade records, want %d", cascades, len(reports))
	}
	if n := countCalls(app, "DELETE /accounts/"+account); n != 1 {
		t.Errorf("%d delete calls to the app, want 1", n)
	}
	wantDeleteParts(t, r, "del-user", []string{"pending", "applied"})
	if l := r.limited.Largest(); l > etcdTxnOps {
		t.Errorf("a transaction wrote %d keys", l)
	}
	r.verify()
}

// TestDeleteInPartsFailsAndRetries: a store outage in the third part's commit ends the
// delete with 503: the two parts before it stay applied, the resource is still in the
// directory, the app was not called. Entra's retry finishes the remaining parts and makes
// the app's delete once. A failure of the last part's commit, after the app's delete, is
// answered 503 too; the retry's delete call finds the resource gone in the app (404:
// already gone, as for any delete) and commits.
func TestDeleteInPartsFailsAndRetries(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, deleteMapping), limit: etcdTxnOps})
	del := func(requestID, gid string) *Result {
		return r.eng.Apply(Request{ID: requestID, Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent})
	}
	group := func(name string, n int) (string, string) {
		gid := r.mustCreate(scim.GroupType, `{"displayName":"`+name+`"}`)
		var pairs [][2]string
		for _, m := range idsFrom(name, n) {
			pairs = append(pairs, [2]string{gid, m})
		}
		r.link(pairs)
		return gid, r.nativeID(scim.GroupType, gid)
	}

	gid, role := group("between", 300)
	r.limited.FailCommit(3, teststore.ErrInjected)
	res := del("between", gid)
	if res.Status != http.StatusServiceUnavailable {
		t.Fatalf("a failed part answered %d %v", res.Status, res.Err)
	}
	if n := r.edgesOf(gid); n != 300-2*MemberChunk {
		t.Errorf("%d edges left, want %d (two parts applied)", n, 300-2*MemberChunk)
	}
	if n := countCalls(app, "DELETE /roles/"+role); n != 0 {
		t.Errorf("the app was called %d times before the last part", n)
	}
	if last := r.last(); last.Outcome != change.Failed || last.Part == nil || last.Part.Index != 3 {
		t.Errorf("the failure is journaled as %+v", last)
	}
	res = del("between-retry", gid)
	if res.Err != nil || res.Status != http.StatusNoContent {
		t.Fatalf("the retry: %d %v", res.Status, res.Err)
	}
	if n := r.edgesOf(gid); n != 0 {
		t.Errorf("%d edges left after the retry", n)
	}
	if n := countCalls(app, "DELETE /roles/"+role); n != 1 {
		t.Errorf("%d delete calls to the app, want 1", n)
	}
	wantDeleteParts(t, r, "between-retry", []string{"pending", "applied"})

	gid, role = group("last", 100)
	// The parts before the last are a commit each, the last an intent and a commit.
	pre := (100 - MemberChunk + MemberChunk - 1) / MemberChunk
	r.limited.FailCommit(pre+2, teststore.ErrInjected)
	res = del("last", gid)
	if res.Status != http.StatusServiceUnavailable {
		t.Fatalf("a failed last commit answered %d %v", res.Status, res.Err)
	}
	if n := countCalls(app, "DELETE /roles/"+role); n != 1 {
		t.Errorf("%d delete calls to the app, want 1", n)
	}
	if r.nativeID(scim.GroupType, gid) == "" || r.edgesOf(gid) != MemberChunk {
		t.Errorf("after the failed last commit: native id %q, %d edges", r.nativeID(scim.GroupType, gid), r.edgesOf(gid))
	}
	res = del("last-retry", gid)
	if res.Err != nil || res.Status != http.StatusNoContent {
		t.Fatalf("the retry: %d %v", res.Status, res.Err)
	}
	if n := countCalls(app, "DELETE /roles/"+role); n != 2 {
		t.Errorf("%d delete calls to the app, want 2 (the retry's answered 404)", n)
	}
	if n := r.edgesOf(gid); n != 0 {
		t.Errorf("%d edges left after the retry", n)
	}
	// The retry has no parts: what the failed attempt left fits one transaction.
	if recs := r.outcomesOf("last-retry"); !slices.Equal(recs, []string{"delete:pending", "delete:applied"}) {
		t.Errorf("the retry's records: %v", recs)
	}
	open, err := r.j.OpenIntents("native")
	if err != nil || len(open) != 0 {
		t.Errorf("intents without an outcome: %v, %v", open, err)
	}
	r.verify()
}

// TestQueuedDeleteInParts: in queued delivery the parts before the last unlink the edges,
// the last commits the delete with its task (outcome queued), and the worker makes the
// app's delete once.
func TestQueuedDeleteInParts(t *testing.T) {
	app, srv := newNativeApp(t)
	s := withMode(outbox.Queued)
	s.DeprovisionQueued = true
	target := newMappedTarget(t, srv.URL, deleteMapping)
	target.Delivery = s
	r := newRig(t, rigOptions{target: target, limit: etcdTxnOps})
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Queued"}`)
	r.settle()
	role := r.nativeID(scim.GroupType, gid)
	var pairs [][2]string
	for _, m := range idsFrom("q", 300) {
		pairs = append(pairs, [2]string{gid, m})
	}
	r.link(pairs)
	res := r.eng.Apply(Request{ID: "del-queued", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent})
	if res.Err != nil || res.Record == nil || res.Record.Outcome != change.Queued {
		t.Fatalf("queued delete: %+v (%v)", res, res.Err)
	}
	if n := r.edgesOf(gid); n != 0 {
		t.Errorf("%d edges left", n)
	}
	wantDeleteParts(t, r, "del-queued", []string{"queued"})
	r.settle()
	if n := countCalls(app, "DELETE /roles/"+role); n != 1 {
		t.Errorf("%d delete calls to the app, want 1", n)
	}
	if len(r.tasks()) != 0 || r.nativeID(scim.GroupType, gid) != "" {
		t.Errorf("after delivery: tasks %+v, native id %q", r.tasks(), r.nativeID(scim.GroupType, gid))
	}
	if l := r.limited.Largest(); l > etcdTxnOps {
		t.Errorf("a transaction wrote %d keys", l)
	}
	r.verify()
}

// TestSmallDeleteIsOneTransaction: a delete whose edges fit one transaction is one record
// without a part on a bounded store, and a large one too on a store without a bound (a
// bbolt file as the gateway opens it).
func TestSmallDeleteIsOneTransaction(t *testing.T) {
	for _, c := range []struct {
		name         string
		limit, edges int
	}{{"bounded", etcdTxnOps, MemberChunk}, {"unbounded", 0, 300}} {
		t.Run(c.name, func(t *testing.T) {
			if c.limit == 0 && teststore.Etcd() {
				t.Skip("etcd bounds its transactions")
			}
			r := newRig(t, rigOptions{limit: c.limit})
			gid := r.mustCreate(scim.GroupType, `{"displayName":"Small"}`)
			var pairs [][2]string
			for _, m := range idsFrom("s", c.edges) {
				pairs = append(pairs, [2]string{gid, m})
			}
			r.link(pairs)
			res := r.eng.Apply(Request{ID: "del", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if got := r.outcomesOf("del"); !slices.Equal(got, []string{"delete:applied"}) || r.last().Part != nil {
				t.Errorf("records %v, part %+v", got, r.last().Part)
			}
			if n := r.edgesOf(gid); n != 0 {
				t.Errorf("%d edges left", n)
			}
		})
	}
}

// TestRolesDeleteInParts: where groups are roles, a delete in parts sends what a small
// delete sends. A deleted group's members (more than a part holds) each get their list of
// roles without the group's, once (revoke_on_delete); a user in more groups than a part
// holds has its roles cleared before its delete (clear_on_user_delete: the app refuses to
// delete a user who holds roles), because the last part keeps the groups that give them.
func TestRolesDeleteInParts(t *testing.T) {
	app, srv := newRoleApp(t)
	app.AddRole("Admins", "role_admin")
	app.AddRole("Billing", "role_billing")
	r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, roleMapping), limit: etcdTxnOps})
	admins := r.mustCreate(scim.GroupType, group("Admins"))
	billing := r.mustCreate(scim.GroupType, group("Billing"))
	var users []string
	for i := range 2*MemberChunk + 10 {
		users = append(users, r.mustCreate(scim.UserType, user(fmt.Sprintf("holder%02d@contoso.example", i))))
	}
	r.mustPatch(scim.GroupType, admins, `[{"op":"add","path":"members","value":`+memberValues(users)+`}]`)
	r.mustPatch(scim.GroupType, billing, `[{"op":"add","path":"members","value":`+memberValues(users[:1])+`}]`)
	r.wantRoles(app, map[string][]string{users[0]: {"role_admin", "role_billing"}, users[1]: {"role_admin"}})

	calls := len(app.Calls())
	res := r.eng.Apply(Request{ID: "del-admins", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: admins, Status: http.StatusNoContent})
	if res.Err != nil {
		t.Fatalf("delete: %v", res.Err)
	}
	want := map[string][]string{users[0]: {"role_billing"}}
	for _, u := range users[1:] {
		want[u] = nil
	}
	r.wantRoles(app, want)
	puts := 0
	for _, c := range app.Calls()[calls:] {
		if strings.HasPrefix(c, "PUT /users/") {
			puts++
		}
	}
	if puts != len(users) {
		t.Errorf("%d lists sent, want one per member (%d)", puts, len(users))
	}
	if n := r.edgesOf(admins); n != 0 {
		t.Errorf("%d edges left", n)
	}
	recs := r.outcomesOf("del-admins")
	if len(recs) < 4 || recs[0] != "delete:pending" || recs[1] != "delete:applied" {
		t.Errorf("the parts with calls have their intents and outcomes: %v", recs)
	}

	// A user in Billing and in 150 groups that give no role.
	ada := users[0]
	var pairs [][2]string
	for _, g := range idsFrom("plain", 150) {
		pairs = append(pairs, [2]string{g, ada})
	}
	r.link(pairs)
	account := r.nativeID(scim.UserType, ada)
	res = r.eng.Apply(Request{ID: "del-ada", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: ada, Status: http.StatusNoContent})
	if res.Err != nil {
		t.Fatalf("delete of a user with roles in parts: %v; calls %v", res.Err, app.Calls()[len(app.Calls())-3:])
	}
	if app.HasUser(account) || r.edgesOf(ada) != 0 {
		t.Errorf("after the delete: the app has the user %v, %d edges left", app.HasUser(account), r.edgesOf(ada))
	}
	wantDeleteParts(t, r, "del-ada", []string{"pending", "applied"})
	if l := r.limited.Largest(); l > etcdTxnOps {
		t.Errorf("a transaction wrote %d keys", l)
	}
	r.verify()
}

// TestDeleteUserInPartsAgainstReadds: while a user in 100 groups is deleted in parts,
// workers add the user back to those groups (Entra's member PATCHes, each naming the one
// member). The delete holds each group's lock for that member until its last part, so no
// re-add interleaves with its parts: a re-add runs before the delete (the user is still a
// member: nothing changes) or after it, when the user is gone and has no account in the app
// (400 invalidValue, nothing stored). After it no group lists the user, no edge names it,
// the count of users is right, the app was asked to delete the account once, and the
// journal verifies with no re-add applied among or after the delete's parts.
func TestDeleteUserInPartsAgainstReadds(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false), limit: etcdTxnOps})
	d := newReaddRace(r)
	d.run(r.eng, r.eng)
	d.check(app)
	var first uint64
	for _, rec := range r.records() {
		if rec.RequestID == "del-leaver" && first == 0 {
			first = rec.Seq
		}
		if strings.HasPrefix(rec.RequestID, "readd-") && rec.Outcome == change.Applied && first != 0 {
			t.Errorf("re-add %s applied at %d, after the delete's first part (%d): %+v", rec.RequestID, rec.Seq, first, rec.Changes)
		}
	}
}

// TestFleetDeleteUserInPartsAgainstReadds: the same race between two gateways of a fleet,
// whose locks are each their own: the re-adds through one gateway interleave with the parts
// of the delete through the other. The delete unlinks what was re-added before its last
// part, and a re-add decided while the user was there but committed after its delete is
// refused in its commit (400 invalidValue): in the end no group lists the user and no edge
// names it.
func TestFleetDeleteUserInPartsAgainstReadds(t *testing.T) {
	app, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false), limit: etcdTxnOps})
	d := newReaddRace(r)
	d.run(r.fleetGateway(newTarget(t, srv.URL, false), nil), r.fleetGateway(newTarget(t, srv.URL, false), nil))
	d.check(app)
}

// readdRace is a user in 100 groups, deleted in parts while workers add it back to them.
type readdRace struct {
	r       *rig
	uid     string
	account string
	groups  []string
	del     *Result
	results []readd
}

type readd struct {
	id  string
	res *Result
}

func newReaddRace(r *rig) *readdRace {
	d := &readdRace{r: r}
	d.uid = r.mustCreate(scim.UserType, user("leaver@contoso.example"))
	d.account = r.nativeID(scim.UserType, d.uid)
	var pairs [][2]string
	for i := range 100 {
		g := r.mustCreate(scim.GroupType, group(fmt.Sprintf("Team %03d", i)))
		d.groups = append(d.groups, g)
		pairs = append(pairs, [2]string{g, d.uid})
	}
	r.link(pairs)
	return d
}

// readd adds the user back to group g through eng.
func (d *readdRace) readd(eng *Engine, id, g string) readd {
	res := eng.Apply(Request{ID: id, Client: "entra"}, &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: g,
		Patch: patchOps(d.r.t, `[{"op":"Add","path":"members","value":[{"value":"`+d.uid+`"}]}]`), Status: http.StatusNoContent})
	return readd{id, res}
}

// run deletes the user through del while 4 workers re-add it through add (300 each at
// most, until the delete returns), then re-adds it once more.
func (d *readdRace) run(del, add *Engine) {
	const workers, perWorker = 4, 300
	done := make(chan struct{})
	started := make(chan struct{}, workers)
	results := make([][]readd, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				select {
				case <-done:
					return
				default:
				}
				results[w] = append(results[w], d.readd(add, fmt.Sprintf("readd-%d-%d", w, i), d.groups[(i*workers+w)%len(d.groups)]))
				if i == 0 {
					started <- struct{}{}
				}
			}
		})
	}
	for range workers {
		<-started
	}
	d.del = del.Apply(Request{ID: "del-leaver", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: d.uid, Status: http.StatusNoContent})
	close(done)
	wg.Wait()
	d.results = slices.Concat(results...)
	// A re-add after the delete names a user without an account in the app.
	after := d.readd(add, "readd-after", d.groups[0])
	if after.res.Err == nil {
		d.r.t.Errorf("a re-add after the delete succeeded")
	}
	d.results = append(d.results, after)
}

// check checks the end state: the delete answered 204; no group lists the user and no
// edge names it; the counts are right; the app deleted the account once; every re-add
// succeeded or was refused as a member without an account (400 invalidValue); every
// transaction fitted; the journal verifies and shows the delete's parts.
func (d *readdRace) check(app *nativeApp) {
	r, t := d.r, d.r.t
	t.Helper()
	if d.del.Err != nil || d.del.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %v", d.del.Status, d.del.Err)
	}
	if n := r.edgesOf(d.uid); n != 0 {
		t.Errorf("%d edges left of the deleted user", n)
	}
	for _, g := range d.groups {
		if got := r.members(g); len(got) != 0 {
			t.Fatalf("group %s lists %v after the delete", g, got)
		}
	}
	err := r.store.View(func(tx *store.Tx) error {
		if n, err := tx.Count(scim.UserType); err != nil || n != 0 {
			return fmt.Errorf("%d users counted (%v), want 0", n, err)
		}
		if n, err := tx.Count(scim.GroupType); err != nil || n != len(d.groups) {
			return fmt.Errorf("%d groups counted (%v), want %d", n, err, len(d.groups))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if n := countCalls(app, "DELETE /accounts/"+d.account); n != 1 {
		t.Errorf("%d delete calls to the app, want 1", n)
	}
	refused := 0
	for _, a := range d.results {
		var se *scim.Error
		switch {
		case a.res.Err == nil:
		case errors.As(a.res.Err, &se) && se.Status == http.StatusBadRequest && se.ScimType == scim.TypeInvalidValue:
			refused++
		default:
			t.Errorf("re-add %s: %d %v", a.id, a.res.Status, a.res.Err)
		}
	}
	t.Logf("%d re-adds, %d refused", len(d.results), refused)
	if count := wantDeleteParts(t, r, "del-leaver", []string{"pending", "applied"}); count < 3 {
		t.Fatalf("the delete had %d parts", count)
	}
	if l := r.limited.Largest(); l > etcdTxnOps {
		t.Errorf("a transaction wrote %d keys", l)
	}
	r.verify()
}

// TestQueuedDeleteInPartsBehindBacklog: in queued delivery, a group with member adds still
// in the outbox (the worker paused), also a member of another group, is deleted in parts.
// The parts before the last queue nothing (a part without calls, as in immediate
// delivery); the last queues the delete behind the adds. Once delivered, the app got one
// delete of the role and no member call (the delete covers the members, as a small delete
// sends none: the adds coalesce into it), the outer group's role is untouched, the outbox
// is empty, the one attempt has one intent and every queued request one delivered record,
// no intent is left open, and the journal verifies.
func TestQueuedDeleteInPartsBehindBacklog(t *testing.T) {
	app, srv := newNativeApp(t)
	s := withMode(outbox.Queued)
	s.DeprovisionQueued = true
	target := newMappedTarget(t, srv.URL, deleteMapping)
	target.Delivery = s
	r := newRig(t, rigOptions{target: target, limit: etcdTxnOps})
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Backlog"}`)
	outer := r.mustCreate(scim.GroupType, `{"displayName":"Outer"}`)
	var users []string
	for i := range 5 {
		users = append(users, r.mustCreate(scim.UserType, user(fmt.Sprintf("late%d@contoso.example", i))))
	}
	r.settle()
	role, outerRole := r.nativeID(scim.GroupType, gid), r.nativeID(scim.GroupType, outer)
	r.mustPatch(scim.GroupType, outer, `[{"op":"add","path":"members","value":`+memberValues([]string{gid})+`}]`)
	r.settle()
	var pairs [][2]string
	for _, m := range idsFrom("b", 300) {
		pairs = append(pairs, [2]string{gid, m})
	}
	r.link(pairs)

	w := r.eng.Worker()
	if err := w.Pause("test"); err != nil {
		t.Fatal(err)
	}
	add := r.eng.Apply(Request{ID: "add-late", Client: "entra"}, &Op{Action: change.ActionPatch, Type: scim.GroupType, ID: gid,
		Patch: patchOps(t, `[{"op":"add","path":"members","value":`+memberValues(users)+`}]`), Status: http.StatusNoContent})
	if add.Err != nil || add.Record == nil || add.Record.Outcome != change.Queued {
		t.Fatalf("queued add: %+v (%v)", add, add.Err)
	}
	calls := len(app.callLog())
	res := r.eng.Apply(Request{ID: "del-backlog", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent})
	if res.Err != nil || res.Record == nil || res.Record.Outcome != change.Queued {
		t.Fatalf("queued delete: %+v (%v)", res, res.Err)
	}
	wantDeleteParts(t, r, "del-backlog", []string{"queued"})
	if got := len(r.tasks()); got != 2 {
		t.Errorf("%d tasks queued, want 2 (the add and the delete; no part before the last queues one)", got)
	}
	if n := r.edgesOf(gid); n != 0 {
		t.Errorf("%d edges left", n)
	}
	if err := w.Resume("test"); err != nil {
		t.Fatal(err)
	}
	r.settle()

	sent := app.callLog()[calls:]
	if !slices.Equal(sent, []string{"DELETE /roles/" + role}) {
		t.Errorf("the app got %v, want the role's delete alone", sent)
	}
	if len(r.tasks()) != 0 || r.nativeID(scim.GroupType, gid) != "" {
		t.Errorf("after delivery: tasks %+v, native id %q", r.tasks(), r.nativeID(scim.GroupType, gid))
	}
	if r.nativeID(scim.GroupType, outer) != outerRole || app.roles[outerRole] == nil {
		t.Errorf("the outer group's role: %q, in the app %v", r.nativeID(scim.GroupType, outer), app.roles[outerRole])
	}
	// One attempt: its intent (under the first task's request) and a delivered record per
	// request.
	intents := 0
	for _, id := range []string{"add-late", "del-backlog"} {
		delivered := 0
		for _, rec := range r.records() {
			if rec.RequestID != id || rec.Action != change.ActionDeliver {
				continue
			}
			switch rec.Outcome {
			case change.Pending:
				intents++
			case change.Delivered:
				delivered++
			default:
				t.Errorf("%s: a delivery record %s: %+v", id, rec.Outcome, rec)
			}
		}
		if delivered != 1 {
			t.Errorf("%s has %d delivered records, want 1", id, delivered)
		}
	}
	if intents != 1 {
		t.Errorf("%d delivery intents, want 1", intents)
	}
	if open, err := r.j.OpenIntents("native"); err != nil || len(open) != 0 {
		t.Errorf("intents without an outcome: %v, %v", open, err)
	}
	if l := r.limited.Largest(); l > etcdTxnOps {
		t.Errorf("a transaction wrote %d keys", l)
	}
	r.verify()
}

// TestFallbackDeleteInParts: in fallback delivery, a delete in parts whose app is down at
// the last part is queued there: the parts before it stay applied, the last commits the
// delete with its task, and the worker makes the app's delete once the app is back. The
// attempt at once has its intent closed (no intent stays open), and the journal verifies.
func TestFallbackDeleteInParts(t *testing.T) {
	app, srv := newNativeApp(t)
	target := newMappedTarget(t, srv.URL, deleteMapping)
	target.Delivery = withMode(outbox.Fallback)
	r := newRig(t, rigOptions{target: target, limit: etcdTxnOps})
	gid := r.mustCreate(scim.GroupType, `{"displayName":"Fallback"}`)
	role := r.nativeID(scim.GroupType, gid)
	var pairs [][2]string
	for _, m := range idsFrom("f", 300) {
		pairs = append(pairs, [2]string{gid, m})
	}
	r.link(pairs)
	app.set(func(a *nativeApp) { a.fail["DELETE /roles/"] = http.StatusServiceUnavailable })
	res := r.eng.Apply(Request{ID: "del-fallback", Client: "entra"}, &Op{Action: change.ActionDelete, Type: scim.GroupType, ID: gid, Status: http.StatusNoContent})
	if res.Err != nil || res.Record == nil || res.Record.Outcome != change.Queued {
		t.Fatalf("delete with the app down: %+v (%v)", res, res.Err)
	}
	if n := r.edgesOf(gid); n != 0 {
		t.Errorf("%d edges left", n)
	}
	app.set(func(a *nativeApp) { delete(a.fail, "DELETE /roles/") })
	r.settle()
	if n := countCalls(app, "DELETE /roles/"+role); n < 2 {
		t.Errorf("%d delete calls, want the failed one and the delivery", n)
	}
	if app.roles[role] != nil || len(r.tasks()) != 0 || r.nativeID(scim.GroupType, gid) != "" {
		t.Errorf("after delivery: role in the app %v, tasks %+v, native id %q", app.roles[role] != nil, r.tasks(), r.nativeID(scim.GroupType, gid))
	}
	if open, err := r.j.OpenIntents("native"); err != nil || len(open) != 0 {
		t.Errorf("intents without an outcome: %v, %v", open, err)
	}
	// The last part: the attempt at once (its intent, closed by the queued record), then
	// the worker's delivery.
	wantDeleteParts(t, r, "del-fallback", []string{"pending", "queued"})
	if got := r.outcomesOf("del-fallback"); !slices.Equal(got[len(got)-4:], []string{"delete:pending", "delete:queued", "deliver:pending", "deliver:delivered"}) {
		t.Errorf("the delete's records: %v", got)
	}
	if l := r.limited.Largest(); l > etcdTxnOps {
		t.Errorf("a transaction wrote %d keys", l)
	}
	r.verify()
}

// TestDeletedMemberMovesItsGroupsVersions: a group's members are part of it, so when a
// member is deleted every group it belonged to gets a new version (and lastModified): an
// If-Match with the version read before no longer matches. Both ways: a user in 3 groups
// (one transaction) and a user in 80 groups on a store bounded like etcd (in parts; each
// part touches its groups, and no transaction exceeds the bound).
func TestDeletedMemberMovesItsGroupsVersions(t *testing.T) {
	for _, n := range []int{3, 80} {
		t.Run(fmt.Sprintf("groups=%d", n), func(t *testing.T) {
			r := newRig(t, rigOptions{limit: etcdTxnOps})
			uid := r.mustCreate(scim.UserType, user("leaver@contoso.example"))
			stay := r.mustCreate(scim.UserType, user("stayer@contoso.example"))
			groups := make([]string, n)
			before := map[string]uint64{}
			for i := range groups {
				groups[i] = r.mustCreate(scim.GroupType, fmt.Sprintf(`{"displayName":"Team %02d","members":[{"value":%q},{"value":%q}]}`, i, uid, stay))
			}
			_ = r.store.View(func(tx *store.Tx) error {
				for _, g := range groups {
					rec, err := tx.Get(scim.GroupType, g)
					if err != nil {
						t.Fatal(err)
					}
					before[g] = rec.Version
				}
				return nil
			})
			res := r.eng.Apply(testReq, &Op{Action: change.ActionDelete, Type: scim.UserType, ID: uid, Status: http.StatusNoContent})
			if res.Err != nil {
				t.Fatalf("delete: %v", res.Err)
			}
			_ = r.store.View(func(tx *store.Tx) error {
				for _, g := range groups {
					rec, err := tx.Get(scim.GroupType, g)
					if err != nil {
						t.Fatal(err)
					}
					if rec.Version <= before[g] {
						t.Errorf("group %s kept version %d after losing a member", g, rec.Version)
					}
					if err := checkIfMatch(ETag(before[g]), rec.Version); err == nil {
						t.Errorf("group %s: If-Match of the version before the delete still matches", g)
					}
				}
				return nil
			})
			for _, g := range groups {
				if got := r.members(g); len(got) != 1 || got[0] != stay {
					t.Fatalf("group %s lists %v, want only %s", g, got, stay)
				}
			}
			if l := r.limited.Largest(); l > etcdTxnOps {
				t.Errorf("a transaction wrote %d keys", l)
			}
			r.verify()
		})
	}
}
