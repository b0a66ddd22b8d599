package provision

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// probeApp is nativeApp behind a hook that may answer a call itself (an HTML page, a
// proxy's 404, a 429 with Retry-After) before the app sees it.
type probeApp struct {
	*nativeApp
	mu   sync.Mutex
	hook func(w http.ResponseWriter, r *http.Request) bool
}

func newProbeApp(t *testing.T) (*probeApp, *httptest.Server) {
	a := &probeApp{nativeApp: &nativeApp{accounts: map[string]map[string]any{}, roles: map[string]map[string]bool{}, fail: map[string]int{}}}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv
}

func (a *probeApp) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	a.mu.Lock()
	a.hook = h
	a.mu.Unlock()
}

func (a *probeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	h := a.hook
	a.mu.Unlock()
	if h != nil && h(w, r) {
		return
	}
	a.nativeApp.ServeHTTP(w, r)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for range 2000 {
		if ok() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestQueuedLostAnswers: a queued create whose answer is lost (the connection closed after
// the app made the account, an answer past the deadline, a 500 after the write, a 201
// without the id) is looked up on its retry and adopted, never made twice.
func TestQueuedLostAnswers(t *testing.T) {
	for _, then := range []string{"drop", "slow", "500", "noid"} {
		t.Run(then, func(t *testing.T) {
			app, srv := newNativeApp(t)
			r := queuedRig(t, srv.URL, withMode(outbox.Queued))
			app.set(func(a *nativeApp) { a.createThen = then })
			uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
			r.settle()
			if app.accountCount() != 1 || app.posts() != 1 || r.nativeID(scim.UserType, uid) == "" {
				t.Fatalf("accounts %d posts %d native %q calls %v", app.accountCount(), app.posts(), r.nativeID(scim.UserType, uid), app.callLog())
			}
		})
	}
}

// TestQueuedProxyAnswers: an update answered by something other than the app (a sign-in
// page with 200, a proxy's HTML 404, a plain-text 404) proves nothing: it is retried, not
// delivered, not a dead letter, and never taken for the account being gone (which would
// create a second one).
func TestQueuedProxyAnswers(t *testing.T) {
	for _, c := range []struct {
		name, ct, body string
		status         int
	}{
		{"html200", "text/html", "<html><body>Sign in</body></html>", 200},
		{"proxy404", "text/html", "<html><body>404 Not Found</body><hr>nginx</html>", 404},
		{"plain404", "text/plain", "404 page not found", 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			app, srv := newProbeApp(t)
			r := queuedRig(t, srv.URL, withMode(outbox.Queued))
			uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
			r.settle()
			n := r.nativeID(scim.UserType, uid)
			var hits int
			var mu sync.Mutex
			app.setHook(func(w http.ResponseWriter, req *http.Request) bool {
				if req.Method != http.MethodPatch {
					return false
				}
				mu.Lock()
				defer mu.Unlock()
				hits++
				if hits > 2 {
					return false
				}
				w.Header().Set("Content-Type", c.ct)
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
				return true
			})
			r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"New"}]`)
			r.settle()
			if app.accountCount() != 1 || app.accounts[n]["title"] != "New" || len(r.tasks()) != 0 {
				t.Fatalf("accounts %d %v tasks %+v calls %v", app.accountCount(), app.accounts, r.tasks(), app.callLog())
			}
		})
	}
}

// TestQueuedRetryAfterDate: a 429 whose Retry-After is an HTTP-date holds the task until
// then.
func TestQueuedRetryAfterDate(t *testing.T) {
	app, srv := newProbeApp(t)
	r := queuedRig(t, srv.URL, withMode(outbox.Queued))
	date := time.Now().Add(time.Hour).UTC()
	app.setHook(func(w http.ResponseWriter, req *http.Request) bool {
		w.Header().Set("Retry-After", date.Format(http.TimeFormat))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"message":"slow down"}`))
		return true
	})
	r.mustCreate(scim.UserType, user("ada@contoso.example"))
	waitFor(t, "a failed attempt", func() bool { ts := r.tasks(); return len(ts) == 1 && ts[0].Attempts > 0 })
	tk := r.tasks()[0]
	if tk.NextAttempt.Before(date.Add(-2*time.Second)) || tk.Dead {
		t.Fatalf("next attempt %v, want >= %v: %+v", tk.NextAttempt, date, tk)
	}
}

