package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// docRenderer renders a record as its stored document with its id, and counts what it
// rendered: a query that uses an index renders only the candidates.
type docRenderer struct {
	rendered  *int
	computed  *[]Computed
	failOnAdd bool
}

func (r docRenderer) Render(_ *store.Tx, rec *store.Record, c Computed) (scim.Resource, error) {
	*r.rendered++
	var doc map[string]any
	if err := json.Unmarshal(rec.Doc, &doc); err != nil {
		return nil, err
	}
	doc["id"] = rec.ID
	return doc, r.AddComputed(nil, rec, doc, c)
}

func (r docRenderer) AddComputed(_ *store.Tx, rec *store.Record, res scim.Resource, c Computed) error {
	if r.failOnAdd {
		return errors.New("boom")
	}
	*r.computed = append(*r.computed, c)
	if c.Members && rec.Type == scim.GroupType {
		res["members"] = []any{map[string]any{"value": "u1"}}
	}
	return nil
}

func directory(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "dir.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Update(func(tx *store.Tx) error {
		for i := 1; i <= 5; i++ {
			name := fmt.Sprintf("user%d@contoso.example", i)
			if err := tx.Put(&store.Record{Type: scim.UserType, ID: fmt.Sprintf("u%d", i),
				Doc:   []byte(fmt.Sprintf(`{"userName":%q,"active":%v}`, name, i%2 == 1)),
				Index: []store.IndexEntry{{Attr: "userName", Value: name, Unique: true}}}); err != nil {
				return err
			}
		}
		return tx.Put(&store.Record{Type: scim.GroupType, ID: "g1", Doc: []byte(`{"displayName":"Sales"}`),
			Index: []store.IndexEntry{{Attr: "displayName", Value: "Sales"}}})
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

func run(t *testing.T, s *store.Store, typ string, p Params) (ids []string, total, rendered int, computed []Computed) {
	t.Helper()
	q, err := Parse(typ, p, 100)
	if err != nil {
		t.Fatalf("Parse(%+v): %v", p, err)
	}
	var page []any
	if err := s.View(func(tx *store.Tx) error {
		page, total, err = q.Run(tx, docRenderer{rendered: &rendered, computed: &computed})
		return err
	}); err != nil {
		t.Fatalf("Run(%+v): %v", p, err)
	}
	for _, r := range page {
		ids = append(ids, r.(map[string]any)["id"].(string))
	}
	return ids, total, rendered, computed
}

// TestRunPicksCandidates: an equality on an indexed attribute or the id renders only the
// candidates, in any letter case and with the type's own URN; anything else scans the type,
// and the matching decides.
func TestRunPicksCandidates(t *testing.T) {
	s := directory(t)
	for _, c := range []struct {
		typ, filter string
		want        []string
		rendered    int
	}{
		{scim.UserType, `userName eq "USER3@contoso.example"`, []string{"u3"}, 1},
		{scim.UserType, `urn:ietf:params:scim:schemas:core:2.0:User:userName eq "user3@contoso.example"`, []string{"u3"}, 1},
		{scim.UserType, `id eq "u4"`, []string{"u4"}, 1},
		{scim.UserType, `id eq "u9"`, nil, 0},
		{scim.UserType, `id eq "a/b"`, nil, 0},
		{scim.UserType, `userName eq "user3@contoso.example" and active eq true`, []string{"u3"}, 1},
		{scim.UserType, `active eq true`, []string{"u1", "u3", "u5"}, 5},
		{scim.UserType, `userName eq "user1@contoso.example" or userName eq "user2@contoso.example"`, []string{"u1", "u2"}, 2},
		{scim.UserType, `userName eq "user2@contoso.example" or id eq "u1" or userName eq "USER2@contoso.example"`, []string{"u1", "u2"}, 2},
		{scim.UserType, `userName eq "user1@contoso.example" or userName eq "user2@contoso.example" and active eq true`, []string{"u1"}, 2},
		// Another type's URN is not this type's index: the filter matches nothing here.
		{scim.UserType, `urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "Sales"`, nil, 5},
		{scim.GroupType, `displayName eq "sales"`, []string{"g1"}, 1},
		{"", `displayName eq "Sales"`, []string{"g1"}, 6},
		{"", "", []string{"u1", "u2", "u3", "u4", "u5", "g1"}, 6},
		{scim.GroupType, " \t ", []string{"g1"}, 1}, // a blank filter= is no filter
	} {
		ids, total, rendered, _ := run(t, s, c.typ, Params{Filter: c.filter})
		if !slices.Equal(ids, c.want) || total != len(c.want) || rendered != c.rendered {
			t.Errorf("%s %q: %v (total %d), %d rendered; want %v, %d rendered", c.typ, c.filter, ids, total, rendered, c.want, c.rendered)
		}
	}
}

// TestRunPages: startIndex and count cut the page out of every match, across types at the
// root; total counts them all, and a page past the end is empty.
func TestRunPages(t *testing.T) {
	s := directory(t)
	for _, c := range []struct {
		p    Params
		want []string
	}{
		{Params{StartIndex: "2", Count: "2"}, []string{"u2", "u3"}},
		{Params{StartIndex: "5", Count: "2"}, []string{"u5", "g1"}},
		{Params{StartIndex: "0", Count: "1"}, []string{"u1"}},
		{Params{StartIndex: "7"}, nil},
		{Params{Count: "0"}, nil},
		{Params{Count: "-3"}, nil},
		{Params{StartIndex: "99999999999999999999999", Count: "99999999999999999999999"}, nil},
	} {
		ids, total, rendered, _ := run(t, s, "", c.p)
		if !slices.Equal(ids, c.want) || total != 6 {
			t.Errorf("%+v: %v of %d, want %v of 6", c.p, ids, total, c.want)
		}
		// Without a filter only the page is rendered: the others are counted, not decoded.
		if rendered != len(c.want) {
			t.Errorf("%+v: %d rendered for a page of %d", c.p, rendered, len(c.want))
		}
	}
	q, err := Parse("", Params{Count: "1000"}, 3)
	if err != nil || q.Count != 3 {
		t.Fatalf("a count above max_results: %v, %v; want it capped to 3", q, err)
	}
}

// TestRunComputesOnlyWhatIsNeeded: members are rendered for matching only when the filter
// names them, and for the page only when the projection wants them and matching did not
// render them already.
func TestRunComputesOnlyWhatIsNeeded(t *testing.T) {
	s := directory(t)
	_, _, _, computed := run(t, s, scim.GroupType, Params{Filter: `members[value eq "u1"]`, Attributes: "members"})
	if want := []Computed{{Members: true}, {}}; !slices.Equal(computed, want) {
		t.Errorf("a filter on members: %v, want %v (render for matching, nothing more for the page)", computed, want)
	}
	_, _, _, computed = run(t, s, scim.GroupType, Params{Attributes: "displayName"})
	if want := []Computed{{}, {}}; !slices.Equal(computed, want) {
		t.Errorf("a projection without members: %v, want %v", computed, want)
	}
	_, _, _, computed = run(t, s, scim.GroupType, Params{ExcludedAttributes: "externalId"})
	if want := []Computed{{}, {Members: true, Groups: true}}; !slices.Equal(computed, want) {
		t.Errorf("the default projection: %v, want %v", computed, want)
	}
	var rendered int
	var c []Computed
	q, _ := Parse(scim.GroupType, Params{}, 10)
	if err := s.View(func(tx *store.Tx) error {
		_, _, err := q.Run(tx, docRenderer{rendered: &rendered, computed: &c, failOnAdd: true})
		return err
	}); err == nil || err.Error() != "boom" {
		t.Errorf("a renderer's error: %v, want it returned", err)
	}
}

// TestParseRefuses: bad paging, projection and filters are SCIM errors with their scimType,
// before any read.
func TestParseRefuses(t *testing.T) {
	for _, c := range []struct {
		typ      string
		p        Params
		scimType string
	}{
		{scim.UserType, Params{StartIndex: "one"}, scim.TypeInvalidValue},
		{scim.UserType, Params{Count: "1.5"}, scim.TypeInvalidValue},
		{scim.UserType, Params{Filter: `userName eq`}, scim.TypeInvalidFilter},
		{scim.UserType, Params{Filter: `active gt true`}, scim.TypeInvalidFilter},
		{"", Params{Filter: `active gt true`}, scim.TypeInvalidFilter},
	} {
		_, err := Parse(c.typ, c.p, 100)
		var se *scim.Error
		if !errors.As(err, &se) || se.ScimType != c.scimType || se.Detail == "" {
			t.Errorf("%s %+v: %v, want a SCIM error %s with a detail", c.typ, c.p, err, c.scimType)
		}
	}
}

// TestParamsFromBody: a .search body's strings, numbers and lists of strings; anything
// else is invalidValue naming the parameter.
func TestParamsFromBody(t *testing.T) {
	var body map[string]any
	d := json.NewDecoder(bytesReader(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"userName sw \"a\"","startIndex":3,"count":"2","attributes":["userName","emails"],"excludedAttributes":"groups"}`))
	d.UseNumber()
	if err := d.Decode(&body); err != nil {
		t.Fatal(err)
	}
	p, err := ParamsFromBody(body)
	if want := (Params{Filter: `userName sw "a"`, StartIndex: "3", Count: "2", Attributes: "userName,emails", ExcludedAttributes: "groups"}); err != nil || p != want {
		t.Fatalf("ParamsFromBody: %+v, %v; want %+v", p, err, want)
	}
	for _, bad := range []map[string]any{{"attributes": []any{"a", 1.0}}, {"count": true}, {"filter": map[string]any{}}} {
		var se *scim.Error
		if _, err := ParamsFromBody(bad); !errors.As(err, &se) || se.ScimType != scim.TypeInvalidValue {
			t.Errorf("%v: %v, want invalidValue", bad, err)
		}
	}
}

func bytesReader(s string) *strings.Reader { return strings.NewReader(s) }

// TestRunBoundsMembers: a page holds at most MaxComputed members and groups in all, counted
// in the store before any is rendered; past it the query is 400 tooMany saying what to ask
// instead (excludedAttributes, a smaller count), and a filter naming members is not
// evaluated against a group holding more.
func TestRunBoundsMembers(t *testing.T) {
	s := directory(t)
	if err := s.Update(func(tx *store.Tx) error {
		for _, g := range []string{"g2", "g3"} {
			if err := tx.Put(&store.Record{Type: scim.GroupType, ID: g, Doc: []byte(`{"displayName":"` + g + `"}`)}); err != nil {
				return err
			}
			for _, u := range []string{"u1", "u2"} { // g1 has none
				if _, err := tx.AddMember(g, store.Member{ID: u, Type: scim.UserType}); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		typ    string
		max    int
		p      Params
		want   []string // nil with detail set: refused
		detail string
	}{
		{scim.GroupType, 4, Params{}, []string{"g1", "g2", "g3"}, ""},
		{scim.GroupType, 3, Params{}, nil, "from startIndex 1 on hold more than 3 members in all, the most one answer holds; ask with excludedAttributes=members (as Entra does), or with count=2"},
		{scim.GroupType, 3, Params{StartIndex: "2", Count: "1"}, []string{"g2"}, ""},
		{scim.GroupType, 3, Params{ExcludedAttributes: "members"}, []string{"g1", "g2", "g3"}, ""},
		{scim.GroupType, 3, Params{Attributes: "displayName"}, []string{"g1", "g2", "g3"}, ""},
		{scim.GroupType, 1, Params{StartIndex: "2"}, nil, "Group g2 has more than 1 members, the most one answer holds; ask with excludedAttributes=members"},
		{scim.GroupType, 1, Params{Filter: `id eq "g2" and members[value eq "u1"]`, ExcludedAttributes: "members"}, nil, "the filter names members, and Group g2 has more than 1 of them"},
		{scim.GroupType, 2, Params{Filter: `id eq "g2" and members[value eq "u1"]`, ExcludedAttributes: "members"}, []string{"g2"}, ""},
		{scim.UserType, 1, Params{Filter: `userName eq "user1@contoso.example"`}, nil, "User u1 has more than 1 groups, the most one answer holds; ask with excludedAttributes=groups"},
		{scim.UserType, 1, Params{Filter: `userName eq "user1@contoso.example"`, Attributes: "userName"}, []string{"u1"}, ""},
		{"", 4, Params{Attributes: "id"}, []string{"u1", "u2", "u3", "u4", "u5", "g1", "g2", "g3"}, ""},
		{"", 7, Params{}, nil, "or with count=7"}, // u1, u2: 2 groups each; g2, g3: 2 members each
		{"", 8, Params{}, []string{"u1", "u2", "u3", "u4", "u5", "g1", "g2", "g3"}, ""},
	} {
		q, err := Parse(c.typ, c.p, 100)
		if err != nil {
			t.Fatal(err)
		}
		q.MaxComputed = c.max
		var rendered int
		var computed []Computed
		var page []any
		err = s.View(func(tx *store.Tx) error {
			page, _, err = q.Run(tx, docRenderer{rendered: &rendered, computed: &computed})
			return err
		})
		var ids []string
		for _, r := range page {
			ids = append(ids, r.(map[string]any)["id"].(string))
		}
		var se *scim.Error
		switch {
		case c.detail == "" && (err != nil || !slices.Equal(ids, c.want)):
			t.Errorf("%s max %d %+v: %v, %v; want %v", c.typ, c.max, c.p, ids, err, c.want)
		case c.detail != "" && (!errors.As(err, &se) || se.Status != 400 || se.ScimType != scim.TypeTooMany || !strings.Contains(se.Detail, c.detail)):
			t.Errorf("%s max %d %+v: %v, %v; want 400 tooMany saying %q", c.typ, c.max, c.p, ids, err, c.detail)
		}
	}
}
