package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// writeOp is one write request, split into decide (compute the change from the current
// state, without writing) and apply (write it), so that a target's native calls can run
// between the two: decide, journal the intent, call the app, then apply and journal the
// outcome in one transaction. Without a target both run in one transaction.
type writeOp struct {
	lockKey string
	status  int // the status a success answers, for the journal
	decide  func(tx *store.Tx) (*plan, error)
	apply   func(tx *store.Tx, p *plan) error // idempotent: group commit may rerun it
}

// runWrite carries out op and journals it. Errors are answered by the caller through
// writeError, which journals them as rejected, denied or failed.
//
// With neither a policy nor a target, the change is decided, applied and journaled in one
// transaction. Otherwise the resource is locked for the request, the change is decided in
// a read transaction, the policy decides on it, and then: a deny changes nothing; a skip,
// or an allow without a target, commits the change with its record; an allow with a
// target journals the intent, makes the native calls (shaped by the policy's obligations)
// and commits the change, the id map and the outcome in one transaction.
func (g *Gateway) runWrite(req *request, op *writeOp) error {
	a := req.audit
	if g.target == nil && g.policy == nil {
		return g.store.Update(func(tx *store.Tx) error {
			p, err := op.decide(tx)
			if err != nil {
				return err
			}
			if err := op.apply(tx, p); err != nil {
				return err
			}
			fillAudit(a, p)
			return g.appendRecord(tx, g.newRecord(req, a, journal.OutcomeApplied, op.status, ""))
		})
	}

	unlock := g.locks.lock(op.lockKey)
	defer unlock()
	t := g.target
	var (
		p       *plan
		mark    string
		members policy.Members
	)
	err := g.store.View(func(tx *store.Tx) error {
		var err error
		if p, err = op.decide(tx); err != nil {
			return err
		}
		if t != nil && p.before != nil {
			p.nativeID, _ = tx.NativeID(t.mapKey(p.typ), p.id)
			mark = tx.Mark(t.mapKey(p.typ), p.id)
		}
		if g.policy != nil {
			members = policy.Members{Add: memberRefs(tx, p.added), Remove: memberRefs(tx, p.removed)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fillAudit(a, p)
	a.nativeID = p.nativeID
	if t != nil {
		a.target = t.name
	}

	v := g.decidePolicy(req, p, members)
	d := v.decision
	if g.policy != nil {
		a.decision = journalDecision(d, nil, nil)
	}
	if !d.Allow {
		return &policyDenied{decision: d}
	}
	if d.Skip || t == nil {
		outcome := journal.OutcomeApplied
		if d.Skip {
			outcome = journal.OutcomeSkipped
		}
		rec, err := g.prepareRecord(req, a, outcome, op.status, "")
		if err != nil {
			v.release()
			return err
		}
		err = g.commitPlan(op, p, rec, func(tx *store.Tx, p2 *plan) error {
			if t == nil {
				return nil
			}
			return g.markSkipped(tx, p2, p.nativeID)
		})
		if err != nil {
			v.release()
		}
		return err
	}
	if err := g.syncAndCommit(req, op, p, mark, d); err != nil {
		v.release()
		return err
	}
	return nil
}

// commitPlan commits op's plan p in a transaction shared with concurrent writers: p is
// redecided if the resource changed since (redecide), applied, then also runs with the plan
// applied, and the prepared record rec is appended last.
func (g *Gateway) commitPlan(op *writeOp, p *plan, rec *journal.Prepared, also func(*store.Tx, *plan) error) error {
	return g.store.Update(func(tx *store.Tx) error {
		p2, err := redecide(tx, op, p)
		if err != nil {
			return err
		}
		if err := op.apply(tx, p2); err != nil {
			return err
		}
		if err := also(tx, p2); err != nil {
			return err
		}
		return g.appendPrepared(tx, rec)
	})
}

// redecide returns the plan to apply in the commit's transaction: p itself when the stored
// resource is still the version p was decided on (the request holds the resource's lock,
// so it normally is), else a fresh decision. Deciding again would decode the resource and
// apply the PATCH once more inside the commit, which every concurrent writer waits for;
// comparing the version is one read. A create's plan stands as decided: its id is new, and
// the store refuses a userName or displayName taken in the meantime (409) when it writes.
func redecide(tx *store.Tx, op *writeOp, p *plan) (*plan, error) {
	if p.before == nil {
		return p, nil
	}
	if v, err := tx.Version(p.typ, p.id); err == nil && v == p.version {
		return p, nil
	}
	return op.decide(tx)
}

// markSkipped records, in the transaction of a skipped change, that the resource is kept
// out of the app on purpose (no account: group member calls leave it out instead of
// failing) or that its account missed this change (so the next change that reaches the
// app carries every attribute), and forgets the mark when the resource is deleted.
func (g *Gateway) markSkipped(tx *store.Tx, p *plan, nativeID string) error {
	key := g.target.mapKey(p.typ)
	switch {
	case p.after == nil:
		return tx.SetMark(key, p.id, store.MarkNone)
	case nativeID == "":
		return tx.SetMark(key, p.id, store.MarkSkipped)
	case tx.Mark(key, p.id) == store.MarkDeactivated:
		return nil // still deactivated by policy, and the reactivation sends everything
	default:
		return tx.SetMark(key, p.id, store.MarkStale)
	}
}

// syncAndCommit makes an allowed change's native calls and commits it: the intent is
// journaled first, then the app is called with the plan shaped by the policy's
// obligations, then the directory, id map, marks and outcome are committed together.
func (g *Gateway) syncAndCommit(req *request, op *writeOp, p *plan, mark string, d policy.Decision) error {
	a := req.audit
	t := g.target
	np, droppedAttrs, droppedMembers, err := shapeForApp(p, d)
	if err != nil {
		// A policy asking for the impossible (dropping id, an unparsable path) is a policy
		// error: fail closed.
		g.logger.Warn("policy obligations could not be applied; the change is denied (fail closed)",
			zap.String("request_id", req.id), zap.Error(err))
		denied := policy.Decision{Reasons: []string{"policy error: " + err.Error()}}
		a.decision = journalDecision(denied, nil, nil)
		return &policyDenied{decision: denied}
	}
	if g.policy != nil {
		a.decision = journalDecision(d, droppedAttrs, droppedMembers)
	}
	policyDeactivates := d.Deactivate && p.typ == scim.UserType && p.after != nil
	switch {
	case policyDeactivates && p.nativeID == "":
		np.events = nil // no account to deactivate
	case !policyDeactivates && p.nativeID != "" && np.after != nil && (mark == store.MarkDeactivated || mark == store.MarkStale):
		// The app's account missed changes the policy skipped (the user was out of
		// scope): this change carries every attribute, and undoes a deactivation the
		// policy made while the directory's user stayed active.
		np.changed = attributeNames(np.after)
		if !slices.Contains(np.events, "update") {
			np.events = append(slices.Clone(np.events), "update")
		}
		if mark == store.MarkDeactivated && activeOf(np.after) && !slices.Contains(np.events, "reactivate") {
			np.events = append(np.events, "reactivate")
		}
	}

	// The intent, durable before the app sees anything: after a crash between the call and
	// the commit, the journal shows a pending change without an outcome.
	if !t.dryRun && g.anyMapped(np) {
		intent, err := g.prepareRecord(req, a, journal.OutcomePending, 0, "")
		if err != nil {
			return err
		}
		if err := g.store.Update(func(tx *store.Tx) error { return g.appendPrepared(tx, intent) }); err != nil {
			return err
		}
	}
	res, err := g.syncNative(req.r.Context(), np)
	if err != nil {
		var ne *nativeError
		if errors.As(err, &ne) {
			a.backend = ne.backend
			if ne.retryAfter > 0 {
				req.w.Header().Set("Retry-After", strconv.Itoa(int((ne.retryAfter+999_999_999)/1_000_000_000)))
			}
			return ne.scim
		}
		return err
	}
	a.backend = res.backend
	if res.nativeID != "" {
		a.nativeID = res.nativeID
	}
	if reasons := syncReasons(t.name, res); len(reasons) > 0 {
		if a.decision == nil {
			a.decision = &journal.Decision{Allow: true}
		}
		a.decision.Reasons = append(slices.Clone(a.decision.Reasons), reasons...)
	}
	if res.adopted {
		defer t.adopt.done(p.typ, a.subject)
	}
	outcome := journal.OutcomeApplied
	if res.dryRun {
		outcome = journal.OutcomeDryRun
	}
	newMark := store.MarkNone
	if policyDeactivates && p.nativeID != "" {
		newMark = store.MarkDeactivated
	}
	if policyDeactivates && p.nativeID == "" {
		newMark = store.MarkSkipped
	}
	rec, err := g.prepareRecord(req, a, outcome, op.status, "")
	if err != nil {
		return err
	}
	err = g.commitPlan(op, p, rec, func(tx *store.Tx, p2 *plan) error {
		key := t.mapKey(p2.typ)
		m := newMark
		switch {
		case p2.after == nil:
			m = store.MarkNone
			if err := tx.DeleteNativeID(key, p2.id); err != nil {
				return err
			}
		case res.nativeID != "":
			if err := tx.SetNativeID(key, p2.id, res.nativeID); err != nil {
				return err
			}
		}
		if m == mark {
			return nil
		}
		return tx.SetMark(key, p2.id, m)
	})
	if err != nil && res.nativeID != "" && !res.dryRun && p.before == nil {
		// The app has the account but the directory could not record it: let Entra's
		// retry adopt it rather than create a second one.
		t.adopt.add(p.typ, a.subject)
	}
	return err
}

// attributeNames lists a resource's top-level attributes (what an update that sends
// everything changed).
func attributeNames(doc scim.Resource) []string {
	out := make([]string, 0, len(doc))
	for k := range doc {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// syncReasons explains, for the journal, native calls that were not made as the change's
// events suggest.
func syncReasons(target string, res *syncResult) []string {
	var reasons []string
	if len(res.skipped) > 0 {
		reasons = append(reasons, "no native call for "+strings.Join(res.skipped, ", ")+" (not mapped, or the resource has no account in "+target+")")
	}
	if res.caughtUp {
		reasons = append(reasons, "created in "+target+" on this change: the resource had no account there yet")
	}
	if len(res.caughtUpGroups) > 0 {
		reasons = append(reasons, fmt.Sprintf("memberships it already had sent to %s: %d member(s) in %d group(s)", target, res.caughtUpMembers, len(res.caughtUpGroups)))
	}
	if len(res.catchUpFailures) > 0 {
		reasons = append(reasons, "memberships it already had not sent to "+target+" (they follow with the group's next member change): "+strings.Join(res.catchUpFailures, "; "))
	}
	if res.adopted {
		reasons = append(reasons, "adopted account "+res.nativeID+" that an unfinished earlier attempt of this create left in "+target)
	}
	if len(res.outOfScope) > 0 {
		reasons = append(reasons, "members kept out of "+target+" by policy left out of the member calls: "+strings.Join(res.outOfScope, ", "))
	}
	if len(res.deferred) > 0 {
		reasons = append(reasons, "members without an account in "+target+" left out of the member calls: "+strings.Join(res.deferred, ", "))
	}
	return reasons
}

// anyMapped reports whether the plan makes at least one native call.
func (g *Gateway) anyMapped(p *plan) bool {
	for _, ev := range nativeEvents(p.events) {
		if g.target.mapping.Has(p.typ, ev) {
			return true
		}
	}
	return false
}

// storedNative looks up the native id and the type of a resource in its own read
// transaction (used while no transaction is open: during the native calls).
func (g *Gateway) storedNative(scimID string) (nativeID, typ string, ok bool) {
	err := g.store.View(func(tx *store.Tx) error {
		var err error
		if typ, err = tx.TypeOf(scimID); err != nil {
			return err
		}
		nativeID, err = tx.NativeID(g.target.mapKey(typ), scimID)
		return err
	})
	return nativeID, typ, err == nil
}

// storedNativeID is storedNative for the mapping's NativeIDOf (the manager's native id).
func (g *Gateway) storedNativeID(scimID string) (string, bool) {
	n, _, ok := g.storedNative(scimID)
	return n, ok
}

// fillAudit copies a plan into the request's audit.
func fillAudit(a *audit, p *plan) {
	a.id = p.id
	doc := p.after
	if doc == nil {
		doc = p.before
	}
	a.subject = subjectOf(p.typ, doc)
	a.changes = slices.Concat(p.changes, memberChanges(p.added, p.removed))
	a.events = p.events
}

// changedPathsOf lists the top-level attributes (extension attributes as URN:attr) that
// changes touch.
func changedPathsOf(changes []journal.Change) []string {
	seen := map[string]bool{}
	for _, c := range changes {
		top := c.Path
		if !scim.IsURN(top) {
			top = strings.SplitN(top, ".", 2)[0]
		}
		seen[top] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// planMembers works out which of the member changes really change the edges: ids added that
// were not members, ids removed that were.
func planMembers(tx *store.Tx, groupID string, removeAll bool, remove []string, add []scim.MemberRef) (added, removed []string, err error) {
	gone := map[string]bool{}
	if removeAll {
		err := tx.Members(groupID, func(m store.Member) error {
			gone[m.ID] = true
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	for _, id := range remove {
		has, err := tx.HasMember(groupID, id)
		if err != nil {
			return nil, nil, err
		}
		if has {
			gone[id] = true
		}
	}
	seen := map[string]bool{}
	for _, m := range add {
		if seen[m.Value] {
			continue
		}
		seen[m.Value] = true
		if m.Value == groupID {
			return nil, nil, scim.BadRequest(scim.TypeInvalidValue, "group %s cannot be a member of itself", groupID)
		}
		has, err := tx.HasMember(groupID, m.Value)
		if err != nil {
			return nil, nil, err
		}
		if gone[m.Value] {
			delete(gone, m.Value) // removed and re-added: no change
			continue
		}
		if !has {
			added = append(added, m.Value)
		}
	}
	for id := range gone {
		removed = append(removed, id)
	}
	sort.Strings(removed)
	return added, removed, nil
}

// withID returns doc with its id, as the mapping and policies see a resource.
func withID(doc scim.Resource, id string) scim.Resource {
	out := make(scim.Resource, len(doc)+1)
	for k, v := range doc {
		out[k] = v
	}
	out["id"] = id
	return out
}

// answerStatus is the success status of a PATCH response.
func answerStatus(wantBody bool) int {
	if wantBody {
		return http.StatusOK
	}
	return http.StatusNoContent
}
