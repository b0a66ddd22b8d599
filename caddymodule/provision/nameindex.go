package provision

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// The outbox's name index (store NoteNameFreed, read by nameWaitsOf) is written with each
// task from the release of 2026-12-05 on. Tasks an earlier release queued have no entry,
// and a change queued behind them that takes a name one of them frees has no WaitsFor:
// once, before a target's worker first starts on a store, indexNames brings those tasks in.

// nameIndexVersion is the version of the pass indexNames makes, recorded per target in the
// store (store SetOutboxNamesVersion) so that it runs once.
const nameIndexVersion = 1

// nameScan is the most tasks (or index entries) one transaction of the pass reads: each
// transaction holds what it read in memory and keeps the store's writer while it runs.
const nameScan = 500

// nameFileWrites is the most keys one transaction of the pass writes on a bbolt file.
const nameFileWrites = 2000

// nameTaskWrites is the most keys the pass writes for one task: its two index entries
// (NoteNameFreed) and the task with its WaitsFor.
const nameTaskWrites = 3

// nameWrites is the most keys one transaction of the pass writes on a store whose
// transactions hold at most limit operations (0: no limit): etcd's head and a margin for
// changes group commit puts in the same transaction are left out.
func nameWrites(limit int) int {
	if limit <= 0 {
		return nameFileWrites
	}
	return max(nameTaskWrites, limit-16)
}

// nameIndexStats is what the pass did.
type nameIndexStats struct {
	tasks   int // tasks read
	indexed int // tasks that free a name, indexed
	waits   int // tasks that take a name, given the resources they wait for
	pruned  int // entries of tasks gone, removed
	txns    int // write transactions
	// unreadable: tasks that do not decode, left out of the index
	unreadable []uint64
}

// errUnreadableTask: a task's data does not decode.
var errUnreadableTask = errors.New("the task does not decode")

// indexNames brings the tasks of the target's outbox that a release before the name index
// queued into it, once per store (the version recorded in the store says it ran): every
// task that frees a name (a delete, a rename away; not a skip) and has no entry gets one,
// and every task that takes a name (a create, a rename) gets in its WaitsFor the other
// resources whose tasks queued before it free that name, as enqueue does for a task it
// queues (only earlier tasks: no task waits for one behind it, so waits never make a
// cycle). Entries whose task is gone (delivered by such a release after a rollback) are
// removed.
//
// It runs before the target's worker starts in this process (startWorker), so no delivery
// of this gateway reads a task it rewrites. Every transaction reads again what it writes,
// in task order, so it is safe beside other gateways of a fleet: one running the same pass
// (a task already indexed, a WaitsFor already there is left as it is), one delivering
// (a task gone is skipped; an entry of a task delivered after it was indexed is removed
// by that delivery's DeleteTask), one queueing (a task queued after the pass reached its
// place waits, through nameWaitsOf in its commit, for the entries the pass made before
// it). The version is recorded last, so a gateway that finds it finds every task indexed.
func (e *Engine) indexNames() (nameIndexStats, error) {
	var st nameIndexStats
	target := e.target.Name
	var done bool
	if err := e.store.View(func(tx *store.Tx) error {
		done = tx.OutboxNamesVersion(target) >= nameIndexVersion
		return nil
	}); err != nil || done {
		return st, err
	}
	writes := nameWrites(kv.TxnOpsLimit(e.store.DB()))
	// Tasks, in order: each transaction goes on from the last task the one before it got
	// to, so the loop ends after at most one transaction per nameScan tasks, or per
	// writes/nameTaskWrites tasks that need writing (those are the outbox's tasks, which
	// grow only by what is queued meanwhile).
	for after := uint64(0); ; {
		var last uint64
		var end bool
		var got nameIndexStats
		err := e.store.Update(func(tx *store.Tx) error {
			var err error
			got = nameIndexStats{} // a rerun starts again
			last, end, err = e.indexNameChunk(tx, after, writes, &got)
			return err
		})
		if err != nil {
			return st, fmt.Errorf("indexing the names the tasks of %s free (after task %d): %w", target, after, err)
		}
		st.tasks, st.indexed, st.waits, st.txns = st.tasks+got.tasks, st.indexed+got.indexed, st.waits+got.waits, st.txns+1
		st.unreadable = append(st.unreadable, got.unreadable...)
		if end {
			break
		}
		if last <= after {
			return st, fmt.Errorf("indexing the names the tasks of %s free: no progress after task %d", target, after)
		}
		after = last
	}
	for after := uint64(0); ; {
		var last uint64
		var end bool
		var removed int
		err := e.store.Update(func(tx *store.Tx) error {
			var err error
			last, removed, end, err = tx.PruneNamesFreed(target, after, nameScan, writes/2)
			return err
		})
		if err != nil {
			return st, fmt.Errorf("removing the name index entries of tasks of %s gone (after task %d): %w", target, after, err)
		}
		st.pruned += removed
		st.txns++
		if end {
			break
		}
		if last <= after {
			return st, fmt.Errorf("removing the name index entries of tasks of %s gone: no progress after task %d", target, after)
		}
		after = last
	}
	err := e.store.Update(func(tx *store.Tx) error {
		if tx.OutboxNamesVersion(target) >= nameIndexVersion {
			return nil
		}
		return tx.SetOutboxNamesVersion(target, nameIndexVersion)
	})
	if err != nil {
		return st, fmt.Errorf("recording that the tasks of %s are indexed by name: %w", target, err)
	}
	st.txns++
	if len(st.unreadable) > 0 {
		e.logger.Warn("queued tasks that do not decode were left out of the name index",
			zap.String("target", target), zap.Uint64s("tasks", st.unreadable))
	}
	if st.indexed > 0 || st.waits > 0 || st.pruned > 0 {
		e.logger.Info("indexed the names queued tasks free, for tasks an earlier release queued",
			zap.String("target", target), zap.Int("tasks", st.tasks), zap.Int("indexed", st.indexed),
			zap.Int("waiting", st.waits), zap.Int("stale_removed", st.pruned))
	}
	return st, nil
}

