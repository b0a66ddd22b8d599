package query

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// storedRenderer renders a record as the gateway stores and reads it (provision.DecodeDoc)
// with its id.
type storedRenderer struct{}

func (storedRenderer) Render(_ *store.Tx, rec *store.Record, _ Computed) (scim.Resource, error) {
	doc, err := provision.DecodeDoc(rec)
	if err != nil {
		return nil, err
	}
	doc["id"] = rec.ID
	return doc, nil
}

func (storedRenderer) AddComputed(*store.Tx, *store.Record, scim.Resource, Computed) error {
	return nil
}

// mixedDirectory is a directory written as the gateway writes one (scim.PrepareResource,
// provision.IndexEntries), in an order that is neither the ids' nor the names': userNames
// in mixed case (one with the long s "ſ", which folds to "s"), externalIds that differ
// only in case (caseExact) or are shared, empty or missing, emails shared by two users or
// empty, and a group that holds an attribute named userName (kept as written).
func mixedDirectory(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "dir.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	email := func(value, typ string) map[string]any {
		m := map[string]any{"value": value}
		if typ != "" {
			m["type"] = typ
		}
		return m
	}
	for _, r := range []struct {
		typ, id string
		doc     map[string]any
	}{
		{typ: scim.UserType, id: "u-7", doc: map[string]any{"userName": "Alice@Contoso.example", "externalId": "abc", "active": true, "title": "Eng",
			"emails": []any{email("alice@contoso.example", ""), email("shared@contoso.example", "")}}},
		{typ: scim.UserType, id: "U-2", doc: map[string]any{"userName": "bob@contoso.example", "externalId": "ABC", "active": false,
			"emails": []any{email("SHARED@contoso.example", "work")}}},
		{typ: scim.UserType, id: "u-10", doc: map[string]any{"userName": "carol@CONTOSO.example", "active": true}},
		{typ: scim.UserType, id: "u-1", doc: map[string]any{"userName": "dave@contoso.example", "externalId": "x1", "title": "Ops",
			"emails": []any{email("", ""), email("dave@contoso.example", "work")}}},
		{typ: scim.UserType, id: "a-3", doc: map[string]any{"userName": "Erin@contoso.example", "externalId": "", "active": true,
			"emails": []any{email("erin@contoso.example", "home")}}},
		{typ: scim.UserType, id: "u-5", doc: map[string]any{"userName": "fay@contoso.example", "externalId": "x1", "title": "Eng"}},
		{typ: scim.UserType, id: "z", doc: map[string]any{"userName": "ſam@contoso.example"}},
		{typ: scim.UserType, id: "u-0", doc: map[string]any{"userName": "hal@contoso.example",
			scim.EnterpriseUserSchema: map[string]any{"employeeNumber": "7"}}},
		{typ: scim.GroupType, id: "g-2", doc: map[string]any{"displayName": "Sales", "externalId": "gx"}},
		{typ: scim.GroupType, id: "G-1", doc: map[string]any{"displayName": "ops", "externalId": "x1"}},
		{typ: scim.GroupType, id: "g-9", doc: map[string]any{"displayName": "Eng", "userName": "alice@contoso.example"}},
	} {
		p, err := scim.PrepareResource(r.typ, r.doc)
		if err != nil {
			t.Fatalf("%s %s: %v", r.typ, r.id, err)
		}
		doc, err := json.Marshal(p.Doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Update(func(tx *store.Tx) error {
			return tx.Put(&store.Record{Type: r.typ, ID: r.id, Doc: doc, Index: provision.IndexEntries(r.typ, p.Doc)})
		}); err != nil {
			t.Fatalf("%s %s: %v", r.typ, r.id, err)
		}
	}
	return s
}

// runPage is one query's page (as ids) and totalResults, and the page itself.
func runPage(t *testing.T, s *store.Store, typ string, p Params) (ids []string, total int, page []any) {
	t.Helper()
	q, err := Parse(typ, p, 100)
	if err != nil {
		t.Fatalf("Parse(%q, %+v): %v", typ, p, err)
	}
	if err := s.View(func(tx *store.Tx) error {
		page, total, err = q.Run(tx, storedRenderer{})
		return err
	}); err != nil {
		t.Fatalf("Run(%q, %+v): %v", typ, p, err)
	}
	for _, r := range page {
		ids = append(ids, r.(map[string]any)["id"].(string))
	}
	return ids, total, page
}

// TestEmptyValuesScan: the store indexes no empty externalId nor emails.value, so an
// equality with "" on them scans and finds the resources that hold it (a lookup found
// none), alone or as a branch of an or.
func TestEmptyValuesScan(t *testing.T) {
	s := mixedDirectory(t)
	for _, c := range []struct {
		typ, filter string
		want        []string
	}{
		{scim.UserType, `externalId eq ""`, []string{"a-3"}},
		{scim.UserType, `externalId eq "" and active eq true`, []string{"a-3"}},
		{scim.UserType, `emails.value eq ""`, []string{"u-1"}},
		{scim.UserType, `emails[value eq ""]`, []string{"u-1"}},
		{scim.UserType, `emails.value eq "" or externalId eq "abc"`, []string{"u-1", "u-7"}},
	} {
		if ids, total, _ := runPage(t, s, c.typ, Params{Filter: c.filter}); !slices.Equal(ids, c.want) || total != len(c.want) {
			t.Errorf("%s %q: %v (total %d), want %v", c.typ, c.filter, ids, total, c.want)
		}
	}
}

func mustParseFilter(t *testing.T, text string) scim.Filter {
	t.Helper()
	f, err := scim.ParseFilter(text)
	if err != nil {
		t.Fatalf("%q: %v", text, err)
	}
	return f
}
