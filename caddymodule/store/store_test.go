package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"
	berrors "go.etcd.io/bbolt/errors"
)

// openTest opens a store in a fresh directory with a short batch delay, so sequential test
// writes do not each wait bbolt's default 10ms.
func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "sub", "dir.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func user(id, userName string, extra ...IndexEntry) *Record {
	return &Record{
		Type: "User",
		ID:   id,
		Doc:  []byte(fmt.Sprintf(`{"userName":%q}`, userName)),
		Index: append([]IndexEntry{
			{Attr: "userName", Value: userName, Unique: true},
		}, extra...),
	}
}

func mustUpdate(t testing.TB, s *Store, fn func(*Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func put(t testing.TB, s *Store, recs ...*Record) {
	t.Helper()
	mustUpdate(t, s, func(tx *Tx) error {
		for _, r := range recs {
			if err := tx.Put(r); err != nil {
				return err
			}
		}
		return nil
	})
}

func get(t testing.TB, s *Store, typ, id string) (*Record, error) {
	t.Helper()
	var rec *Record
	err := s.View(func(tx *Tx) error {
		var err error
		rec, err = tx.Get(typ, id)
		return err
	})
	return rec, err
}

func lookup(t testing.TB, s *Store, typ, attr, value string) []string {
	t.Helper()
	var ids []string
	err := s.View(func(tx *Tx) error {
		var err error
		ids, err = tx.Lookup(typ, attr, value)
		return err
	})
	if err != nil {
		t.Fatalf("Lookup(%s, %s, %q): %v", typ, attr, value, err)
	}
	return ids
}

func count(t testing.TB, s *Store, typ string) int {
	t.Helper()
	var n int
	if err := s.View(func(tx *Tx) error {
		var err error
		n, err = tx.Count(typ)
		return err
	}); err != nil {
		t.Fatalf("Count(%s): %v", typ, err)
	}
	return n
}

func TestCRUD(t *testing.T) {
	s := openTest(t)
	created := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	rec := user("u1", "alice@example.com")
	rec.Created, rec.LastModified = created, created
	put(t, s, rec)
	if rec.Version != 1 {
		t.Errorf("Version after insert = %d, want 1", rec.Version)
	}

	got, err := get(t, s, "User", "u1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	want := &Record{
		Type: "User", ID: "u1", Created: created, LastModified: created, Version: 1,
		Doc:   []byte(`{"userName":"alice@example.com"}`),
		Index: []IndexEntry{{Attr: "userName", Value: "alice@example.com", Unique: true}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Get = %+v\nwant %+v", got, want)
	}

	// Mutating what Get returned, or the slice given to Put, must not reach the store.
	got.Doc[0] = 'X'
	rec.Doc[0] = 'Y'
	again, err := get(t, s, "User", "u1")
	if err != nil || !bytes.Equal(again.Doc, want.Doc) {
		t.Errorf("Doc after caller mutation = %q, %v; want %q", again.Doc, err, want.Doc)
	}

	mustUpdate(t, s, func(tx *Tx) error { return tx.Delete("User", "u1") })
	if _, err := get(t, s, "User", "u1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	err = s.Update(func(tx *Tx) error { return tx.Delete("User", "u1") })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: err = %v, want ErrNotFound", err)
	}
	if _, err := get(t, s, "NeverWritten", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of unknown type: err = %v, want ErrNotFound", err)
	}
}

func TestVersionAndTimestamps(t *testing.T) {
	s := openTest(t)
	t0 := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	t2 := t0.Add(2 * time.Hour)

	tests := []struct {
		name                 string
		created, modified    time.Time
		wantVersion          uint64
		wantCreated, wantMod time.Time
		modNowish            bool
	}{
		{name: "insert", created: t0, modified: t0, wantVersion: 1, wantCreated: t0, wantMod: t0},
		{name: "replace keeps Created when zero", modified: t1, wantVersion: 2, wantCreated: t0, wantMod: t1},
		{name: "replace with explicit Created", created: t1, modified: t2, wantVersion: 3, wantCreated: t1, wantMod: t2},
		{name: "zero LastModified becomes now", wantVersion: 4, wantCreated: t1, modNowish: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().UTC()
			rec := user("u1", "alice")
			rec.Created, rec.LastModified = tt.created, tt.modified
			put(t, s, rec)
			got, err := get(t, s, "User", "u1")
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != tt.wantVersion || rec.Version != tt.wantVersion {
				t.Errorf("Version stored %d, set %d; want %d", got.Version, rec.Version, tt.wantVersion)
			}
			if !got.Created.Equal(tt.wantCreated) || !rec.Created.Equal(tt.wantCreated) {
				t.Errorf("Created stored %v, set %v; want %v", got.Created, rec.Created, tt.wantCreated)
			}
			if tt.modNowish {
				if got.LastModified.Before(before) || got.LastModified.After(time.Now()) {
					t.Errorf("LastModified = %v, want about now (%v)", got.LastModified, before)
				}
			} else if !got.LastModified.Equal(tt.wantMod) {
				t.Errorf("LastModified = %v, want %v", got.LastModified, tt.wantMod)
			}
		})
	}

	t.Run("zero Created on insert becomes now", func(t *testing.T) {
		before := time.Now().UTC()
		rec := user("u2", "bob")
		put(t, s, rec)
		if rec.Created.Before(before) || rec.Created.After(time.Now()) {
			t.Errorf("Created = %v, want about %v", rec.Created, before)
		}
	})
}

func TestIndexReplacedOnUpdate(t *testing.T) {
	s := openTest(t)
	put(t, s, user("u1", "old@example.com", IndexEntry{Attr: "emails.value", Value: "a@example.com"}))
	put(t, s, user("u1", "new@example.com", IndexEntry{Attr: "emails.value", Value: "b@example.com"}))

	tests := []struct {
		attr, value string
		want        []string
	}{
		{"userName", "old@example.com", nil},
		{"userName", "new@example.com", []string{"u1"}},
		{"emails.value", "a@example.com", nil},
		{"emails.value", "b@example.com", []string{"u1"}},
	}
	for _, tt := range tests {
		if got := lookup(t, s, "User", tt.attr, tt.value); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%s, %q) = %v, want %v", tt.attr, tt.value, got, tt.want)
		}
	}
	// The old value is free again for another id.
	put(t, s, user("u2", "OLD@example.com"))
}

