package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// faultMapping maps users onto a small native API at /accounts.
const faultMapping = `{
  "version": 1,
  "users": {
    "events": {
      "create": {"method": "POST", "path": "/accounts", "id": "id", "body": {"login": {"from": "userName"}}},
      "update": {"method": "PATCH", "path": "/accounts/{id}", "send": "all", "body": {"title": {"from": "title", "transforms": [{"default": ""}]}}},
      "delete": {"method": "DELETE", "path": "/accounts/{id}"}
    }
  }
}`

// faultApp is a native app whose next answers the test chooses.
type faultApp struct {
	mode  atomic.Value // string
	calls atomic.Int64
	next  atomic.Int64
}

func (f *faultApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	mode, _ := f.mode.Load().(string)
	switch mode {
	case "ok":
		if r.Method == http.MethodPost {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id": %d}`, f.next.Add(1))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case "timeout":
		time.Sleep(2500 * time.Millisecond) // past the target timeout below, on a loaded machine too
		w.WriteHeader(http.StatusCreated)
	case "500":
		http.Error(w, `{"error":{"message":"database is down"}}`, http.StatusInternalServerError)
	case "429":
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
	case "409":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"error":{"code":"DUPLICATE_LOGIN","message":"login is taken"}}`)
	case "400":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"code":"VALIDATION_FAILED","message":"login must not contain spaces"}}`)
	case "404": // the app's own "no such account"
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"code":"NOT_FOUND","message":"no such account"}}`)
	case "badjson":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id": 1,`)
	case "huge":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": 1, "pad": %q}`, strings.Repeat("x", 64<<10))
	case "redirect":
		http.Redirect(w, r, "http://127.0.0.2:1/elsewhere", http.StatusTemporaryRedirect)
	}
}

// startFaultApp serves a faultApp answering in mode ("": no answer written) on loopback
// until the test ends, and returns it with its URL.
func startFaultApp(t testing.TB, mode string) (*faultApp, string) {
	t.Helper()
	app := &faultApp{}
	app.mode.Store(mode)
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	return app, srv.URL
}

func newTargetGateway(t *testing.T, url string, mutate func(*TargetConfig)) *Handler {
	t.Helper()
	mapFile := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(faultMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	return newTestGateway(t, func(g *Handler) {
		g.Target = &TargetConfig{Name: "app", URL: url, Mapping: mapFile,
			Timeout: caddy.Duration(time.Second), MaxResponseBytes: 8 << 10, MaxRetries: -1}
		if mutate != nil {
			mutate(g.Target)
		}
	})
}

func userCount(t *testing.T, g *Handler) int {
	t.Helper()
	var n int
	if err := g.store.View(func(tx *store.Tx) error {
		var err error
		n, err = tx.Count("User")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTargetFaults: every backend failure answers the SCIM status Entra must see, is
// journaled with its outcome and backend call, and leaves the directory unchanged.
func TestTargetFaults(t *testing.T) {
	app, appURL := startFaultApp(t, "")
	g := newTargetGateway(t, appURL, nil)
	cases := []struct {
		mode       string
		status     int
		scimType   string
		detail     string
		retryAfter bool
	}{
		{"timeout", 503, "", "retry", true},
		{"500", 503, "", "", true},
		{"429", 503, "", "", true},
		{"409", 409, "uniqueness", "login is taken", false},
		{"400", 400, "invalidValue", "login must not contain spaces", false},
		{"badjson", 503, "", "", true},
		{"huge", 503, "", "", true},
		{"redirect", 503, "", "", true},
	}
	for i, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			app.mode.Store(c.mode)
			before := userCount(t, g)
			w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": fmt.Sprintf("fault-%d@contoso.example", i)})
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			e := decodeJSON(t, w)
			if c.scimType != "" && e["scimType"] != c.scimType {
				t.Errorf("scimType %v, want %s", e["scimType"], c.scimType)
			}
			if d, _ := e["detail"].(string); d == "" || !strings.Contains(d, c.detail) {
				t.Errorf("detail %q, want it to contain %q", d, c.detail)
			}
			if c.retryAfter && w.Header().Get("Retry-After") == "" {
				t.Error("no Retry-After on an outage")
			}
			if c.mode == "429" && w.Header().Get("Retry-After") != "60" {
				t.Errorf("Retry-After %q, want the app's 60", w.Header().Get("Retry-After"))
			}
			if got := userCount(t, g); got != before {
				t.Fatalf("the directory changed: %d users, was %d", got, before)
			}
			recs := auditRecords(t, g)
			intent, outcome := recs[len(recs)-2], recs[len(recs)-1]
			wantOutcome := change.Failed
			if c.status < 500 {
				wantOutcome = change.Rejected
			}
			if intent.Outcome != "pending" || outcome.Outcome != wantOutcome || outcome.Status != c.status ||
				outcome.Target != "app" || outcome.Backend == nil || outcome.Backend.Method != "POST" {
				t.Fatalf("journal: intent %+v, outcome %+v", intent, outcome)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		closed := "http://" + l.Addr().String()
		l.Close()
		g := newTargetGateway(t, closed, nil)
		w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "refused@contoso.example"})
		if w.Code != 503 || w.Header().Get("Retry-After") == "" || userCount(t, g) != 0 {
			t.Fatalf("refused: %d %s", w.Code, w.Body)
		}
		if r := lastRecord(t, g); r.Outcome != "failed" {
			t.Fatalf("refused journaled as %+v", r)
		}
	})

	t.Run("success, 404 on update (the account is made again), 404 on delete", func(t *testing.T) {
		app.mode.Store("ok")
		w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "ok@contoso.example"})
		if w.Code != 201 {
			t.Fatalf("create: %d %s", w.Code, w.Body)
		}
		id := decodeJSON(t, w)["id"].(string)
		r := lastRecord(t, g)
		if r.Outcome != "applied" || r.NativeID == "" || r.Backend == nil || r.Backend.Status != 201 {
			t.Fatalf("create record %+v", r)
		}
		var native string
		_ = g.store.View(func(tx *store.Tx) error { native, _ = tx.NativeID("app/User", id); return nil })
		if native != r.NativeID {
			t.Fatalf("id map %q, journal %q", native, r.NativeID)
		}
		// The app lost the account: the mapping is dropped and the user sent as a create,
		// which this app answers with 404 too: an outage (never a 404 for Entra, which would
		// re-create a user the directory still has and get 409, forever).
		app.mode.Store("404")
		w = serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"Operations":[{"op":"replace","path":"title","value":"CTO"}]}`)
		if w.Code != 503 || w.Header().Get("Retry-After") == "" {
			t.Fatalf("update of an account the app lost, whose create fails: %d %s (want 503)", w.Code, w.Body)
		}
		w = serve(t, g, "GET", "/scim/v2/Users/"+id, nil)
		if _, has := decodeJSON(t, w)["title"]; has {
			t.Fatal("the directory changed although the app refused the update")
		}
		_ = g.store.View(func(tx *store.Tx) error {
			if _, err := tx.NativeID("app/User", id); err == nil {
				t.Error("the id map still holds the account the app lost")
			}
			return nil
		})
		app.mode.Store("ok")
		w = serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"Operations":[{"op":"replace","path":"title","value":"CTO"}]}`)
		if w.Code != 200 && w.Code != 204 {
			t.Fatalf("Entra's retry: %d %s (want success: the account is made again)", w.Code, w.Body)
		}
		var again string
		_ = g.store.View(func(tx *store.Tx) error { again, _ = tx.NativeID("app/User", id); return nil })
		if again == "" || again == native {
			t.Fatalf("the id map after the account was made again: %q (was %q)", again, native)
		}
		app.mode.Store("404")
		w = serve(t, g, "DELETE", "/scim/v2/Users/"+id, nil)
		if w.Code != 204 {
			t.Fatalf("delete of an account the app no longer has: %d", w.Code)
		}
		_ = g.store.View(func(tx *store.Tx) error {
			if _, err := tx.NativeID("app/User", id); err == nil {
				t.Error("the id map still holds the deleted user")
			}
			return nil
		})
	})
}

