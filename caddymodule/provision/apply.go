package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Op is one write request as Entra made it, parsed and validated by the HTTP layer.
type Op struct {
	// Action is change.ActionCreate, ActionReplace, ActionPatch or ActionDelete.
	Action change.Action
	// Type is scim.UserType or scim.GroupType.
	Type string
	// ID is the resource's SCIM id; empty on create (the engine assigns one).
	ID string
	// Resource is the prepared body of a create or replace.
	Resource *scim.Prepared
	// Patch holds a PATCH's operations.
	Patch []scim.PatchOp
	// Repair is what a change.ActionRepair brings back in line (see Engine.Repair).
	Repair *Repair
	// IfMatch is the request's If-Match precondition ("" for none).
	IfMatch string
	// Status is what a success answers (201, 200 or 204); the journal records it.
	Status int
	// Render, when set, turns the record just written into the answer inside the commit's
	// transaction (where a group's members and a user's groups are read). doc is the
	// record's attributes as stored, a map of its own at the top level. It may run more
	// than once: group commit reruns a transaction's functions.
	Render func(tx *store.Tx, rec *store.Record, doc scim.Resource) (any, error)
}

// Request says who asks, for the journal and the logs.
type Request struct {
	Ctx    context.Context
	ID     string // the request id (Caddy's http.request.uuid), in logs and the journal
	Client string // the name of the token the client authenticated with
}

func (r Request) ctx() context.Context {
	if r.Ctx == nil {
		return context.Background()
	}
	return r.Ctx
}

// Result is what Apply did.
type Result struct {
	// ID is the resource's SCIM id (new on create).
	ID string
	// Version is the version stored (0 after a delete).
	Version uint64
	// Answer is what Op.Render returned.
	Answer any
	// Status is the status to answer: Op.Status on success, else Err's.
	Status int
	// Err is the SCIM error to answer, nil on success.
	Err *scim.Error
	// RetryAfter is how long the client should wait before retrying (0: say nothing).
	RetryAfter time.Duration
	// Record is the journal record of the request's outcome (as built; the journal adds
	// its sequence number, time and hashes).
	Record *journal.Record
}

// Apply carries out one write and journals it, top to bottom:
//
//  1. decide: load the current resource, compute the new one, its semantic events and
//     member deltas (a read transaction; one transaction with the commit when there is
//     neither a policy nor a target);
//  2. policy: decide on the change (deny: 403, nothing changed, nothing sent; skip: the
//     directory takes the change, the app gets nothing; allow, with obligations);
//  3. intent: journal the change as pending, durably, before the app sees anything;
//  4. native calls: the mapping's calls for the events, shaped by the obligations;
//  5. commit: the resource, memberships, id map, account mark and outcome record in one
//     transaction shared with concurrent writers.
//
// A failure at any step is answered as the SCIM error it means and journaled as rejected,
// denied or failed; Result.Err says which.
//
// A change of a group's members larger than MemberChunk edges is applied in parts (see
// runParts). Apply keeps no reference to op of its own: a large member change lets go of
// the request's decoded member list once it has been split (issue 11).
func (e *Engine) Apply(req Request, op *Op) *Result {
	status := op.Status
	j := e.newJob(req, op)
	p, err := e.run(j)
	if err != nil {
		return e.fail(req, j.trail, err)
	}
	res := &Result{ID: p.id, Status: status, Answer: p.answer, Record: p.record}
	if p.rec != nil {
		res.Version = p.rec.Version
	}
	return res
}

// run decides, checks and delivers a job's change, and returns the plan that was committed.
//
// With neither a policy nor a target the change is decided, applied and journaled in one
// transaction. Otherwise the resource is locked for the request, the change is decided in
// a read transaction, the policy decides on it, and then: a deny changes nothing; a skip,
// or an allow without a target, commits the change with its record; an allow with a
// target journals the intent, makes the native calls and commits the change, the id map
// and the outcome in one transaction.
func (e *Engine) run(j *job) (*plan, error) {
	if e.target == nil && e.policy == nil {
		var decided *plan
		if a := j.op.Action; a == change.ActionPatch || a == change.ActionReplace {
			p, err := e.decideView(j)
			if s := splitOf(err); s != nil {
				return e.runParts(j, s)
			}
			if err != nil || p.same {
				return e.answerUnchanged(j, p, err)
			}
			decided = p
		}
		p, err := e.commitAlone(j, decided)
		if s := splitOf(err); s != nil {
			return e.runParts(j, s)
		}
		if s := deleteSplitOf(err); s != nil {
			return e.runDeleteParts(j, s)
		}
		return p, err
	}
	if !j.locked {
		unlock := e.lockJob(j)
		defer unlock()
	}
	p, err := e.decideView(j)
	if name := renamedTo(p, err); name != "" && e.target != nil {
		// A rename calls the app with a name that may be another resource's: decided again
		// under the name's lock, it cannot race a create or another rename to it (each would
		// pass the uniqueness check before the other commits, and the app would get both).
		// The resource's lock is held already: locks go resource first, then name.
		unlock := e.locks.lock(nameLockKey(j.op.Type, name))
		defer unlock()
		p, err = e.decideView(j)
	}
	if s := splitOf(err); s != nil {
		return e.runParts(j, s) // under this job's locks
	}
	if s := deleteSplitOf(err); s != nil {
		return e.runDeleteParts(j, s) // under this job's locks
	}
	if err != nil {
		return nil, err
	}
	j.trail.fill(p)
	if e.target != nil {
		j.trail.target = e.target.Name
	}

	var v verdict
	if j.part != nil && j.part.decision != nil {
		v = verdict{decision: *j.part.decision, release: func() {}} // the request's (decideWhole)
	} else {
		v = e.decidePolicy(j, p)
	}
	if v.err != nil {
		return nil, v.err
	}
	if v.undecided != nil {
		return nil, &Undecided{Err: v.undecided}
	}
	d := v.decision
	if e.policy != nil {
		j.trail.decision = e.journalDecision(d, nil, nil)
	}
	if !d.Allow {
		return nil, &Denied{Decision: d}
	}
	if p.unlink != nil {
		e.noteUnlink(j, p)
		if d.Skip || e.target == nil || len(p.events) == 0 {
			// A delete's part that only unlinks edges in the directory: nothing to send.
			p.skipped = d.Skip
			done, err := e.commit(j, p, change.Applied)
			if err != nil {
				v.release()
			}
			return done, err
		}
	}
	if p.same && (d.Skip || e.target == nil || (!d.Deactivate && p.mark == change.MarkNone)) {
		// Nothing to store and nothing to send: no intent, no commit, no call.
		v.release()
		return e.answerUnchanged(j, p, nil)
	}
	if d.Skip || e.target == nil {
		if done, queued, err := e.queueSkip(j, p, d); queued || err != nil {
			if err != nil {
				v.release()
			}
			return done, err
		}
		outcome := change.Applied
		if d.Skip {
			outcome = change.Skipped
		}
		p.skipped = d.Skip
		done, err := e.commit(j, p, outcome)
		if err != nil {
			v.release()
		}
		return done, err
	}
	done, err := e.deliverOrQueue(j, p, d)
	if err != nil {
		v.release()
	}
	return done, err
}

