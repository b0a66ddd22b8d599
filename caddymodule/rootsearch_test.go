package caddymodule

// POST /.search at the server root (RFC 7644 §3.4.3), and GET at the root (§3.4.2),
// search Users and Groups at once with the rules of the endpoints' own searches: one filter, startIndex and count over
// the union (Users first, then Groups, each in the store's order), attributes and
// excludedAttributes applied per resource type, each resource saying its type in
// schemas and meta.

import (
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// rootSearch posts body to /.search and returns the resources and the ListResponse.
func rootSearch(t *testing.T, g *Handler, body map[string]any) ([]map[string]any, map[string]any) {
	t.Helper()
	m := itWantOK(t, serve(t, g, http.MethodPost, itBase+"/.search", body), http.StatusOK)
	return itListResources(t, m), m
}

func rootSearchIDs(res []map[string]any) []string {
	ids := []string{}
	for _, r := range res {
		id, _ := r["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

func TestHandlerRootSearch(t *testing.T) {
	g := newTestGateway(t, nil)
	var users, groups []string
	for _, n := range []string{"sales.ada", "sales.bob", "ops.cy"} {
		users = append(users, itPostID(t, g, "/Users", map[string]any{"userName": n + "@contoso.example", "displayName": n, "active": true}))
	}
	groups = append(groups, itPostID(t, g, "/Groups", map[string]any{"displayName": "Sales Team", "members": []any{map[string]any{"value": users[0]}}}))
	groups = append(groups, itPostID(t, g, "/Groups", map[string]any{"displayName": "Ops"}))
	// The store's order within a type is its own (by id); the root lists Users first.
	userOrder, _ := itListIDs(t, g, "/Users", "")
	groupOrder, _ := itListIDs(t, g, "/Groups", "")
	all := append(slices.Clone(userOrder), groupOrder...)

	t.Run("no filter: every user, then every group, each saying its type", func(t *testing.T) {
		res, m := rootSearch(t, g, map[string]any{})
		if got := rootSearchIDs(res); !slices.Equal(got, all) {
			t.Fatalf("ids %v, want %v", got, all)
		}
		if m["totalResults"] != float64(5) || m["itemsPerPage"] != float64(5) || m["startIndex"] != float64(1) {
			t.Errorf("list = %v", m)
		}
		for _, r := range res {
			typ := scim.UserType
			if slices.Contains(groups, r["id"].(string)) {
				typ = scim.GroupType
			}
			meta, _ := r["meta"].(map[string]any)
			if meta["resourceType"] != typ || !slices.Contains(r["schemas"].([]any), any(scim.ResourceTypeByName(typ).Schema)) {
				t.Errorf("%s %s says schemas %v, meta %v", typ, r["id"], r["schemas"], meta)
			}
		}
	})

	filters := []struct {
		name, filter string
		want         []string
	}{
		{"an attribute of both types matches both", `displayName sw "sales"`, []string{users[0], users[1], groups[0]}},
		{"an attribute only users have matches no group", `userName eq "ops.cy@contoso.example"`, []string{users[2]}},
		{"a boolean only users have matches no group", `active eq true`, []string{users[0], users[1], users[2]}},
		{"members matches only groups", `members.value eq "` + users[0] + `"`, []string{groups[0]}},
		{"an id finds its resource whatever its type", `id eq "` + groups[1] + `"`, []string{groups[1]}},
		{"or across the types", `userName eq "sales.bob@contoso.example" or displayName eq "ops"`, []string{users[1], groups[1]}},
		{"a URN-qualified user attribute matches no group", scim.UserSchema + `:userName pr`, users},
		{"no match", `externalId eq "nobody"`, nil},
	}
	for _, tc := range filters {
		t.Run(tc.name, func(t *testing.T) {
			res, m := rootSearch(t, g, map[string]any{"filter": tc.filter})
			got := rootSearchIDs(res)
			want := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return !slices.Contains(tc.want, id) })
			if !slices.Equal(got, want) {
				t.Errorf("ids %v, want %v", got, want)
			}
			if m["totalResults"] != float64(len(want)) {
				t.Errorf("totalResults %v, want %d", m["totalResults"], len(want))
			}
		})
	}

	t.Run("startIndex and count page the union", func(t *testing.T) {
		for start := 1; start <= 6; start++ {
			for count := 0; count <= 3; count++ {
				res, m := rootSearch(t, g, map[string]any{"startIndex": start, "count": count})
				want := all[min(start-1, len(all)):min(start-1+count, len(all))]
				if got := rootSearchIDs(res); !slices.Equal(got, want) {
					t.Errorf("startIndex %d count %d: ids %v, want %v", start, count, got, want)
				}
				if m["totalResults"] != float64(len(all)) || m["startIndex"] != float64(start) || m["itemsPerPage"] != float64(len(want)) {
					t.Errorf("startIndex %d count %d: list %v", start, count, m)
				}
			}
		}
	})

	t.Run("attributes apply per resource type", func(t *testing.T) {
		res, _ := rootSearch(t, g, map[string]any{"filter": `displayName sw "sales"`, "attributes": []any{"userName", "members"}})
		for _, r := range res {
			keys := []string{}
			for k := range r {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			want := []string{"id", "members", "schemas"}
			if r["id"] != groups[0] {
				want = []string{"id", "schemas", "userName"}
			}
			if !slices.Equal(keys, want) {
				t.Errorf("%s: attributes %v, want %v", r["id"], keys, want)
			}
		}
	})
	t.Run("excludedAttributes apply per resource type", func(t *testing.T) {
		res, _ := rootSearch(t, g, map[string]any{"filter": `displayName sw "sales"`, "excludedAttributes": "members,userName"})
		if len(res) != 3 {
			t.Fatalf("%d resources", len(res))
		}
		for _, r := range res {
			if _, has := r["members"]; has {
				t.Errorf("%s has members", r["id"])
			}
			if _, has := r["userName"]; has {
				t.Errorf("%s has userName", r["id"])
			}
			if r["displayName"] == nil || r["meta"] == nil {
				t.Errorf("%s lost other attributes: %v", r["id"], r)
			}
		}
	})
	t.Run("the same answer as each endpoint's own search", func(t *testing.T) {
		body := map[string]any{"filter": `displayName sw "sales"`}
		root, _ := rootSearch(t, g, body)
		var each []map[string]any
		for _, ep := range []string{"/Users/.search", "/Groups/.search"} {
			each = append(each, itListResources(t, itWantOK(t, serve(t, g, http.MethodPost, itBase+ep, body), http.StatusOK))...)
		}
		if !reflect.DeepEqual(root, each) {
			t.Errorf("root search differs from the endpoints' searches:\n root %v\n each %v", root, each)
		}
	})

	t.Run("GET at the root is the same query (RFC 7644 §3.4.2)", func(t *testing.T) {
		for _, q := range []struct {
			raw  string
			body map[string]any
		}{
			{"", map[string]any{}},
			{itQ(`displayName sw "sales"`) + "&startIndex=2&count=2&attributes=displayName", map[string]any{"filter": `displayName sw "sales"`, "startIndex": 2, "count": 2, "attributes": "displayName"}},
			{"excludedAttributes=members,meta", map[string]any{"excludedAttributes": "members,meta"}},
		} {
			for _, root := range []string{"", "/"} {
				got := itWantOK(t, serve(t, g, http.MethodGet, itBase+root+"?"+q.raw, nil), http.StatusOK)
				_, want := rootSearch(t, g, q.body)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("GET %s?%s:\n got  %v\n want %v", root, q.raw, got, want)
				}
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		itWantError(t, serve(t, g, http.MethodPost, itBase+"/.search", map[string]any{"filter": `active eq "maybe"`}), http.StatusBadRequest, scim.TypeInvalidFilter)
		itWantError(t, serve(t, g, http.MethodPost, itBase+"/.search", map[string]any{"filter": `userName eq`}), http.StatusBadRequest, scim.TypeInvalidFilter)
		itWantError(t, serve(t, g, http.MethodPost, itBase+"/.search", map[string]any{"count": "many"}), http.StatusBadRequest, scim.TypeInvalidValue)
		itWantError(t, serve(t, g, http.MethodPost, itBase+"/.search", map[string]any{"attributes": "userName", "excludedAttributes": "members"}), http.StatusBadRequest, scim.TypeInvalidSyntax)
		for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
			w := serve(t, g, m, itBase+"/.search", nil)
			itWantError(t, w, http.StatusMethodNotAllowed, "")
			if w.Header().Get("Allow") != "POST" {
				t.Errorf("%s: Allow = %q", m, w.Header().Get("Allow"))
			}
		}
		itWantError(t, serve(t, g, http.MethodPost, itBase+"/.search/Users", map[string]any{}), http.StatusNotFound, "")
	})
}

// TestHandlerRootSearchJournaled: with reads journaled, a root search is one "search"
// record (a GET at the root one "list" record) of no single resource type, its filter
// hashed as every search's.
func TestHandlerRootSearchJournaled(t *testing.T) {
	g := newTestGateway(t, func(g *Handler) { g.Journal = &JournalConfig{Reads: true} })
	itPostID(t, g, "/Users", map[string]any{"userName": "journaled@contoso.example"})
	const filter = `userName eq "journaled@contoso.example"`
	if res, _ := rootSearch(t, g, map[string]any{"filter": filter}); len(res) != 1 {
		t.Fatalf("%d resources", len(res))
	}
	r := lastRecord(t, g)
	if r.Action != "search" || r.ResourceType != "" || r.FilterHash != g.store.journal.HashFilter(filter) {
		t.Errorf("record: %+v", r)
	}
	itWantOK(t, serve(t, g, http.MethodGet, itBase+"?"+itQ(filter), nil), http.StatusOK)
	if r := lastRecord(t, g); r.Action != "list" || r.ResourceType != "" || r.FilterHash != g.store.journal.HashFilter(filter) {
		t.Errorf("record of GET at the root: %+v", r)
	}
}

// TestFilterIndexesOverHTTP: what the index planner decides holds end to end. An or of
// indexed equalities lists what it matches by id order, each once, whatever the letter
// case of userName; an empty externalId (kept as written, and not indexed) is found; at
// the root a group holding an attribute named userName (kept as written) matches a
// userName filter, which is why Groups are scanned for it there.
func TestFilterIndexesOverHTTP(t *testing.T) {
	g := newTestGateway(t, nil)
	ada := itPostID(t, g, "/Users", map[string]any{"userName": "Ada@contoso.example", "externalId": ""})
	bob := itPostID(t, g, "/Users", map[string]any{"userName": "bob@contoso.example", "externalId": "b1"})
	itPostID(t, g, "/Users", map[string]any{"userName": "cy@contoso.example", "externalId": "B1"})
	grp := itPostID(t, g, "/Groups", map[string]any{"displayName": "Ada's", "userName": "ada@contoso.example"})
	byID := slices.Sorted(slices.Values([]string{ada, bob}))

	ids, m := itListIDs(t, g, "/Users", itQ(`userName eq "ADA@contoso.example" or externalId eq "b1" or userName eq "bob@CONTOSO.example"`))
	if !slices.Equal(ids, byID) || m["totalResults"] != 2.0 {
		t.Errorf("or of indexed equalities: %v %v, want %v", ids, m["totalResults"], byID)
	}
	if ids, _ := itListIDs(t, g, "/Users", itQ(`externalId eq ""`)); !slices.Equal(ids, []string{ada}) {
		t.Errorf(`externalId eq "": %v, want [%s]`, ids, ada)
	}
	res, _ := rootSearch(t, g, map[string]any{"filter": `userName eq "ada@contoso.example" or userName eq "nobody@contoso.example"`})
	if got := rootSearchIDs(res); !slices.Equal(got, []string{ada, grp}) {
		t.Errorf("root userName filter: %v, want [%s %s]", got, ada, grp)
	}
}
