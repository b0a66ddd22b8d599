package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// queued is how many writers wait in s's committer for the next group.
func queued(s *Store) int {
	s.group.mu.Lock()
	defer s.group.mu.Unlock()
	return len(s.group.queue)
}

// waitQueued waits until n writers are queued behind the running commit.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for queued(s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d writers queued", queued(s), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdCommit starts a write whose function blocks until the returned release is called,
// so that writers started meanwhile queue behind it. done receives the write's error.
func holdCommit(t *testing.T, s *Store) (release func(), done <-chan error) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	var once sync.Once
	go func() {
		errc <- s.Update(func(tx *Tx) error {
			once.Do(func() { close(entered) })
			<-gate
			return tx.Put(user("holder", "holder"))
		})
	}()
	<-entered
	return func() { close(gate) }, errc
}

// TestGroupCommitSharesOneCommit: writers that arrive while a commit runs share the next one.
func TestGroupCommitSharesOneCommit(t *testing.T) {
	s := openTest(t)
	before := s.Commits()
	release, held := holdCommit(t, s)
	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			id := fmt.Sprintf("u%02d", i)
			errs <- s.Update(func(tx *Tx) error { return tx.Put(user(id, id)) })
		})
	}
	waitQueued(t, s, writers)
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if got := s.Commits() - before; got != 2 {
		t.Errorf("%d writers behind a running commit took %d commits, want 2 (theirs shared one)", writers, got)
	}
	if n := count(t, s, "User"); n != writers+1 {
		t.Errorf("Count(User) = %d, want %d", n, writers+1)
	}
}

// TestGroupCommitIsolatesFailures: a function that fails (or panics) in a shared
// transaction gets its own error, changes nothing, and does not fail its neighbours, which
// are run again and committed.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s := openTest(t)
	release, held := holdCommit(t, s)
	boom := errors.New("boom")
	type result struct {
		name string
		err  error
	}
	results := make(chan result, 4)
	runs := map[string]int{}
	var mu sync.Mutex
	start := func(name string, fn func(tx *Tx) error) {
		go func() {
			results <- result{name, s.Update(func(tx *Tx) error {
				mu.Lock()
				runs[name]++
				mu.Unlock()
				return fn(tx)
			})}
		}()
	}
	start("a", func(tx *Tx) error { return tx.Put(user("a", "a")) })
	waitQueued(t, s, 1)
	start("fails", func(tx *Tx) error {
		if err := tx.Put(user("f", "f")); err != nil {
			return err
		}
		return boom
	})
	waitQueued(t, s, 2)
	start("panics", func(tx *Tx) error {
		_ = tx.Put(user("p", "p"))
		panic("bad function")
	})
	waitQueued(t, s, 3)
	start("b", func(tx *Tx) error { return tx.Put(user("b", "b")) })
	waitQueued(t, s, 4)
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	got := map[string]error{}
	for range 4 {
		r := <-results
		got[r.name] = r.err
	}
	if got["a"] != nil || got["b"] != nil {
		t.Errorf("neighbours failed: a=%v b=%v", got["a"], got["b"])
	}
	if !errors.Is(got["fails"], boom) {
		t.Errorf("failing function got %v, want its own error", got["fails"])
	}
	if got["panics"] == nil || !strings.Contains(got["panics"].Error(), "panicked") {
		t.Errorf("panicking function got %v, want a panic error", got["panics"])
	}
	for _, id := range []string{"a", "b", "holder"} {
		if _, err := get(t, s, "User", id); err != nil {
			t.Errorf("%s not committed: %v", id, err)
		}
	}
	for _, id := range []string{"f", "p"} {
		if _, err := get(t, s, "User", id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s was committed by a function that failed (err %v)", id, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if runs["a"] < 2 {
		t.Errorf("a ran %d times; a neighbour's failure must roll back and rerun it", runs["a"])
	}
}

// TestGroupCommitBoundsGroupSize: more writers than maxGroupSize queued behind one commit
// are split into several transactions.
func TestGroupCommitBoundsGroupSize(t *testing.T) {
	s := openTest(t)
	before := s.Commits()
	release, held := holdCommit(t, s)
	writers := maxGroupSize + 10
	var wg sync.WaitGroup
	var failed sync.Map
	for i := range writers {
		wg.Go(func() {
			id := fmt.Sprintf("u%05d", i)
			if err := s.Update(func(tx *Tx) error { return tx.Put(user(id, id)) }); err != nil {
				failed.Store(id, err)
			}
		})
	}
	waitQueued(t, s, writers)
	release()
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	failed.Range(func(k, v any) bool { t.Errorf("%v: %v", k, v); return true })
	if got := s.Commits() - before; got != 3 {
		t.Errorf("%d queued writers took %d commits, want 3 (the held one, then groups of at most %d)", writers, got, maxGroupSize)
	}
	if n := count(t, s, "User"); n != writers+1 {
		t.Errorf("Count(User) = %d, want %d", n, writers+1)
	}
}
