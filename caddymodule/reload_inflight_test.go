package caddymodule

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// oldToken is the token a rotation removes.
const oldToken = "old-token-0123456789abcdef0123456789"

// waitStarted waits until app was sent a write whose method and path start with prefix.
func waitStarted(t *testing.T, app *peopleApp, prefix string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case s := <-app.started:
			if strings.HasPrefix(s, prefix) {
				return
			}
		case <-deadline:
			t.Fatalf("no %s reached the app in 20 s", prefix)
		}
	}
}

// TestReloadChangesTargetMidFlight: a reload that changes the mapping (a new field), the
// target's URL and credentials and removes a token, while a request with that token is
// at the app: the request finishes with the config it started with (its token, the old
// mapping, the old app and key) and is answered 200; after the reload the old token is
// refused, and changes use the new mapping, URL and key.
func TestReloadChangesTargetMidFlight(t *testing.T) {
	appA, appB := startPeopleApp(t), startPeopleApp(t)
	appA.key.Store("key-a")
	appB.key.Store("key-b")
	o := rigOptions{tag: "a", appURL: appA.url, headers: map[string]string{"X-People-Key": "key-a"},
		tokens: []Token{{Name: "old", Value: oldToken}, {Name: "entra", Value: testToken}}}
	r := startReloadRig(t, o)
	id, _ := r.create(t, "/Users", `{"userName":"fay@contoso.example","displayName":"Finance"}`)

	appA.delay.Store(int64(time.Second))
	inflight := make(chan *itResponse, 1)
	go func() {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		inflight <- sendSCIM(t, client, http.MethodPatch, r.base+"/Users/"+id,
			itPatchBody(`{"op":"replace","path":"title","value":"Before"}`), "Authorization", "Bearer "+oldToken)
	}()
	waitStarted(t, appA, "PUT ")
	if err := os.WriteFile(r.mapping, []byte(peopleMappingDept), 0o600); err != nil {
		t.Fatal(err)
	}
	next := rigOptions{tag: "b", appURL: appB.url, headers: map[string]string{"X-People-Key": "key-b"}}
	if err := r.reload(t, next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	resp := <-inflight
	if resp.status != http.StatusOK {
		t.Fatalf("the request in flight during the reload: %d %s", resp.status, resp.body)
	}
	if c := appA.callsMatching(func(c peopleCall) bool { return c.Title == "Before" }); len(c) != 1 || c[0].HasDept || c[0].Key != "key-a" {
		t.Errorf("the change decided before the reload reached the old app as %+v, want once, without dept, with key-a", c)
	}
	r.client.CloseIdleConnections()
	r.do(t, http.MethodGet, "/Users/"+id, "", "Authorization", "Bearer "+oldToken).expect(t, http.StatusUnauthorized)
	r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"replace","path":"title","value":"After"}`)).expect(t, http.StatusOK)
	if c := appB.callsMatching(func(c peopleCall) bool { return c.Title == "After" }); len(c) != 1 || c[0].Dept != "Finance" || c[0].Key != "key-b" {
		t.Errorf("the change after the reload reached the new app as %+v, want once, with dept Finance and key-b", c)
	}
	if c := appA.callsMatching(func(c peopleCall) bool { return c.Title == "After" }); len(c) != 0 {
		t.Errorf("the old app got the change made after the reload: %+v", c)
	}
}

// TestReloadDuringSlowDelivery: a reload while the outbox worker waits 2 s on the app's
// answer to a queued create: the app gets the create once, the new config's change of the
// user follows it (once), and nothing is left in the outbox.
func TestReloadDuringSlowDelivery(t *testing.T) {
	app := startPeopleApp(t)
	app.delay.Store(int64(2 * time.Second))
	o := rigOptions{tag: "a", appURL: app.url, delivery: "queued"}
	r := startReloadRig(t, o)
	id, _ := r.create(t, "/Users", `{"userName":"gus@contoso.example"}`)
	waitStarted(t, app, "POST ")
	for i, mode := range []string{"queued", "", "queued"} { // three reloads while the call waits
		next := o
		next.tag = string(rune('b' + i))
		next.delivery = mode
		if err := r.reload(t, next); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	app.delay.Store(0)
	r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"replace","path":"title","value":"Later"}`)).expect(t, http.StatusOK)
	waitCalls(t, app, 1, func(c peopleCall) bool { return c.Title == "Later" })
	if c := app.callsMatching(func(c peopleCall) bool { return c.Method == http.MethodPost }); len(c) != 1 {
		t.Errorf("the app got %d creates: %+v", len(c), c)
	}
	if c := app.callsMatching(func(c peopleCall) bool { return c.Title == "Later" }); len(c) != 1 {
		t.Errorf("the app got the update %d times", len(c))
	}
	recs := rigJournal(t, r)
	delivered := 0
	for _, rec := range recs {
		if rec.Action == "deliver" && rec.Outcome == "delivered" {
			delivered++
		}
	}
	if delivered != 2 {
		t.Errorf("%d delivered records, want 2 (the create, the update)", delivered)
	}
}

// TestReloadMovingTheStoreLetsRequestsFinish: a reload to another data_dir while a
// request of the old config is at the app: the old store stays open until the request
// has committed its outcome, so it is answered 200 and its journal record is there (the
// store was closed under it: 503 after the app had applied the change, and an intent
// without outcome).
func TestReloadMovingTheStoreLetsRequestsFinish(t *testing.T) {
	app := startPeopleApp(t)
	o := rigOptions{tag: "a", appURL: app.url}
	r := startReloadRig(t, o)
	id, _ := r.create(t, "/Users", `{"userName":"hal@contoso.example"}`)
	app.delay.Store(int64(time.Second))
	inflight := make(chan *itResponse, 1)
	go func() {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		inflight <- sendSCIM(t, client, http.MethodPatch, r.base+"/Users/"+id, itPatchBody(`{"op":"replace","path":"title","value":"Moved"}`))
	}()
	waitStarted(t, app, "PUT ")
	next := o
	next.tag, next.dataDir = "b", t.TempDir()
	if err := r.reload(t, next); err != nil {
		t.Fatal(err)
	}
	if resp := <-inflight; resp.status != http.StatusOK {
		t.Fatalf("the request in flight while the store moved: %d %s", resp.status, resp.body)
	}
	recs := rigJournal(t, r) // the old store's journal
	applied := false
	for _, rec := range recs {
		applied = applied || (rec.Action == "patch" && rec.SCIMID == id && rec.Outcome == "applied")
	}
	if !applied {
		t.Errorf("no applied record of the patch in the old store: %+v", recs)
	}
}
