package mapping

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/apptest"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestAccountsPageByPage: the list call iterates every account of apptest (2 per page)
// by each kind of paging the app supports, and stops at max_pages with an error.
func TestAccountsPageByPage(t *testing.T) {
	app := apptest.Start(t, apptest.Options{Auth: apptest.AuthAPIKey, Key: "k-1"})
	var want []string
	for i := range 5 {
		want = append(want, app.Add(url.Values{"login": {fmt.Sprintf("u%d", i)}}))
	}
	auth, _ := legacy.NewAPIKey("X-Api-Key", "", "k-1")
	c, err := legacy.New(legacy.Options{BaseURL: app.URL + "/api", Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	for _, paging := range []string{
		`{"type": "link"}`,
		`{"type": "cursor", "cursor": "next_page", "param": "page"}`,
		`{"type": "page", "param": "page", "size": 2}`,
	} {
		m := mustParse(t, `{"version": 1, "users": {"events": {},
			"list": {"method": "GET", "path": "/users", "items": "items", "id": "id", "paging": `+paging+`}}}`)
		var got []string
		for acc, err := range m.Accounts(context.Background(), c, nil, scim.UserType) {
			if err != nil {
				t.Fatalf("%s: %v", paging, err)
			}
			got = append(got, acc.NativeID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", paging, got, want)
		}
	}
	m := mustParse(t, `{"version": 1, "users": {"events": {},
		"list": {"method": "GET", "path": "/users", "items": "items", "id": "id", "paging": {"type": "link", "max_pages": 2}}}}`)
	n := 0
	var last error
	for _, err := range m.Accounts(context.Background(), c, nil, scim.UserType) {
		if err != nil {
			last = err
			break
		}
		n++
	}
	if n != 4 || !errors.Is(last, legacy.ErrTooManyPages) {
		t.Fatalf("max_pages 2: %d accounts, %v", n, last)
	}
	// A caller may stop early: no further page is asked for.
	before := app.APIRequests.Load()
	for range m.Accounts(context.Background(), c, http.Header{"X-Trace": {"1"}}, scim.UserType) {
		break
	}
	if d := app.APIRequests.Load() - before; d != 1 {
		t.Fatalf("stopping after the first account made %d requests, want 1", d)
	}
}

func TestListLoadErrors(t *testing.T) {
	tests := []struct{ name, file, want string }{
		{"list without items", `{"version": 1, "users": {"events": {}, "list": {"method": "GET", "path": "/u", "id": "id"}}}`,
			`demo.json: users.list.items: missing: a list needs the gjson path of each page's list of accounts (e.g. "items")`},
		{"list without id", `{"version": 1, "users": {"events": {}, "list": {"method": "GET", "path": "/u", "items": "items"}}}`,
			`demo.json: users.list.id: missing: a list needs the gjson path of the native id in each item (e.g. "id")`},
		{"list by POST", `{"version": 1, "users": {"events": {}, "list": {"method": "POST", "path": "/u", "items": "items", "id": "id"}}}`,
			`demo.json: users.list.method: a list reads: its method is GET, not POST`},
		{"list of a resource", `{"version": 1, "users": {"events": {}, "list": {"method": "GET", "path": "/u?login={userName}", "items": "items", "id": "id"}}}`,
			`demo.json: users.list: a list reads every account, of no resource in particular: its path has no placeholders and it has no body`},
		{"paging on a create", userCreate(`{"method": "POST", "path": "/u", "paging": {"type": "link"}}`),
			`demo.json: users.events.create.paging: applies to lookup and list calls only`},
		{"unknown paging", `{"version": 1, "users": {"events": {}, "list": {"method": "GET", "path": "/u", "items": "items", "id": "id", "paging": {"type": "scroll"}}}}`,
			`demo.json: users.list.paging: unknown paging "scroll"; use cursor, page, offset or link`},
		{"cursor without path", `{"version": 1, "users": {"events": {}, "list": {"method": "GET", "path": "/u", "items": "items", "id": "id", "paging": {"type": "cursor", "param": "c"}}}}`,
			`demo.json: users.list.paging: cursor paging needs the cursor's path in the answer and the query parameter that sends it back`},
		{"too many pages", `{"version": 1, "users": {"events": {}, "list": {"method": "GET", "path": "/u", "items": "items", "id": "id", "paging": {"type": "link", "max_pages": 1000000}}}}`,
			`demo.json: users.list.paging: max_pages must be between 1 and 100000`},
		{"match without items", `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "id": "id", "match": {"login": "{userName}"}}}}`,
			`demo.json: users.lookup.match: compares fields of each item: give "items", the path of the answer's list`},
		{"match on a list", `{"version": 1, "users": {"events": {}, "list": {"method": "GET", "path": "/u", "items": "items", "id": "id", "match": {"login": "x"}}}}`,
			`demo.json: users.list.match: applies to a lookup only`},
		{"match of an unknown attribute", `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "items": "items", "id": "id", "match": {"login": "{userNme}"}}}}`,
			`demo.json: users.lookup.match["login"]: `},
		{"read on a lookup", `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "items": "items", "id": "id", "read": {"login": "login"}}}}`,
			`demo.json: users.lookup.read: applies to a list only: where a listed account holds the fields the calls write`},
		{"read of a field no call writes", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id", "body": {"person.login": "userName"}}},
			"list": {"method": "GET", "path": "/u", "items": "items", "id": "id", "read": {"login": "login"}}}}`,
			`demo.json: users.list.read.login: no create or update call of users writes a field "login": a key of read is a native path of the body, as the calls write it`},
		{"read at an empty path", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id", "body": {"person.login": "userName"}}},
			"list": {"method": "GET", "path": "/u", "items": "items", "id": "id", "read": {"person.login": "a..b"}}}}`,
			`demo.json: users.list.read.person.login: `},
		{"total at a path that matches nothing", `{"version": 1, "users": {"events": {}, "list": {"method": "GET", "path": "/u", "items": "items", "id": "id", "paging": {"type": "link", "total": "meta.#(x"}}}}`,
			`demo.json: users.list.paging.total: `},
		{"total of a lookup without items", `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "id": "items.0.id", "paging": {"type": "link", "total": "total"}}}}`,
			`demo.json: users.lookup.paging: a total is compared with the items the pages list: it needs the path of the page's items`},
		{"lookup page paging without items", `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "id": "items.0.id", "paging": {"type": "page", "param": "p"}}}}`,
			`demo.json: users.lookup.paging: page paging needs the query parameter and the path of the page's items`},
	}
	for _, tc := range tests {
		_, err := Parse("demo.json", []byte(tc.file), testResolve)
		if err == nil || (err.Error() != tc.want && !(strings.HasSuffix(tc.want, ": ") && strings.HasPrefix(err.Error(), tc.want))) {
			t.Errorf("%s:\n got: %v\nwant: %s", tc.name, err, tc.want)
		}
	}
}

// TestLookupMatch: a lookup over a list finds the item whose fields hold the rendered
// values, case-insensitively, and nothing when none does.
func TestLookupMatch(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "items": "data", "id": "key",
		"match": {"login": "{userName|lower}", "org.code": "EU"}}}}`)
	req, ok, err := m.LookupRequest(scim.UserType, resource(t, `{"id":"s","userName":"Ada@X.example"}`))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	page := []byte(`{"data":[{"key":1,"login":"ada@x.example","org":{"code":"US"}},{"key":2,"login":"ADA@x.example","org":{"code":"eu"}}]}`)
	if id, found, err := req.FindID(page); !found || id != "2" || err != nil {
		t.Fatalf("FindID: %q, %v, %v", id, found, err)
	}
	if _, found, err := req.FindID([]byte(`{"data":[{"key":1,"login":"bob"}]}`)); found || err != nil {
		t.Fatalf("found an account that does not match (%v)", err)
	}
	if _, _, err := m.LookupRequest(scim.UserType, resource(t, `{"id":"s"}`)); err == nil {
		t.Fatal("a lookup without the value to match was built")
	}
}

// TestLookupAnswersThatProveNothing: a lookup's answer says "no such account" only when it
// proves it (the list is there and names none; a single object's id runs into a list that
// is there and empty); anything else is an error, never "not found".
func TestLookupAnswersThatProveNothing(t *testing.T) {
	list := mustParse(t, `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "items": "data.users", "id": "uid",
		"match": {"login": "{userName}"}}}}`)
	single := mustParse(t, `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "id": "data.users.0.uid"}}}`)
	bare := mustParse(t, `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "id": "user.id"}}}`)
	query := mustParse(t, `{"version": 1, "users": {"events": {}, "lookup": {"method": "GET", "path": "/u", "id": "users.#(login==\"ada\").id"}}}`)
	ada := resource(t, `{"id":"s","userName":"ada"}`)
	cases := []struct {
		m       *Mapping
		body    string
		id      string
		found   bool
		unknown bool
	}{
		{list, `{"data":{"users":[{"uid":"u1","login":"ada"}]}}`, "u1", true, false},
		{list, `{"data":{"users":[{"uid":"u1","login":"bob"}]}}`, "", false, false},
		{list, `{"data":{"users":[]}}`, "", false, false},
		{list, `{}`, "", false, true},
		{list, `{"data":{}}`, "", false, true},
		{list, `{"data":{"users":null}}`, "", false, true},
		{list, `{"data":{"users":"none"}}`, "", false, true},
		{list, `{"data":{"users":{"uid":"u1","login":"ada"}}}`, "", false, true},
		{list, `<html></html>`, "", false, true},
		{list, `{"data":{"users":[{"login":"ada"}]}}`, "", false, true}, // the account, without its id
		{single, `{"data":{"users":[{"uid":"u1"}]}}`, "u1", true, false},
		{single, `{"data":{"users":[]}}`, "", false, false},
		{single, `{}`, "", false, true},
		{single, `{"data":{"users":[{"name":"x"}]}}`, "", false, true},
		{single, `{"data":{"users":{}}}`, "", false, true},
		{bare, `{"user":{"id":7}}`, "7", true, false},
		{bare, `{}`, "", false, true}, // only the app's own not-found says there is none
		{query, `{"users":[{"login":"bob","id":1}]}`, "", false, false},
		{query, `{"users":[{"login":"ada","id":2}]}`, "2", true, false},
		{query, `{}`, "", false, true},
	}
	for i, c := range cases {
		req, _, err := c.m.LookupRequest(scim.UserType, ada)
		if err != nil {
			t.Fatal(err)
		}
		id, found, err := req.FindID([]byte(c.body))
		if id != c.id || found != c.found || (err != nil) != c.unknown {
			t.Errorf("%d %s: %q, %v, %v; want %q, %v, error %v", i, c.body, id, found, err, c.id, c.found, c.unknown)
		}
	}
}

// TestListPageWithoutItems: a list page without its list (a proxy's {}) ends the listing
// with an error, never as a page of no accounts (a reconcile would call every account
// missing).
func TestListPageWithoutItems(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
	}))
	t.Cleanup(srv.Close)
	c, err := legacy.New(legacy.Options{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, paging := range []string{`null`, `{"type": "page", "param": "page", "size": 2}`, `{"type": "link"}`} {
		m := mustParse(t, `{"version": 1, "users": {"events": {},
			"list": {"method": "GET", "path": "/users", "items": "items", "id": "id", "paging": `+paging+`}}}`)
		var errs []error
		for acc, err := range m.Accounts(context.Background(), c, nil, scim.UserType) {
			if err == nil {
				t.Fatalf("%s: an account from {}: %+v", paging, acc)
			}
			errs = append(errs, err)
		}
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "no list") {
			t.Fatalf("%s: %v, want one error saying the page has no list", paging, errs)
		}
	}
}
