package provision

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// headerIDApp gives a new account's id in a response header (X-User-Id), as some apps do,
// and in its body; its next noID creates answer 200 {} without either, and make the
// account when acted.
type headerIDApp struct {
	mu     sync.Mutex
	logins map[string]string // login -> id
	posts  int
	noID   int
	acted  bool
}

func (a *headerIDApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.Method {
	case http.MethodPost:
		a.posts++
		var body struct{ Login string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		if a.noID > 0 {
			a.noID--
			if a.acted {
				a.logins[body.Login] = fmt.Sprintf("h%d", a.posts)
			}
			_, _ = w.Write([]byte(`{}`))
			return
		}
		id := fmt.Sprintf("h%d", a.posts)
		a.logins[body.Login] = id
		w.Header().Set("X-User-Id", id)
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"id": %q}`, id)
	case http.MethodGet:
		login := r.URL.Query().Get("login")
		items := []map[string]string{}
		if id, ok := a.logins[login]; ok {
			items = append(items, map[string]string{"id": id, "login": login})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
	}
}

// TestCreateAnsweredWithoutItsID: a create answered 2xx without the header that gives the
// account's id is a 503 (the gateway cannot map the account), and Entra's retry converges:
// it looks the account up and adopts it when the app made it, and makes the create again
// when the app did not — also without a lookup in the mapping, as after a lost answer. The
// first answer's call used to be kept as made, so the retry skipped it and answered 201
// with no account in the app.
func TestCreateAnsweredWithoutItsID(t *testing.T) {
	const headerCreate = `"create": {"method": "POST", "path": "/users", "id": {"header": "X-User-Id"}, "body": {"login": "userName"}}`
	const bodyCreate = `"create": {"method": "POST", "path": "/users", "id": "id", "body": {"login": "userName"}}`
	const lookup = `"lookup": {"method": "GET", "path": "/users?login={userName}", "items": "items", "id": "id", "match": {"login": "{userName}"}},`
	for _, tc := range []struct {
		name      string
		file      string
		acted     bool
		wantPosts int
	}{
		{"header id, not made", `{"version": 1, "users": {` + lookup + `"events": {` + headerCreate + `}}}`, false, 2},
		{"header id, made", `{"version": 1, "users": {` + lookup + `"events": {` + headerCreate + `}}}`, true, 1},
		{"body id, not made, no lookup", `{"version": 1, "users": {"events": {` + bodyCreate + `}}}`, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &headerIDApp{logins: map[string]string{}, noID: 1, acted: tc.acted}
			srv := httptest.NewServer(app)
			t.Cleanup(srv.Close)
			r := newRig(t, rigOptions{target: newMappedTarget(t, srv.URL, tc.file)})
			res := r.create(scim.UserType, user("hdr@contoso.example"))
			if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
				t.Fatalf("first create: %d %v, want 503 with Retry-After", res.Status, res.Err)
			}
			res = r.create(scim.UserType, user("hdr@contoso.example"))
			if res.Err != nil || res.Status != http.StatusCreated {
				t.Fatalf("retry: %d %v", res.Status, res.Err)
			}
			app.mu.Lock()
			id, posts, accounts := app.logins["hdr@contoso.example"], app.posts, len(app.logins)
			app.mu.Unlock()
			if accounts != 1 || id == "" || posts != tc.wantPosts {
				t.Fatalf("app: %d accounts, %d creates; want 1 and %d", accounts, posts, tc.wantPosts)
			}
			if got := r.nativeID(scim.UserType, res.ID); got != id {
				t.Fatalf("mapped to %q, the app's account is %q", got, id)
			}
		})
	}
}