func TestLookup(t *testing.T) {
	s := openTest(t)
	put(t, s,
		user("u1", "Alice@Example.COM", IndexEntry{Attr: "displayName", Value: "Team"}),
		user("u3", "ÄRGER", IndexEntry{Attr: "displayName", Value: "team"}),
		user("u2", "nul\x00byte", IndexEntry{Attr: "displayName", Value: "TEAM"}),
		user("u4", "nul", IndexEntry{Attr: "externalId", Value: "bad\xffutf8"}),
		user("u5", "x\x01y", IndexEntry{Attr: "externalId", Value: "bad\xfeutf8"}),
	)
	put(t, s, &Record{Type: "Group", ID: "g1", Index: []IndexEntry{{Attr: "displayName", Value: "team"}}})

	tests := []struct {
		name, typ, attr, value string
		want                   []string
	}{
		{"exact", "User", "userName", "Alice@Example.COM", []string{"u1"}},
		{"lower", "User", "userName", "alice@example.com", []string{"u1"}},
		{"upper", "User", "userName", "ALICE@EXAMPLE.COM", []string{"u1"}},
		{"unicode fold", "User", "userName", "ärger", []string{"u3"}},
		{"no prefix match", "User", "userName", "alice", nil},
		{"NUL in value", "User", "userName", "NUL\x00BYTE", []string{"u2"}},
		{"NUL value is not a prefix of its head", "User", "userName", "nul", []string{"u4"}},
		{"escape byte", "User", "userName", "X\x01Y", []string{"u5"}},
		{"non-unique sorted distinct", "User", "displayName", "tEaM", []string{"u1", "u2", "u3"}},
		{"per type", "Group", "displayName", "Team", []string{"g1"}},
		{"invalid UTF-8 kept apart", "User", "externalId", "bad\xffutf8", []string{"u4"}},
		{"other attribute", "User", "externalId", "Alice@Example.COM", nil},
		{"unknown type", "Nope", "userName", "alice@example.com", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lookup(t, s, tt.typ, tt.attr, tt.value); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Lookup = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUniqueness(t *testing.T) {
	s := openTest(t)
	put(t, s, user("u1", "alice", IndexEntry{Attr: "displayName", Value: "Same"}))
	put(t, s, user("u2", "bob", IndexEntry{Attr: "displayName", Value: "same"}))

	tests := []struct {
		name    string
		rec     *Record
		wantErr *UniqueError
	}{
		{"insert clash folds case", user("u3", "ALICE"),
			&UniqueError{Type: "User", Attr: "userName", Value: "ALICE", OwnerID: "u1"}},
		{"rename clash", user("u2", "Alice"),
			&UniqueError{Type: "User", Attr: "userName", Value: "Alice", OwnerID: "u1"}},
		{"same id re-puts its own value", user("u1", "alice"), nil},
		{"same id changes case", user("u1", "Alice"), nil},
		{"non-unique attribute may repeat", user("u4", "carol", IndexEntry{Attr: "displayName", Value: "SAME"}), nil},
		{"other type does not clash", &Record{Type: "Group", ID: "g1",
			Index: []IndexEntry{{Attr: "userName", Value: "alice", Unique: true}}}, nil},
		{"duplicate entries in one record", user("u5", "dave",
			IndexEntry{Attr: "userName", Value: "DAVE", Unique: true}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := get(t, s, tt.rec.Type, tt.rec.ID)
			beforeCount := count(t, s, tt.rec.Type)
			var putErr error
			err := s.Update(func(tx *Tx) error {
				putErr = tx.Put(tt.rec)
				return nil // commit whatever Put did, to prove a failed Put did nothing
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantErr == nil {
				if putErr != nil {
					t.Fatalf("Put: %v", putErr)
				}
				return
			}
			var ue *UniqueError
			if !errors.As(putErr, &ue) || *ue != *tt.wantErr {
				t.Fatalf("Put error = %v, want %v", putErr, tt.wantErr)
			}
			after, _ := get(t, s, tt.rec.Type, tt.rec.ID)
			if !reflect.DeepEqual(before, after) || count(t, s, tt.rec.Type) != beforeCount {
				t.Errorf("failed Put changed the store: %+v -> %+v", before, after)
			}
		})
	}
	if got := lookup(t, s, "User", "userName", "bob"); !reflect.DeepEqual(got, []string{"u2"}) {
		t.Errorf("u2 kept its name after a refused rename: Lookup = %v", got)
	}
}

func TestFailedInsertCreatesNoTypeBucket(t *testing.T) {
	s := openTest(t)
	err := s.Update(func(tx *Tx) error {
		if err := tx.Put(&Record{Type: "Fresh", ID: "x", Index: []IndexEntry{{Attr: "a\x00", Value: "v"}}}); err == nil {
			t.Error("Put with NUL attr succeeded")
		}
		if tx.KV().Bucket(bucketRecords).Bucket([]byte("Fresh")) != nil {
			t.Error("refused Put created a bucket")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestIDUniqueAcrossTypes(t *testing.T) {
	s := openTest(t)
	put(t, s, user("x1", "alice"))
	err := s.Update(func(tx *Tx) error { return tx.Put(&Record{Type: "Group", ID: "x1"}) })
	if !errors.Is(err, ErrIDInUse) {
		t.Fatalf("Put of a Group with a User's id: err = %v, want ErrIDInUse", err)
	}
	var typ string
	if err := s.View(func(tx *Tx) (err error) { typ, err = tx.TypeOf("x1"); return }); err != nil || typ != "User" {
		t.Errorf("TypeOf = %q, %v; want User", typ, err)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.Delete("User", "x1") })
	err = s.View(func(tx *Tx) error { _, err := tx.TypeOf("x1"); return err })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("TypeOf after delete: err = %v, want ErrNotFound", err)
	}
	// The id is free again, for any type.
	put(t, s, &Record{Type: "Group", ID: "x1"})
}

func TestMembers(t *testing.T) {
	s := openTest(t)
	mustUpdate(t, s, func(tx *Tx) error {
		for _, m := range []Member{{ID: "u2", Type: "User", Display: "Bob"}, {ID: "u1", Type: "User", Display: "Alice"}} {
			if added, err := tx.AddMember("g1", m); err != nil || !added {
				return fmt.Errorf("AddMember(%s) = %v, %v", m.ID, added, err)
			}
		}
		// Re-adding updates the display value and reports added=false.
		if added, err := tx.AddMember("g1", Member{ID: "u1", Type: "User", Display: "Alice A."}); err != nil || added {
			return fmt.Errorf("re-AddMember = %v, %v; want false, nil", added, err)
		}
		_, err := tx.AddMember("g2", Member{ID: "u1", Type: "User"})
		return err
	})

	var members []Member
	var groups []string
	err := s.View(func(tx *Tx) error {
		if err := tx.Members("g1", func(m Member) error { members = append(members, m); return nil }); err != nil {
			return err
		}
		return tx.GroupsOf("u1", func(g string) error { groups = append(groups, g); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	wantMembers := []Member{{ID: "u1", Type: "User", Display: "Alice A."}, {ID: "u2", Type: "User", Display: "Bob"}}
	if !reflect.DeepEqual(members, wantMembers) {
		t.Errorf("Members = %+v, want %+v", members, wantMembers)
	}
	if !reflect.DeepEqual(groups, []string{"g1", "g2"}) {
		t.Errorf("GroupsOf(u1) = %v, want [g1 g2]", groups)
	}
	// The counts stop at their bound; g1 is not counted among the members of a group
	// whose id it starts with ("g" holds none).
	err = s.View(func(tx *Tx) error {
		for _, c := range []struct {
			count      func(string, int) (int, error)
			id         string
			upTo, want int
		}{
			{tx.CountMembers, "g1", 10, 2}, {tx.CountMembers, "g1", 1, 1}, {tx.CountMembers, "g1", 0, 0},
			{tx.CountMembers, "g", 10, 0}, {tx.CountMembers, "g2", 10, 1},
			{tx.CountGroupsOf, "u1", 10, 2}, {tx.CountGroupsOf, "u1", 1, 1}, {tx.CountGroupsOf, "u2", 10, 1},
		} {
			if n, err := c.count(c.id, c.upTo); err != nil || n != c.want {
				t.Errorf("count of %s up to %d = %d, %v; want %d", c.id, c.upTo, n, err, c.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	mustUpdate(t, s, func(tx *Tx) error {
		if removed, err := tx.RemoveMember("g1", "u2"); err != nil || !removed {
			return fmt.Errorf("RemoveMember = %v, %v", removed, err)
		}
		if removed, err := tx.RemoveMember("g1", "u2"); err != nil || removed {
			return fmt.Errorf("second RemoveMember = %v, %v; want false", removed, err)
		}
		if has, err := tx.HasMember("g1", "u2"); err != nil || has {
			return fmt.Errorf("HasMember after removal = %v, %v", has, err)
		}
		if has, err := tx.HasMember("g1", "u1"); err != nil || !has {
			return fmt.Errorf("HasMember(g1, u1) = %v, %v", has, err)
		}
		n, err := tx.RemoveAllMembers("g1")
		if err != nil || n != 1 {
			return fmt.Errorf("RemoveAllMembers = %d, %v; want 1", n, err)
		}
		return nil
	})
	assertEdges(t, s, "g1", nil, nil)
	assertEdges(t, s, "u1", nil, []string{"g2"})
	assertEdges(t, s, "u2", nil, nil)
}

// assertEdges checks the members of id (as a group) and the groups id belongs to.
func assertEdges(t *testing.T, s *Store, id string, wantMembers, wantGroups []string) {
	t.Helper()
	var members, groups []string
	err := s.View(func(tx *Tx) error {
		if err := tx.Members(id, func(m Member) error { members = append(members, m.ID); return nil }); err != nil {
			return err
		}
		return tx.GroupsOf(id, func(g string) error { groups = append(groups, g); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(members, wantMembers) || !reflect.DeepEqual(groups, wantGroups) {
		t.Errorf("%s: members %v groups %v; want members %v groups %v", id, members, groups, wantMembers, wantGroups)
	}
}

// TestDeleteCleansEverything builds nested groups (outer ⊃ inner ⊃ users) and deletes records
// from the middle, checking that indexes and edges in both directions go, and only those.
func TestDeleteCleansEverything(t *testing.T) {
	s := openTest(t)
	group := func(id, name string) *Record {
		return &Record{Type: "Group", ID: id, Index: []IndexEntry{{Attr: "displayName", Value: name, Unique: true}}}
	}
	put(t, s, user("u1", "alice", IndexEntry{Attr: "externalId", Value: "E1", Unique: true}), user("u2", "bob"),
		group("outer", "Outer"), group("inner", "Inner"), group("other", "Other"))
	mustUpdate(t, s, func(tx *Tx) error {
		edges := []struct{ g, m, typ string }{
			{"outer", "inner", "Group"}, {"outer", "u1", "User"},
			{"inner", "u1", "User"}, {"inner", "u2", "User"}, {"other", "u2", "User"},
		}
		for _, e := range edges {
			if _, err := tx.AddMember(e.g, Member{ID: e.m, Type: e.typ}); err != nil {
				return err
			}
		}
		return nil
	})
	assertEdges(t, s, "inner", []string{"u1", "u2"}, []string{"outer"})

	mustUpdate(t, s, func(tx *Tx) error { return tx.Delete("User", "u1") })
	for _, q := range [][2]string{{"userName", "alice"}, {"externalId", "e1"}} {
		if got := lookup(t, s, "User", q[0], q[1]); got != nil {
			t.Errorf("Lookup(%s) after delete = %v", q[0], got)
		}
	}
	assertEdges(t, s, "u1", nil, nil)
	assertEdges(t, s, "outer", []string{"inner"}, nil)
	assertEdges(t, s, "inner", []string{"u2"}, []string{"outer"})

	mustUpdate(t, s, func(tx *Tx) error { return tx.Delete("Group", "inner") })
	assertEdges(t, s, "inner", nil, nil)
	assertEdges(t, s, "outer", nil, nil)
	assertEdges(t, s, "u2", nil, []string{"other"})
	if got := lookup(t, s, "Group", "displayName", "inner"); got != nil {
		t.Errorf("Lookup(inner) after delete = %v", got)
	}
	if n := count(t, s, "Group"); n != 2 {
		t.Errorf("Count(Group) = %d, want 2", n)
	}
}

func TestCounts(t *testing.T) {
	s := openTest(t)
	steps := []struct {
		name       string
		fn         func(*Tx) error
		users, grp int
	}{
		{"empty", func(*Tx) error { return nil }, 0, 0},
		{"insert two users", func(tx *Tx) error {
			if err := tx.Put(user("u1", "a")); err != nil {
				return err
			}
			return tx.Put(user("u2", "b"))
		}, 2, 0},
		{"replace does not count", func(tx *Tx) error { return tx.Put(user("u1", "a2")) }, 2, 0},
		{"insert group", func(tx *Tx) error { return tx.Put(&Record{Type: "Group", ID: "g1"}) }, 2, 1},
		{"delete user", func(tx *Tx) error { return tx.Delete("User", "u2") }, 1, 1},
	}
	for _, st := range steps {
		mustUpdate(t, s, st.fn)
		if u, g := count(t, s, "User"), count(t, s, "Group"); u != st.users || g != st.grp {
			t.Errorf("%s: counts User=%d Group=%d, want %d %d", st.name, u, g, st.users, st.grp)
		}
	}
}

// TestUpdateRerunIsIdempotent runs the same transaction function twice in one transaction,
// as bbolt's Batch may when a batched neighbour fails.
func TestUpdateRerunIsIdempotent(t *testing.T) {
	s := openTest(t)
	put(t, s, user("gone", "zed"))
	rec := user("u1", "alice")
	fn := func(tx *Tx) error {
		if err := tx.Put(rec); err != nil {
			return err
		}
		if _, err := tx.AddMember("g1", Member{ID: "u1", Type: "User"}); err != nil {
			return err
		}
		if err := tx.Delete("User", "gone"); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	}
	mustUpdate(t, s, func(tx *Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return fn(tx)
	})
	if n := count(t, s, "User"); n != 1 {
		t.Errorf("Count(User) = %d, want 1", n)
	}
	if got := lookup(t, s, "User", "userName", "alice"); !reflect.DeepEqual(got, []string{"u1"}) {
		t.Errorf("Lookup = %v", got)
	}
	assertEdges(t, s, "g1", []string{"u1"}, nil)
}

func TestConcurrentUpdates(t *testing.T) {
	s := openTest(t)
	const workers, perWorker = 32, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				id := fmt.Sprintf("u-%02d-%02d", w, i)
				err := s.Update(func(tx *Tx) error {
					if err := tx.Put(user(id, id)); err != nil {
						return err
					}
					_, err := tx.AddMember("all", Member{ID: id, Type: "User"})
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// Readers run alongside the writers.
	wg.Go(func() {
		for range 20 {
			if err := s.View(func(tx *Tx) error { _, err := tx.Count("User"); return err }); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := workers * perWorker
	if n := count(t, s, "User"); n != total {
		t.Errorf("Count = %d, want %d", n, total)
	}
	if c := s.Commits(); c == 0 || c > uint64(total) {
		t.Errorf("Commits = %d, want 1..%d", c, total)
	}
	t.Logf("%d updates in %d commits", total, s.Commits())
}

func TestCommitsCountsEachTransactionOnce(t *testing.T) {
	s := openTest(t)
	before := s.Commits()
	put(t, s, user("u1", "a"))
	if got := s.Commits() - before; got != 1 {
		t.Errorf("Commits after one Update = %d, want 1", got)
	}
	_ = s.Update(func(*Tx) error { return errors.New("fail") })
	if got := s.Commits() - before; got != 1 {
		t.Errorf("Commits after a failed Update = %d, want 1", got)
	}
}

func TestOpenTwiceFailsWithinTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	s2, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("second Open took %v", elapsed)
	}
	if !errors.Is(err, berrors.ErrTimeout) {
		t.Errorf("err = %v, want it to wrap bbolt/errors.ErrTimeout", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "another process holds") || !strings.Contains(msg, path) {
		t.Errorf("err = %q, want it to name the path and say another process holds it", msg)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, user("u1", "alice"))
	mustUpdate(t, s, func(tx *Tx) error { _, err := tx.AddMember("g1", Member{ID: "u1"}); return err })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rec, err := get(t, s, "User", "u1"); err != nil || rec.Version != 1 {
		t.Errorf("Get after reopen = %+v, %v", rec, err)
	}
	if got := lookup(t, s, "User", "userName", "ALICE"); !reflect.DeepEqual(got, []string{"u1"}) {
		t.Errorf("Lookup after reopen = %v", got)
	}
	if n := count(t, s, "User"); n != 1 {
		t.Errorf("Count after reopen = %d", n)
	}
	assertEdges(t, s, "u1", nil, []string{"g1"})
}

func TestOpenRejectsUnknownFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.DB().Update(func(tx kv.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, encodeUint64(formatVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a future format: no error")
	}
	// What an operator who rolled back reads: which format, that a newer binary wrote it,
	// and what to do (not the key's bytes in hex).
	for _, want := range []string{"unsupported store format 2", "newer than this binary's 1", "newer scimgate", "backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open of a future format: error %q does not say %q", err, want)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	s := openTest(t)
	long := strings.Repeat("x", kv.MaxKeySize)
	tests := []struct {
		name string
		fn   func(*Tx) error
	}{
		{"empty id", func(tx *Tx) error { return tx.Put(&Record{Type: "User"}) }},
		{"empty type", func(tx *Tx) error { return tx.Put(&Record{ID: "x"}) }},
		{"nil record", func(tx *Tx) error { return tx.Put(nil) }},
		{"NUL in id", func(tx *Tx) error { return tx.Put(&Record{Type: "User", ID: "a\x00b"}) }},
		{"NUL in type", func(tx *Tx) error { return tx.Put(&Record{Type: "U\x00", ID: "a"}) }},
		{"NUL in attr", func(tx *Tx) error { return tx.Put(user("a", "n", IndexEntry{Attr: "x\x00y"})) }},
		{"value too long to index", func(tx *Tx) error { return tx.Put(user("a", long)) }},
		{"id too long", func(tx *Tx) error { return tx.Put(user(long, "n")) }},
		{"NUL in lookup attr", func(tx *Tx) error { _, err := tx.Lookup("User", "a\x00", "v"); return err }},
		{"NUL in member id", func(tx *Tx) error { _, err := tx.AddMember("g", Member{ID: "m\x00"}); return err }},
		{"empty group id", func(tx *Tx) error { _, err := tx.RemoveMember("", "m"); return err }},
		{"NUL in Get id", func(tx *Tx) error { _, err := tx.Get("User", "\x00"); return err }},
		{"NUL in Delete type", func(tx *Tx) error { return tx.Delete("\x00", "x") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Update(tt.fn); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("err = %v, want ErrInvalidKey", err)
			}
		})
	}
	if n := count(t, s, "User"); n != 0 {
		t.Errorf("invalid input stored %d users", n)
	}
	// A lookup of a value too long to have been indexed finds nothing, without error.
	if got := lookup(t, s, "User", "userName", long); got != nil {
		t.Errorf("Lookup(long) = %v", got)
	}
}

func TestWritesRefusedInView(t *testing.T) {
	s := openTest(t)
	writes := map[string]func(*Tx) error{
		"Put":              func(tx *Tx) error { return tx.Put(user("u1", "a")) },
		"Delete":           func(tx *Tx) error { return tx.Delete("User", "u1") },
		"AddMember":        func(tx *Tx) error { _, err := tx.AddMember("g", Member{ID: "m"}); return err },
		"RemoveMember":     func(tx *Tx) error { _, err := tx.RemoveMember("g", "m"); return err },
		"RemoveAllMembers": func(tx *Tx) error { _, err := tx.RemoveAllMembers("g"); return err },
	}
	for name, fn := range writes {
		if err := s.View(fn); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s in View: err = %v, want ErrReadOnly", name, err)
		}
	}
}

func TestScan(t *testing.T) {
	s := openTest(t)
	put(t, s, user("c", "c"), user("a", "a"), user("b", "b"), &Record{Type: "Group", ID: "g"})
	scan := func(start string, limit int) []string {
		var ids []string
		err := s.View(func(tx *Tx) error {
			return tx.ScanFrom("User", start, func(r *Record) (bool, error) {
				ids = append(ids, r.ID)
				return len(ids) < limit, nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	tests := []struct {
		start string
		limit int
		want  []string
	}{
		{"", 10, []string{"a", "b", "c"}},
		{"", 2, []string{"a", "b"}},
		{"b", 10, []string{"b", "c"}},
		{"bb", 10, []string{"c"}},
		{"d", 10, nil},
	}
	for _, tt := range tests {
		if got := scan(tt.start, tt.limit); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ScanFrom(%q, limit %d) = %v, want %v", tt.start, tt.limit, got, tt.want)
		}
	}
	stop := errors.New("stop")
	err := s.View(func(tx *Tx) error {
		return tx.Scan("User", func(*Record) (bool, error) { return true, stop })
	})
	if !errors.Is(err, stop) {
		t.Errorf("Scan returned %v, want the callback's error", err)
	}
	err = s.View(func(tx *Tx) error {
		return tx.Scan("Unknown", func(*Record) (bool, error) { t.Error("called"); return true, nil })
	})
	if err != nil {
		t.Error(err)
	}
	// ScanIDs: the same order, the ids alone, stopping when asked.
	var ids []string
	err = s.View(func(tx *Tx) error {
		return tx.ScanIDs("User", func(id string) (bool, error) {
			ids = append(ids, id)
			return len(ids) < 2, nil
		})
	})
	if err != nil || !reflect.DeepEqual(ids, []string{"a", "b"}) {
		t.Errorf("ScanIDs stopped after 2: %v, %v; want [a b]", ids, err)
	}
	err = s.View(func(tx *Tx) error {
		return tx.ScanIDs("Unknown", func(string) (bool, error) { t.Error("called"); return true, nil })
	})
	if err != nil {
		t.Error(err)
	}
}

// FuzzDecodeRecord checks that no stored bytes make decoding panic, and that whatever encodes
// decodes back to itself.
func FuzzDecodeRecord(f *testing.F) {
	full := encodeRecord(&Record{
		Created: time.Unix(1, 2), LastModified: time.Unix(-5, 0), Version: 7,
		Doc:   []byte(`{"a":1}`),
		Index: []IndexEntry{{Attr: "userName", Value: "x", Unique: true}, {Attr: "e", Value: ""}},
	})
	for i := range full {
		f.Add(full[:i])
	}
	f.Add([]byte{recordEncoding, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord("T", "id", b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := decodeRecord("T", "id", encodeRecord(rec))
		if err != nil || !reflect.DeepEqual(rec, again) {
			t.Fatalf("round trip: %+v -> %+v, %v", rec, again, err)
		}
	})
}

func TestDecodeMemberCorrupt(t *testing.T) {
	for _, v := range [][]byte{{}, {5, 'a'}, {0xff}} {
		if _, err := decodeMember("m", v); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeMember(%v): err = %v, want ErrCorrupt", v, err)
		}
	}
}

// TestFoldAgreesWithEqualFold: the index must equate exactly what filters (strings.EqualFold)
// equate, or a lookup and a scan could disagree. (Invalid UTF-8, which EqualFold equates
// byte for byte as U+FFFD, never reaches the store: request bodies are checked first.)
func TestFoldAgreesWithEqualFold(t *testing.T) {
	pairs := []struct {
		a, b string
	}{
		{"sam", "SAM"}, {"sam", "ſam"}, {"kelvin", "\u212aelvin"}, {"isa", "İsa"}, {"isa", "ısa"},
		{"Straße", "STRASSE"}, {"Ωmega", "ωmega"}, {"abc", "abd"}, {"ǅ", "ǆ"},
	}
	for _, p := range pairs {
		if got, want := fold(p.a) == fold(p.b), strings.EqualFold(p.a, p.b); got != want {
			t.Errorf("fold(%q)==fold(%q) is %v, strings.EqualFold says %v", p.a, p.b, got, want)
		}
	}
}

func TestVersion(t *testing.T) {
	s := openTest(t)
	put(t, s, user("u1", "ada"))
	put(t, s, user("u1", "ada.l"))
	err := s.View(func(tx *Tx) error {
		rec, err := tx.Get("User", "u1")
		if err != nil {
			return err
		}
		v, err := tx.Version("User", "u1")
		if err != nil || v != rec.Version || v != 2 {
			t.Errorf("Version = %d, %v; Get says %d", v, err, rec.Version)
		}
		if _, err := tx.Version("User", "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Version of a missing record: %v", err)
		}
		if _, err := tx.Version("Group", "u1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Version under the wrong type: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
