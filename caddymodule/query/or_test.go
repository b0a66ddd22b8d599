package query

import (
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestOrOfLookupsIsTheScan: an or whose every branch an index serves is answered from the
// union of the lookups, and answers exactly what a full scan of the same data answers
// (the same filter as not (not (...)), which no index serves): the same resources, in the
// same order (by id, as a scan reads them), the same totalResults, for every startIndex
// and count; each case also says what it finds. Letter case follows the schema (userName
// and emails in any case, externalId and id exactly); a resource two branches find is
// listed once; a branch that finds nothing, an id no resource can have and a resource
// without the attribute change nothing.
func TestOrOfLookupsIsTheScan(t *testing.T) {
	s := mixedDirectory(t)
	for _, c := range []struct {
		typ, filter string
		want        []string
	}{
		{scim.UserType, `userName eq "ALICE@contoso.example" or userName eq "bob@CONTOSO.example"`, []string{"U-2", "u-7"}},
		{scim.UserType, `userName eq "alice@contoso.example" or userName eq "Alice@Contoso.Example" or id eq "u-7"`, []string{"u-7"}},
		{scim.UserType, `externalId eq "abc" or externalId eq "nope"`, []string{"u-7"}},
		{scim.UserType, `externalId eq "ABC" or externalId eq "Abc"`, []string{"U-2"}},
		{scim.UserType, `externalId eq "x1" or userName eq "carol@contoso.example"`, []string{"u-1", "u-10", "u-5"}},
		{scim.UserType, `id eq "u-1" or id eq "G-1" or id eq "nope" or id eq "a/b"`, []string{"u-1"}},
		{scim.GroupType, `id eq "u-1" or id eq "G-1" or id eq "nope" or id eq "a/b"`, []string{"G-1"}},
		{"", `id eq "u-1" or id eq "G-1" or id eq "nope"`, []string{"u-1", "G-1"}},
		{scim.UserType, `emails.value eq "shared@contoso.example" or emails.value eq "DAVE@contoso.example"`, []string{"U-2", "u-1", "u-7"}},
		{scim.UserType, `emails[value eq "shared@contoso.example" or value eq "erin@contoso.example"]`, []string{"U-2", "a-3", "u-7"}},
		{scim.UserType, `emails[type eq "work" and (value eq "shared@contoso.example" or value eq "alice@contoso.example")]`, []string{"U-2"}},
		{scim.UserType, `(userName eq "alice@contoso.example" and active eq true) or (emails.value eq "shared@contoso.example" and title pr)`, []string{"u-7"}},
		{scim.UserType, `active eq true and (userName eq "carol@contoso.example" or userName eq "erin@contoso.example" or userName eq "bob@contoso.example")`, []string{"a-3", "u-10"}},
		{scim.UserType, `userName eq "erin@contoso.example" or userName eq "fay@contoso.example" and title eq "Eng" or userName eq "dave@contoso.example" and title eq "Eng"`, []string{"a-3", "u-5"}},
		{scim.UserType, `userName eq "SAM@contoso.example" or userName eq "nobody@contoso.example"`, []string{"z"}},
		{scim.UserType, `userName eq "nobody@contoso.example" or externalId eq "none"`, nil},
		{scim.UserType, `urn:ietf:params:scim:schemas:core:2.0:User:userName eq "hal@contoso.example" or externalId eq "x1"`, []string{"u-0", "u-1", "u-5"}},
		{scim.GroupType, `displayName eq "SALES" or displayName eq "Ops" or externalId eq "gx"`, []string{"G-1", "g-2"}},
		{"", `externalId eq "x1" or externalId eq "gx"`, []string{"u-1", "u-5", "G-1", "g-2"}},
		// At the root Groups scan for userName: a group holds one as written and matches.
		{"", `userName eq "alice@contoso.example" or userName eq "bob@contoso.example"`, []string{"U-2", "u-7", "g-9"}},
	} {
		q, err := Parse(c.typ, Params{Filter: c.filter}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if typ := q.Types[0]; NeedsScan(typ, q.Filter) {
			t.Errorf("%s %q: NeedsScan on %s, want an index plan", c.typ, c.filter, typ)
		}
		scan := "not (not (" + c.filter + "))"
		if sq, err := Parse(c.typ, Params{Filter: scan}, 100); err != nil || !sq.Scans() {
			t.Fatalf("%s %q: the reference does not scan (%v)", c.typ, scan, err)
		}
		if ids, total, _ := runPage(t, s, c.typ, Params{Filter: c.filter}); !slices.Equal(ids, c.want) || total != len(c.want) {
			t.Errorf("%s %q: %v (total %d), want %v", c.typ, c.filter, ids, total, c.want)
		}
		n := len(c.want)
		for _, pg := range [][2]string{{"", ""}, {"1", "0"}, {"1", "1"}, {"2", "1"}, {"2", "2"}, {"0", "2"}, {"-3", "100"},
			{strconv.Itoa(n), "5"}, {strconv.Itoa(n + 1), "5"}} {
			p := Params{Filter: c.filter, StartIndex: pg[0], Count: pg[1], Attributes: "userName,displayName"}
			ids, total, page := runPage(t, s, c.typ, p)
			p.Filter = scan
			sids, stotal, spage := runPage(t, s, c.typ, p)
			if !slices.Equal(ids, sids) || total != stotal || !reflect.DeepEqual(page, spage) {
				t.Errorf("%s %q startIndex=%s count=%s: indexed %v (total %d), scan %v (total %d)",
					c.typ, c.filter, pg[0], pg[1], ids, total, sids, stotal)
			}
		}
	}
}

// TestOrLookupsBounded: an or of MaxIndexedLookups indexed branches is served by lookups;
// one more branch scans (and so takes a max_scans slot) and answers the same.
func TestOrLookupsBounded(t *testing.T) {
	s := mixedDirectory(t)
	for _, n := range []int{MaxIndexedLookups, MaxIndexedLookups + 1} {
		f := orOf(n-2, `userName eq "nobody%d@contoso.example"`) + ` or userName eq "bob@contoso.example" or externalId eq "x1"`
		if got, want := NeedsScan(scim.UserType, mustParseFilter(t, f)), n > MaxIndexedLookups; got != want {
			t.Errorf("%d branches: NeedsScan %v, want %v", n, got, want)
		}
		if ids, total, _ := runPage(t, s, scim.UserType, Params{Filter: f}); !slices.Equal(ids, []string{"U-2", "u-1", "u-5"}) || total != 3 {
			t.Errorf("%d branches: %v (total %d)", n, ids, total)
		}
	}
}
