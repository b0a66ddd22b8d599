package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The outbox holds the deliveries a target has still to make (queued delivery): each task
// is written in the transaction of the directory change it delivers, with its journal
// record, and deleted in the transaction that records its delivery. The store keeps a task's
// order (a sequence number per store, so that a cursor walks tasks in the order they were
// queued) and the resource it changes (so that a change can ask whether the resource still
// has tasks ahead of it); what a task says is its caller's encoding.
//
//	outbox     target \0 seq (8 bytes, big-endian)      -> resource id length, resource id, data
//	outboxRes  target \0 resource id \0 seq             -> (empty)
//	outboxState target                                   -> paused (an operator's pause)
//	outboxName  target \0 type \0 folded name \0 seq      -> resource id (NoteNameFreed)
//	outboxNameOf target \0 seq                           -> type \0 folded name

// Task is one queued delivery as the store keeps it.
type Task struct {
	// Seq orders the tasks of a store: a later task has a larger Seq.
	Seq uint64
	// Resource is the id of the resource the task changes.
	Resource string
	// Data is the caller's encoding of the task.
	Data []byte
}

// Enqueue adds a task for resource in target and returns its sequence number. data is copied.
func (tx *Tx) Enqueue(target, resource string, data []byte) (uint64, error) {
	if err := tx.checkWritable(); err != nil {
		return 0, err
	}
	if err := checkOutboxArgs(target, resource); err != nil {
		return 0, err
	}
	b := tx.bucket(bucketOutbox)
	seq, err := b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("numbering a task of %s: %w", target, err)
	}
	if err := tx.putTask(target, Task{Seq: seq, Resource: resource, Data: data}); err != nil {
		return 0, err
	}
	if err := tx.bucket(bucketOutboxRes).Put(taskResKey(target, resource, seq), []byte{}); err != nil {
		return 0, fmt.Errorf("queueing a task of %s: %w", target, err)
	}
	return seq, nil
}

// UpdateTask replaces the data of task seq in target (its resource and place stay), or
// returns ErrNotFound.
func (tx *Tx) UpdateTask(target string, seq uint64, data []byte) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	t, err := tx.Task(target, seq)
	if err != nil {
		return err
	}
	t.Data = data
	return tx.putTask(target, t)
}

func (tx *Tx) putTask(target string, t Task) error {
	v := binary.AppendUvarint(make([]byte, 0, len(t.Resource)+len(t.Data)+2), uint64(len(t.Resource)))
	v = append(v, t.Resource...)
	v = append(v, t.Data...)
	if err := tx.bucket(bucketOutbox).Put(taskKey(target, t.Seq), v); err != nil {
		return fmt.Errorf("writing task %d of %s: %w", t.Seq, target, err)
	}
	return nil
}

// Task returns task seq of target (a copy), or ErrNotFound.
func (tx *Tx) Task(target string, seq uint64) (Task, error) {
	if err := checkName("target", target); err != nil {
		return Task{}, err
	}
	v := tx.bucket(bucketOutbox).Get(taskKey(target, seq))
	if v == nil {
		return Task{}, ErrNotFound
	}
	return decodeTask(seq, v)
}

// DeleteTask removes task seq of target, or returns ErrNotFound.
func (tx *Tx) DeleteTask(target string, seq uint64) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	t, err := tx.Task(target, seq)
	if err != nil {
		return err
	}
	if err := tx.bucket(bucketOutbox).Delete(taskKey(target, seq)); err != nil {
		return fmt.Errorf("deleting task %d of %s: %w", seq, target, err)
	}
	if err := tx.bucket(bucketOutboxRes).Delete(taskResKey(target, t.Resource, seq)); err != nil {
		return fmt.Errorf("deleting task %d of %s: %w", seq, target, err)
	}
	return tx.forgetNameFreed(target, seq)
}