// commitAlone decides, applies and journals a change in one transaction: the path of a
// gateway with neither a policy nor a target. A PATCH or PUT comes with the plan its read
// transaction decided (decided, else nil), which stands when the resource is still as it
// was decided on (redecide): deciding it again would look up every member edge once more,
// inside the commit that every concurrent writer waits for.
func (e *Engine) commitAlone(j *job, decided *plan) (*plan, error) {
	var done *plan
	err := e.store.Update(func(tx *store.Tx) error {
		var p *plan
		var err error
		if decided != nil {
			p, err = e.redecide(tx, j, decided)
		} else {
			p, err = e.decide(tx, j)
		}
		if err != nil {
			return err
		}
		if err := e.applyPlan(tx, p); err != nil {
			return err
		}
		j.trail.fill(p)
		if p.unlink != nil {
			e.noteUnlink(j, p)
		}
		p.record = e.record(j.req, j.trail, change.Applied, j.op.Status, "")
		done = p
		if err := e.journal.Append(tx.KV(), p.record); err != nil {
			return err
		}
		return e.appendCascade(tx, p)
	})
	return done, err
}

// answerUnchanged answers a change that leaves the resource as it is (p.same: decideView
// rendered it from the stored record in its read transaction). It is journaled only when
// reads are: it changed nothing, like a read.
func (e *Engine) answerUnchanged(j *job, p *plan, err error) (*plan, error) {
	if err != nil {
		return nil, err
	}
	if e.reads {
		rec := e.record(j.req, j.trail, change.Applied, j.op.Status, "")
		if err := e.store.Update(func(tx *store.Tx) error { return e.journal.Append(tx.KV(), rec) }); err != nil {
			return nil, err
		}
		p.record = rec
	}
	return p, nil
}

// appendCascade appends, after a change's own record, the records of the other resources
// it changed (see unlinkReports).
func (e *Engine) appendCascade(tx *store.Tx, p *plan) error {
	for _, c := range p.cascade {
		if err := e.journal.AppendPrepared(tx.KV(), c); err != nil {
			return err
		}
	}
	return nil
}