// indexNameChunk indexes the tasks after task after, at most nameScan of them and as many
// as fit in writes keys: it returns the last task it got to and whether that is the end of
// the outbox.
func (e *Engine) indexNameChunk(tx *store.Tx, after uint64, writes int, st *nameIndexStats) (last uint64, end bool, err error) {
	target := e.target.Name
	var tasks []store.Task
	end = true
	err = tx.Tasks(target, after, func(t store.Task) (bool, error) {
		if len(tasks) == nameScan {
			end = false
			return false, nil
		}
		tasks = append(tasks, t)
		return true, nil
	})
	if err != nil {
		return after, false, err
	}
	last, used := after, 0
	// Written after the walk (a cursor does not follow writes), in task order: a task's
	// WaitsFor is read from the entries of the tasks before it, this transaction's included.
	for _, stt := range tasks {
		if used+nameTaskWrites > writes {
			return last, false, nil
		}
		st.tasks++
		last = stt.Seq
		t, err := outbox.Decode(stt.Seq, stt.Data)
		if err == nil {
			var n int
			n, err = e.indexNameTask(tx, stt, t, st)
			used += n
		}
		if errors.Is(err, errUnreadableTask) || err != nil && t == nil {
			// The worker reports such a task (it cannot deliver it either); the others
			// are indexed.
			st.unreadable = append(st.unreadable, stt.Seq)
			continue
		}
		if err != nil {
			return after, false, err
		}
	}
	return last, end, nil
}

// indexNameTask indexes one task (see indexNames) and returns how many keys it wrote.
func (e *Engine) indexNameTask(tx *store.Tx, stt store.Task, t *outbox.Task, st *nameIndexStats) (int, error) {
	if t.Obligations.Skip {
		return 0, nil // sends nothing: frees and takes no name (enqueue)
	}
	target := e.target.Name
	p := &plan{typ: t.Type, id: t.ID}
	var err error
	if p.before, err = unmarshalDoc(t.Before); err != nil {
		return 0, errUnreadableTask
	}
	if p.after, err = unmarshalDoc(t.After); err != nil {
		return 0, errUnreadableTask
	}
	n := 0
	if name := nameTaken(p); name != "" {
		waits := slices.Clone(t.WaitsFor)
		err := tx.NameFreedBy(target, p.typ, name, func(seq uint64, resource string) error {
			if seq < t.Seq && resource != t.ID && !slices.Contains(waits, resource) {
				waits = append(waits, resource)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if len(waits) > len(t.WaitsFor) {
			t.WaitsFor = waits
			data, err := t.Encode()
			if err != nil {
				return 0, err
			}
			if !bytes.Equal(data, stt.Data) {
				if err := tx.UpdateTask(target, t.Seq, data); err != nil {
					return 0, err
				}
				n++
				st.waits++
			}
		}
	}
	if name := nameFreed(p); name != "" && !tx.NameFreedNoted(target, t.Seq) {
		if err := tx.NoteNameFreed(target, t.Seq, t.ID, p.typ, name); err != nil {
			return 0, err
		}
		n += 2
		st.indexed++
	}
	return n, nil
}
