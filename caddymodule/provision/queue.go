package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Queued delivery: a change the policy allowed is committed to the directory with a task in
// the target's outbox and its record (outcome queued) in one transaction, and Entra is
// answered at once; the outbox's worker later calls Deliver, which builds the calls (the
// obligations applied then), journals the intent, makes them and commits the outcome
// (delivered, failed and retried, or dead) with the task's removal or new state.

// deliverOrQueue delivers an allowed change the way the target's mode says: at once, or
// through the outbox. A resource with tasks still in the outbox (or whose change refers to
// resources with tasks there) is queued behind them in every mode, so that one resource's
// changes reach the app in order. In fallback mode a change the app could not take because
// it was unavailable is queued instead of failing; so is, in queued mode, a deprovisioning
// that was sent at once.
//
// A change that takes a name (a create, a rename) that another resource's task in the
// outbox frees in the app (its delete, or a rename away from it) is queued behind that
// task in every mode too (see nameWaitsOf): sent before it, the app would refuse the name
// it still holds for the other account, or a lookup by the name would find that account.
func (e *Engine) deliverOrQueue(j *job, p *plan, d policy.Decision) (*plan, error) {
	s := e.target.Delivery.WithDefaults()
	if len(p.nameWaits) > 0 {
		e.noteReasons(j.trail, e.nameWaitReason(p))
	}
	if p.queuedSelf || p.queuedRefs || len(p.nameWaits) > 0 || (s.Mode == outbox.Queued && (s.DeprovisionQueued || !deprovisions(p, d))) {
		return e.enqueue(j, p, d)
	}
	done, err := e.deliver(j, p, d)
	if err != nil && s.Mode != outbox.Immediate && unavailable(err) {
		return e.enqueue(j, p, d)
	}
	return done, err
}

// deprovisions reports whether a change takes access away in the app: a deactivation, a
// deletion, a member removal, or a deactivation the policy asks for.
func deprovisions(p *plan, d policy.Decision) bool {
	return d.Deactivate || slices.ContainsFunc(p.events, change.Event.Removes)
}

// unavailable reports whether a failed delivery failed because the app was unavailable
// (refused, timed out, 5xx, 429, an open circuit, an answer that proves nothing), not
// because it rejected the data.
func unavailable(err error) bool {
	var ne *nativeError
	return errors.As(err, &ne) && (ne.scim.Status >= 500 || ne.scim.Status == http.StatusTooManyRequests)
}

// refsOf lists the other resources a change refers to, whose earlier tasks it waits for:
// the members it adds and the user's manager.
func refsOf(p *plan) []string {
	refs := slices.Clone(p.added)
	if p.typ == scim.UserType && p.after != nil {
		if m := managerRef(p.after); m != "" && m != p.id {
			refs = append(refs, m)
		}
	}
	return refs
}

// queueSkip queues a change the policy skipped behind its resource's changes still in the
// outbox (queued reports that it did): committed at once, the skip would set the account's
// mark (kept out, or missed a change) before the earlier changes reach the app, and their
// delivery would then clear it. Queued, it sends nothing and sets the mark after them.
func (e *Engine) queueSkip(j *job, p *plan, d policy.Decision) (done *plan, queued bool, err error) {
	if !d.Skip || e.target == nil || !p.queuedSelf {
		return nil, false, nil
	}
	done, err = e.enqueue(j, p, d)
	return done, true, err
}