// decideView decides the change in a read transaction, with what the policy and the calls
// need to know of the resource's account in the app.
func (e *Engine) decideView(j *job) (*plan, error) {
	var (
		p     *plan
		stale *journal.Record // another request's unfinished create of the name (fleet.go)
	)
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		if p, err = e.decide(tx, j); err != nil {
			return err
		}
		if p.same, err = p.unchanged(tx); err != nil {
			return err
		}
		if p.same && e.target != nil {
			// Answered as it is, p has no claim (fleet.go): a change that leaves the resource
			// as it is while another gateway's change of it is in flight would be answered
			// before that change, and lost when it commits.
			if err := e.callsInFlight(tx, j, p); err != nil {
				return err
			}
		}
		asIs := false // run answers p as it stands (answeredAsIs)
		if t := e.target; t != nil && p.before != nil && !p.recreate {
			key := t.mapKey(p.typ)
			p.mark = tx.Mark(key, p.id)
			// Answered as it is, p makes no call: of the account, only the journal's record
			// of it (reads journaled) names the native id.
			if asIs = e.answeredAsIs(j, p); !asIs || e.reads {
				p.nativeID, _ = tx.NativeID(key, p.id)
			}
			if !asIs {
				p.progress = decodeProgress(tx.Progress(key, progressKey(p)))
				if p.typ == scim.GroupType {
					p.role = tx.Role(t.Name, p.id)
				}
			}
		} else {
			asIs = e.answeredAsIs(j, p)
		}
		if t := e.target; t != nil && !asIs {
			// Read with the account (its native id, mark and progress) in one transaction: a
			// task the worker delivers after this read is one this change waits behind, and
			// one it delivered before is in the account read here. Read apart, a create
			// delivered in between left the change deciding on no account and no task, and it
			// made the account a second time.
			p.queuedSelf = tx.HasTasks(t.Name, p.id)
			p.queuedRefs = slices.ContainsFunc(refsOf(p), func(id string) bool { return tx.HasTasks(t.Name, id) })
			if p.nameWaits, err = e.nameWaitsOf(tx, p); err != nil {
				return err
			}
		}
		if p.same {
			p.rec = p.current // read in this transaction
			// Answered as it is, p is rendered once only: the answer may take its document.
			doc := p.stored
			if !asIs {
				doc = maps.Clone(doc)
			}
			if err := p.renderDoc(tx, doc); err != nil {
				return err
			}
		}
		if t := e.target; t != nil && p.before == nil {
			if stale, err = e.createInFlight(tx, j, p); err != nil {
				return err
			}
			_, listed := tx.Adoption(t.Name, p.typ, SubjectOf(p.typ, p.after))
			p.adopt = listed || stale != nil || e.shared.unrecordedAdoption(e.adoptionKey(p))
			if p.adopt {
				p.adoptSent = e.adoptionSent(tx, p, stale == nil)
				// The calls an unfinished attempt of this create made after the account, not to
				// be made again when the flow resumes.
				p.progress = decodeProgress(tx.Progress(t.mapKey(p.typ), progressKey(p)))
			}
		} else if t != nil && p.after != nil && p.nativeID == "" && !asIs {
			// A resource without an account, whose change may make it (catchUp): an earlier
			// attempt whose answer was lost left it listed, and the account is adopted. A
			// reconcile's repair of a missing account looks it up too: a listing that
			// missed it (an app that changed while it was listed) must not make a second.
			_, listed := tx.Adoption(t.Name, p.typ, SubjectOf(p.typ, p.after))
			p.adopt = listed || p.recreate || e.shared.unrecordedAdoption(e.adoptionKey(p))
			p.adoptSent = e.adoptionSent(tx, p, true)
		}
		if e.policy != nil {
			p.memberRefs = policy.Members{Add: memberRefs(tx, p.added), Remove: memberRefs(tx, p.removed)}
		}
		if p.typ == scim.UserType && p.after != nil {
			if m := managerRef(p.after); m != "" {
				_, err := tx.TypeOf(m)
				p.managerKnown = err == nil
			}
		}
		return nil
	})
	if err == nil && stale != nil {
		err = e.closeStaleCreate(stale)
	}
	return p, err
}

// answeredAsIs reports whether run answers p as it stands (answerUnchanged, or a denial)
// whatever else the read transaction finds, so that p is never applied nor rendered again:
// p leaves the resource as it is (p.same), and there is no target, or the app's account
// has no mark to bring back in line and there is no policy to turn the change into a
// deactivation (nor a decision of a whole change applied in parts). mark must be read.
func (e *Engine) answeredAsIs(j *job, p *plan) bool {
	if !p.same || j.part != nil {
		return false
	}
	if e.target == nil {
		return true // allowed (or denied), it is answered unchanged: there is no app to tell
	}
	return p.mark == change.MarkNone && e.policy == nil
}

// deliver makes an allowed change's native calls and commits it: the intent is journaled
// first, then the app is called with the plan shaped by the policy's obligations, then the
// directory, id map, marks and outcome are committed together.
func (e *Engine) deliver(j *job, p *plan, d policy.Decision) (*plan, error) {
	res, err := e.send(j, p, d)
	if err != nil {
		return nil, err
	}
	defer res.release() // role locks, held until the commit
	outcome := change.Applied
	switch {
	case res.dryRun:
		outcome = change.DryRun
	case res.noRole != "":
		outcome = change.Skipped // a group that gives no role: the directory only
	}
	p.newNativeID = res.nativeID
	p.newRole, p.roleDecided = res.role, res.roleDecided
	if !res.dryRun {
		p.addedKnown = res.addedSent
	}
	j.sent = e.fleet && !res.dryRun
	p.roleLists = res.roleLists
	done, err := e.commitWith(j, p, outcome, func(tx *store.Tx, p, p2 *plan) error {
		if err := e.updateAccount(tx, p, p2); err != nil {
			return err
		}
		if res.dryRun || (p2 != p && managerRef(p2.after) != managerRef(p.after)) {
			return nil
		}
		p2.managerKnown = p.managerKnown // the calls sent the manager as decided
		return e.unlinkLateManager(tx, p2)
	})
	switch {
	case err != nil && res.nativeID != "" && !res.dryRun && (p.before == nil || res.caughtUp) && j.sent && errors.Is(err, kv.ErrUnavailable):
		// The store just failed this commit: listing the create would wait out the
		// store's request_timeout again, almost surely in vain. This process adopts it
		// meanwhile, and closing the intent (intentEnded) lists it once the store takes
		// writes again.
		e.shared.holdAdoption(e.adoptionKey(p), true)
	case err != nil && res.nativeID != "" && !res.dryRun && (p.before == nil || res.caughtUp):
		// The app has the account but the directory could not record it: let Entra's
		// retry adopt it rather than create a second one.
		e.listAdoption(j, p, res)
	}
	switch {
	case err != nil && j.sent:
		// The calls are over but their outcome is not stored: the intent is closed as soon
		// as the store takes it, rather than hold the resource until its time bound.
		e.intentEnded(j.req.ID, endedAfterCalls)
	case err == nil && p.adopt:
		e.shared.holdAdoption(e.adoptionKey(p), false)
	}
	return done, err
}

