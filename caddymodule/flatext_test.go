package caddymodule

// Entra sends custom extension attributes (and sometimes enterprise ones) as flat top-level
// keys "URN:attr" (issue 12, defect 3). The flat and the nested form are one attribute:
// stored once in the nested form (RFC 7643 §3.3), patched, filtered, mapped and returned
// consistently.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

const (
	flatMyApp   = "urn:ietf:params:scim:schemas:extension:MyApp:2.0:User"
	flatHire    = flatMyApp + ":hireDate"
	flatDept    = scim.EnterpriseUserSchema + ":department"
	flatHireVal = "2024-03-01"
)

// flatUser is a POST body the way Entra writes it: custom and enterprise attributes as
// flat top-level keys, the custom URN not in schemas[].
func flatUser(userName string) map[string]any {
	return map[string]any{
		"schemas":  []string{scim.UserSchema, scim.EnterpriseUserSchema},
		"userName": userName,
		flatHire:   flatHireVal,
		flatDept:   "Retail",
	}
}

// flatWantOnce checks that u holds hireDate and department once, nested, and that
// schemas[] lists both extension URNs.
func flatWantOnce(t *testing.T, u map[string]any, hire, dept string) {
	t.Helper()
	for _, k := range []string{flatHire, flatDept} {
		if v, has := u[k]; has {
			t.Errorf("the response still has the flat key %s = %v", k, v)
		}
	}
	if got, _ := u[flatMyApp].(map[string]any); !reflect.DeepEqual(got, map[string]any{"hireDate": hire}) {
		t.Errorf("%s = %#v, want {hireDate: %q}", flatMyApp, u[flatMyApp], hire)
	}
	if got, _ := u[scim.EnterpriseUserSchema].(map[string]any); !reflect.DeepEqual(got, map[string]any{"department": dept}) {
		t.Errorf("%s = %#v, want {department: %q}", scim.EnterpriseUserSchema, u[scim.EnterpriseUserSchema], dept)
	}
	schemas, _ := u["schemas"].([]any)
	for _, urn := range []string{flatMyApp, scim.EnterpriseUserSchema} {
		if !slices.Contains(schemas, any(urn)) {
			t.Errorf("schemas %v lacks %s", schemas, urn)
		}
	}
}

func TestHandlerFlatExtensionAttributes(t *testing.T) {
	g := newTestGateway(t, nil)
	created := itPost(t, g, "/Users", flatUser("flat@contoso.example"))
	id, _ := created["id"].(string)
	t.Run("POST answer", func(t *testing.T) { flatWantOnce(t, created, flatHireVal, "Retail") })
	t.Run("GET", func(t *testing.T) {
		flatWantOnce(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil), http.StatusOK), flatHireVal, "Retail")
	})
	t.Run("projection", func(t *testing.T) {
		u := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id+"?attributes="+url.QueryEscape(flatHire), nil), http.StatusOK)
		if got, _ := u[flatMyApp].(map[string]any); !reflect.DeepEqual(got, map[string]any{"hireDate": flatHireVal}) || u["userName"] != nil || u[scim.EnterpriseUserSchema] != nil {
			t.Errorf("attributes=%s gave %v", flatHire, u)
		}
		u = itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id+"?excludedAttributes="+url.QueryEscape(flatHire), nil), http.StatusOK)
		if _, has := u[flatMyApp]; has || u["userName"] == nil {
			t.Errorf("excludedAttributes=%s gave %v", flatHire, u)
		}
	})
	t.Run("filter", func(t *testing.T) {
		for _, f := range []string{
			flatHire + ` eq "` + flatHireVal + `"`,
			"URN:IETF:params:scim:schemas:extension:myapp:2.0:user:HIREDATE eq \"" + flatHireVal + `"`,
			flatDept + ` eq "retail"`,
			`department eq "Retail" and ` + flatHire + ` pr`,
		} {
			if ids, _ := itListIDs(t, g, "/Users", itQ(f)); !slices.Equal(ids, []string{id}) {
				t.Errorf("filter %s matched %v, want [%s]", f, ids, id)
			}
		}
		if ids, _ := itListIDs(t, g, "/Users", itQ(flatHire+` eq "1999-01-01"`)); len(ids) != 0 {
			t.Errorf("a wrong hireDate matched %v", ids)
		}
	})
	t.Run("PATCH default dialect", func(t *testing.T) {
		w := serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(
			`{"op":"Replace","path":"`+flatHire+`","value":"2024-04-01"}`,
			`{"op":"Add","path":"`+flatDept+`","value":"Sales"}`))
		flatWantOnce(t, itWantOK(t, w, http.StatusOK), "2024-04-01", "Sales")
		if got, want := changePaths(lastRecord(t, g)), []string{"replace " + flatHire, "replace " + flatDept}; !slices.Equal(got, want) {
			t.Errorf("journaled changes %v, want %v", got, want)
		}
		flatWantOnce(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil), http.StatusOK), "2024-04-01", "Sales")
	})
	t.Run("PATCH path-less dialect", func(t *testing.T) {
		w := serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(
			`{"op":"replace","value":{"`+flatHire+`":"2024-05-01","`+flatDept+`":"Ops"}}`))
		flatWantOnce(t, itWantOK(t, w, http.StatusOK), "2024-05-01", "Ops")
		flatWantOnce(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil), http.StatusOK), "2024-05-01", "Ops")
		if ids, _ := itListIDs(t, g, "/Users", itQ(flatHire+` eq "2024-05-01"`)); !slices.Equal(ids, []string{id}) {
			t.Errorf("filter on the patched value matched %v", ids)
		}
	})
	t.Run("PUT", func(t *testing.T) {
		body := flatUser("flat@contoso.example")
		body[flatHire] = "2024-06-01"
		w := serve(t, g, http.MethodPut, itBase+"/Users/"+id, body)
		flatWantOnce(t, itWantOK(t, w, http.StatusOK), "2024-06-01", "Retail")
	})
}

