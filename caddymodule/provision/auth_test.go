package provision

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/apptest"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// formMapping maps users onto apptest's form API: creates answered with only a Location.
const formMapping = `{
  "version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/api/users?login={userName}", "id": "items.0.id"},
    "events": {
      "create": {"method": "POST", "path": "/api/users", "encoding": "form", "id": {"location": "last_segment"},
                 "expect": {"status": [201], "body": "empty"},
                 "body": {"login": "userName", "name.given": "name.givenName"}},
      "update": {"method": "POST", "path": "/api/users/{id}", "encoding": "form", "form_keys": "dots", "body": {"name.given": "name.givenName"}},
      "delete": {"method": "DELETE", "path": "/api/users/{id}", "expect": {"status": [204]}}
    }
  }
}`

const appPassword = "pa55-word-engine-71c"

// newFormTarget is a target on apptest with basic auth and form bodies.
func newFormTarget(t *testing.T, app *apptest.App, file string) *Target {
	t.Helper()
	target := newMappedTarget(t, app.URL, file)
	auth, err := legacy.NewBasicAuth("svc", appPassword)
	if err != nil {
		t.Fatal(err)
	}
	c, err := legacy.New(legacy.Options{BaseURL: app.URL, Auth: auth, Timeout: 5 * time.Second, MaxRetries: -1, CircuitFailures: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	target.Client = c
	return target
}

// TestLocationOnlyCreates: a form-encoded create answered with only a Location header
// gives the native id; one answered without it is an outage journaled with the reason,
// and Entra's retry adopts the account through the lookup instead of making a second.
func TestLocationOnlyCreates(t *testing.T) {
	app := apptest.Start(t, apptest.Options{Auth: apptest.AuthBasic, User: "svc", Password: appPassword, Form: true})
	r := newRig(t, rigOptions{target: newFormTarget(t, app, formMapping)})
	id := r.mustCreate(scim.UserType, user("ada@contoso.example", `,"name":{"givenName":"Ada"}`))
	native := r.nativeID(scim.UserType, id)
	acc := app.Accounts()[native]
	if native == "" || acc.Get("login") != "ada@contoso.example" || acc.Get("name[given]") != "Ada" {
		t.Fatalf("native id %q, account %v", native, acc)
	}
	res := r.patch(scim.UserType, id, `[{"op":"replace","path":"name.givenName","value":"Augusta"}]`)
	if res.Err != nil || app.Accounts()[native].Get("name.given") != "Augusta" {
		t.Fatalf("update: %v, account %v", res.Err, app.Accounts()[native])
	}

	app.DropLocation.Store(true)
	create := func() *Result {
		return r.eng.Apply(testReq, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user("bob@contoso.example")), Status: 201})
	}
	res = create()
	if res.Status != http.StatusServiceUnavailable || res.RetryAfter <= 0 {
		t.Fatalf("a create without Location: %+v (%v)", res, res.Err)
	}
	rec := r.last()
	if rec.Outcome != change.Failed || !strings.Contains(rec.Error, "without a usable id") || !strings.Contains(rec.Error, "no Location header") {
		t.Fatalf("journal record %+v does not say why", rec)
	}
	var listed bool
	_ = r.store.View(func(tx *store.Tx) error {
		_, listed = tx.Adoption("native", scim.UserType, "bob@contoso.example")
		return nil
	})
	if !listed || len(app.Accounts()) != 2 {
		t.Fatalf("listed for adoption %v, accounts %d", listed, len(app.Accounts()))
	}
	app.DropLocation.Store(false)
	res = create()
	if res.Err != nil {
		t.Fatalf("retry: %v", res.Err)
	}
	if n := len(app.Accounts()); n != 2 {
		t.Fatalf("the retry made a second account: %d accounts", n)
	}
	if n := r.nativeID(scim.UserType, res.ID); app.Accounts()[n].Get("login") != "bob@contoso.example" {
		t.Fatalf("the directory maps bob to %q", n)
	}
	out, _ := json.Marshal(r.records())
	if strings.Contains(string(out), appPassword) {
		t.Fatal("the journal holds the app's password")
	}
}

// TestPagedLookupAdopts: a lookup that reads the app's whole list page by page finds the
// account a create without a Location left on a later page; one that cannot finish
// within its max_pages is an outage, never a second account.
func TestPagedLookupAdopts(t *testing.T) {
	app := apptest.Start(t, apptest.Options{Auth: apptest.AuthBasic, User: "svc", Password: appPassword, Form: true})
	for i := range 5 {
		app.Add(url.Values{"login": {fmt.Sprintf("fixture%d@contoso.example", i)}})
	}
	paged := func(maxPages int) string {
		return strings.Replace(formMapping, `"lookup": {"method": "GET", "path": "/api/users?login={userName}", "id": "items.0.id"}`,
			fmt.Sprintf(`"lookup": {"method": "GET", "path": "/api/users", "items": "items", "id": "id", "match": {"login": "{userName}"},
				"paging": {"type": "link", "max_pages": %d}}`, maxPages), 1)
	}
	for _, c := range []struct {
		maxPages int
		adopted  bool
	}{{10, true}, {2, false}} {
		r := newRig(t, rigOptions{target: newFormTarget(t, app, paged(c.maxPages))})
		name := fmt.Sprintf("paged%d@contoso.example", c.maxPages)
		create := func() *Result {
			return r.eng.Apply(testReq, &Op{Action: change.ActionCreate, Type: scim.UserType, Resource: prepared(t, scim.UserType, user(strings.ToUpper(name))), Status: 201})
		}
		app.DropLocation.Store(true)
		if res := create(); res.Status != http.StatusServiceUnavailable {
			t.Fatalf("a create without Location: %+v", res)
		}
		app.DropLocation.Store(false)
		accounts := len(app.Accounts())
		res := create()
		if len(app.Accounts()) != accounts {
			t.Fatalf("max_pages %d: the retry made a second account", c.maxPages)
		}
		if !c.adopted {
			if res.Status != http.StatusServiceUnavailable || !strings.Contains(res.Err.Error(), "max_pages") {
				t.Fatalf("a lookup past max_pages: %+v (%v), want a 503 naming max_pages", res, res.Err)
			}
			continue
		}
		if res.Err != nil {
			t.Fatalf("retry: %v", res.Err)
		}
		if n := r.nativeID(scim.UserType, res.ID); !strings.EqualFold(app.Accounts()[n].Get("login"), name) {
			t.Fatalf("adopted %q (%v)", n, app.Accounts()[n])
		}
		if rec := r.last(); len(rec.Calls) != 3 { // the account is on the third page
			t.Fatalf("the lookup's pages are not journaled: %+v", rec.Calls)
		}
	}
}