// enqueue commits the change with its task and its record (outcome queued) in one
// transaction, then tells the worker.
func (e *Engine) enqueue(j *job, p *plan, d policy.Decision) (*plan, error) {
	if !d.Skip {
		if err := e.checkQueuedMembers(p); err != nil {
			return nil, err
		}
	}
	var task *outbox.Task
	done, err := e.commitWith(j, p, change.Queued, func(tx *store.Tx, _, p2 *plan) error {
		// Queued behind another gateway's calls for the resource, still in flight and
		// committed after this, the task would reach the app after them while the
		// directory holds their change after this one: Entra retries once they are done.
		if err := e.callsInFlight(tx, j, p2); err != nil {
			return err
		}
		t, err := e.taskOf(j, p2, d)
		if err != nil {
			return err
		}
		if !d.Skip {
			// Read again in the commit: the tasks the change waits for are those still
			// queued when it is.
			waits, err := e.nameWaitsOf(tx, p2)
			if err != nil {
				return err
			}
			for _, w := range waits {
				t.WaitsFor = append(t.WaitsFor, w.resource)
			}
		}
		data, err := t.Encode()
		if err != nil {
			return err
		}
		if t.Seq, err = tx.Enqueue(e.target.Name, p2.id, data); err != nil {
			return err
		}
		if name := nameFreed(p2); name != "" && !d.Skip {
			if err := tx.NoteNameFreed(e.target.Name, t.Seq, p2.id, p2.typ, name); err != nil {
				return err
			}
		}
		task = t
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.worker.Queued(task)
	return done, nil
}

// freeingTask is a task of another resource that frees, in the app, the name a change takes.
type freeingTask struct {
	seq      uint64
	resource string
}

// nameTaken is the name (userName, a group's displayName) that change p gives its
// resource's account in the app where it had another or none: a create's, a rename's; "".
func nameTaken(p *plan) string {
	switch {
	case p.after == nil:
		return ""
	case p.before == nil:
		return SubjectOf(p.typ, p.after)
	}
	return renamed(p.typ, p.before, p.after)
}

// nameFreed is the name change p takes from its resource's account in the app: a
// delete's, or a rename's old name; "".
func nameFreed(p *plan) string {
	switch {
	case p.before == nil:
		return ""
	case p.after == nil || renamed(p.typ, p.before, p.after) != "":
		return SubjectOf(p.typ, p.before)
	}
	return ""
}

// nameWaitsOf lists the tasks of other resources in the target's outbox that free, in the
// app, the name change p takes (store NameFreedBy): a user deleted, or renamed away from
// the name, whose change has not reached the app yet (queued, a deprovisioning held behind
// the resource's earlier changes, a fallback after an outage, a dead letter). Until they
// reach it, the app holds the name for that resource's account: it refuses a second
// account with the login (409), or makes one beside the account that is still to be
// deleted, and a lookup by the name finds that account, which the directory still maps to
// the other resource. The change waits for them (outbox.Task.WaitsFor), the first of each
// resource's tasks only.
func (e *Engine) nameWaitsOf(tx *store.Tx, p *plan) ([]freeingTask, error) {
	name := nameTaken(p)
	if name == "" || e.target == nil {
		return nil, nil
	}
	var out []freeingTask
	err := tx.NameFreedBy(e.target.Name, p.typ, name, func(seq uint64, resource string) error {
		if resource != p.id && !slices.ContainsFunc(out, func(w freeingTask) bool { return w.resource == resource }) {
			out = append(out, freeingTask{seq: seq, resource: resource})
		}
		return nil
	})
	return out, err
}

// nameWaitReason says, for the journal, why change p was queued behind other resources'
// tasks (p.nameWaits).
func (e *Engine) nameWaitReason(p *plan) string {
	tasks := make([]string, 0, len(p.nameWaits))
	for _, w := range p.nameWaits {
		tasks = append(tasks, fmt.Sprintf("task %d of %s %s", w.seq, strings.ToLower(p.typ), w.resource))
	}
	return fmt.Sprintf("queued behind %s, freeing %s %q in %s first (a delete, or a rename away from it, not yet delivered): until then the app holds the name for that account",
		strings.Join(tasks, ", "), nameAttr(p.typ), nameTaken(p), e.target.Name)
}

// nameAttr is the attribute that names a resource of type typ (SubjectOf).
func nameAttr(typ string) string {
	if typ == scim.GroupType {
		return "displayName"
	}
	return "userName"
}

// checkQueuedMembers refuses member adds that name no resource, as immediate delivery does
// (see memberAdds; not in a dry run): queued, such a membership could never be sent. A
// member whose create is still queued is no such member: its task waits for it (and a
// member whose create then fails is held back by the delivery until its account exists).
//
// The members it finds are the plan's addedKnown: its commit refuses the change when one of
// them is deleted before it (refuseGoneMembers).
func (e *Engine) checkQueuedMembers(p *plan) error {
	if len(p.added) == 0 || e.target.DryRun {
		return nil
	}
	var unknown, known []string
	err := e.store.View(func(tx *store.Tx) error {
		for _, id := range p.added {
			_, err := tx.TypeOf(id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				if e.mappedType(tx, id) == "" {
					unknown = append(unknown, id)
				} else {
					known = append(known, id)
				}
			case err != nil:
				return err
			default:
				known = append(known, id)
			}
		}
		return nil
	})
	if err == nil && len(unknown) == 0 {
		p.addedKnown = known
	}
	if err != nil || len(unknown) == 0 {
		return err
	}
	return scim.BadRequest(scim.TypeInvalidValue,
		"member %s names no user or group (never created, or deleted); Entra retries this membership in a later cycle, once the member exists",
		listIDs(unknown))
}

// taskOf is the outbox task of plan p as the directory applies it.
func (e *Engine) taskOf(j *job, p *plan, d policy.Decision) (*outbox.Task, error) {
	before, err := marshalDoc(p.before)
	if err != nil {
		return nil, err
	}
	after, err := marshalDoc(p.after)
	if err != nil {
		return nil, err
	}
	t := &outbox.Task{
		RequestID: j.req.ID, Client: j.req.Client, Action: j.op.Action,
		Type: p.typ, ID: p.id, Subject: j.trail.Subject, Queued: j.now,
		Events: p.events, Changed: p.changed, Before: before, After: after,
		Added: p.added, Removed: p.removed, Refs: refsOf(p),
		Urgent: !e.target.Delivery.DeprovisionQueued && deprovisions(p, d),
		Obligations: outbox.Obligations{
			Reasons: boundReasons(d.Reasons), DropAttributes: d.DropAttributes, DropMembers: d.DropMembers,
			Deactivate: d.Deactivate, Skip: d.Skip, PolicyHash: e.PolicyHash(),
		},
	}
	if d.Skip {
		t.Refs, t.Urgent = nil, false // nothing is sent: it waits for nothing else
	}
	return t, nil
}

func marshalDoc(doc scim.Resource) (json.RawMessage, error) {
	if doc == nil {
		return nil, nil
	}
	return json.Marshal(doc)
}

func unmarshalDoc(raw json.RawMessage) (scim.Resource, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	v, err := scim.Decode(raw)
	if err != nil {
		return nil, err
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("a queued resource is not an object")
	}
	return doc, nil
}

// Deliver makes one delivery attempt of queued tasks of one resource, coalesced into one
// change (outbox.Deliverer; see coalesce.go): the plan is rebuilt from the task with what
// the app's account is now (its native id, mark, the calls an earlier attempt made, a
// create to adopt), shaped by the policy's obligations, sent under an intent, and
// committed: delivered (the account's id map and mark, the tasks removed, a record per
// task's request), or failed (the first task's next attempt or dead letter, its record).
func (e *Engine) Deliver(ctx context.Context, tasks []*outbox.Task) outbox.Report {
	m, cerr := coalesce(tasks)
	task := m.task
	if cerr != nil {
		task = tasks[0]
	}
	j, p, err := e.taskPlan(ctx, task)
	if err == nil && e.fleet {
		var wait time.Duration
		if j, p, wait, err = e.takeOverDelivery(ctx, task, j, p); wait > 0 {
			return outbox.Report{NextAttempt: e.now().Add(wait)} // another gateway delivers it now
		}
	}
	if err == nil {
		err = cerr
	}
	if err == nil && p.adopt && len(tasks) > 1 {
		// An unfinished create is adopted, and an adopted create's flow resumes after the
		// call that made the account: the changes after it are delivered on their own.
		rep := e.Deliver(ctx, tasks[:1])
		if rep.Done {
			rep.Delivered = 1
		}
		return rep
	}
	if err == nil && task.Obligations.Skip {
		if err = e.commitSkipped(j, p, tasks); err == nil {
			return outbox.Report{Done: true}
		}
	}
	if err == nil && m.none {
		if err = e.commitNothing(j, tasks); err == nil {
			return outbox.Report{Done: true}
		}
	}
	var res *syncResult
	if err == nil && !m.none {
		res, err = e.send(j, p, decisionOf(task.Obligations))
		defer res.release()
		if wait, busy := inFlightWait(err); busy {
			return outbox.Report{NextAttempt: e.now().Add(wait)} // another gateway claimed it first
		}
	}
	if err == nil && !m.none {
		if err = e.commitDelivery(j, p, tasks, res); err == nil {
			return outbox.Report{Done: true, AppUp: res.answered()}
		}
		if res.nativeID != "" && !res.dryRun && (p.before == nil || res.caughtUp) {
			e.listAdoption(j, p, res) // the app made the account; the next attempt adopts it
		}
	}
	return e.failDelivery(j, tasks, err)
}

// taskPlan rebuilds the job and the plan of a queued task.
func (e *Engine) taskPlan(ctx context.Context, t *outbox.Task) (*job, *plan, error) {
	j := &job{req: Request{Ctx: ctx, ID: t.RequestID, Client: t.Client}, op: &Op{Action: t.Action, Type: t.Type, ID: t.ID}, now: e.now().UTC(), id: t.ID}
	j.trail = &Trail{Action: change.ActionDeliver, Type: t.Type, ID: t.ID, Subject: t.Subject, events: t.Events, target: e.target.Name}
	p := &plan{job: j, typ: t.Type, id: t.ID, events: t.Events, changed: t.Changed, added: t.Added, removed: t.Removed, holdMissing: true}
	var err error
	if p.before, err = unmarshalDoc(t.Before); err != nil {
		return j, nil, err
	}
	if p.after, err = unmarshalDoc(t.After); err != nil {
		return j, nil, err
	}
	key := e.target.mapKey(p.typ)
	err = e.store.View(func(tx *store.Tx) error {
		p.nativeID, _ = tx.NativeID(key, p.id)
		p.mark = tx.Mark(key, p.id)
		p.progress = decodeProgress(tx.Progress(key, p.id))
		if p.after != nil && (p.before == nil || p.nativeID == "") {
			// A create, or a change that may make the account of a resource without one
			// (catchUp): an earlier attempt whose answer was lost left it listed.
			_, listed := tx.Adoption(e.target.Name, p.typ, SubjectOf(p.typ, p.after))
			p.adopt = listed || e.shared.unrecordedAdoption(e.adoptionKey(p))
			p.adoptSent = e.adoptionSent(tx, p, true)
		}
		return nil
	})
	j.trail.nativeID = p.nativeID
	return j, p, err
}

// decisionOf is the allow decision a task was queued with.
func decisionOf(o outbox.Obligations) policy.Decision {
	return policy.Decision{Allow: true, Reasons: o.Reasons, DropAttributes: o.DropAttributes, DropMembers: o.DropMembers, Deactivate: o.Deactivate}
}

// commitDelivery records delivered tasks: the account's id map and mark, the tasks'
// removal and their records (delivered, or dry_run: the first with the calls, the others
// coalesced into it), in one transaction.
func (e *Engine) commitDelivery(j *job, p *plan, tasks []*outbox.Task, res *syncResult) error {
	outcome := change.Delivered
	if res.dryRun {
		outcome = change.DryRun
	}
	p.newNativeID = res.nativeID
	e.notePolicy(j.trail, tasks[0])
	recs, err := e.deliveryRecords(e.record(j.req, j.trail, outcome, 0, ""), tasks, "coalesced into the delivery of request "+j.req.ID)
	if err != nil {
		return err
	}
	err = e.store.Update(func(tx *store.Tx) error {
		if err := e.updateAccount(tx, p, p); err != nil {
			return err
		}
		return e.removeTasks(tx, tasks, recs)
	})
	if err == nil && p.adopt {
		e.shared.holdAdoption(e.adoptionKey(p), false)
	}
	if err == nil {
		e.delivered(outcome)
	}
	return err
}

// commitNothing records tasks that coalesced into no change (created and deleted, or
// changed and changed back, before delivery): nothing is sent, the tasks are removed.
func (e *Engine) commitNothing(j *job, tasks []*outbox.Task) error {
	rec := e.record(j.req, j.trail, change.Delivered, 0, "")
	rec.Decision = &journal.Decision{Allow: true, PolicyHash: tasks[0].Obligations.PolicyHash,
		Reasons: []string{fmt.Sprintf("%d queued changes undid each other before delivery: nothing sent to %s", len(tasks), e.target.Name)}}
	recs, err := e.deliveryRecords(rec, tasks, "")
	if err != nil {
		return err
	}
	err = e.store.Update(func(tx *store.Tx) error { return e.removeTasks(tx, tasks, recs) })
	if err == nil {
		e.delivered(change.Delivered)
	}
	return err
}

// commitSkipped records queued changes the policy skipped, now that the changes before
// them were delivered: nothing is sent; the account's mark says what it missed (as a skip
// committed at once does), the tasks are removed, each request gets its record (skipped).
func (e *Engine) commitSkipped(j *job, p *plan, tasks []*outbox.Task) error {
	p.skipped = true
	o := tasks[0].Obligations
	rec := e.record(j.req, j.trail, change.Skipped, 0, "")
	rec.Decision = &journal.Decision{Allow: true, Skip: true, PolicyHash: o.PolicyHash,
		Reasons: append(slices.Clone(o.Reasons), "skipped by the policy when it arrived; it waited behind the resource's queued changes: nothing sent to "+e.target.Name)}
	recs, err := e.deliveryRecords(rec, tasks, "")
	if err != nil {
		return err
	}
	err = e.store.Update(func(tx *store.Tx) error {
		if err := e.updateAccount(tx, p, p); err != nil {
			return err
		}
		return e.removeTasks(tx, tasks, recs)
	})
	if err == nil {
		e.delivered(change.Skipped)
	}
	return err
}

// deliveryRecords prepares the record of each task's request: rec for the first, and for
// the others a copy under their own request, without the calls, saying why.
func (e *Engine) deliveryRecords(rec *journal.Record, tasks []*outbox.Task, why string) ([]*journal.Prepared, error) {
	out := make([]*journal.Prepared, 0, len(tasks))
	for i, t := range tasks {
		r := rec
		if i > 0 {
			c := *rec
			c.RequestID, c.Client, c.Events, c.Backend, c.Calls = t.RequestID, t.Client, t.Events, nil, nil
			if why != "" {
				c.Decision = &journal.Decision{Allow: true, PolicyHash: t.Obligations.PolicyHash, Reasons: []string{why}}
			}
			r = &c
		}
		p, err := e.journal.Prepare(r)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// removeTasks deletes delivered tasks from the outbox and appends their records.
func (e *Engine) removeTasks(tx *store.Tx, tasks []*outbox.Task, recs []*journal.Prepared) error {
	for i, t := range tasks {
		if err := tx.DeleteTask(e.target.Name, t.Seq); err != nil {
			return err
		}
		if err := e.journal.AppendPrepared(tx.KV(), recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// delivered tells the metrics how an attempt ended.
func (e *Engine) delivered(outcome change.Outcome) {
	if e.onDelivery != nil {
		e.onDelivery(e.target.Name, outcome)
	}
}

// notePolicy makes a delivery's record name the policy that decided when the change was
// queued (a reload may have changed the policy since).
func (e *Engine) notePolicy(tr *Trail, t *outbox.Task) {
	if tr.decision != nil {
		tr.decision.PolicyHash = t.Obligations.PolicyHash
	}
}

// failDelivery records a failed attempt: the first task's next attempt, or its dead
// letter, with the record (failed or dead) and the app's answer, in one transaction. A
// coalesced delivery the app rejected is not a dead letter: its first task is tried again
// at once on its own (see outbox.Coalescible), so that a dead letter is the change the
// app refused.
func (e *Engine) failDelivery(j *job, tasks []*outbox.Task, err error) outbox.Report {
	settings := e.target.Delivery.WithDefaults()
	now := e.now()
	f := failureOf(err)
	f.Detail = e.scrub(j.trail, f.Detail) // kept in the task, shown by the outbox's routes
	t := tasks[0]
	var dead bool
	if f.Rejected && len(tasks) > 1 {
		t.Attempts++
		t.LastError, t.LastStatus, t.NextAttempt = f.Detail, f.Status, time.Time{}
	} else {
		dead = settings.Fail(t, f, now)
	}
	outcome := change.Failed
	if dead {
		outcome = change.Dead
	}
	if j.trail.decision != nil {
		e.notePolicy(j.trail, t)
	}
	rec := e.record(j.req, j.trail, outcome, 0, f.Detail)
	data, werr := t.Encode()
	if werr == nil {
		werr = e.store.Update(func(tx *store.Tx) error {
			if err := tx.UpdateTask(e.target.Name, t.Seq, data); err != nil {
				return err
			}
			return e.journal.Append(tx.KV(), rec)
		})
	}
	if errors.Is(werr, store.ErrNotFound) {
		return outbox.Report{Done: true} // dropped while it was being delivered
	}
	if werr != nil {
		// Neither the attempt nor the task's new state could be recorded: the task stays
		// as it was and is tried again later.
		e.logger.Error("recording a delivery attempt failed; the task is tried again", zap.String("target", e.target.Name),
			zap.Uint64("task", t.Seq), zap.String("request_id", t.RequestID), zap.Error(werr))
		return outbox.Report{NextAttempt: now.Add(settings.Backoff(t.Attempts, 0))}
	}
	e.delivered(outcome)
	if dead {
		e.logger.Warn("a queued change became a dead letter; the resource's later changes wait behind it",
			zap.String("target", e.target.Name), zap.Uint64("task", t.Seq), zap.String("request_id", t.RequestID),
			zap.String("scim_id", t.ID), zap.Int("attempts", t.Attempts), zap.Int("status", f.Status))
	}
	return outbox.Report{Dead: dead, NextAttempt: t.NextAttempt, Outage: !dead && !f.Rejected && f.App, AppUp: f.Rejected && f.App && f.Status != 0}
}

// answered reports whether the app answered the calls of a delivery that succeeded (not a
// dry run, not a change that needed no call): it is up.
func (r *syncResult) answered() bool { return r != nil && !r.dryRun && len(r.calls) > 0 }

// failureOf says how a delivery attempt failed: rejected by the app (a dead letter at
// once) or not (retried), with the app's status and Retry-After.
func failureOf(err error) outbox.Failure {
	var (
		ne    *nativeError
		dn    *Denied
		se    *scim.Error
		taken *store.NativeIDTakenError
	)
	switch {
	case errors.As(err, &ne):
		f := outbox.Failure{Rejected: ne.scim.Status < 500 && ne.scim.Status != http.StatusTooManyRequests, Detail: ne.scim.Detail, App: true}
		if len(ne.calls) > 0 {
			f.Status = ne.calls[len(ne.calls)-1].Status
		}
		var le *legacy.Error
		if errors.As(ne.cause, &le) {
			f.RetryAfter = le.RetryAfter
		}
		return f
	case errors.As(err, &dn):
		return outbox.Failure{Rejected: true, Detail: dn.SCIMError().Detail}
	case errors.As(err, &se):
		return outbox.Failure{Rejected: se.Status < 500, Detail: se.Detail}
	case errors.As(err, &taken):
		// The app's account is one the directory maps to another resource: trying again
		// maps it no better, an operator has to say which mapping is stale.
		return outbox.Failure{Rejected: true, Detail: takenDetail(taken)}
	}
	return outbox.Failure{Detail: "the gateway could not deliver the change (" + err.Error() + "); it is tried again"}
}

// RecordAction journals an operator's action on the target's outbox, with who did it
// (outbox.Deliverer): a task's record carries the queued request's id.
//
// On a shared store the gateway an operator reaches may not be the one delivering the
// outbox, and has no index of the attempts in flight: a retry or drop of a task whose
// delivery has an open intent that is not stale (another gateway is making its calls) is
// refused (outbox.ErrConflict), as the delivering gateway refuses it; removed under the
// calls, the task's commit would fail and the account they made would not be mapped.
func (e *Engine) RecordAction(tx *store.Tx, a outbox.Action) error {
	rec := &journal.Record{Client: a.By, Target: e.target.Name, Action: a.Kind, Outcome: change.Applied}
	if t := a.Task; t != nil && e.fleet {
		in, err := e.journal.OpenIntent(tx.KV(), e.target.Name, t.RequestID)
		if err != nil {
			return err
		}
		if in != nil {
			if stale, _ := e.staleIntent(in, e.now()); !stale {
				return fmt.Errorf("%w: task %d is being delivered (an attempt started at %s); try again when the attempt ends",
					outbox.ErrConflict, t.Seq, in.Time.UTC().Format(time.RFC3339))
			}
		}
	}
	if t := a.Task; t != nil {
		rec.RequestID, rec.ResourceType, rec.SCIMID, rec.Subject, rec.Events = t.RequestID, t.Type, t.ID, t.Subject, t.Events
	}
	return e.journal.Append(tx.KV(), rec)
}

// Attempts returns the journal records of a task's delivery attempts and of what operators
// did to it, oldest first (outbox.Deliverer).
func (e *Engine) Attempts(ctx context.Context, t *outbox.Task) ([]journal.Record, error) {
	var out []journal.Record
	q := journal.Query{SCIMID: t.ID, FromTime: t.Queued.Add(-time.Minute)}
	err := scanRecords(e.journal, q, func(r *journal.Record) {
		if r.RequestID == t.RequestID && r.Action != t.Action && r.Target == e.target.Name {
			out = append(out, *r)
		}
	})
	return out, err
}

// startWorker starts the outbox worker of e's target on this store (delivering for e), or
// returns the running one, which stays with the engine it delivers for until e is
// activated (a reload: see Activate).
func (s *Shared) startWorker(e *Engine) (*outbox.Worker, error) {
	s.workersMu.Lock()
	defer s.workersMu.Unlock()
	t := e.target
	if w := s.workers[t.Name]; w != nil {
		return w, nil
	}
	// Before this gateway delivers anything of the target: the tasks an earlier release
	// queued are indexed by the names they free, and those that take such a name wait.
	if _, err := e.indexNames(); err != nil {
		return nil, err
	}
	w, err := outbox.Start(t.Name, e.store, e, t.Delivery, s.elector, e.logger.Named("outbox"))
	if err != nil {
		return nil, fmt.Errorf("loading the outbox of %s: %w", t.Name, err)
	}
	if s.workers == nil {
		s.workers = map[string]*outbox.Worker{}
	}
	s.workers[t.Name] = w
	return w, nil
}

// Activate makes e the engine in force of its store: its target's outbox worker delivers
// for it, with its settings, and without a policy the target's counts are dropped. A
// configuration calls it once it has started, so that one Caddy refuses (the reload brake,
// another app that does not start) never delivers; Release hands the worker back.
func (e *Engine) Activate() {
	if e.policy == nil {
		e.shared.dropStats(e.targetName())
	}
	if e.worker == nil {
		return
	}
	s, name := e.shared, e.target.Name
	s.workersMu.Lock()
	defer s.workersMu.Unlock()
	if s.active == nil {
		s.active = map[string][]*Engine{}
	}
	s.active[name] = append(slices.DeleteFunc(s.active[name], func(o *Engine) bool { return o == e }), e)
	e.worker.Configure(e, e.target.Delivery)
	s.handSweeper(name, e)
}

// Release says that e's configuration is gone (Caddy cleaned it up): when e delivered its
// target's outbox, the worker goes back to the engine activated before it that is still in
// force (a configuration that started and was then thrown away hands it back to the one
// that keeps serving). Attempts e's worker has in flight finish.
//
// When no configuration in force names e's target any more (a reload renamed the target
// or dropped it, or a configuration that named a new one was thrown away), the target's
// worker and sweeper stop, as they do when the store closes: attempts in flight are
// cancelled and the target's queued changes stay in the outbox, delivered once a
// configuration names the target again. Otherwise every name the open store ever saw
// kept a worker delivering with a configuration no longer in force.
func (e *Engine) Release() {
	if e.worker == nil {
		return
	}
	s, name := e.shared, e.target.Name
	s.workersMu.Lock()
	defer s.workersMu.Unlock()
	list := s.active[name]
	last := len(list) > 0 && list[len(list)-1] == e
	list = slices.DeleteFunc(list, func(o *Engine) bool { return o == e })
	if len(list) > 0 {
		s.active[name] = list
		prev := list[len(list)-1]
		if last {
			e.worker.Configure(prev, prev.target.Delivery)
		}
		s.handSweeper(name, prev)
		return
	}
	delete(s.active, name)
	if w := s.workers[name]; w == e.worker {
		// Stopped under workersMu: a configuration naming the target again starts its
		// worker only once this one's attempts have ended.
		delete(s.workers, name)
		w.Stop()
	}
	s.stopSweeper(name)
}

// Close stops the outbox workers and the periodic recoveries (before the store closes);
// attempts in flight finish or are cancelled, and their tasks stay in the outbox.
func (s *Shared) Close() {
	s.stopSweepers()
	s.workersMu.Lock()
	workers := s.workers
	s.workers = nil
	s.workersMu.Unlock()
	for _, w := range workers {
		w.Stop()
	}
}

// Worker is the outbox worker of the engine's target (nil without a target).
func (e *Engine) Worker() *outbox.Worker { return e.worker }