func TestTargetDryRun(t *testing.T) {
	app, appURL := startFaultApp(t, "500")
	g := newTargetGateway(t, appURL, func(tc *TargetConfig) { tc.DryRun = true })
	w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "dry@contoso.example"})
	if w.Code != 201 {
		t.Fatalf("dry run create: %d %s", w.Code, w.Body)
	}
	if app.calls.Load() != 0 {
		t.Fatalf("the app got %d calls in a dry run", app.calls.Load())
	}
	r := lastRecord(t, g)
	if r.Outcome != "dry_run" || r.Backend == nil || r.Backend.Method != "POST" || r.Backend.URL != "/accounts" {
		t.Fatalf("dry run record %+v", r)
	}
	data, _ := json.Marshal(r)
	if strings.Contains(string(data), `"pending"`) {
		t.Fatal("a dry run wrote an intent")
	}
}

// TestTargetMemberWithoutAccount: adding a member that has no account in the app is a
// reference failure: refused (400), the directory unchanged, so Entra retries it later.
func TestTargetMemberWithoutAccount(t *testing.T) {
	app, appURL := startFaultApp(t, "ok")
	mapFile := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(`{"version":1,
	  "users":{"events":{"create":{"method":"POST","path":"/accounts","id":"id","body":{"login":{"from":"userName"}}}}},
	  "groups":{"events":{"create":{"method":"POST","path":"/teams","id":"id","body":{"name":{"from":"displayName"}}},
	    "add_members":{"method":"PUT","path":"/teams/{id}/members/{member_id}","members":"each"}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, func(g *Handler) { g.Target = &TargetConfig{Name: "app", URL: appURL, Mapping: mapFile} })
	gid := decodeJSON(t, serve(t, g, "POST", "/scim/v2/Groups", map[string]any{"displayName": "Team"}))["id"].(string)
	withAccount := decodeJSON(t, serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "a@contoso.example"}))["id"].(string)
	// "no-account-id" stands for a member whose account the app does not have.
	calls := app.calls.Load()
	patch := `{"Operations":[{"op":"Add","path":"members","value":[{"value":"` + withAccount + `"},{"value":"no-account-id"}]}]}`
	w := serve(t, g, "PATCH", "/scim/v2/Groups/"+gid, patch)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "no-account-id") {
		t.Fatalf("member without an account: %d %s", w.Code, w.Body)
	}
	if app.calls.Load() != calls {
		t.Fatal("a refused membership change reached the app")
	}
	if members, has := decodeJSON(t, serve(t, g, "GET", "/scim/v2/Groups/"+gid, nil))["members"]; has {
		t.Fatalf("the directory recorded members of a refused change: %v", members)
	}
	w = serve(t, g, "PATCH", "/scim/v2/Groups/"+gid, `{"Operations":[{"op":"Add","path":"members","value":[{"value":"`+withAccount+`"}]}]}`)
	if w.Code != 204 || app.calls.Load() != calls+1 {
		t.Fatalf("member with an account: %d, %d calls", w.Code, app.calls.Load()-calls)
	}
}

// TestTargetUnmappedEventIsSkipped: an event without a native call (here deactivate) still
// changes the directory, and the journal says the app was not called and why.
func TestTargetUnmappedEventIsSkipped(t *testing.T) {
	app, appURL := startFaultApp(t, "ok")
	g := newTargetGateway(t, appURL, nil)
	id := decodeJSON(t, serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "skip@contoso.example", "active": true}))["id"].(string)
	calls := app.calls.Load()
	w := serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
	if w.Code != 200 || decodeJSON(t, w)["active"] != false {
		t.Fatalf("disable: %d %s", w.Code, w.Body)
	}
	// The mapping has update (title, send all) and no deactivate: deactivate is skipped,
	// and the update sends nothing, since no attribute its body reads changed.
	r := lastRecord(t, g)
	if r.Outcome != "applied" || r.Decision == nil || !strings.Contains(strings.Join(r.Decision.Reasons, " "), "no native call for deactivate") {
		t.Fatalf("record %+v (decision %+v)", r, r.Decision)
	}
	if app.calls.Load() != calls {
		t.Fatalf("%d calls, want none", app.calls.Load()-calls)
	}
}

// TestTargetCatchUpCreate: a user that existed before the target was configured gets its
// account in the app on its next change.
func TestTargetCatchUpCreate(t *testing.T) {
	app, appURL := startFaultApp(t, "ok")
	dir := t.TempDir()
	plain := newTestGateway(t, func(g *Handler) { g.DataDir = dir })
	id := decodeJSON(t, serve(t, plain, "POST", "/scim/v2/Users", map[string]any{"userName": "early@contoso.example"}))["id"].(string)
	if app.calls.Load() != 0 {
		t.Fatal("a gateway without a target called the app")
	}
	// The same directory (shared through the store pool), now with a target: a config change.
	mapFile := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(faultMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, func(g *Handler) {
		g.DataDir = dir
		g.Target = &TargetConfig{Name: "app", URL: appURL, Mapping: mapFile}
	})
	w := serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"Operations":[{"op":"replace","path":"title","value":"CTO"}]}`)
	if w.Code != 200 || app.calls.Load() != 1 {
		t.Fatalf("catch-up: %d, %d calls", w.Code, app.calls.Load())
	}
	r := lastRecord(t, g)
	if r.NativeID == "" || r.Backend == nil || r.Backend.Method != "POST" || r.Decision == nil || !strings.Contains(strings.Join(r.Decision.Reasons, " "), "had no account there yet") {
		t.Fatalf("record %+v decision %+v", r, r.Decision)
	}
	_ = g.store.View(func(tx *store.Tx) error {
		if n, err := tx.NativeID("app/User", id); err != nil || n != r.NativeID {
			t.Errorf("id map %q %v", n, err)
		}
		return nil
	})
	// The next change is an ordinary update of that account.
	serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"Operations":[{"op":"replace","path":"title","value":"CEO"}]}`)
	if r := lastRecord(t, g); r.Backend == nil || r.Backend.Method != "PATCH" {
		t.Fatalf("second change: %+v", r.Backend)
	}
}

// TestTargetCreateAnsweredWithAnUnusableID: an app whose create answers an id the
// gateway cannot keep (a NUL byte, a line break) made an account the gateway cannot map:
// that is the app's answer proving nothing, a 503 with Retry-After whose retry looks the
// account up, never a 400 that blames Entra's data.
func TestTargetCreateAnsweredWithAnUnusableID(t *testing.T) {
	for _, id := range []string{`"a\u0000b"`, `"7\n"`} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id": %s}`, id)
		}))
		t.Cleanup(srv.Close)
		g := newTargetGateway(t, srv.URL, nil)
		w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "odd@contoso.example"})
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("id %s: %d %s, want 503 with Retry-After", id, w.Code, w.Body)
		}
		if d, _ := decodeJSON(t, w)["detail"].(string); !strings.Contains(d, "without a usable id") || !strings.Contains(d, "control character") {
			t.Errorf("id %s: detail %q", id, d)
		}
		if n := userCount(t, g); n != 0 {
			t.Errorf("id %s: the directory holds %d users", id, n)
		}
	}
}