// send shapes an allowed change for the app by the policy's obligations, journals the
// intent and makes the native calls; the journal's trail gets the calls and why some were
// not made. On success the caller releases the result (role locks) after its commit. A failure leaves what the retry needs: a create that may have reached the app
// listed for adoption, the calls of a flow made so far kept with the resource.
//
// When the app answers an update of the resource's account (update, deactivate,
// reactivate) with its own "no such object", the account is gone while the directory still
// maps it: answering 404 would never converge (Entra's re-create meets the directory's
// resource, 409, and its next change the same 404). The mapping is dropped instead
// (dropGoneAccount), and the change goes on as one of a resource without an account: a
// create with the resource's new state (catchUp), under an intent of its own and adopted
// like any create whose answer is lost. A deactivation needs no account: the user is
// inactive and has none, which is what Entra asked for.
func (e *Engine) send(j *job, p *plan, d policy.Decision) (*syncResult, error) {
	res, err := e.sendOnce(j, p, d)
	var ne *nativeError
	if !errors.As(err, &ne) || !ne.gone {
		return res, err
	}
	gone := p.nativeID
	moved, err := e.findMoved(j, p, ne)
	if err != nil {
		return nil, err
	}
	if moved != "" {
		return e.sendToMoved(j, p, d, ne, moved)
	}
	if err := e.dropGoneAccount(j, p, ne, ""); err != nil {
		return nil, err
	}
	why := "account " + gone + " was gone from " + e.target.Name + " (its own \"no such object\" answered the change): the mapping to it was dropped"
	if p.typ == scim.UserType && change.Has(p.events, change.Deactivate) {
		e.noteReasons(j.trail, why+"; the user is inactive, so no account is made for it (a later change that needs one makes it)")
		return &syncResult{}, nil
	}
	if res, err = e.sendOnce(j, p, d); err == nil {
		e.noteReasons(j.trail, why+", and the change was sent as a create")
	}
	return res, err
}

// sendOnce is one attempt of send: shape, intent, calls.
func (e *Engine) sendOnce(j *job, p *plan, d policy.Decision) (*syncResult, error) {
	np, clearsManager, err := e.shape(j, p, d)
	if err != nil {
		return nil, err
	}
	// The intent, durable before the app sees anything: after a crash between the call and
	// the commit, the journal shows a pending change without an outcome. On a shared store
	// the calls end by a deadline set before it, which bounds how long it stays open.
	ctx, cancel := e.flowContext(j.req.ctx())
	defer cancel()
	if !e.target.DryRun && e.anyMapped(np) {
		intent, owner, err := e.prepareIntent(ctx, j, e.catchesUp(np))
		if err != nil {
			return nil, err
		}
		ctx = e.ownerGuard(ctx, owner)
		err = e.store.Update(func(tx *store.Tx) error {
			if err := e.claimIntent(tx, j, p); err != nil {
				return err
			}
			return e.journal.AppendPrepared(tx.KV(), intent)
		})
		if err != nil {
			if errors.Is(err, kv.ErrUnavailable) {
				// etcd may have stored the intent all the same (a commit that timed out):
				// it is closed once the store takes writes again, with no call made.
				e.intentEnded(j.req.ID, endedBeforeCalls)
			}
			return nil, err
		}
	}
	res, err := e.syncNative(ctx, np)
	return e.afterCalls(j, p, res, err, clearsManager)
}

// dropGoneAccount records that the account the directory maps resource p to is gone from
// the app (its own "no such object" answered the change's calls, ne): the id map entry,
// the account's mark and the flow's progress are dropped, with a record (action
// reconcile, the request's id, the old native id and the calls) that says so and closes
// the change's intent. p is left as a resource without an account; or, when moved is set
// (the app's lookup finds the resource's account under that id: the app renamed it), as
// a resource whose account is moved, the id map naming it.
func (e *Engine) dropGoneAccount(j *job, p *plan, ne *nativeError, moved string) error {
	t := e.target
	key := t.mapKey(p.typ)
	rec := &journal.Record{
		RequestID:    j.req.ID,
		Part:         j.trail.part,
		Client:       j.req.Client,
		Action:       change.ActionReconcile,
		ResourceType: p.typ,
		SCIMID:       p.id,
		Subject:      j.trail.Subject,
		Target:       t.Name,
		NativeID:     p.nativeID,
		Outcome:      change.Applied,
		Calls:        ne.calls,
		Error:        fmt.Sprintf("account %s is gone from %s (its own \"no such object\" answered the change's call): the mapping to it was dropped", p.nativeID, t.Name),
	}
	if moved != "" {
		rec.Error = fmt.Sprintf("account %s is gone from %s (its own \"no such object\" answered the change's call), and its lookup finds the resource's account as %s: the mapping names %s now", p.nativeID, t.Name, moved, moved)
	}
	if n := len(ne.calls); n > 0 {
		last := ne.calls[n-1]
		rec.Backend = &last
	}
	prepared, err := e.journal.Prepare(rec)
	if err != nil {
		return err
	}
	err = e.store.Update(func(tx *store.Tx) error {
		if cur, err := tx.NativeID(key, p.id); err == nil && cur == p.nativeID {
			if moved != "" {
				err = tx.SetNativeID(key, p.id, moved)
			} else {
				err = tx.DeleteNativeID(key, p.id)
			}
			if err != nil {
				return err
			}
			if tx.Mark(key, p.id) != change.MarkNone {
				if err := tx.SetMark(key, p.id, change.MarkNone); err != nil {
					return err
				}
			}
		}
		if len(p.progress) > 0 {
			if err := tx.SetProgress(key, progressKey(p), nil); err != nil {
				return err
			}
		}
		return e.journal.AppendPrepared(tx.KV(), prepared)
	})
	if err != nil {
		return err
	}
	e.logger.Warn("an account the directory maps is gone from the app; the mapping was dropped, or moved to the account its lookup finds",
		zap.String("request_id", j.req.ID), zap.String("target", t.Name), zap.String("resource_type", p.typ),
		zap.String("scim_id", p.id), zap.String("native_id", p.nativeID), zap.String("moved_to", moved))
	p.nativeID, p.mark, p.progress = moved, change.MarkNone, nil
	j.trail.nativeID = moved
	return nil
}

