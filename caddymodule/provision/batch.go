package provision

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Batch creates (queued delivery with the mapping's create_batch): the worker hands
// DeliverBatch the ready creates of different resources of one type (each with the tasks of
// its resource coalesced into it), and they reach the app in one call:
//
//  1. each item's plan is rebuilt and shaped as Deliver does; an item that is anything but
//     a plain create never tried before (one listed for adoption, with progress, a skip,
//     a create the policy deactivates, one whose body cannot be built, one another
//     gateway is delivering) is delivered on its own, by Deliver;
//  2. the intents of every item are committed before the call, in one transaction;
//  3. the batch call; its answer gives each item its id, its refusal (a dead letter with
//     what the app said of it), or nothing proven (an outage for that item, listed for
//     adoption: its next attempt, on its own, looks it up before creating it);
//  4. the rest of each created item's flow (a team's member adds, a deactivation the
//     create cannot carry), as Deliver makes it after the call that made the account;
//  5. the outcomes of every item in one transaction: delivered (the id map, the tasks'
//     removal and records) or failed (the task's next attempt or dead letter, its record,
//     its adoption listing).
//
// An app that is unavailable fails every item as one failed call would (retried with
// backoff, each on its own then, looked up first where the app may have acted); the
// app's own rejection of the whole batch retries each item at once on its own, so that a
// dead letter is the change the app refused. Transactions that would hold more operations
// than the store takes (etcd) are split, each item's writes in one of them.

// BatchSize is how many creates of resourceType one batch call carries
// (outbox.BatchDeliverer): the mapping's create_batch in queued delivery, 0 otherwise.
func (e *Engine) BatchSize(resourceType string) int {
	t := e.target
	if t == nil || t.DryRun || t.Delivery.WithDefaults().Mode != outbox.Queued {
		return 0
	}
	if e.rolesOf() != nil && resourceType == scim.GroupType {
		return 0
	}
	return t.Mapping.BatchSize(resourceType)
}

// batchItem is one create of a batch call on its way.
type batchItem struct {
	at     int // its group's place among DeliverBatch's groups
	tasks  []*outbox.Task
	j      *job
	p, np  *plan
	clears bool // it clears a manager deleted earlier (see shape)
	item   mapping.BatchItem
	intent *journal.Prepared
	owner  string // the lease its intent names ("" on a store only this gateway writes)

	res    *syncResult // the calls' result, when delivered
	err    error       // how it failed (nil: delivered)
	listed bool        // the app may have made the account: list it for adoption
	again  bool        // the app rejected the whole batch: try it at once on its own
}

// DeliverBatch delivers groups of queued tasks, each the tasks of one resource starting
// with its create (outbox.BatchDeliverer): those that are plain creates in one batch call,
// the others on their own; one report per group.
func (e *Engine) DeliverBatch(ctx context.Context, groups [][]*outbox.Task) []outbox.Report {
	reports := make([]outbox.Report, len(groups))
	var items []*batchItem
	var alone []int
	for i, tasks := range groups {
		if it := e.batchItem(ctx, i, tasks); it != nil {
			items = append(items, it)
		} else {
			alone = append(alone, i)
		}
	}
	if len(items) == 1 {
		alone, items = append(alone, items[0].at), nil
	}
	if len(items) > 0 {
		alone = append(alone, e.sendBatch(ctx, items, reports)...)
	}
	for _, i := range alone {
		reports[i] = e.Deliver(ctx, groups[i])
	}
	return reports
}

// batchItem prepares group i for a batch call; nil when it goes on its own.
func (e *Engine) batchItem(ctx context.Context, i int, tasks []*outbox.Task) *batchItem {
	t := e.target
	m, err := coalesce(tasks)
	if err != nil || m.none || m.task.Obligations.Skip || m.task.Attempts > 0 {
		return nil
	}
	j, p, err := e.taskPlan(ctx, m.task)
	if err != nil || p.before != nil || p.after == nil || p.adopt || len(p.progress) > 0 || p.nativeID != "" {
		return nil
	}
	if e.fleet && e.intentOpen(j) {
		return nil // another gateway delivers it, or died doing so: Deliver sorts it out
	}
	d := decisionOf(m.task.Obligations)
	if d.Deactivate {
		return nil
	}
	np, clears, err := e.shape(j, p, d)
	if err != nil {
		return nil
	}
	events := e.startState(np, nativeEvents(np.events))
	if len(events) == 0 || events[0] != change.Create || !t.Mapping.Has(p.typ, change.Create) {
		return nil
	}
	item, err := t.Mapping.BatchItem(mapping.Input{ResourceType: p.typ, Event: change.Create, Resource: np.after,
		Changed: np.changed, NativeIDOf: e.storedNativeID})
	if err != nil {
		return nil // Deliver makes the same error the outcome of the change
	}
	return &batchItem{at: i, tasks: tasks, j: j, p: p, np: np, clears: clears, item: item}
}

// intentOpen reports whether the request of j has an open intent (a delivery in flight
// through another gateway, or one it left).
func (e *Engine) intentOpen(j *job) bool {
	open := true
	_ = e.store.View(func(tx *store.Tx) error {
		in, err := e.journal.OpenIntent(tx.KV(), e.target.Name, j.req.ID)
		open = err != nil || in != nil
		return nil
	})
	return open
}

// sendBatch makes the batch call of items and commits their outcomes into reports. It
// returns the groups (by place) to deliver on their own: those whose intent could not be
// journaled (nothing was sent for them).
func (e *Engine) sendBatch(ctx context.Context, items []*batchItem, reports []outbox.Report) (alone []int) {
	t := e.target
	typ := items[0].p.typ
	ctx, cancel := e.flowContext(ctx)
	defer cancel()
	items, alone = e.journalIntents(ctx, items)
	if len(items) == 0 {
		return alone
	}
	// The batch call and the items' later calls go only while every intent's lease holds
	// (one lease, unless it changed between two intents).
	owners := map[string]bool{}
	for _, it := range items {
		if !owners[it.owner] {
			owners[it.owner] = true
			ctx = e.ownerGuard(ctx, it.owner)
		}
	}
	bitems := make([]mapping.BatchItem, len(items))
	for k, it := range items {
		bitems[k] = it.item
	}
	req, err := t.Mapping.BatchRequest(typ, bitems)
	if err != nil {
		for _, it := range items {
			it.err = err // the gateway's own mistake: retried later
		}
		e.commitBatch(items, reports)
		return alone
	}
	resp, cerr := t.call(ctx, req)
	call := (&syncResult{}).noteCall(req.Method, req.Path, resp, cerr)
	if cerr != nil {
		e.failBatch(items, resp, cerr, call)
	} else {
		e.finishBatch(ctx, items, t.Mapping.BatchResults(typ, resp.Body, bitems), call)
	}
	e.commitBatch(items, reports)
	return alone
}

// journalIntents commits the intents of items (one transaction, or more where the store
// takes fewer operations per transaction); items whose intent was not journaled are
// returned by their place, to go on their own.
func (e *Engine) journalIntents(ctx context.Context, items []*batchItem) (kept []*batchItem, alone []int) {
	var ready []*batchItem
	for _, it := range items {
		intent, owner, err := e.prepareIntent(ctx, it.j, false)
		if err != nil {
			alone = append(alone, it.at)
			continue
		}
		it.intent, it.owner = intent, owner
		ready = append(ready, it)
	}
	for _, chunk := range e.txnChunks(ready, func(*batchItem) int { return 4 }) {
		err := e.store.Update(func(tx *store.Tx) error {
			for _, it := range chunk {
				if err := e.claimIntent(tx, it.j, it.p); err != nil {
					return err
				}
				if err := e.journal.AppendPrepared(tx.KV(), it.intent); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			for _, it := range chunk {
				alone = append(alone, it.at)
			}
			continue
		}
		kept = append(kept, chunk...)
	}
	return kept, alone
}

// txnChunks splits items so that each chunk's transaction holds at most what the store
// takes (kv.TxnOpsLimit; one chunk when it sets none), cost being an item's operations.
func (e *Engine) txnChunks(items []*batchItem, cost func(*batchItem) int) [][]*batchItem {
	limit := kv.TxnOpsLimit(e.store.DB())
	if limit <= 0 {
		return [][]*batchItem{items}
	}
	budget := max(limit-16, 1) // the journal's head and size, and a margin
	var out [][]*batchItem
	var cur []*batchItem
	used := 0
	for _, it := range items {
		c := cost(it)
		if len(cur) > 0 && used+c > budget {
			out = append(out, cur)
			cur, used = nil, 0
		}
		cur = append(cur, it)
		used += c
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// failBatch fails every item of a batch call that failed: the app unavailable (each may
// have been created when the call may have reached it: listed for adoption), or the app's
// own rejection of the whole batch (each is tried again at once on its own).
func (e *Engine) failBatch(items []*batchItem, resp *legacy.Response, cerr error, call journal.BackendCall) {
	var le *legacy.Error
	errors.As(cerr, &le)
	se, retryAfter := legacy.ToSCIM(change.Create, resp, cerr)
	mayHaveActed := le != nil && le.MayHaveActed()
	for _, it := range items {
		ne := &nativeError{scim: se, retryAfter: retryAfter, calls: []journal.BackendCall{call}, cause: cerr, mayHaveActed: mayHaveActed}
		it.err, it.listed = ne, mayHaveActed
		it.again = se.Status < 500 && se.Status != http.StatusTooManyRequests
		it.j.trail.noteCalls(ne.calls)
	}
}

// finishBatch reads each item's result of a batch call that answered, and makes the rest
// of the created items' flows (several at once, up to the target's max_concurrent).
func (e *Engine) finishBatch(ctx context.Context, items []*batchItem, results []mapping.BatchResult, call journal.BackendCall) {
	t := e.target
	sem := make(chan struct{}, t.Delivery.WithDefaults().MaxConcurrent)
	var wg sync.WaitGroup
	for k, it := range items {
		r := results[k]
		switch {
		case r.ID != "":
			it.np.batched = r.ID
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				res, err := e.syncNative(ctx, it.np)
				res.calls = append([]journal.BackendCall{call}, res.calls...)
				var ne *nativeError
				if errors.As(err, &ne) {
					ne.calls = append([]journal.BackendCall{call}, ne.calls...)
				}
				it.res, it.err = e.afterCalls(it.j, it.p, res, err, it.clears)
			}()
		case r.Refused != "":
			it.err = &nativeError{scim: scim.BadRequest(scim.TypeInvalidValue, "%s refused the create in its batch call: %s", t.Name, r.Refused),
				calls: []journal.BackendCall{call}}
			it.j.trail.noteCalls([]journal.BackendCall{call})
		default:
			it.err = &nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "", "%s answered the batch create without proving this item (%s); retry later", t.Name, r.Unproven),
				retryAfter: legacy.DefaultOutageRetryAfter, calls: []journal.BackendCall{call}, mayHaveActed: true}
			it.listed = true
			it.j.trail.noteCalls([]journal.BackendCall{call})
		}
	}
	wg.Wait()
}

// commitBatch commits the outcome of every item (one transaction, or more where the store
// takes fewer operations per transaction) and reports it. A transaction that fails is
// done again item by item, as Deliver commits one.
func (e *Engine) commitBatch(items []*batchItem, reports []outbox.Report) {
	defer func() {
		for _, it := range items {
			it.res.release() // locks the calls took, held until the commit
		}
	}()
	cost := func(it *batchItem) int {
		if it.err == nil {
			return 8 + 4*len(it.tasks)
		}
		return 8
	}
	for _, chunk := range e.txnChunks(items, cost) {
		if err := e.commitChunk(chunk, reports); err != nil {
			e.logger.Warn("committing the outcomes of a batch create failed; they are committed one by one",
				zap.String("target", e.target.Name), zap.Int("items", len(chunk)), zap.Error(err))
			for _, it := range chunk {
				reports[it.at] = e.commitItem(it)
			}
		}
	}
}

// commitChunk commits the outcomes of items in one transaction.
func (e *Engine) commitChunk(items []*batchItem, reports []outbox.Report) error {
	type outcome struct {
		recs   []*journal.Prepared // delivered
		rec    *journal.Record     // failed
		data   []byte
		rep    outbox.Report
		status change.Outcome
	}
	outs := make([]outcome, len(items))
	settings := e.target.Delivery.WithDefaults()
	now := e.now()
	for k, it := range items {
		if it.err == nil {
			it.p.newNativeID = it.res.nativeID
			e.notePolicy(it.j.trail, it.tasks[0])
			recs, err := e.deliveryRecords(e.record(it.j.req, it.j.trail, change.Delivered, 0, ""), it.tasks, "coalesced into the delivery of request "+it.j.req.ID)
			if err != nil {
				return err
			}
			outs[k] = outcome{recs: recs, rep: outbox.Report{Done: true, AppUp: it.res.answered()}, status: change.Delivered}
			continue
		}
		t := *it.tasks[0] // a copy: a failed transaction leaves the task as it was
		f := failureOf(it.err)
		dead := false
		if it.again || f.Rejected && len(it.tasks) > 1 {
			t.Attempts++
			t.LastError, t.LastStatus, t.NextAttempt = f.Detail, f.Status, time.Time{}
		} else {
			dead = settings.Fail(&t, f, now)
		}
		status := change.Failed
		if dead {
			status = change.Dead
		}
		if it.j.trail.decision != nil {
			e.notePolicy(it.j.trail, &t)
		}
		data, err := t.Encode()
		if err != nil {
			return err
		}
		outs[k] = outcome{rec: e.record(it.j.req, it.j.trail, status, 0, f.Detail), data: data, status: status,
			rep: outbox.Report{Dead: dead, NextAttempt: t.NextAttempt, Outage: !dead && !f.Rejected && f.App, AppUp: f.Rejected && f.App && f.Status != 0}}
	}
	err := e.store.Update(func(tx *store.Tx) error {
		for k, it := range items {
			o := outs[k]
			if o.recs != nil {
				if err := e.updateAccount(tx, it.p, it.p); err != nil {
					return err
				}
				if err := e.removeTasks(tx, it.tasks, o.recs); err != nil {
					return err
				}
				continue
			}
			if it.listed {
				if err := tx.SetAdoption(e.target.Name, it.p.typ, SubjectOf(it.p.typ, it.p.after), 0); err != nil {
					return err
				}
			}
			if err := tx.UpdateTask(e.target.Name, it.tasks[0].Seq, o.data); err != nil {
				return err
			}
			if err := e.journal.Append(tx.KV(), o.rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, it := range items {
		reports[it.at] = outs[k].rep
		e.delivered(outs[k].status)
		if outs[k].status == change.Dead {
			e.logger.Warn("a queued change became a dead letter; the resource's later changes wait behind it",
				zap.String("target", e.target.Name), zap.Uint64("task", it.tasks[0].Seq), zap.String("request_id", it.tasks[0].RequestID),
				zap.String("scim_id", it.tasks[0].ID), zap.String("error", it.err.Error()))
		}
	}
	return nil
}

// commitItem commits one item's outcome on its own, as Deliver does.
func (e *Engine) commitItem(it *batchItem) outbox.Report {
	if it.err == nil {
		err := e.commitDelivery(it.j, it.p, it.tasks, it.res)
		if err == nil {
			return outbox.Report{Done: true}
		}
		it.err = err
		if it.res.nativeID != "" {
			e.listAdoption(it.j, it.p, nil) // the app made the account; the next attempt adopts it
		}
	} else if it.listed {
		e.listAdoption(it.j, it.p, nil)
	}
	if it.again {
		// Not the change's own rejection: it is tried on its own, not made a dead letter.
		it.err = &nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "", "%s refused a batch create as a whole (%v); each create is tried on its own", e.target.Name, it.err)}
	}
	return e.failDelivery(it.j, it.tasks, it.err)
}
