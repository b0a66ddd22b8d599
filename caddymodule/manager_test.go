package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
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

// TestManagerReturnedAsValueOnly: a manager sent with a $ref (javascript:, a phishing URL)
// or a displayName is stored and returned as {"value": id} alone, in the POST's answer, the
// PATCH's answer and every GET after, whatever form Entra used (entra-wire §2.3 and §9 #6,
// #14), so the value Entra compares still reads back as it wrote it.
func TestManagerReturnedAsValueOnly(t *testing.T) {
	g := newTestGateway(t, nil)
	mgrPath := scim.EnterpriseUserSchema + ":manager"
	managerOf := func(t *testing.T, doc map[string]any) any {
		t.Helper()
		ext, _ := doc[scim.EnterpriseUserSchema].(map[string]any)
		return ext["manager"]
	}
	tests := []struct {
		name   string
		create string // the POST body's enterprise extension, or "" for none
		patch  string // a PATCH's Operations, or "" for none
	}{
		{name: "POST object", create: `{"manager":{"value":"abc","$ref":"javascript:alert(1)","displayName":"Fake Boss"}}`},
		{name: "POST array", create: `{"manager":[{"value":"abc","$ref":"https://evil.example/phish"}]}`},
		{name: "PATCH Tutorial Example 5", patch: `[{"op":"Add","path":"manager","value":[{"$ref":"https://evil.example/phish","value":"abc"}]}]`},
		{name: "PATCH full path object", patch: `[{"op":"Replace","path":"` + mgrPath + `","value":{"value":"abc","displayName":"Fake Boss"}}]`},
		{name: "PATCH path-less (aadOptscim062020)", patch: `[{"op":"replace","value":{"` + mgrPath + `":{"value":"abc","$ref":"javascript:alert(1)"}}}]`},
		{name: "PATCH manager.$ref", patch: `[{"op":"Add","path":"manager","value":"abc"},{"op":"add","path":"manager.$ref","value":"https://evil.example/phish"}]`},
	}
	want := map[string]any{"value": "abc"}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"schemas":[%q],"userName":"u%d@contoso.example"`, scim.UserSchema, i)
			if tt.create != "" {
				body += `,"` + scim.EnterpriseUserSchema + `":` + tt.create
			}
			w := serve(t, g, "POST", "/scim/v2/Users", body+"}")
			if w.Code != http.StatusCreated {
				t.Fatalf("POST: %d %s", w.Code, w.Body)
			}
			doc := decodeJSON(t, w)
			id := doc["id"].(string)
			if tt.patch != "" {
				w = serve(t, g, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+scim.PatchOpSchema+`"],"Operations":`+tt.patch+`}`)
				if w.Code != http.StatusOK {
					t.Fatalf("PATCH: %d %s", w.Code, w.Body)
				}
				doc = decodeJSON(t, w)
			}
			if got := managerOf(t, doc); !reflect.DeepEqual(got, want) {
				t.Errorf("answered manager %v, want %v", got, want)
			}
			if got := managerOf(t, decodeJSON(t, serve(t, g, "GET", "/scim/v2/Users/"+id, nil))); !reflect.DeepEqual(got, want) {
				t.Errorf("GET manager %v, want %v", got, want)
			}
		})
	}
}

// TestManagerStoredWithRefReadsAsValue: a user stored by an earlier version with the
// manager's "$ref" and "displayName" a client sent reads back, by id, in a list and in a
// PATCH's answer, with {"value": id} alone (the stored document keeps them until a change
// of the manager rewrites it).
func TestManagerStoredWithRefReadsAsValue(t *testing.T) {
	g := newTestGateway(t, nil)
	now := time.Now().UTC()
	doc := `{"schemas":["` + scim.UserSchema + `","` + scim.EnterpriseUserSchema + `"],"userName":"legacy@contoso.example","title":"Old",` +
		`"` + scim.EnterpriseUserSchema + `":{"department":"Sales","manager":{"value":"boss","$ref":"javascript:alert(1)","displayName":"Fake Boss"}}}`
	var attrs map[string]any
	if err := json.Unmarshal([]byte(doc), &attrs); err != nil {
		t.Fatal(err)
	}
	rec := &store.Record{Type: scim.UserType, ID: "legacy-1", Created: now, LastModified: now, Doc: []byte(doc), Index: provision.IndexEntries(scim.UserType, attrs)}
	if err := g.store.Update(func(tx *store.Tx) error { return tx.Put(rec) }); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"department": "Sales", "manager": map[string]any{"value": "boss"}}
	check := func(what string, got map[string]any) {
		t.Helper()
		if ext := got[scim.EnterpriseUserSchema]; !reflect.DeepEqual(ext, want) {
			t.Errorf("%s: enterprise extension %v, want %v", what, ext, want)
		}
	}
	check("GET", itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/legacy-1", nil), http.StatusOK))
	list := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users?"+itQ(`userName eq "legacy@contoso.example"`), nil), http.StatusOK)
	if rs, _ := list["Resources"].([]any); len(rs) == 1 {
		check("list", rs[0].(map[string]any))
	} else {
		t.Errorf("list: %v", list)
	}
	check("no-op PATCH", itWantOK(t, serve(t, g, http.MethodPatch, itBase+"/Users/legacy-1", itPatchBody(`{"op":"Replace","path":"title","value":"Old"}`)), http.StatusOK))
	check("PATCH", itWantOK(t, serve(t, g, http.MethodPatch, itBase+"/Users/legacy-1", itPatchBody(`{"op":"Replace","path":"title","value":"New"}`)), http.StatusOK))
}