// shape applies the policy's decision to plan p for the app (shapeForApp), notes it in the
// trail, and returns the plan the calls are built from, and whether it clears a manager
// deleted earlier.
func (e *Engine) shape(j *job, p *plan, d policy.Decision) (*plan, bool, error) {
	tr := j.trail
	np, droppedAttrs, droppedMembers, err := shapeForApp(p, d)
	if err != nil {
		// A policy asking for the impossible (dropping id, an unparsable path) is a policy
		// error: fail closed.
		e.logger.Warn("policy obligations could not be applied; the change is denied (fail closed)",
			zap.String("request_id", j.req.ID), zap.Error(err))
		denied := policy.Decision{Reasons: []string{"policy error: " + err.Error()}}
		tr.decision = e.journalDecision(denied, nil, nil)
		return nil, false, &Denied{Decision: denied}
	}
	if e.policy != nil {
		tr.decision = e.journalDecision(d, droppedAttrs, droppedMembers)
	}
	p.dropped = droppedMembers
	np.droppedAttrs, np.dropAttributes = droppedAttrs, d.DropAttributes
	p.deactivates = d.Deactivate && p.typ == scim.UserType && p.after != nil
	clearsManager := false
	switch {
	case p.deactivates && p.nativeID == "":
		np.events = nil // no account to deactivate
	case !p.deactivates && p.nativeID != "" && np.after != nil && (p.mark == change.MarkDeactivated || p.mark == change.MarkStale):
		// The app's account missed changes the policy skipped (the user was out of
		// scope): this change carries every attribute, and undoes a deactivation the
		// policy made while the directory's user stayed active.
		np.changed = attributeNames(np.after)
		if !change.Has(np.events, change.Update) {
			np.events = append(slices.Clone(np.events), change.Update)
		}
		if p.mark == change.MarkDeactivated && activeOf(np.after) && !change.Has(np.events, change.Reactivate) {
			np.events = append(np.events, change.Reactivate)
		}
	case !p.deactivates && p.nativeID != "" && np.after != nil && p.mark == change.MarkManagerGone:
		clearsManager = sendManager(np, droppedAttrs)
	}
	return np, clearsManager, nil
}

// prepareIntent prepares the record of j's intent (outcome pending), owned by this gateway
// on a shared store (owner: its lease, "" otherwise; the intent's calls go only while it
// holds, see ownerGuard); creates says that the calls make the resource's account.
func (e *Engine) prepareIntent(ctx context.Context, j *job, creates bool) (*journal.Prepared, string, error) {
	rec := e.record(j.req, j.trail, change.Pending, 0, "")
	if creates && !change.Has(rec.Events, change.Create) {
		// A change that makes the resource's account (catchUp): its intent says so, so that
		// after a crash the account it may have made is adopted, not made twice (closeIntent).
		rec.Events = append([]change.Event{change.Create}, rec.Events...)
	}
	if err := e.ownIntent(ctx, rec); err != nil {
		return nil, "", err
	}
	prepared, err := e.journal.Prepare(rec)
	return prepared, rec.Owner, err
}

// afterCalls completes a change's calls: the trail gets them and why some were not made;
// a failure leaves what the retry needs (a create that may have reached the app listed
// for adoption, the calls of a flow made so far kept with the resource).
func (e *Engine) afterCalls(j *job, p *plan, res *syncResult, err error, clearsManager bool) (*syncResult, error) {
	t, tr := e.target, j.trail
	if err != nil {
		res.release() // role locks; on success the caller holds them until its commit
		var ne *nativeError
		if errors.As(err, &ne) {
			tr.noteCalls(ne.calls)
			if (p.before == nil || res.caughtUp) && ne.mayHaveActed {
				// The app may have made the account: Entra's retry looks it up first.
				e.listAdoption(j, p, res)
			}
			if len(ne.made) > 0 && (p.before != nil || ne.mayHaveActed) {
				// Part of the flow was made: its retry must not make those calls again (a
				// create's retry, which has a SCIM id of its own, finds them by its name).
				e.keepProgress(j, p, append(slices.Clone(p.progress), ne.made...))
			}
		}
		return nil, err
	}
	tr.noteCalls(res.calls)
	if res.nativeID != "" {
		tr.nativeID = res.nativeID
	}
	reasons := syncReasons(t.Name, res)
	if clearsManager {
		reasons = append(reasons, "the account in "+t.Name+" still linked a manager deleted earlier: this change sends the manager (none)")
	}
	e.noteReasons(tr, reasons...)
	return res, nil
}

// noteReasons adds to the record's decision why the calls were made as they were.
func (e *Engine) noteReasons(tr *Trail, reasons ...string) {
	if len(reasons) == 0 {
		return
	}
	if tr.decision == nil {
		tr.decision = &journal.Decision{Allow: true}
	}
	tr.decision.Reasons = append(slices.Clone(tr.decision.Reasons), reasons...)
}

