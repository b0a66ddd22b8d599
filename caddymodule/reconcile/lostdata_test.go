package reconcile

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// TestFixAfterTheAppLostItsData: the app lost every account and counts its ids from 1
// again (restored empty), so the accounts a fix creates get ids the id map still links to
// other resources whose accounts are gone too (missing ones, and an inactive user's, which
// is not missing). The fix releases the links the complete listing proved gone before it
// creates anything: every missing account is made again and linked, and the next reconcile
// finds nothing. Before, most creates failed ("the app answered with native id 1, which
// the gateway already maps to ..."), the accounts they made stayed unlinked in the app,
// and the next report had them drifted towards other users (a fix would have renamed
// one user's account into another's). With 80 users and the default batch, the links
// released at once are more than one etcd transaction holds (two keys each), so on etcd
// (SCIMGATE_TEST_STORE=etcd) they are released in several.
func TestFixAfterTheAppLostItsData(t *testing.T) {
	for _, c := range []struct{ users, batch int }{{6, 2}, {80, 0}} {
		t.Run(fmt.Sprintf("users=%d", c.users), func(t *testing.T) { fixAfterTheAppLostItsData(t, c.users, c.batch) })
	}
}

func fixAfterTheAppLostItsData(t *testing.T, n, batch int) {
	r := newRig(t)
	var users []string
	for i := range n {
		users = append(users, r.create(r.eng, scim.UserType, user(fmt.Sprintf("u%03d", i), "Engineer", i != 0)))
	}
	r.create(r.eng, scim.GroupType, group("eng", users[1:4]...))
	r.app.call("POST", "/api/v1/_reset", "", 204)

	rep, err := r.reconciler(Options{Batch: batch}).Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	// Missing: the n-1 active users and the group; the inactive u000 is not missing.
	if rep.Counts.Missing != n || rep.Counts.FixFailed != 0 || rep.Counts.Fixed != n {
		var fixes []string
		for _, f := range rep.Findings {
			fixes = append(fixes, findingKey(f)+": "+f.Fix)
		}
		t.Fatalf("missing %d, fixed %d, failed %d, want %d missing all fixed:\n%s", rep.Counts.Missing, rep.Counts.Fixed, rep.Counts.FixFailed, n, strings.Join(fixes, "\n"))
	}
	if rep.Counts.Unlinked != n+1 {
		t.Errorf("unlinked %d, want %d (%d users and the group whose accounts are gone)", rep.Counts.Unlinked, n+1, n)
	}
	// The inactive user's stale link is gone too: its id is the app's to give again.
	if err := r.store.View(func(tx *store.Tx) error {
		_, err := tx.NativeID(r.target.IDMapKey(scim.UserType), users[0])
		return err
	}); err != store.ErrNotFound {
		t.Errorf("the inactive user's link to its gone account: %v, want none", err)
	}
	again, err := r.reconciler(Options{}).Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if again.Counts.Findings() != 0 {
		t.Fatalf("after the fix: %v, want no findings", keys(again))
	}
	if st := r.app.state(); len(st.Accounts) != n-1 || len(st.Memberships) != 3 {
		t.Fatalf("the app holds %d accounts and %d memberships, want %d and 3", len(st.Accounts), len(st.Memberships), n-1)
	}
}

// TestFixMakesManagersFirst: after the app lost its data, the missing reports come before
// their missing managers in the directory (made first, their manager set later, as
// Entra's manager pass does). The fix makes each manager's account before its reports',
// whose creates then send it: the next reconcile finds nothing. Before, a report made
// first went without its manager (the mapping could not name an account not yet made),
// drifted, and needed a second fix. Two users managing each other (a cycle) are both made.
func TestFixMakesManagersFirst(t *testing.T) {
	r := newRig(t)
	setManager := func(id, manager string) {
		r.patch(r.eng, scim.UserType, id, `[{"op":"add","path":"`+scim.EnterpriseUserSchema+`:manager","value":{"value":"`+manager+`"}}]`)
	}
	// A chain, reports before managers: u0 reports to u1, u1 to u2.
	var chain []string
	for i := range 3 {
		chain = append(chain, r.create(r.eng, scim.UserType, user(fmt.Sprintf("chain%d", i), "Engineer", true)))
	}
	setManager(chain[0], chain[1])
	setManager(chain[1], chain[2])
	c1 := r.create(r.eng, scim.UserType, user("cycle1", "Engineer", true))
	c2 := r.create(r.eng, scim.UserType, user("cycle2", "Engineer", true))
	setManager(c1, c2)
	setManager(c2, c1)
	r.app.call("POST", "/api/v1/_reset", "", 204)

	rep, err := r.reconciler(Options{}).Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.Missing != 5 || rep.Counts.Fixed != 5 || rep.Counts.FixFailed != 0 {
		t.Fatalf("missing %d, fixed %d, failed %d; want 5 missing, all fixed: %v", rep.Counts.Missing, rep.Counts.Fixed, rep.Counts.FixFailed, keys(rep))
	}
	again, err := r.reconciler(Options{}).Run(context.Background(), false, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range again.Findings {
		if strings.HasPrefix(f.Subject, "chain") {
			t.Errorf("after one fix: %s (a report made before its manager)", findingKey(f))
		}
	}
	// The cycle: one of the two was made before the other, so one drifts; no more.
	if n := len(again.Findings); n > 1 {
		t.Errorf("after one fix: %v, want at most the one user of the cycle made first", keys(again))
	}
}