// NoteNameFreed records that task seq of target, queued for resource, frees name (a
// userName, a group's displayName) of resource type typ in the app: the task deletes the
// resource, or renames it away from the name. Until the task leaves the outbox
// (DeleteTask), NameFreedBy finds it, so that another resource's change that takes the
// name can wait for it (the app holds the name for the old account until then). Names are
// folded as the uniqueness index folds them. An empty name, or one no key can hold, is
// not recorded (no resource of the directory can take it).
func (tx *Tx) NoteNameFreed(target string, seq uint64, resource, typ, name string) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkOutboxArgs(target, resource); err != nil {
		return err
	}
	if checkName("type", typ) != nil || checkName("name", name) != nil {
		return nil
	}
	folded := fold(name)
	if err := tx.bucket(bucketOutboxName).Put(nameFreedKey(target, typ, folded, seq), []byte(resource)); err != nil {
		return fmt.Errorf("indexing task %d of %s: %w", seq, target, err)
	}
	if err := tx.bucket(bucketOutboxNameOf).Put(taskKey(target, seq), joinKey(typ, folded)); err != nil {
		return fmt.Errorf("indexing task %d of %s: %w", seq, target, err)
	}
	return nil
}

// NameFreedBy calls fn with each task of target still in the outbox that frees name of
// type typ in the app (see NoteNameFreed), in order, until fn returns an error (which
// NameFreedBy returns).
func (tx *Tx) NameFreedBy(target, typ, name string, fn func(seq uint64, resource string) error) error {
	if checkName("target", target) != nil || checkName("type", typ) != nil || checkName("name", name) != nil {
		return nil
	}
	prefix := joinKey(target, typ, fold(name), "")
	c := tx.bucket(bucketOutboxName).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) != len(prefix)+8 {
			return fmt.Errorf("%w: outbox name key of %s", ErrCorrupt, target)
		}
		seq := binary.BigEndian.Uint64(k[len(prefix):])
		if tx.bucket(bucketOutbox).Get(taskKey(target, seq)) == nil {
			continue // removed by a release that kept no such index (a rollback)
		}
		if err := fn(seq, string(v)); err != nil {
			return err
		}
	}
	return nil
}

// forgetNameFreed removes the name task seq frees from the index (DeleteTask).
func (tx *Tx) forgetNameFreed(target string, seq uint64) error {
	key := taskKey(target, seq)
	v := tx.bucket(bucketOutboxNameOf).Get(key)
	if v == nil {
		return nil
	}
	i := bytes.IndexByte(v, sep)
	if i < 0 {
		return fmt.Errorf("%w: outbox name of task %d of %s", ErrCorrupt, seq, target)
	}
	typ, name := string(v[:i]), string(v[i+1:])
	if err := tx.bucket(bucketOutboxName).Delete(nameFreedKey(target, typ, name, seq)); err != nil {
		return fmt.Errorf("deleting task %d of %s: %w", seq, target, err)
	}
	if err := tx.bucket(bucketOutboxNameOf).Delete(key); err != nil {
		return fmt.Errorf("deleting task %d of %s: %w", seq, target, err)
	}
	return nil
}

// NameFreedNoted reports whether task seq of target is in the name index (NoteNameFreed).
func (tx *Tx) NameFreedNoted(target string, seq uint64) bool {
	if checkName("target", target) != nil {
		return false
	}
	return tx.bucket(bucketOutboxNameOf).Get(taskKey(target, seq)) != nil
}

// PruneNamesFreed removes from target's name index the entries of tasks no longer in the
// outbox: a release that kept no such index (a rollback) delivered or dropped them. It
// looks at the entries of tasks numbered after after, at most scan of them, and removes at
// most remove (two writes each); it returns the number of the last task it looked at (after
// when none), how many it removed and whether it got to the end of the index.
func (tx *Tx) PruneNamesFreed(target string, after uint64, scan, remove int) (last uint64, removed int, end bool, err error) {
	if err := tx.checkWritable(); err != nil {
		return after, 0, false, err
	}
	if err := checkName("target", target); err != nil {
		return after, 0, false, err
	}
	prefix := append([]byte(target), sep)
	last, end = after, true
	var gone []uint64
	c := tx.bucket(bucketOutboxNameOf).Cursor()
	for k, _ := c.Seek(taskKey(target, after+1)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) != len(prefix)+8 {
			return after, 0, false, fmt.Errorf("%w: outbox name key of %s", ErrCorrupt, target)
		}
		if scan <= 0 || len(gone) >= remove {
			end = false
			break
		}
		scan--
		last = binary.BigEndian.Uint64(k[len(prefix):])
		if tx.bucket(bucketOutbox).Get(k) == nil {
			gone = append(gone, last)
		}
	}
	for _, seq := range gone { // after the walk: a cursor does not follow writes (kv.Cursor)
		if err := tx.forgetNameFreed(target, seq); err != nil {
			return after, 0, false, err
		}
	}
	return last, len(gone), end, nil
}

