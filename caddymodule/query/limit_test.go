package query

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// TestNeedsScanAgreesWithRun: over a table of filters on each type, NeedsScan (decided from
// the filter alone, before a transaction opens) says the same as candidates, and as what Run
// does: a scan renders every resource of the type to match it (count=0: none is rendered for
// the page), an index or id lookup only its candidates.
func TestNeedsScanAgreesWithRun(t *testing.T) {
	s := directory(t) // 5 users (userName indexed)
	if err := s.Update(func(tx *store.Tx) error {
		for i := 2; i <= 5; i++ {
			name := fmt.Sprintf("Group %d", i)
			if err := tx.Put(&store.Record{Type: scim.GroupType, ID: fmt.Sprintf("g%d", i), Doc: []byte(fmt.Sprintf(`{"displayName":%q}`, name)),
				Index: []store.IndexEntry{{Attr: "displayName", Value: name}}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	all := map[string]int{scim.UserType: 5, scim.GroupType: 5}
	for _, c := range []struct {
		filter      string
		users, grps bool // a full scan of Users, of Groups
	}{
		{"", false, false},
		{`userName eq "user3@contoso.example"`, false, true},
		{`USERNAME eq "User3@Contoso.Example"`, false, true},
		{`id eq "u1"`, false, false},
		{`id eq "a/b"`, false, false},
		{`externalId eq "e1"`, false, false},
		{`externalId eq ""`, true, true}, // no empty value is indexed
		{`emails.value eq ""`, true, true},
		{`userName eq ""`, false, true},
		{`emails.value eq "a@contoso.example"`, false, true},
		{`emails[value eq "a@contoso.example"]`, false, true},
		{`emails[type eq "work" and value eq "a@contoso.example"]`, false, true},
		{`displayName eq "Sales"`, true, false},
		{`active eq true and userName eq "user1@contoso.example"`, false, true},
		{`userName co "user"`, true, true},
		{`userName sw "user"`, true, true},
		{`userName pr`, true, true},
		{`externalId pr`, true, true},
		{`title eq "x"`, true, true},
		{`active eq true`, true, true},
		{`not (userName eq "user1@contoso.example")`, true, true},
		// An or whose every branch an index serves is the union of the lookups; Groups
		// have no userName index (and may hold an attribute of that name), so they scan.
		{`userName eq "user1@contoso.example" or userName eq "user2@contoso.example"`, false, true},
		{`externalId eq "e1" or userName eq "user2@contoso.example"`, false, true},
		{`id eq "u1" or id eq "u2"`, false, false},
		{`id eq "u1" or id eq "a/b"`, false, false},
		{`externalId eq "e1" or externalId eq "e2"`, false, false},
		{`externalId eq "e1" or displayName eq "Sales"`, true, false},
		{`(userName eq "user1@contoso.example" and active eq true) or (emails.value eq "a@contoso.example" and title pr)`, false, true},
		{`emails[value eq "a@contoso.example" or value eq "b@contoso.example"]`, false, true},
		{`emails[type eq "work" and (value eq "a@contoso.example" or value eq "b@contoso.example")]`, false, true},
		{`active eq true and (userName eq "user1@contoso.example" or id eq "u2")`, false, true},
		{`userName eq "user1@contoso.example" or active eq true`, true, true},
		{`userName eq "user1@contoso.example" or not (id eq "u1")`, true, true},
		{`userName eq "user1@contoso.example" or userName ne "x"`, true, true},
		{`emails.value eq "" or userName eq "user1@contoso.example"`, true, true},
		{orOf(MaxIndexedLookups, `userName eq "nobody%d@contoso.example"`), false, true},
		{orOf(MaxIndexedLookups+1, `userName eq "nobody%d@contoso.example"`), true, true},
		{`urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "Sales"`, true, false},
		{`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "user1@contoso.example"`, false, true},
	} {
		for typ, want := range map[string]bool{scim.UserType: c.users, scim.GroupType: c.grps} {
			q, err := Parse(typ, Params{Filter: c.filter, Count: "0"}, 100)
			if err != nil {
				t.Fatalf("%s %q: %v", typ, c.filter, err)
			}
			if got := NeedsScan(typ, q.Filter); got != want {
				t.Errorf("%s %q: NeedsScan = %v, want %v", typ, c.filter, got, want)
			}
			if q.Scans() != want {
				t.Errorf("%s %q: Scans = %v, want %v", typ, c.filter, q.Scans(), want)
			}
			rendered := 0
			var computed []Computed
			if err := s.View(func(tx *store.Tx) error {
				if q.Filter != nil {
					if _, scan, err := candidates(tx, typ, q.Filter); err != nil || scan != want {
						t.Errorf("%s %q: candidates scan = %v (%v), NeedsScan %v", typ, c.filter, scan, err, want)
					}
				}
				_, _, err := q.Run(tx, docRenderer{rendered: &rendered, computed: &computed})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if scanned := rendered == all[typ]; scanned != want {
				t.Errorf("%s %q: Run rendered %d of %d resources; NeedsScan %v", typ, c.filter, rendered, all[typ], want)
			}
		}
		// At the root a query scans when any of its types does.
		q, err := Parse("", Params{Filter: c.filter}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if q.Scans() != (c.users || c.grps) {
			t.Errorf("root %q: Scans = %v", c.filter, q.Scans())
		}
	}
}

// TestScanLimit: with its slots taken a scan waits, then is refused with ErrScansBusy (or
// the request's end); a freed slot admits again; a query that does not scan never waits; no
// limit admits everything.
func TestScanLimit(t *testing.T) {
	l := NewScanLimit(1, 10*time.Millisecond)
	ctx := context.Background()
	scan, err := Parse(scim.UserType, Params{Filter: `userName co "x"`}, 100)
	if err != nil {
		t.Fatal(err)
	}
	release, err := l.Admit(ctx, scan)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Admit(ctx, scan); !errors.Is(err, ErrScansBusy) {
		t.Fatalf("a second scan with the slot taken: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := NewScanLimit(1, time.Hour).acquireHeld(t).Acquire(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("a scan whose request ended: %v", err)
	}
	for _, f := range []string{"", `userName eq "x"`, `id eq "u1"`, `userName eq "x" or userName eq "y"`,
		`externalId eq "x" or userName eq "y"`, `id eq "1" or id eq "2"`} {
		q, err := Parse(scim.UserType, Params{Filter: f}, 100)
		if err != nil {
			t.Fatal(err)
		}
		r, err := l.Admit(ctx, q)
		if err != nil {
			t.Fatalf("%q waited for a scan slot: %v", f, err)
		}
		r()
	}
	release()
	again, err := l.Admit(ctx, scan)
	if err != nil {
		t.Fatalf("a scan after the slot freed: %v", err)
	}
	again()
	if NewScanLimit(0, time.Second) != nil || NewScanLimit(-1, time.Second) != nil {
		t.Fatal("a limit below 1 is not no limit")
	}
	var none *ScanLimit
	for range 3 {
		if _, err := none.Admit(ctx, scan); err != nil {
			t.Fatal(err)
		}
	}
}

// orOf is the or of n comparisons, format taking the branch's number.
func orOf(n int, format string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(format, i)
	}
	return strings.Join(parts, " or ")
}

// acquireHeld is l with its one slot taken until the test ends.
func (l *ScanLimit) acquireHeld(t *testing.T) *ScanLimit {
	release, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return l
}

// TestScansBusyNamesTheIndexes: the 503's detail names every attribute a filter can be
// served by, so that a client knows what to filter on instead.
func TestScansBusyNamesTheIndexes(t *testing.T) {
	names := []string{"id"}
	for _, byName := range indexable {
		for _, attr := range byName {
			names = append(names, attr)
		}
	}
	for _, n := range names {
		if !strings.Contains(ErrScansBusy.Detail, n) {
			t.Errorf("the detail %q does not name %s", ErrScansBusy.Detail, n)
		}
	}
}