// TestHandlerFlatExtensionConflict: a body carrying one attribute in both forms with
// different values is refused naming the attribute; the same value in both is fine.
func TestHandlerFlatExtensionConflict(t *testing.T) {
	g := newTestGateway(t, nil)
	body := flatUser("both@contoso.example")
	body[flatMyApp] = map[string]any{"hireDate": "1999-12-31"}
	e := itWantError(t, serve(t, g, http.MethodPost, itBase+"/Users", body), http.StatusBadRequest, "invalidValue")
	if d, _ := e["detail"].(string); !strings.Contains(strings.ToLower(d), strings.ToLower(flatHire)) {
		t.Errorf("detail %q does not name %s", d, flatHire)
	}
	if n := userCount(t, g); n != 0 {
		t.Fatalf("a refused create stored %d users", n)
	}
	body[flatMyApp] = map[string]any{"hireDate": flatHireVal}
	body[scim.EnterpriseUserSchema] = map[string]any{"department": "Retail", "costCenter": "42"}
	created := itPost(t, g, "/Users", body)
	if got := created[scim.EnterpriseUserSchema]; !reflect.DeepEqual(got, map[string]any{"department": "Retail", "costCenter": "42"}) {
		t.Errorf("merged enterprise extension %#v", got)
	}
	if _, flat := created[flatHire]; flat {
		t.Error("the flat key survived next to an equal nested value")
	}

	// The path-less PATCH value carrying both forms with different values.
	id, _ := created["id"].(string)
	w := serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(
		`{"op":"replace","value":{"`+flatHire+`":"2030-01-01","`+flatMyApp+`":{"hireDate":"2031-01-01"}}}`))
	e = itWantError(t, w, http.StatusBadRequest, "invalidValue")
	if d, _ := e["detail"].(string); !strings.Contains(strings.ToLower(d), strings.ToLower(flatHire)) {
		t.Errorf("detail %q does not name %s", d, flatHire)
	}
}

// flatMapping sends the custom and the enterprise attribute to the app on create, and
// only what changed on update.
const flatMapping = `{
  "version": 1,
  "users": {
    "events": {
      "create": {"method": "POST", "path": "/accounts", "id": "id", "body": {
        "login": {"from": "userName"},
        "hire_date": {"from": "urn:ietf:params:scim:schemas:extension:MyApp:2.0:User:hireDate"},
        "dept": {"from": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}}},
      "update": {"method": "PATCH", "path": "/accounts/{id}", "send": "changed", "body": {
        "hire_date": {"from": "urn:ietf:params:scim:schemas:extension:MyApp:2.0:User:hireDate"},
        "dept": {"from": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}}}
    }
  }
}`

// flatApp is a native app on 127.0.0.1 that records the bodies it receives.
type flatApp struct {
	mu    sync.Mutex
	calls []flatCall
	next  int
}

type flatCall struct {
	method, path string
	body         map[string]any
}

func (a *flatApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	a.mu.Lock()
	a.calls = append(a.calls, flatCall{r.Method, r.URL.Path, body})
	a.next++
	n := a.next
	a.mu.Unlock()
	if r.Method == http.MethodPost {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": %d}`, n)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *flatApp) last(t *testing.T) flatCall {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.calls) == 0 {
		t.Fatal("the app got no call")
	}
	return a.calls[len(a.calls)-1]
}

