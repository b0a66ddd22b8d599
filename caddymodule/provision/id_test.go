package provision

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestNewIDsAreTimeOrdered: a new resource's id is a version 7 UUID carrying the time of
// its create, and ids made one after another sort in the order they were made (as strings,
// which is how every bucket keyed by id orders them), even within one millisecond.
func TestNewIDsAreTimeOrdered(t *testing.T) {
	before := time.Now()
	prev := ""
	seen := make(map[string]bool)
	for i := range 10_000 {
		id := newID()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 || u.String() != id {
			t.Fatalf("id %d %q: version %v, variant %v, %v", i, id, u.Version(), u.Variant(), err)
		}
		if id <= prev {
			t.Fatalf("id %d %q does not sort after the one before it, %q", i, id, prev)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
		prev = id
	}
	after := time.Now()
	sec, nsec := uuid.Must(uuid.Parse(prev)).Time().UnixTime()
	if at := time.Unix(sec, nsec); at.Before(before.Truncate(time.Millisecond)) || at.After(after) {
		t.Errorf("the last id says it was made at %v, not between %v and %v", at, before, after)
	}
}
