package store

import (
	"errors"
	"fmt"
	"testing"
)

// TestOutbox: tasks keep their order per target, are found by resource, update in place,
// and leave nothing behind when deleted; other targets' tasks are not seen.
func TestOutbox(t *testing.T) {
	s := openTest(t)
	var seqs []uint64
	err := s.Update(func(tx *Tx) error {
		for _, res := range []string{"u1", "g1", "u1"} {
			seq, err := tx.Enqueue("app", res, []byte("task of "+res))
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		_, err := tx.Enqueue("other", "u9", []byte("x"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !(seqs[0] < seqs[1] && seqs[1] < seqs[2]) {
		t.Fatalf("sequence numbers not increasing: %v", seqs)
	}
	list := func(after uint64) []Task {
		var out []Task
		_ = s.View(func(tx *Tx) error {
			return tx.Tasks("app", after, func(tk Task) (bool, error) { out = append(out, tk); return true, nil })
		})
		return out
	}
	got := list(0)
	if len(got) != 3 || got[0].Resource != "u1" || got[1].Resource != "g1" || string(got[2].Data) != "task of u1" {
		t.Fatalf("tasks: %+v", got)
	}
	if got := list(seqs[1]); len(got) != 1 || got[0].Seq != seqs[2] {
		t.Fatalf("tasks after %d: %+v", seqs[1], got)
	}
	_ = s.View(func(tx *Tx) error {
		if !tx.HasTasks("app", "u1") || !tx.HasTasks("app", "g1") || tx.HasTasks("app", "u9") || tx.HasTasks("app", "u") {
			t.Error("HasTasks wrong")
		}
		var of []uint64
		if err := tx.TasksOf("app", "u1", func(tk Task) error {
			if tk.Resource != "u1" || string(tk.Data) != "task of u1" {
				t.Errorf("TasksOf u1 gave %+v", tk)
			}
			of = append(of, tk.Seq)
			return nil
		}); err != nil || len(of) != 2 || of[0] != seqs[0] || of[1] != seqs[2] {
			t.Errorf("TasksOf u1: %v, %v", of, err)
		}
		for _, res := range []string{"u", "u9"} { // a prefix of u1; another target's
			if err := tx.TasksOf("app", res, func(tk Task) error { t.Errorf("TasksOf %s gave %+v", res, tk); return nil }); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	err = s.Update(func(tx *Tx) error {
		if err := tx.UpdateTask("app", seqs[0], []byte("retried")); err != nil {
			return err
		}
		if err := tx.DeleteTask("app", seqs[0]); err != nil {
			return err
		}
		return tx.DeleteTask("app", seqs[1])
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if !tx.HasTasks("app", "u1") || tx.HasTasks("app", "g1") {
			t.Error("HasTasks after delete wrong")
		}
		if _, err := tx.Task("app", seqs[0]); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted task: %v", err)
		}
		return nil
	})
	err = s.Update(func(tx *Tx) error {
		if err := tx.DeleteTask("app", seqs[0]); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if err := tx.UpdateTask("app", 999, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("update of a missing task: %v", err)
		}
		if _, err := tx.Enqueue("app", "a\x00b", nil); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("bad resource id: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.View(func(tx *Tx) error { _, err := tx.Enqueue("app", "u", nil); return err }); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("enqueue in a read transaction: %v", err)
	}
}

// TestOutboxNameFreed: a task that frees a name is found by the name (folded, per target
// and type) until it is deleted, and its index entries go with it.
func TestOutboxNameFreed(t *testing.T) {
	s := openTest(t)
	var del, other uint64
	err := s.Update(func(tx *Tx) error {
		var err error
		if del, err = tx.Enqueue("app", "u1", []byte("delete u1")); err != nil {
			return err
		}
		if err := tx.NoteNameFreed("app", del, "u1", "User", "Alice@Example.com"); err != nil {
			return err
		}
		if other, err = tx.Enqueue("other", "u2", []byte("delete u2")); err != nil {
			return err
		}
		if err := tx.NoteNameFreed("other", other, "u2", "User", "alice@example.com"); err != nil {
			return err
		}
		return tx.NoteNameFreed("app", del, "u1", "User", "") // no name: nothing recorded
	})
	if err != nil {
		t.Fatal(err)
	}
	found := func(target, typ, name string) []string {
		var out []string
		_ = s.View(func(tx *Tx) error {
			return tx.NameFreedBy(target, typ, name, func(seq uint64, res string) error {
				out = append(out, res)
				return nil
			})
		})
		return out
	}
	if got := found("app", "User", "ALICE@example.com"); len(got) != 1 || got[0] != "u1" {
		t.Fatalf("app's freeing tasks: %v", got)
	}
	if got := found("app", "Group", "alice@example.com"); len(got) != 0 {
		t.Fatalf("another type's: %v", got)
	}
	if err := s.Update(func(tx *Tx) error { return tx.DeleteTask("app", del) }); err != nil {
		t.Fatal(err)
	}
	if got := found("app", "User", "alice@example.com"); len(got) != 0 {
		t.Fatalf("after the delete: %v", got)
	}
	if got := found("other", "User", "alice@example.com"); len(got) != 1 {
		t.Fatalf("another target's: %v", got)
	}
	_ = s.View(func(tx *Tx) error {
		for _, b := range [][]byte{bucketOutboxName, bucketOutboxNameOf} {
			n := 0
			c := tx.bucket(b).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				n++
			}
			if n != 1 {
				t.Errorf("bucket %s holds %d keys, want the other target's 1", b, n)
			}
		}
		return nil
	})
}

// TestPruneNamesFreed: entries of tasks gone without DeleteTask (a release that kept no
// name index delivered them) are removed, in parts of the size asked for, and the others
// stay; the version of the index is recorded per target.
func TestPruneNamesFreed(t *testing.T) {
	s := openTest(t)
	var seqs []uint64
	err := s.Update(func(tx *Tx) error {
		for i := range 5 {
			res := fmt.Sprintf("u%d", i)
			seq, err := tx.Enqueue("app", res, []byte("delete"))
			if err != nil {
				return err
			}
			if err := tx.NoteNameFreed("app", seq, res, "User", res+"@example.com"); err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		for _, i := range []int{0, 2, 3} { // as a release without the index deletes a task
			if err := tx.bucket(bucketOutbox).Delete(taskKey("app", seqs[i])); err != nil {
				return err
			}
			if err := tx.bucket(bucketOutboxRes).Delete(taskResKey("app", fmt.Sprintf("u%d", i), seqs[i])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	removed, rounds := 0, 0
	for after := uint64(0); rounds < 20; rounds++ {
		var last uint64
		var n int
		var end bool
		if err := s.Update(func(tx *Tx) (err error) {
			last, n, end, err = tx.PruneNamesFreed("app", after, 2, 1)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		removed += n
		if n > 1 {
			t.Fatalf("removed %d entries in one call, asked for at most 1", n)
		}
		if end {
			break
		}
		after = last
	}
	if removed != 3 || rounds < 2 {
		t.Fatalf("removed %d entries in %d rounds, want 3 in several", removed, rounds+1)
	}
	_ = s.View(func(tx *Tx) error {
		for i, seq := range seqs {
			kept := i == 1 || i == 4
			if tx.NameFreedNoted("app", seq) != kept {
				t.Errorf("task %d indexed: %v, want %v", seq, !kept, kept)
			}
		}
		n := 0
		c := tx.bucket(bucketOutboxName).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		if n != 2 {
			t.Errorf("%d name entries left, want 2", n)
		}
		if v := tx.OutboxNamesVersion("app"); v != 0 {
			t.Errorf("version before any is set: %d", v)
		}
		return nil
	})
	if err := s.Update(func(tx *Tx) error { return tx.SetOutboxNamesVersion("app", 3) }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if a, o := tx.OutboxNamesVersion("app"), tx.OutboxNamesVersion("other"); a != 3 || o != 0 {
			t.Errorf("versions: app %d, other %d", a, o)
		}
		return nil
	})
	if err := s.View(func(tx *Tx) error { _, _, _, err := tx.PruneNamesFreed("app", 0, 1, 1); return err }); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("prune in a read transaction: %v", err)
	}
}
