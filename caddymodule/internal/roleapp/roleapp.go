// Package roleapp is a legacy app of the role-style shape, for the tests of groups as roles
// (the engine's in caddymodule/provision, the integration test through Caddy in
// caddymodule): users with string ids ("usr_1"), roles that exist before any group, with
// string ids ("role_admin") found by name, a user's roles set as a whole list with
// PUT /users/{id}/roles {"roles": [...]}, and a delete refused while the user holds roles.
// It serves HTTP on loopback (httptest), never a mock client.
package roleapp

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// App keeps users and the roles each holds. It is safe for concurrent use.
type App struct {
	mu     sync.Mutex
	next   int
	logins map[string]string   // user id -> login
	grants map[string][]string // user id -> roles, as last set
	roles  map[string]string   // role name -> role id
	calls  []string
	fail   map[string]int  // "PUT /users/usr_2/roles" -> the status to answer once instead
	drop   map[string]bool // calls made once, then the connection closed unanswered
}

// New returns an app with the roles Admins (role_admin), Billing (role_billing) and
// Auditors (role_audit).
func New() *App {
	return &App{logins: map[string]string{}, grants: map[string][]string{}, fail: map[string]int{}, drop: map[string]bool{},
		roles: map[string]string{"Admins": "role_admin", "Billing": "role_billing", "Auditors": "role_audit"}}
}

// AddRole makes a role in the app.
func (a *App) AddRole(name, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roles[name] = id
}

// Fail answers the next call ("PUT /users/usr_2/roles") with status instead of making it.
func (a *App) Fail(call string, status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail[call] = status
}

// Drop makes the next call ("PUT /users/usr_1/roles"), then closes the connection without
// an answer: the caller never learns that it worked.
func (a *App) Drop(call string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.drop[call] = true
}

// Held returns the roles user id holds (nil: none ever set, or no such user).
func (a *App) Held(id string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.grants[id])
}

// SetHeld sets the roles user id holds, as an admin of the app would, behind the
// gateway's back.
func (a *App) SetHeld(id string, roles []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.grants[id] = slices.Clone(roles)
}

// HasUser reports whether the user id exists.
func (a *App) HasUser(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.logins[id]
	return ok
}

// Calls returns every call received, as "METHOD /path", in order.
func (a *App) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	call := r.Method + " " + r.URL.Path
	a.calls = append(a.calls, call)
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if status, ok := a.fail[call]; ok {
		delete(a.fail, call)
		answer(status, map[string]any{"error": "unavailable"})
		return
	}
	body, _ := io.ReadAll(r.Body)
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case call == "POST /users":
		var in struct{ Login string }
		_ = json.Unmarshal(body, &in)
		a.next++
		id := fmt.Sprintf("usr_%d", a.next)
		a.logins[id] = in.Login
		answer(http.StatusCreated, map[string]any{"id": id})
	case call == "GET /users" && !r.URL.Query().Has("login"):
		// Every user with its roles, as a reconcile lists them (one page).
		ids := slices.Sorted(maps.Keys(a.logins))
		data := make([]any, 0, len(ids))
		for _, id := range ids {
			data = append(data, map[string]any{"id": id, "login": a.logins[id], "roles": a.grants[id]})
		}
		answer(http.StatusOK, map[string]any{"data": data})
	case call == "GET /users":
		for id, login := range a.logins {
			if login == r.URL.Query().Get("login") {
				answer(http.StatusOK, map[string]any{"data": []any{map[string]any{"id": id}}})
				return
			}
		}
		answer(http.StatusOK, map[string]any{"data": []any{}})
	case call == "GET /roles":
		if id, ok := a.roles[r.URL.Query().Get("name")]; ok {
			answer(http.StatusOK, map[string]any{"data": []any{map[string]any{"id": id}}})
			return
		}
		answer(http.StatusOK, map[string]any{"data": []any{}})
	case r.Method == http.MethodPut && len(parts) == 3 && parts[0] == "users" && parts[2] == "roles":
		a.setRoles(w, call, parts[1], body, answer)
	case r.Method == http.MethodDelete && len(parts) == 2 && parts[0] == "users":
		if len(a.grants[parts[1]]) > 0 {
			answer(http.StatusConflict, map[string]any{"error": "the user still holds roles"})
			return
		}
		delete(a.logins, parts[1])
		delete(a.grants, parts[1])
		w.WriteHeader(http.StatusNoContent)
	default:
		answer(http.StatusNotFound, map[string]any{"error": "no route"})
	}
}

// setRoles replaces the user's roles with the list in body; every role must exist.
func (a *App) setRoles(w http.ResponseWriter, call, user string, body []byte, answer func(int, any)) {
	if _, ok := a.logins[user]; !ok {
		answer(http.StatusNotFound, map[string]any{"error": "no such user"})
		return
	}
	var in struct {
		Roles []string `json:"roles"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Roles == nil {
		answer(http.StatusBadRequest, map[string]any{"error": "roles must be a list"})
		return
	}
	known := slices.Collect(maps.Values(a.roles))
	for _, role := range in.Roles {
		if !slices.Contains(known, role) {
			answer(http.StatusBadRequest, map[string]any{"error": "unknown role " + role})
			return
		}
	}
	a.grants[user] = in.Roles
	if a.drop[call] {
		delete(a.drop, call)
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	answer(http.StatusOK, map[string]any{"id": user, "roles": in.Roles})
}
