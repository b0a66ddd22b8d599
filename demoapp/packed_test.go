package demoapp

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestPackKeepsEveryField: an account packed and unpacked is the account, with and without
// a manager, with empty fields, and with every field at its longest.
func TestPackKeepsEveryField(t *testing.T) {
	mgr := int64(7)
	long := strings.Repeat("é", maxFieldLen/2) // 256 bytes
	for _, a := range []Account{
		{ID: 1, Login: "a", CreatedAt: "2026-12-03T10:00:00.000Z", UpdatedAt: "2026-12-03T10:00:00.000Z"},
		{ID: 2, Login: "bob", Person: Person{First: "Bob", Last: "Builder", Display: "Bob B."},
			Contact: Contact{Mail: "bob@example.test", Phone: "+1 555"}, Org: Org{Dept: "R&D", Title: "Eng", EmployeeNo: "42", ManagerID: &mgr},
			Locked: true, CreatedAt: "c", UpdatedAt: "u"},
		{ID: 3, Login: long, Person: Person{First: long, Last: long, Display: long}, Contact: Contact{Mail: long, Phone: long},
			Org: Org{Dept: long, Title: long, EmployeeNo: long}, CreatedAt: long, UpdatedAt: long},
	} {
		p := pack(&a)
		if got := p.account(a.ID); !reflect.DeepEqual(got, a) {
			t.Errorf("account %d: packed and unpacked\n got %+v\nwant %+v", a.ID, got, a)
		}
		if a.Org.ManagerID != nil {
			got := p.account(a.ID)
			*got.Org.ManagerID = 99 // a copy's manager is its own
			if again := p.account(a.ID); *again.Org.ManagerID != *a.Org.ManagerID {
				t.Errorf("changing an unpacked account's manager changed the state's: %d", *again.Org.ManagerID)
			}
		}
	}
}

// TestStateAccountsSurviveChanges: the state's operations on packed accounts (update,
// lock, a manager's delete) keep every other field as it was.
func TestStateAccountsSurviveChanges(t *testing.T) {
	s := newState(func() time.Time { return time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC) })
	lim := limits{accounts: 10, teams: 10, memberships: 10}
	boss, err := s.createAccount(accountCreate{accountFields: accountFields{Login: "Boss", Person: Person{First: "B"}}}, lim)
	if err != nil {
		t.Fatal(err)
	}
	in := accountCreate{accountFields: accountFields{Login: "Ann", Person: Person{First: "Ann", Last: "Lee"},
		Contact: Contact{Mail: "ann@example.test"}, Org: Org{Dept: "Ops", ManagerID: &boss.ID}}}
	ann, err := s.createAccount(in, lim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.setLocked(ann.ID, true); err != nil {
		t.Fatal(err)
	}
	upd, err := s.updateAccount(ann.ID, func(f accountFields) (accountFields, *apiError) {
		f.Org.Title = "Lead"
		return f, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !upd.Locked || upd.Person.Last != "Lee" || upd.Contact.Mail != "ann@example.test" || upd.Org.Title != "Lead" || *upd.Org.ManagerID != boss.ID {
		t.Fatalf("after lock and update: %+v", upd)
	}
	if err := s.deleteAccount(boss.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.getAccount(ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := upd
	want.Org.ManagerID = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the manager's delete\n got %+v\nwant %+v", got, want)
	}
	if page, _ := s.listAccounts("ann", 0, 10); len(page) != 1 || page[0].Org.Title != "Lead" {
		t.Fatalf("listing by login: %+v", page)
	}
}

// BenchmarkStateCollection measures what 100,000 accounts cost the garbage collector in
// the process that holds them: the heap objects per account and the time of one full
// collection (runtime.GC), the state alone in the heap.
func BenchmarkStateCollection(b *testing.B) {
	const n = 100_000
	s := newState(time.Now)
	lim := limits{accounts: n, teams: 1, memberships: 1}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		mgr := int64(i/10 + 1)
		in := accountCreate{accountFields: accountFields{Login: fmt.Sprintf("user%06d@example.test", i),
			Person:  Person{First: fmt.Sprintf("First%d", i), Last: fmt.Sprintf("Last%d", i), Display: fmt.Sprintf("User %d", i)},
			Contact: Contact{Mail: fmt.Sprintf("user%06d@mail.example.test", i)},
			Org:     Org{Dept: "Research", Title: "Engineer", EmployeeNo: fmt.Sprint(i)}}}
		if i > 0 {
			in.Org.ManagerID = &mgr
		}
		if _, err := s.createAccount(in, lim); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/n, "objects/account")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/account")
	runtime.KeepAlive(s)
}