// commit commits plan p with the outcome record in a transaction shared with concurrent
// writers: p is decided again if the resource changed since (redecide), applied, the
// account's id map entry and mark are updated (with a target), and the record, prepared
// before the transaction, is appended, followed by the records of other resources the
// change changed (a deleted manager's reports). It returns the plan that was applied.
func (e *Engine) commit(j *job, p *plan, outcome change.Outcome) (*plan, error) {
	return e.commitWith(j, p, outcome, e.updateAccount)
}

// commitWith is commit with what the change does to the resource's account in the app
// (with a target) done by account: updateAccount after the calls, or a queued change's
// task added to the outbox.
func (e *Engine) commitWith(j *job, p *plan, outcome change.Outcome, account func(tx *store.Tx, p, p2 *plan) error) (*plan, error) {
	rec := e.record(j.req, j.trail, outcome, j.op.Status, "")
	prepared, err := e.journal.Prepare(rec)
	if err != nil {
		return nil, err
	}
	var done *plan
	err = e.store.Update(func(tx *store.Tx) error {
		if j.sent {
			if err := e.overtaken(tx, p); err != nil {
				return err
			}
			if err := e.rolesMoved(tx, p); err != nil {
				return err
			}
		}
		p2, err := e.redecide(tx, j, p)
		if err != nil {
			return err
		}
		if err := refuseGoneMembers(tx, e.target, p.addedKnown); err != nil {
			return err
		}
		if err := e.applyPlan(tx, p2); err != nil {
			return err
		}
		if e.target != nil {
			if err := account(tx, p, p2); err != nil {
				return err
			}
		}
		done = p2
		if err := e.journal.AppendPrepared(tx.KV(), prepared); err != nil {
			return err
		}
		return e.appendCascade(tx, p2)
	})
	if err != nil {
		return nil, err
	}
	done.record = rec
	return done, nil
}

// redecide returns the plan to apply in the commit's transaction: p itself when the stored
// resource is still the version p was decided on (the request holds the resource's lock,
// so it normally is; a group's member change holds the group shared, and another member
// change of the group may have committed first, see lockJob), else a fresh decision. Deciding again would decode the resource and
// apply the PATCH once more inside the commit, which every concurrent writer waits for;
// comparing the version is one read. A create's plan stands as decided: its id is new, and
// the store refuses a userName or displayName taken in the meantime (409) when it writes.
//
// A PATCH without If-Match whose resource moved on with its document as it was (other
// member changes of the group committed first, which touch only their own edges and the
// record's version) stands too when its members still change the same way: deciding it
// again from the same document, the same request and the same edges gives the same plan.
func (e *Engine) redecide(tx *store.Tx, j *job, p *plan) (*plan, error) {
	if p.before == nil {
		return p, nil
	}
	if v, err := tx.Version(p.typ, p.id); err == nil && v == p.version {
		return p, nil
	}
	if j.op.Action == change.ActionPatch && j.op.IfMatch == "" {
		cur, err := tx.Get(p.typ, p.id)
		if err == nil && bytes.Equal(cur.Doc, p.beforeDoc) {
			added, removed, err := memberChangesOf(tx, p.id, p.delta)
			if err == nil && slices.Equal(added, p.added) && slices.Equal(removed, p.removed) {
				return p, nil
			}
		}
	}
	return e.decide(tx, j)
}