// TestPoisonOutageDoesNotHoldTheTarget: an app that answers 500 to one account's change
// (its data crashes the app) while it takes every other change: the failure is that
// task's, not an outage of the app, so the target is not held behind its retries (with a
// retry_backoff of an hour, every other change waited an hour per retry of the poison).
func TestPoisonOutageDoesNotHoldTheTarget(t *testing.T) {
	app, srv := newProbeApp(t)
	s := withMode(outbox.Queued)
	s.MinBackoff, s.MaxBackoff, s.MaxConcurrent = time.Hour, time.Hour, 2
	r := queuedRig(t, srv.URL, s)
	w := r.eng.Worker()
	poison := r.mustCreate(scim.UserType, user("poison@contoso.example"))
	r.settle()
	pn := r.nativeID(scim.UserType, poison)
	// The first create answers once the poison's failure is recorded, so that the hold
	// the failure sets is in place when the create's success is reported.
	failed := make(chan struct{})
	var once sync.Once
	app.setHook(func(rw http.ResponseWriter, req *http.Request) bool {
		switch {
		case req.Method == http.MethodPatch && req.URL.Path == "/accounts/"+pn:
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusInternalServerError)
			_, _ = rw.Write([]byte(`{"message":"NullReferenceException"}`))
			return true
		case req.Method == http.MethodPost && req.URL.Path == "/accounts":
			once.Do(func() {
				for i := 0; i < 2000 && !slices.ContainsFunc(r.tasks(), func(tk *outbox.Task) bool { return tk.ID == poison && tk.Attempts > 0 }); i++ {
					time.Sleep(5 * time.Millisecond)
				}
				close(failed)
			})
		}
		return false
	})
	if err := w.Pause("test"); err != nil {
		t.Fatal(err)
	}
	first := r.mustCreate(scim.UserType, user("first@contoso.example"))
	r.patch(scim.UserType, poison, `[{"op":"replace","path":"title","value":"Crashes the app"}]`)
	others := []string{first}
	for _, name := range []string{"b", "c", "d", "e"} {
		others = append(others, r.mustCreate(scim.UserType, user(name+"@contoso.example")))
	}
	if err := w.Resume("test"); err != nil {
		t.Fatal(err)
	}
	<-failed
	waitFor(t, "the other users' creates", func() bool {
		return !slices.ContainsFunc(others, func(id string) bool { return r.nativeID(scim.UserType, id) == "" })
	})
	if tasks := r.tasks(); len(tasks) != 1 || tasks[0].ID != poison || tasks[0].Dead || tasks[0].LastStatus != http.StatusInternalServerError {
		t.Fatalf("outbox: %+v", tasks)
	}
}

// TestRenamedAccountIsFoundNotMadeAgain: an app that renamed an account's id answers the
// old id with its own "no such object"; the account still exists under its login. The
// lookup finds it: the id map names the new id and the change (with every attribute) goes
// to it, instead of a second account for the same login (and, for a deactivation, the
// account left enabled), in either mode. A lookup that finds nothing still makes the
// account again.
func TestRenamedAccountIsFoundNotMadeAgain(t *testing.T) {
	for _, mode := range []outbox.Mode{outbox.Queued, outbox.Immediate} {
		for _, deactivate := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/deactivate=%v", mode, deactivate), func(t *testing.T) {
				app, srv := newNativeApp(t)
				r := queuedRig(t, srv.URL, withMode(mode))
				uid := r.mustCreate(scim.UserType, user("ada@contoso.example", `,"title":"One"`))
				r.settle()
				old := r.nativeID(scim.UserType, uid)
				// While the gateway was not looking, the title changed too: the moved
				// account gets every attribute, not only the change's.
				app.set(func(a *nativeApp) {
					a.accounts["renamed-1"] = a.accounts[old]
					a.accounts["renamed-1"]["title"] = "Stale"
					delete(a.accounts, old)
				})
				ops, title := `[{"op":"replace","path":"title","value":"Two"}]`, "Two"
				if deactivate {
					// A deactivation carries no title: the moved account gets it all the same.
					ops, title = `[{"op":"replace","path":"active","value":false}]`, "One"
				}
				if res := r.patch(scim.UserType, uid, ops); res.Err != nil {
					t.Fatalf("patch: %v", res.Err)
				}
				r.settle()
				acc := app.accounts["renamed-1"]
				if app.accountCount() != 1 || acc == nil || acc["title"] != title || (deactivate && acc["enabled"] != false) || len(r.tasks()) != 0 {
					t.Fatalf("accounts %v, tasks %+v, calls %v", app.accounts, r.tasks(), app.callLog())
				}
				if got := r.nativeID(scim.UserType, uid); got != "renamed-1" {
					t.Fatalf("the id map names %q", got)
				}
				r.verify()
			})
		}
	}
	t.Run("really gone", func(t *testing.T) {
		app, srv := newNativeApp(t)
		r := queuedRig(t, srv.URL, withMode(outbox.Queued))
		uid := r.mustCreate(scim.UserType, user("ada@contoso.example"))
		r.settle()
		old := r.nativeID(scim.UserType, uid)
		app.set(func(a *nativeApp) { delete(a.accounts, old) })
		r.patch(scim.UserType, uid, `[{"op":"replace","path":"title","value":"Back"}]`)
		r.settle()
		n := r.nativeID(scim.UserType, uid)
		if app.accountCount() != 1 || n == "" || n == old || app.accounts[n]["title"] != "Back" {
			t.Fatalf("accounts %v, native %q, calls %v", app.accounts, n, app.callLog())
		}
	})
}
