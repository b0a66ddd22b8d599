package provision

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// renameApp is an app that accepts every account and team name, duplicates included (its
// names are not unique, or not unique the way the directory's are), and records its calls.
// holdFirst makes one call wait in the app while a test starts another change.
type renameApp struct {
	mu      sync.Mutex
	calls   []string
	next    atomic.Int64
	hold    string
	held    chan struct{} // closed when the held call arrives
	release chan struct{}
	once    sync.Once
}

func newRenameApp(t *testing.T) (*renameApp, string) {
	a := &renameApp{held: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(srv.Close)
	t.Cleanup(a.free)
	return a, srv.URL
}

// holdFirst makes the first call that starts with prefix wait for free.
func (a *renameApp) holdFirst(prefix string) {
	a.mu.Lock()
	a.hold = prefix
	a.mu.Unlock()
}

func (a *renameApp) free() {
	select {
	case <-a.release:
	default:
		close(a.release)
	}
}

func (a *renameApp) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	call := r.Method + " " + r.URL.Path + " " + string(body)
	a.mu.Lock()
	a.calls = append(a.calls, call)
	hold := a.hold
	a.mu.Unlock()
	if hold != "" && strings.HasPrefix(call, hold) {
		first := false
		a.once.Do(func() { first = true })
		if first {
			close(a.held)
			<-a.release
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodPost {
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"id": "n%d"}`, a.next.Add(1))
		return
	}
	_, _ = w.Write([]byte(`{"ok": true}`))
}

// callsWith lists the calls whose method and body hold both strings.
func (a *renameApp) callsWith(method, text string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, c := range a.calls {
		if strings.HasPrefix(c, method+" ") && strings.Contains(c, text) {
			out = append(out, c)
		}
	}
	return out
}

const renameMapping = `{"version": 1,
	"users": {"events": {
		"create": {"method": "POST", "path": "/people", "id": "id", "body": {"login": {"from": "userName"}}},
		"update": {"method": "PATCH", "path": "/people/{id}", "body": {"login": {"from": "userName"}}}}},
	"groups": {"events": {
		"create": {"method": "POST", "path": "/teams", "id": "id", "body": {"name": {"from": "displayName"}}},
		"update": {"method": "PATCH", "path": "/teams/{id}", "body": {"name": {"from": "displayName"}}}}}}`

func (r *rig) replace(typ, id, body string) *Result {
	r.t.Helper()
	return r.eng.Apply(testReq, &Op{Action: change.ActionReplace, Type: typ, ID: id, Resource: prepared(r.t, typ, body), Status: http.StatusOK})
}

func (r *rig) subject(typ, id string) string {
	r.t.Helper()
	var name string
	err := r.store.View(func(tx *store.Tx) error {
		rec, err := tx.Get(typ, id)
		if err != nil {
			return err
		}
		doc, err := DecodeDoc(rec)
		name = SubjectOf(typ, doc)
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return name
}

func wantUniqueness(t *testing.T, what string, res *Result) {
	t.Helper()
	var se *scim.Error
	if res.Err == nil || res.Status != http.StatusConflict || !errors.As(res.Err, &se) || se.ScimType != scim.TypeUniqueness {
		t.Fatalf("%s: status %d, err %v; want 409 uniqueness", what, res.Status, res.Err)
	}
}

// TestRenameToTakenNameCallsNoApp: a PATCH or PUT that gives a user the userName of another
// (exactly, in another case, or through the long "ſ" the directory equates with "s"), or a
// group the displayName of another, answers 409 uniqueness before the app is called: the
// app, whose names need not be unique the same way, is never renamed to a name the
// directory then refuses (it used to be, with the 409 coming from the commit). A rename to
// a free name, and a change of case of the resource's own name, still reach the app.
func TestRenameToTakenNameCallsNoApp(t *testing.T) {
	app, url := newRenameApp(t)
	r := newRig(t, rigOptions{target: newMappedTarget(t, url, renameMapping)})
	r.mustCreate(scim.UserType, user("ss@contoso.example"))
	ada := r.mustCreate(scim.UserType, user("ada@contoso.example"))
	r.mustCreate(scim.GroupType, `{"displayName":"Sales"}`)
	team := r.mustCreate(scim.GroupType, `{"displayName":"Support"}`)

	for _, tc := range []struct {
		what string
		res  func() *Result
		typ  string
		id   string
		was  string
	}{
		{"PATCH userName exactly", func() *Result {
			return r.patch(scim.UserType, ada, `[{"op":"replace","path":"userName","value":"ss@contoso.example"}]`)
		}, scim.UserType, ada, "ada@contoso.example"},
		{"PATCH userName with the long s", func() *Result {
			return r.patch(scim.UserType, ada, `[{"op":"replace","path":"userName","value":"ſS@contoso.example"}]`)
		}, scim.UserType, ada, "ada@contoso.example"},
		{"PATCH without a path", func() *Result {
			return r.patch(scim.UserType, ada, `[{"op":"replace","value":{"userName":"SS@CONTOSO.EXAMPLE"}}]`)
		}, scim.UserType, ada, "ada@contoso.example"},
		{"PUT", func() *Result { return r.replace(scim.UserType, ada, user("sſ@contoso.example")) }, scim.UserType, ada, "ada@contoso.example"},
		{"PATCH displayName", func() *Result {
			return r.patch(scim.GroupType, team, `[{"op":"replace","path":"displayName","value":"ſales"}]`)
		}, scim.GroupType, team, "Support"},
		{"PUT group", func() *Result { return r.replace(scim.GroupType, team, `{"displayName":"SALES"}`) }, scim.GroupType, team, "Support"},
	} {
		wantUniqueness(t, tc.what, tc.res())
		if got := r.subject(tc.typ, tc.id); got != tc.was {
			t.Errorf("%s: the directory holds %q, want %q", tc.what, got, tc.was)
		}
	}
	if calls := append(app.callsWith("PATCH", ""), app.callsWith("PUT", "")...); len(calls) != 0 {
		t.Fatalf("the app was renamed although the directory refused: %q", calls)
	}

	if res := r.patch(scim.UserType, ada, `[{"op":"replace","path":"userName","value":"ADA@contoso.example"}]`); res.Err != nil {
		t.Fatalf("a change of case of its own name: %v", res.Err)
	}
	if res := r.patch(scim.UserType, ada, `[{"op":"replace","path":"userName","value":"grace@contoso.example"}]`); res.Err != nil {
		t.Fatalf("a rename to a free name: %v", res.Err)
	}
	if got := app.callsWith("PATCH", "login"); len(got) != 2 {
		t.Fatalf("app calls %q: want the two renames", got)
	}
}

// TestRenameAndCreateOfOneName: a rename and a create of the same name are serialised
// before either calls the app. While a create of grace@ waits in the app, a rename of another
// user to Grace@ waits too, and once the create has committed it answers 409 without a call;
// while a rename to heidi@ waits in the app, a create of HEIDI@ waits, then answers 409
// without a call. Without the name's lock each passed its check while the other was in
// flight, and the app got both.
func TestRenameAndCreateOfOneName(t *testing.T) {
	for _, tc := range []struct {
		name, hold string
		first      func(r *rig, ada string) *Result
		second     func(r *rig, ada string) *Result
		secondCall string // the call the second change must not make
	}{
		{
			name: "create first", hold: "POST /people",
			first: func(r *rig, _ string) *Result { return r.create(scim.UserType, user("grace@contoso.example")) },
			second: func(r *rig, ada string) *Result {
				return r.patch(scim.UserType, ada, `[{"op":"replace","path":"userName","value":"Grace@contoso.example"}]`)
			},
			secondCall: "PATCH",
		},
		{
			name: "rename first", hold: "PATCH /people",
			first: func(r *rig, ada string) *Result {
				return r.patch(scim.UserType, ada, `[{"op":"replace","path":"userName","value":"heidi@contoso.example"}]`)
			},
			second:     func(r *rig, _ string) *Result { return r.create(scim.UserType, user("HEIDI@contoso.example")) },
			secondCall: "POST",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, url := newRenameApp(t)
			r := newRig(t, rigOptions{target: newMappedTarget(t, url, renameMapping)})
			ada := r.mustCreate(scim.UserType, user("ada@contoso.example"))
			app.holdFirst(tc.hold)
			before := len(app.callsWith(tc.secondCall, ""))

			first, second := make(chan *Result, 1), make(chan *Result, 1)
			go func() { first <- tc.first(r, ada) }()
			select {
			case <-app.held:
			case <-time.After(10 * time.Second):
				t.Fatal("the first change never reached the app")
			}
			go func() { second <- tc.second(r, ada) }()
			// The second change must wait for the name; give a wrong one time to call.
			select {
			case res := <-second:
				t.Fatalf("the second change finished while the first was in the app: %+v (%v)", res, res.Err)
			case <-time.After(300 * time.Millisecond):
			}
			if got := app.callsWith(tc.secondCall, ""); len(got) != before {
				t.Fatalf("the second change called the app while the first held the name: %q", got[before:])
			}
			app.free()
			if res := <-first; res.Err != nil {
				t.Fatalf("first change: %v", res.Err)
			}
			wantUniqueness(t, "second change", <-second)
			if got := app.callsWith(tc.secondCall, ""); len(got) != before {
				t.Fatalf("the second change called the app: %q", got[before:])
			}
		})
	}
}
