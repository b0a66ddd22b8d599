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
// one user's account into another's).
func TestFixAfterTheAppLostItsData(t *testing.T) {
	r := newRig(t)
	var users []string
	for i := range 6 {
		users = append(users, r.create(r.eng, scim.UserType, user(fmt.Sprintf("u%03d", i), "Engineer", i != 0)))
	}
	r.create(r.eng, scim.GroupType, group("eng", users[1:4]...))
	r.app.call("POST", "/api/v1/_reset", "", 204)

	rep, err := r.reconciler(Options{Batch: 2}).Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	// Missing: the 5 active users and the group; the inactive u000 is not missing.
	if rep.Counts.Missing != 6 || rep.Counts.FixFailed != 0 || rep.Counts.Fixed != 6 {
		var fixes []string
		for _, f := range rep.Findings {
			fixes = append(fixes, findingKey(f)+": "+f.Fix)
		}
		t.Fatalf("missing %d, fixed %d, failed %d, want 6 missing all fixed:\n%s", rep.Counts.Missing, rep.Counts.Fixed, rep.Counts.FixFailed, strings.Join(fixes, "\n"))
	}
	if rep.Counts.Unlinked != 7 {
		t.Errorf("unlinked %d, want 7 (6 users and the group whose accounts are gone)", rep.Counts.Unlinked)
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
	if st := r.app.state(); len(st.Accounts) != 5 || len(st.Memberships) != 3 {
		t.Fatalf("the app holds %d accounts and %d memberships, want 5 and 3", len(st.Accounts), len(st.Memberships))
	}
}
