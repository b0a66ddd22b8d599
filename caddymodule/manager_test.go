package caddymodule

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
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// putAccountsApp makes accounts (POST /accounts answers a numeric id), replaces them with
// PUT and deletes them, and keeps the body of every PUT.
type putAccountsApp struct {
	mu   sync.Mutex
	next int
	puts []map[string]any
}

func (a *putAccountsApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch r.Method {
	case http.MethodPost:
		a.next++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": %d}`, a.next)
	case http.MethodPut:
		var body map[string]any
		data, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(data, &body)
		a.puts = append(a.puts, body)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *putAccountsApp) lastPut() map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.puts) == 0 {
		return nil
	}
	return a.puts[len(a.puts)-1]
}

// TestTargetDeletedManager: through the handler, deleting a manager drops the reference
// from its report (GET, and a filter on the manager, no longer find it), the delete's
// cascade record names the report, and the report's offboarding through a full-PUT
// mapping succeeds and sends no manager.
func TestTargetDeletedManager(t *testing.T) {
	app := &putAccountsApp{}
	srv := httptest.NewServer(app)
	defer srv.Close()
	mapFile := filepath.Join(t.TempDir(), "app.json")
	body := `{"login": "userName", "manager": {"from": "manager", "transforms": ["to_int"]}, "enabled": "active"}`
	if err := os.WriteFile(mapFile, []byte(`{"version": 1, "users": {"events": {
	  "create": {"method": "POST", "path": "/accounts", "id": "id", "body": `+body+`},
	  "update": {"method": "PUT", "path": "/accounts/{id}", "send": "all", "body": `+body+`},
	  "deactivate": {"method": "PUT", "path": "/accounts/{id}", "body": `+body+`},
	  "delete": {"method": "DELETE", "path": "/accounts/{id}"}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, func(g *Handler) { g.Target = &TargetConfig{Name: "app", URL: srv.URL, Mapping: mapFile} })
	create := func(doc map[string]any) string {
		t.Helper()
		w := serve(t, g, "POST", "/scim/v2/Users", doc)
		if w.Code != http.StatusCreated {
			t.Fatalf("create: %d %s", w.Code, w.Body)
		}
		return decodeJSON(t, w)["id"].(string)
	}
	mid := create(map[string]any{"userName": "grace@contoso.example", "active": true})
	rid := create(map[string]any{"userName": "rita@contoso.example", "active": true})
	managerPath := scim.EnterpriseUserSchema + ":manager"
	if w := serve(t, g, "PATCH", "/scim/v2/Users/"+rid, `{"Operations":[{"op":"add","path":"`+managerPath+`","value":"`+mid+`"}]}`); w.Code != http.StatusOK {
		t.Fatalf("link the manager: %d %s", w.Code, w.Body)
	}
	if put := app.lastPut(); put["manager"] != float64(1) {
		t.Fatalf("the link sent %v", put)
	}

	if w := serve(t, g, "DELETE", "/scim/v2/Users/"+mid, nil); w.Code != http.StatusNoContent {
		t.Fatalf("delete the manager: %d %s", w.Code, w.Body)
	}
	if rec := lastRecord(t, g); rec.Action != change.ActionCascade || rec.SCIMID != rid || rec.Subject != "rita@contoso.example" || rec.Outcome != change.Applied {
		t.Fatalf("the cascade record: %+v", rec)
	}
	report := decodeJSON(t, serve(t, g, "GET", "/scim/v2/Users/"+rid, nil))
	if ext, _ := report[scim.EnterpriseUserSchema].(map[string]any); ext["manager"] != nil {
		t.Fatalf("GET shows the deleted manager: %v", report)
	}
	list := decodeJSON(t, serve(t, g, "GET", "/scim/v2/Users?filter="+strings.ReplaceAll("manager eq \""+mid+"\"", " ", "%20"), nil))
	if n, _ := list["totalResults"].(float64); n != 0 {
		t.Fatalf("a filter on the deleted manager finds %v", list)
	}

	w := serve(t, g, "PATCH", "/scim/v2/Users/"+rid, `{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
	if w.Code != http.StatusOK {
		t.Fatalf("offboard the report: %d %s", w.Code, w.Body)
	}
	if put := app.lastPut(); put["enabled"] != false || put["login"] != "rita@contoso.example" {
		t.Fatalf("the offboarding sent %v", put)
	} else if _, has := put["manager"]; has {
		t.Fatalf("the offboarding sent a manager: %v", put)
	}
	auditVerify(t, g)
}
