package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// guidApp is an app of .NET shape: its accounts' ids are GUIDs, which its create answers in
// upper case (as SQL Server's uniqueidentifier prints them) and its listing in lower case
// (as its JSON serializer does), and which it reads in either case.
type guidApp struct {
	mu          sync.Mutex
	accounts    map[string]map[string]any // by lower-case id
	deactivated []string
	next        int
}

func (a *guidApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/accounts":
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		a.next++
		id := fmt.Sprintf("6F9619FF-8B86-D011-B42D-%012X", a.next)
		in["id"], in["active"] = strings.ToLower(id), true
		a.accounts[strings.ToLower(id)] = in
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": %q}`, id)
	case r.Method == http.MethodGet && r.URL.Path == "/accounts":
		items := []map[string]any{}
		for _, acc := range a.accounts {
			items = append(items, acc)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/deactivate"):
		id := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/accounts/"), "/deactivate"))
		a.deactivated = append(a.deactivated, id)
		if acc := a.accounts[id]; acc != nil {
			acc["active"] = false
		}
		fmt.Fprint(w, `{}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error": "no such account"}`)
	}
}

const guidMapping = `{"version": 1, "users": {
	"lookup": {"method": "GET", "path": "/accounts?login={userName}", "items": "items", "id": "id", "match": {"login": "{userName}"}},
	"list": {"method": "GET", "path": "/accounts", "items": "items", "id": "id"},
	"events": {
		"create": {"method": "POST", "path": "/accounts", "id": "id", "body": {"login": "userName", "active": "active"}},
		"deactivate": {"method": "POST", "path": "/accounts/{id}/deactivate", "idempotent": true}}}}`

// TestReconcileGUIDsInAnotherCase: an app that answers its GUID ids in upper case on
// create and in lower case in its listing holds the very accounts the directory links:
// a GUID is the same id in either case (RFC 9562). The reconcile reports nothing, and
// --fix with orphans disable deactivates no one.
func TestReconcileGUIDsInAnotherCase(t *testing.T) {
	app := &guidApp{accounts: map[string]map[string]any{}}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	s := teststore.Open(t, dir)
	j, err := journal.Open(s.DB(), journal.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close(); _ = s.Close() })
	mapFile := filepath.Join(dir, "guid.json")
	if err := os.WriteFile(mapFile, []byte(guidMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := mapping.Load(mapFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := legacy.New(legacy.Options{BaseURL: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	r := &rig{t: t, store: s, j: j, shared: provision.NewShared(nil), target: &provision.Target{Name: "guid", Mapping: m, Client: c}}
	if r.eng, err = provision.New(provision.Config{Store: s, Journal: j, Shared: r.shared, Target: r.target}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r.create(r.eng, scim.UserType, user(fmt.Sprintf("g%d", i), "Engineer", true))
	}
	rep, err := r.reconciler(Options{Orphans: OrphansDisable}).Run(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 0 || rep.Counts.AppUsers != 3 {
		t.Errorf("findings %v, counts %+v; want none of 3 accounts", keys(rep), rep.Counts)
	}
	if len(app.deactivated) != 0 {
		t.Errorf("deactivated %v: the directory's own users", app.deactivated)
	}
}

func TestIsGUID(t *testing.T) {
	for s, want := range map[string]bool{
		"6F9619FF-8B86-D011-B42D-00C04FC964FF":   true,
		"6f9619ff-8b86-d011-b42d-00c04fc964ff":   true,
		"{6f9619ff-8b86-d011-b42d-00c04fc964ff}": true,
		"6f9619ff8b86d011b42d00c04fc964ff":       false, // 32 digits: an id of another kind as well
		"6f9619ff-8b86-d011-b42d-00c04fc964fg":   false,
		"usr_AbCdEf":                             false,
		"":                                       false,
	} {
		if isGUID(s) != want {
			t.Errorf("isGUID(%q) = %v", s, !want)
		}
	}
}