// TestTargetFlatExtensionReachesApp: a mapping field whose source is a custom (or
// enterprise) extension attribute gets its value whether Entra sent it flat or nested, on
// create and on each PATCH dialect's update.
func TestTargetFlatExtensionReachesApp(t *testing.T) {
	app := &flatApp{}
	srv := httptest.NewServer(app)
	defer srv.Close()
	mapFile := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(flatMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, func(g *Handler) {
		g.Target = &TargetConfig{Name: "app", URL: srv.URL, Mapping: mapFile, MaxRetries: -1}
	})

	nested := map[string]any{
		"schemas":                 []string{scim.UserSchema, scim.EnterpriseUserSchema},
		"userName":                "nested@contoso.example",
		flatMyApp:                 map[string]any{"hireDate": flatHireVal},
		scim.EnterpriseUserSchema: map[string]any{"department": "Retail"},
	}
	for name, body := range map[string]map[string]any{"flat": flatUser("flat@contoso.example"), "nested": nested} {
		t.Run(name, func(t *testing.T) {
			id := itPostID(t, g, "/Users", body)
			call := app.last(t)
			want := map[string]any{"login": body["userName"], "hire_date": flatHireVal, "dept": "Retail"}
			if call.method != http.MethodPost || !reflect.DeepEqual(call.body, want) {
				t.Fatalf("create sent %s %v, want POST %v", call.method, call.body, want)
			}

			w := serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(`{"op":"Replace","path":"`+flatHire+`","value":"2024-04-01"}`))
			itWantOK(t, w, http.StatusOK)
			if call := app.last(t); call.method != http.MethodPatch || !reflect.DeepEqual(call.body, map[string]any{"hire_date": "2024-04-01"}) {
				t.Fatalf("update (default dialect) sent %s %v, want the changed hire_date only", call.method, call.body)
			}
			if r := lastRecord(t, g); r.Outcome != "applied" {
				t.Fatalf("update journaled as %+v", r)
			}

			w = serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(`{"op":"replace","value":{"`+flatDept+`":"Ops"}}`))
			itWantOK(t, w, http.StatusOK)
			if call := app.last(t); call.method != http.MethodPatch || !reflect.DeepEqual(call.body, map[string]any{"dept": "Ops"}) {
				t.Fatalf("update (path-less dialect) sent %s %v, want the changed dept only", call.method, call.body)
			}
		})
	}
}

// TestHandlerFlatExtensionStoredBefore: users stored before flat keys were nested (flat
// only, or flat next to the nested copy a later PATCH added) read, filter and patch as one
// nested attribute; the nested value, the later PATCH's, wins.
func TestHandlerFlatExtensionStoredBefore(t *testing.T) {
	g := newTestGateway(t, nil)
	now := time.Now().UTC()
	legacy := map[string]string{
		"flat-only": `{"schemas":["` + scim.UserSchema + `"],"userName":"flat-only@contoso.example","` + flatHire + `":"` + flatHireVal + `","` + flatDept + `":"Retail"}`,
		"both": `{"schemas":["` + scim.UserSchema + `"],"userName":"both@contoso.example","` + flatHire + `":"1999-12-31","` + flatDept + `":"Retail",` +
			`"` + flatMyApp + `":{"hireDate":"` + flatHireVal + `"}}`,
	}
	for id, doc := range legacy {
		var attrs map[string]any
		if err := json.Unmarshal([]byte(doc), &attrs); err != nil {
			t.Fatal(err)
		}
		rec := &store.Record{Type: scim.UserType, ID: id, Created: now, LastModified: now, Doc: []byte(doc), Index: provision.IndexEntries(scim.UserType, attrs)}
		if err := g.store.Update(func(tx *store.Tx) error { return tx.Put(rec) }); err != nil {
			t.Fatal(err)
		}
	}
	for id := range legacy {
		t.Run(id, func(t *testing.T) {
			flatWantOnce(t, itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil), http.StatusOK), flatHireVal, "Retail")
			ids, _ := itListIDs(t, g, "/Users", itQ(`userName eq "`+id+`@contoso.example" and `+flatHire+` eq "`+flatHireVal+`"`))
			if !slices.Equal(ids, []string{id}) {
				t.Errorf("filter matched %v", ids)
			}
			w := serve(t, g, http.MethodPatch, itBase+"/Users/"+id, itPatchBody(`{"op":"Replace","path":"`+flatHire+`","value":"2024-04-01"}`))
			flatWantOnce(t, itWantOK(t, w, http.StatusOK), "2024-04-01", "Retail")
			if got, want := changePaths(lastRecord(t, g)), []string{"replace " + flatHire}; !slices.Equal(got, want) {
				t.Errorf("journaled changes %v, want %v", got, want)
			}
		})
	}
}