// refuseGoneMembers refuses, in the commit of a change that adds members, the members of
// known (those the app was told of, or a queued task will tell it of) that the directory no
// longer has and whose account is gone from the app too: deleted after the change was
// decided. On one gateway a user's delete holds the user's memberships (lockMemberships), so
// a change naming the user commits before it or decides after it; in a fleet each gateway
// locks for itself, and a re-add decided through one gateway while another deletes the user
// reaches its commit after the delete's. Committing it would leave a membership of a
// member that is gone (and that the app no longer has): it is refused as an add of a member
// without an account is (400 invalidValue), and Entra's next cycle sees the member gone.
func refuseGoneMembers(tx *store.Tx, t *Target, known []string) error {
	if t == nil || len(known) == 0 {
		return nil
	}
	var gone []string
	for _, id := range known {
		_, err := tx.TypeOf(id)
		switch {
		case err == nil:
		case !errors.Is(err, store.ErrNotFound):
			return err
		case mappedTypeOf(tx, t, id) == "":
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return scim.BadRequest(scim.TypeInvalidValue,
		"member %s was deleted while this change was being made (the directory and %s no longer have it); the membership is not recorded",
		listIDs(gone), t.Name)
}

// updateAccount records, in the commit of decided plan p (applied as p2), what the change
// did to the resource's account in the app: its native id (new on create, gone on delete)
// and its mark.
func (e *Engine) updateAccount(tx *store.Tx, p, p2 *plan) error {
	key := e.target.mapKey(p2.typ)
	if p2.unlink != nil {
		// A delete's part before the last: the account stays as it is until the delete.
		if len(p.progress) > 0 {
			return tx.SetProgress(key, progressKey(p2), nil)
		}
		return nil
	}
	if p.adopt && !p.skipped && (p.before == nil || p.newNativeID != "") {
		// The create reached its end: adopted, or made after a lookup found nothing (a
		// change of a resource without an account that made none leaves it listed).
		if err := tx.DeleteAdoption(e.target.Name, p2.typ, SubjectOf(p2.typ, p2.after)); err != nil {
			return err
		}
	}
	if len(p.progress) > 0 {
		if err := tx.SetProgress(key, progressKey(p2), nil); err != nil {
			return err
		}
	}
	if err := e.recordWithheld(tx, p, p2); err != nil {
		return err
	}
	if p2.typ == scim.GroupType && (p.roleDecided || p2.after == nil) {
		role := p.newRole
		if p2.after == nil {
			role = "" // a deleted group gives no role, whatever the policy did
		}
		if err := tx.SetRole(e.target.Name, p2.id, role); err != nil {
			return err
		}
	}
	if !p.skipped {
		switch {
		case p2.after == nil:
			if err := e.retireAccount(tx, key, p2); err != nil {
				return err
			}
			if err := tx.DeleteNativeID(key, p2.id); err != nil {
				return err
			}
		case p.newNativeID != "":
			if err := tx.SetNativeID(key, p2.id, p.newNativeID); err != nil {
				return err
			}
		}
	}
	current := tx.Mark(key, p2.id)
	next := nextMark(p2.after == nil, p.nativeID != "", current, p.skipped, p.deactivates)
	if next == change.MarkNone && current == change.MarkManagerGone && p.mark != current {
		// The manager's delete unlinked the user after this change was decided: its
		// calls did not clear the manager in the app, so the next change must.
		next = current
	}
	if next != current {
		return tx.SetMark(key, p2.id, next)
	}
	return nil
}

// nextMark decides the mark a change leaves on a resource's account in the app (see
// change.Mark): deleted resources keep none; a change the policy skipped marks a resource
// without an account as kept out (member calls leave it out), and an account that missed
// the change as stale (the next change that reaches the app sends everything), unless the
// policy deactivated it (its reactivation sends everything); a change the policy turned
// into a deactivation marks the account deactivated, or the resource kept out when it has
// no account; any other change that reached the app clears the mark.
func nextMark(deleted, hasAccount bool, current change.Mark, skipped, deactivated bool) change.Mark {
	switch {
	case deleted:
		return change.MarkNone
	case skipped && !hasAccount:
		return change.MarkSkipped
	case skipped && current == change.MarkDeactivated:
		return change.MarkDeactivated
	case skipped:
		return change.MarkStale
	case deactivated && hasAccount:
		return change.MarkDeactivated
	case deactivated:
		return change.MarkSkipped
	}
	return change.MarkNone
}

// newJob turns an operation into the job the steps work on: the SCIM id (new on create),
// the time of the change, the record to store when the body alone decides it, and the
// request's trail for the journal.
func (e *Engine) newJob(req Request, op *Op) *job {
	j := &job{req: req, op: op, now: e.now().UTC(), id: op.ID}
	j.trail = &Trail{Action: op.Action, Type: op.Type, ID: op.ID}
	if op.Action == change.ActionCreate {
		// The id is fixed before any transaction: group commit may run one twice.
		j.id = newID()
		j.trail.ID = j.id
		if op.Resource != nil {
			j.trail.Subject = SubjectOf(op.Type, op.Resource.Doc)
		}
	}
	return j
}

// lockKey is what the job locks: the resource, or the name a create claims.
func (j *job) lockKey() string {
	if j.op.Action == change.ActionCreate {
		return nameLockKey(j.op.Type, j.trail.Subject)
	}
	return j.op.Type + ":" + j.id
}

// nameLockKey is the lock of a userName (a group's displayName) in the directory: a create
// holds it for the name it creates, a rename for the name it takes (see run), so that of two
// changes claiming one name only one calls the app with it at a time. Names are folded as
// the uniqueness index folds them ("ſ" and "s" are one name there).
func nameLockKey(typ, name string) string {
	return "name:" + typ + ":" + store.FoldName(name)
}

// maxMemberLocks bounds the members a group's PATCH locks one by one (see lockJob); a
// larger batch locks the whole group, which costs one lock instead of thousands.
const maxMemberLocks = 256

// lockJob locks what job j changes until its commit and returns the unlock function: the
// resource (see lockKey), or, for a PATCH that only adds and removes members it names (see
// memberLocks), the group shared and each of those members exclusively. Changes of
// different members of one group then run at once (they commute: each edge is its own key,
// and the commit decides the group's document again when another one committed first, see
// redecide), while a change of the same member, and every other change of the group (a
// rename, a replace, a delete, a PATCH with If-Match or with a members filter the patch
// alone cannot resolve), waits for them and they for it.
//
// A user's delete locks the user and, in the groups it belongs to, the user as a member
// (see lockMemberships), so that no change of those memberships interleaves with it.
//
// Locks are always taken in one order, so that two jobs never wait on each other: the
// resource, then its members sorted (a user's delete: the groups it belongs to sorted,
// each shared with the user as its member), then (during the calls, see lockRoles) users'
// role lists sorted. No job holds a group's lock and then waits for a user's.
func (e *Engine) lockJob(j *job) func() {
	if j.op.Action == change.ActionDelete && j.op.Type == scim.UserType {
		unlock := e.locks.lock(j.lockKey())
		unlockGroups := e.lockMemberships(j.id)
		return func() {
			unlockGroups()
			unlock()
		}
	}
	members := e.memberLocks(j)
	if members == nil {
		return e.locks.lock(j.lockKey())
	}
	unlocks := make([]func(), 0, len(members)+1)
	unlocks = append(unlocks, e.locks.rlock(j.lockKey()))
	for _, m := range members {
		unlocks = append(unlocks, e.locks.lock(j.lockKey()+"/member:"+m))
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

// membershipLockTries bounds how often a user's delete reads its groups again to lock
// those added while it locked the others (see lockMemberships).
const membershipLockTries = 3

// lockMemberships locks, for the delete of user id, each group the user belongs to as a
// change of that one member does: the group shared and the member exclusively, groups in
// id order. Until the delete's commit (its last part's, for a delete in parts), a member
// change of one of those groups naming the user, or any other change of the group (a
// replace of its members, its delete), waits, so it cannot interleave with the delete's
// parts nor commit a membership the delete has just removed: it runs before the delete
// (whose parts then remove the edge) or after it (the user is gone: an unknown member,
// refused with a mapping that sends member events). The groups are read before they are
// locked and once more after: groups the user joined in between are locked too (all
// locks taken again in order), up to membershipLockTries reads; a membership still newer
// is removed by the delete's commit all the same.
func (e *Engine) lockMemberships(id string) func() {
	groups, err := e.groupsOf(id)
	if err != nil {
		return func() {} // the delete's own read answers the error
	}
	for try := 1; ; try++ {
		unlock := e.lockMembers(id, groups)
		now, err := e.groupsOf(id)
		if err != nil || try == membershipLockTries || subsetOf(now, groups) {
			return unlock
		}
		unlock()
		groups = now
	}
}

// groupsOf returns the groups member id belongs to, in id order.
func (e *Engine) groupsOf(id string) ([]string, error) {
	var groups []string
	err := e.store.View(func(tx *store.Tx) error {
		return tx.GroupsOf(id, func(g string) error {
			groups = append(groups, g)
			return nil
		})
	})
	return groups, err
}

// lockMembers locks member id of each group in groups (sorted), as lockJob locks a group's
// member change, and returns the function that unlocks them.
func (e *Engine) lockMembers(id string, groups []string) func() {
	unlocks := make([]func(), 0, 2*len(groups))
	for _, g := range groups {
		key := scim.GroupType + ":" + g
		unlocks = append(unlocks, e.locks.rlock(key), e.locks.lock(key+"/member:"+id))
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

// subsetOf reports whether every id of sorted list a is in sorted list b.
func subsetOf(a, b []string) bool {
	for _, id := range a {
		if _, ok := slices.BinarySearch(b, id); !ok {
			return false
		}
	}
	return true
}

// memberLocks returns the member ids, sorted, whose locks a group PATCH that only adds and
// removes members it names needs instead of the group's own: nil for any other change. Such
// a PATCH has only "members" paths (no filter but value eq, which the patch resolves
// alone), removes no member it does not name (no remove of all, no exact replace), has no
// If-Match (which needs the version it saw to stay), and its target delivers at once: in
// queued or fallback delivery every change of the group keeps the group's lock, so that
// its tasks enter the outbox in the order its changes were decided.
func (e *Engine) memberLocks(j *job) []string {
	op := j.op
	if op.Action != change.ActionPatch || op.Type != scim.GroupType || op.IfMatch != "" || len(op.Patch) == 0 {
		return nil
	}
	if e.target != nil && e.target.Delivery.WithDefaults().Mode != outbox.Immediate {
		return nil
	}
	named := 0
	for i := range op.Patch {
		switch list := op.Patch[i].Value.(type) {
		case []any:
			named += len(list)
		case scim.MemberList:
			named += list.Len()
		}
	}
	if named > maxMemberLocks {
		return nil // too many to lock one by one, known without reading them
	}
	for i := range op.Patch {
		p := op.Patch[i].Path
		if p == nil || p.Attr.URN != "" || p.Attr.Sub != "" || p.Sub != "" || !strings.EqualFold(p.Attr.Name, "members") {
			return nil
		}
	}
	_, d, err := scim.ApplyPatch(scim.GroupType, nil, op.Patch, e.patch)
	if err != nil || d == nil || d.RemoveAll || len(d.Add)+len(d.Remove) > maxMemberLocks {
		return nil // the change's decide answers the error
	}
	ids := make([]string, 0, len(d.Add)+len(d.Remove))
	for _, m := range d.Add {
		ids = append(ids, m.Value)
	}
	ids = append(ids, d.Remove...)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return nil
	}
	return ids
}

// progressKey names the resource a change's progress is kept for: its SCIM id, or, for a
// create (whose retry comes with a new SCIM id), the name it claims, folded like the
// adoption list ("create:" never begins a SCIM id, which the gateway makes a UUID).
func progressKey(p *plan) string {
	if p.before == nil && p.after != nil {
		return "create:" + strings.ToLower(SubjectOf(p.typ, p.after))
	}
	return p.id
}

// keepProgress stores the calls a failed attempt of p's flow made that may not be repeated.
// When the store cannot be written the retry may repeat them: logged.
func (e *Engine) keepProgress(j *job, p *plan, made sentCalls) {
	key := e.target.mapKey(p.typ)
	if err := e.store.Update(func(tx *store.Tx) error { return tx.SetProgress(key, progressKey(p), encodeProgress(made)) }); err != nil {
		e.logger.Warn("recording the calls a failed flow made failed; its retry may repeat them",
			zap.String("request_id", j.req.ID), zap.String("target", e.target.Name), zap.Error(err))
	}
}

// newID is a new resource's SCIM id: a UUID of version 7 (RFC 9562), whose first 48 bits
// are the time of the create in milliseconds, so that the ids of resources created
// together are neighbours in every bucket keyed by id (the records, the id register, the
// native id map, the marks): a group commit of creates then rewrites a few pages of each
// instead of one per create. It keeps 74 random bits; where the clock or the random source
// fails it falls back to a random (version 4) UUID.
func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
