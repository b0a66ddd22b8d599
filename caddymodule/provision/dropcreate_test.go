package provision

import (
	"net/http"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestDroppedCreateKeepsMemberships: an operator drops a user's queued create while the
// user's update and a group's member add naming the user are queued too. The update then
// makes the account (the user has none: it goes as a create with the final values), and the
// group's member add must reach the app whatever the order of the two deliveries: the
// group's delivery leaves out a member without an account, expecting the member's create to
// send the membership, and the member's create leaves out a group whose task is still
// queued, expecting that task to send it. Delivered at once, each went before the other's
// commit and neither sent it. The app's hooks make that interleaving happen whenever the two
// deliveries overlap; the worker must not let them.
func TestDroppedCreateKeepsMemberships(t *testing.T) {
	for _, groupFirst := range []bool{false, true} {
		name := "update-then-group"
		if groupFirst {
			name = "group-then-update"
		}
		t.Run(name, func(t *testing.T) {
			app, srv := newProbeApp(t)
			r := queuedRig(t, srv.URL, withMode(outbox.Queued))
			w := r.eng.Worker()
			if err := w.Pause("ops"); err != nil {
				t.Fatal(err)
			}
			uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
			var gid string
			if groupFirst {
				gid = r.mustCreate(scim.GroupType, `{"displayName":"Admins","members":[{"value":"`+uid+`"}]}`)
				r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Two"}]`)
			} else {
				r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Two"}]`)
				gid = r.mustCreate(scim.GroupType, `{"displayName":"Admins","members":[{"value":"`+uid+`"}]}`)
			}
			tasks := r.tasks()
			if len(tasks) != 3 || tasks[0].ID != uid || tasks[0].Action != change.ActionCreate {
				t.Fatalf("queued: %+v", tasks)
			}
			// While both deliveries are in flight, the member's create waits until the group's
			// call has been made (the group read the member's account: none), and the group's
			// call is answered once the member's account is committed (the member's create
			// read the group: no account yet, its task still queued). Bounded: 10 s.
			roleCall := make(chan struct{})
			overlap := func() bool { return w.Stats().InFlight > 1 }
			app.setHook(func(_ http.ResponseWriter, req *http.Request) bool {
				switch {
				case req.Method == http.MethodPost && req.URL.Path == "/accounts" && overlap():
					select {
					case <-roleCall:
					case <-time.After(10 * time.Second):
					}
				case req.Method == http.MethodPost && req.URL.Path == "/roles":
					close(roleCall)
					for i := 0; overlap() && r.nativeID(scim.UserType, uid) == "" && i < 2000; i++ {
						time.Sleep(5 * time.Millisecond)
					}
				}
				return false
			})
			if err := w.Drop(tasks[0].Seq, "ops"); err != nil {
				t.Fatal(err)
			}
			if err := w.Resume("ops"); err != nil {
				t.Fatal(err)
			}
			r.settle()
			un, gn := r.nativeID(scim.UserType, uid), r.nativeID(scim.GroupType, gid)
			if un == "" || gn == "" || len(r.tasks()) != 0 {
				t.Fatalf("user %q group %q, tasks %+v", un, gn, r.tasks())
			}
			app.mu.Lock()
			member := app.roles[gn][un]
			app.mu.Unlock()
			if !member {
				t.Fatalf("the group's account in the app lacks the member: roles %v; calls %v", app.roles, app.callLog())
			}
			var dropped bool
			for _, rec := range r.records() {
				dropped = dropped || rec.Action == change.ActionDrop && rec.Client == "ops" && rec.SCIMID == uid
			}
			if !dropped {
				t.Fatal("the drop is not journaled with who did it")
			}
		})
	}
}