// OutboxNamesVersion is the version of the name index that target's outbox was brought to
// (SetOutboxNamesVersion), 0 when none was recorded.
func (tx *Tx) OutboxNamesVersion(target string) uint64 {
	if checkName("target", target) != nil {
		return 0
	}
	v := tx.bucket(bucketMeta).Get(outboxNamesKey(target))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// SetOutboxNamesVersion records that every task in target's outbox is in the name index as
// version v of its builder has it (the tasks queued before the index existed, indexed once).
func (tx *Tx) SetOutboxNamesVersion(target string, v uint64) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkName("target", target); err != nil {
		return err
	}
	return tx.bucket(bucketMeta).Put(outboxNamesKey(target), encodeUint64(v))
}

func outboxNamesKey(target string) []byte { return joinKey("outboxNames", target) }

func nameFreedKey(target, typ, folded string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(joinKey(target, typ, folded, ""), seq)
}

// Tasks calls fn with the tasks of target whose sequence number is greater than after, in
// order, until fn returns false or an error (which Tasks returns).
func (tx *Tx) Tasks(target string, after uint64, fn func(Task) (bool, error)) error {
	if err := checkName("target", target); err != nil {
		return err
	}
	prefix := append([]byte(target), sep)
	c := tx.bucket(bucketOutbox).Cursor()
	for k, v := c.Seek(taskKey(target, after+1)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) != len(prefix)+8 {
			return fmt.Errorf("%w: outbox key of %s", ErrCorrupt, target)
		}
		t, err := decodeTask(binary.BigEndian.Uint64(k[len(prefix):]), v)
		if err != nil {
			return err
		}
		more, err := fn(t)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// HasTasks reports whether resource has a task in target's outbox.
func (tx *Tx) HasTasks(target, resource string) bool {
	if checkOutboxArgs(target, resource) != nil {
		return false
	}
	prefix := joinKey(target, resource, "")
	k, _ := tx.bucket(bucketOutboxRes).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// TasksOf calls fn with each task of resource in target's outbox, in order, until fn
// returns an error (which TasksOf returns).
func (tx *Tx) TasksOf(target, resource string, fn func(Task) error) error {
	if err := checkOutboxArgs(target, resource); err != nil {
		return err
	}
	prefix := joinKey(target, resource, "")
	c := tx.bucket(bucketOutboxRes).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) != len(prefix)+8 {
			return fmt.Errorf("%w: outbox index key of %s", ErrCorrupt, target)
		}
		t, err := tx.Task(target, binary.BigEndian.Uint64(k[len(prefix):]))
		if err != nil {
			return fmt.Errorf("reading a task of %s in %s: %w", resource, target, err)
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	return nil
}

func checkOutboxArgs(target, resource string) error {
	if err := checkName("target", target); err != nil {
		return err
	}
	return checkName("resource id", resource)
}

func taskKey(target string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(target), sep), seq)
}

func taskResKey(target, resource string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(joinKey(target, resource, ""), seq)
}

func decodeTask(seq uint64, v []byte) (Task, error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || uint64(len(v)-w) < n {
		return Task{}, fmt.Errorf("%w: outbox task %d", ErrCorrupt, seq)
	}
	res := string(v[w : w+int(n)])
	return Task{Seq: seq, Resource: res, Data: append([]byte(nil), v[w+int(n):]...)}, nil
}

// SetOutboxPaused records whether an operator paused target's deliveries (kept across
// restarts).
func (tx *Tx) SetOutboxPaused(target string, paused bool) error {
	if err := tx.checkWritable(); err != nil {
		return err
	}
	if err := checkName("target", target); err != nil {
		return err
	}
	if !paused {
		return tx.bucket(bucketOutboxState).Delete([]byte(target))
	}
	return tx.bucket(bucketOutboxState).Put([]byte(target), []byte{1})
}

// OutboxPaused reports whether target's deliveries are paused.
func (tx *Tx) OutboxPaused(target string) bool {
	if checkName("target", target) != nil {
		return false
	}
	return tx.bucket(bucketOutboxState).Get([]byte(target)) != nil
}

// OutboxSeq is the sequence number of the newest task queued so far (of any target): a task
// queued after tx has a greater one.
func (tx *Tx) OutboxSeq() uint64 { return tx.bucket(bucketOutbox).Sequence() }
