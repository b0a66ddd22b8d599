package caddymodule

// The answers that are not what they seem: a sign-in page answered 200, a proxy that
// answers {} or an HTML 404 for every path, a WAF's 400 page, a redirect to a sign-in page.
// Each is tried on create, update, disable, member add and delete, through a real Caddy on
// loopback in front of a real app of another shape than the demo app (prefixed string ids,
// full PUT updates, suspend/restore calls, roles with members), and must be an outage for
// Entra (503 with Retry-After) with the directory and the app unchanged and the journal
// saying what came back. Nothing is ever acknowledged that the app did not do.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// roleApp is a legacy app with its own shape: users with "usr_" ids, updated by a full
// PUT, suspended and restored by calls of their own; roles whose holders are added one by
// one. Its errors are {"code", "message"}.
type roleApp struct {
	mu    sync.Mutex
	next  int
	users map[string]map[string]any
	roles map[string]map[string]bool
	// impostor, when set, answers every request instead of the app.
	impostor string
}

func (a *roleApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.URL.Path == "/login" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!DOCTYPE html><html><body><form method="post">Sign in to continue</form></body></html>`)
		return
	}
	switch a.impostor {
	case "html200":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in to continue</body></html>`)
		return
	case "json{}":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
		return
	case "html404":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>`)
		return
	case "waf400":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `<html><body><h1>Request blocked</h1><p>Support ID: 1234567890</p></body></html>`)
		return
	case "redirect":
		http.Redirect(w, r, "/login?return="+r.URL.Path, http.StatusFound)
		return
	}
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(status int, code, msg string) { answer(status, map[string]any{"code": code, "message": msg}) }
	var in map[string]any
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &in)
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	user := func() map[string]any {
		if len(parts) < 3 {
			return nil
		}
		return a.users[parts[2]]
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/users":
		a.next++
		id := fmt.Sprintf("usr_%d", a.next)
		in["id"], in["state"] = id, "active"
		a.users[id] = in
		answer(http.StatusCreated, map[string]any{"user": in})
	case len(parts) == 3 && parts[1] == "users" && r.Method == http.MethodPut:
		u := user()
		if u == nil {
			fail(http.StatusNotFound, "user_not_found", "no such user")
			return
		}
		for k, v := range in {
			u[k] = v
		}
		answer(http.StatusOK, map[string]any{"user": u})
	case len(parts) == 4 && parts[1] == "users" && r.Method == http.MethodPost && (parts[3] == "suspend" || parts[3] == "restore"):
		u := user()
		if u == nil {
			fail(http.StatusNotFound, "user_not_found", "no such user")
			return
		}
		u["state"] = map[string]string{"suspend": "suspended", "restore": "active"}[parts[3]]
		answer(http.StatusOK, map[string]any{"user": u})
	case len(parts) == 3 && parts[1] == "users" && r.Method == http.MethodDelete:
		if user() == nil {
			fail(http.StatusNotFound, "user_not_found", "no such user")
			return
		}
		delete(a.users, parts[2])
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && r.URL.Path == "/v2/roles":
		a.next++
		id := fmt.Sprintf("rol_%d", a.next)
		a.roles[id] = map[string]bool{}
		answer(http.StatusCreated, map[string]any{"role": map[string]any{"id": id, "name": in["name"]}})
	case len(parts) == 5 && parts[1] == "roles" && parts[3] == "users":
		holders := a.roles[parts[2]]
		if holders == nil {
			fail(http.StatusNotFound, "role_not_found", "no such role")
			return
		}
		if r.Method == http.MethodPut {
			holders[parts[4]] = true
		} else {
			delete(holders, parts[4])
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(http.StatusNotFound, "no_route", "no route "+r.Method+" "+r.URL.Path)
	}
}

// snapshot is the app's state as JSON, to compare before and after.
func (a *roleApp) snapshot() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	data, _ := json.Marshal(map[string]any{"users": a.users, "roles": a.roles})
	return string(data)
}

const roleAppMapping = `{
  "version": 1,
  "expect": {"errors": {"has": ["code"]}, "not_found": {"equals": {"code": ["user_not_found", "role_not_found"]}}},
  "users": {
    "events": {
      "create": {"method": "POST", "path": "/v2/users", "id": "user.id",
        "body": {"login": {"from": "userName", "required": true}, "title": "title"}},
      "update": {"method": "PUT", "path": "/v2/users/{id}", "send": "all",
        "body": {"login": "userName", "title": {"from": "title", "transforms": [{"default": ""}]}},
        "expect": {"status": [200], "has": ["user.id"]}},
      "deactivate": {"method": "POST", "path": "/v2/users/{id}/suspend", "expect": {"equals": {"user.state": "suspended"}}},
      "reactivate": {"method": "POST", "path": "/v2/users/{id}/restore", "expect": {"equals": {"user.state": "active"}}},
      "delete": {"method": "DELETE", "path": "/v2/users/{id}", "expect": {"status": [204], "body": "empty"}}
    }
  },
  "groups": {
    "events": {
      "create": {"method": "POST", "path": "/v2/roles", "id": "role.id", "body": {"name": "displayName"}},
      "add_members": {"method": "PUT", "path": "/v2/roles/{id}/users/{member_id}", "members": "each", "expect": {"status": [204], "body": "empty"}},
      "remove_members": {"method": "DELETE", "path": "/v2/roles/{id}/users/{member_id}", "members": "each", "expect": {"status": [204], "body": "empty"}}
    }
  }
}`

func TestImpostorAnswers(t *testing.T) {
	app := &roleApp{users: map[string]map[string]any{}, roles: map[string]map[string]bool{}}
	srv := httptest.NewServer(app)
	defer srv.Close()
	dir := t.TempDir()
	mapFile := filepath.Join(dir, "roles.json")
	if err := os.WriteFile(mapFile, []byte(roleAppMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	policyDir := filepath.Join(dir, "policy")
	if err := os.MkdirAll(policyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policyDir, "allow.rego"), []byte("package scimgate\n\ndecision := {\"allow\": true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startPolicyRigWith(t, policyDir, srv.URL, mapFile)
	setImpostor := func(mode string) {
		app.mu.Lock()
		app.impostor = mode
		app.mu.Unlock()
	}

	// One user per case keeps the cases apart; a group takes the member adds.
	n := 0
	newUser := func() string {
		n++
		id, _ := r.create(t, "/Users", fmt.Sprintf(`{"userName":"imp%d@contoso.example","title":"Engineer","active":true}`, n))
		return id
	}
	groupID, _ := r.create(t, "/Groups", `{"displayName":"Approvers"}`)

	type op struct {
		name string
		run  func(userID string) *itResponse
	}
	ops := []op{
		{"create", func(string) *itResponse {
			n++
			return r.do(t, http.MethodPost, "/Users", fmt.Sprintf(`{"userName":"imp%d@contoso.example","active":true}`, n))
		}},
		{"update", func(id string) *itResponse {
			return r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"replace","path":"title","value":"Director"}`))
		}},
		{"disable", func(id string) *itResponse {
			return r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"replace","path":"active","value":"False"}`))
		}},
		{"member add", func(id string) *itResponse {
			return r.do(t, http.MethodPatch, "/Groups/"+groupID, itPatchBody(`{"op":"add","path":"members","value":[{"value":"`+id+`"}]}`))
		}},
		{"delete", func(id string) *itResponse { return r.do(t, http.MethodDelete, "/Users/"+id, "") }},
	}
	for _, impostor := range []string{"html200", "json{}", "html404", "waf400", "redirect"} {
		for _, o := range ops {
			t.Run(impostor+"/"+o.name, func(t *testing.T) {
				setImpostor("")
				id := newUser()
				beforeUser, beforeGroup := r.get(t, "/Users/"+id), r.get(t, "/Groups/"+groupID)
				beforeApp, beforeCount := app.snapshot(), len(r.records(t))
				setImpostor(impostor)
				resp := o.run(id)
				setImpostor("")
				if resp.status != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" {
					t.Fatalf("status %d (Retry-After %q): %s; want 503 with Retry-After", resp.status, resp.header.Get("Retry-After"), resp.body)
				}
				if app.snapshot() != beforeApp {
					t.Fatal("the app's state changed")
				}
				afterUser, afterGroup := r.get(t, "/Users/"+id), r.get(t, "/Groups/"+groupID)
				delete(beforeGroup, "meta")
				delete(afterGroup, "meta")
				if fmt.Sprint(afterUser) != fmt.Sprint(beforeUser) || fmt.Sprint(afterGroup) != fmt.Sprint(beforeGroup) {
					t.Fatalf("the directory changed:\nuser  %v\n   -> %v\ngroup %v\n   -> %v", beforeUser, afterUser, beforeGroup, afterGroup)
				}
				recs := r.records(t)[beforeCount:]
				last := recs[len(recs)-1]
				if last.Outcome != change.Failed || last.Status != http.StatusServiceUnavailable || last.Backend == nil ||
					!strings.HasPrefix(last.Backend.Error, "unproven") {
					t.Fatalf("journal: %+v (backend %+v)", last, last.Backend)
				}
				if strings.Contains(last.Backend.Error, "Sign in") || strings.Contains(last.Backend.Error, "blocked") {
					t.Fatalf("the journal holds the page's content: %q", last.Backend.Error)
				}
			})
		}
	}

	// The app's own "no such user" on delete is done; its own errors reach Entra as such.
	t.Run("the app's own answers", func(t *testing.T) {
		setImpostor("")
		id := newUser()
		app.mu.Lock()
		for k := range app.users {
			delete(app.users, k) // the app lost every account
		}
		app.mu.Unlock()
		if resp := r.do(t, http.MethodDelete, "/Users/"+id, ""); resp.status != http.StatusNoContent {
			t.Fatalf("delete of an account the app says it does not have: %d %s", resp.status, resp.body)
		}
		id = newUser()
		app.mu.Lock()
		for k := range app.users {
			delete(app.users, k)
		}
		app.mu.Unlock()
		// An update of an account the app says it does not have makes it again (a 404 would
		// never converge: Entra's re-create meets the directory's user, 409).
		resp := r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"replace","path":"title","value":"Gone"}`))
		if resp.status != http.StatusOK {
			t.Fatalf("update of an account the app says it does not have: %d %s (want 200: the account is made again)", resp.status, resp.body)
		}
		app.mu.Lock()
		made := len(app.users)
		app.mu.Unlock()
		if made != 1 {
			t.Fatalf("the app has %d accounts after the update, want the one made again", made)
		}
	})
}
