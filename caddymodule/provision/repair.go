package provision

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
	"go.uber.org/zap"
)

// RepairKind is what a repair brings back in line.
type RepairKind string

// Repairs a reconcile asks for (caddymodule/reconcile).
const (
	// RepairCreate creates the account of a resource the app lacks (missing), with the
	// memberships the directory holds (a catch-up create). An account the id map names but
	// the app no longer has is created again, and the id map follows. The account is
	// looked up first (the mapping's lookup): one the app has after all (a listing that
	// missed it) is linked instead of made a second time.
	RepairCreate RepairKind = "create"
	// RepairDisable deactivates the account of an inactive resource (not disabled).
	RepairDisable RepairKind = "disable"
	// RepairUpdate sends the mapped fields of the attributes in Repair.Changed (drifted),
	// as an update of them; a state that differs follows with it (Reactivate).
	RepairUpdate RepairKind = "update"
	// RepairMembers adds the group's members the app lacks and removes those the
	// directory does not have (membership drift), by SCIM id.
	RepairMembers RepairKind = "members"
)

// Repair is one change a reconcile makes to the app for a resource of the directory.
type Repair struct {
	Kind RepairKind
	Type string // scim.UserType or scim.GroupType
	ID   string // the resource's SCIM id
	// Add and Remove are the members (SCIM ids) of a RepairMembers.
	Add, Remove []string
	// Reactivate: with RepairUpdate, the account is inactive in the app but the resource
	// is active.
	Reactivate bool
	// Changed: with RepairUpdate, the attributes whose fields to send (an attribute the
	// resource no longer has is sent as the mapping sends an absent value); nil sends
	// every attribute the resource has.
	Changed []string
}

// Repair makes the native calls that bring the app's account of one resource back in line
// with the directory, through the same steps as Apply: the resource is locked, the policy
// decides on the repair (action "repair", with its events: it may deny, skip or shape it,
// and its stats count it, so the brake holds), the intent is journaled before the calls
// and the outcome after them, and the id map and the account's mark are committed with
// the outcome. The directory's resource is not changed. req names who asked (the
// reconcile's report in req.ID, "reconcile" in req.Client).
func (e *Engine) Repair(req Request, r Repair) *Result {
	if e.target == nil {
		se := scim.Errorf(http.StatusConflict, "", "the gateway has no target to repair")
		return &Result{Status: se.Status, Err: se}
	}
	rr := r
	return e.Apply(req, &Op{Action: change.ActionRepair, Type: r.Type, ID: r.ID, Status: http.StatusOK, Repair: &rr})
}

// decideRepair plans a repair: the resource as stored, unchanged, and the events that
// make the app's account match it.
func (e *Engine) decideRepair(tx *store.Tx, j *job) (*plan, error) {
	r := j.op.Repair
	if r == nil {
		return nil, errors.New("provision: a repair without its kind")
	}
	p, _, err := e.loadCurrent(tx, j)
	if err != nil {
		return nil, err
	}
	p.after = p.before
	switch r.Kind {
	case RepairCreate:
		// An update of a resource without an account becomes its create (catchUp), which
		// carries every attribute and the state, and sends the memberships it already has.
		p.recreate = true
		p.events = []change.Event{change.Update}
		p.changed = attributeNames(p.after)
	case RepairDisable:
		if p.typ != scim.UserType || activeOf(p.after) {
			return nil, scim.Errorf(http.StatusConflict, "", "%s %s is active in the directory: there is nothing to deactivate", p.typ, p.id)
		}
		p.events = []change.Event{change.Deactivate}
	case RepairUpdate:
		p.events = []change.Event{change.Update}
		p.changed = attributeNames(p.after)
		if r.Changed != nil {
			p.changed = r.Changed
		}
		if p.typ == scim.UserType && activeOf(p.after) && r.Reactivate {
			p.events = append(p.events, change.Reactivate)
		}
	case RepairMembers:
		if p.typ != scim.GroupType {
			return nil, scim.BadRequest(scim.TypeInvalidValue, "members are repaired on groups, not on %s", p.typ)
		}
		for _, id := range r.Add {
			if has, err := tx.HasMember(p.id, id); err != nil || !has {
				if err != nil {
					return nil, err
				}
				continue // no longer a member: nothing to add
			}
			p.added = append(p.added, id)
		}
		for _, id := range r.Remove {
			if has, err := tx.HasMember(p.id, id); err != nil || has {
				if err != nil {
					return nil, err
				}
				continue // a member again: not to remove
			}
			p.removed = append(p.removed, id)
		}
		if len(p.added) > 0 {
			p.events = append(p.events, change.AddMembers)
		}
		if len(p.removed) > 0 {
			p.events = append(p.events, change.RemoveMembers)
		}
	default:
		return nil, fmt.Errorf("provision: unknown repair %q", r.Kind)
	}
	return p, nil
}

// IDMapKey is the id map namespace of the target's resources of typ (store.Tx.NativeID).
func (t *Target) IDMapKey(typ string) string { return t.mapKey(typ) }

// DisableOrphan deactivates an account of the app that no resource of the directory
// stands for (an orphan: never provisioned through the gateway, or its resource was
// deleted), by its native id: the policy decides (action "repair", event deactivate, no
// resource), the intent and the outcome are journaled, and the directory is not changed.
// subject names the account for the journal (its login as the app lists it). An account
// the id map links to a resource of the directory (adopted since it was listed) is
// refused (409), not sent.
func (e *Engine) DisableOrphan(req Request, typ, nativeID, subject string) *Result {
	if e.target == nil {
		se := scim.Errorf(http.StatusConflict, "", "the gateway has no target to repair")
		return &Result{Status: se.Status, Err: se}
	}
	op := &Op{Action: change.ActionRepair, Type: typ, Status: http.StatusOK}
	j := &job{req: req, op: op, now: e.now().UTC()}
	j.trail = &Trail{Action: op.Action, Type: typ, Subject: subject, target: e.target.Name, nativeID: nativeID, events: []change.Event{change.Deactivate}}
	p := &plan{job: j, typ: typ, events: []change.Event{change.Deactivate}, nativeID: nativeID}
	unlock := e.locks.lock("orphan:" + typ + ":" + nativeID)
	defer unlock()
	// The account may have been linked since it was listed (a repair of its resource, or
	// Entra's retry of a create whose answer was lost, adopted it): it is no orphan then,
	// and deactivating it would lock its user out. A link to a resource the directory has
	// deleted leaves it an orphan.
	var linked string
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		if linked, err = tx.SCIMIDOf(e.target.mapKey(typ), nativeID); err != nil {
			return err
		}
		_, err = tx.Get(typ, linked)
		return err
	})
	switch {
	case err == nil:
		return e.fail(req, j.trail, scim.Errorf(http.StatusConflict, "", "account %s is linked to %s %s now (adopted since it was listed): it is no orphan, and is not deactivated", nativeID, typ, linked))
	case !errors.Is(err, store.ErrNotFound):
		return e.fail(req, j.trail, err)
	}
	v := e.decidePolicy(j, p)
	if v.err != nil {
		return e.fail(req, j.trail, v.err)
	}
	if v.undecided != nil {
		return e.fail(req, j.trail, &Undecided{Err: v.undecided})
	}
	if e.policy != nil {
		j.trail.decision = e.journalDecision(v.decision, nil, nil)
	}
	if !v.decision.Allow {
		return e.fail(req, j.trail, &Denied{Decision: v.decision})
	}
	outcome := change.Skipped
	if !v.decision.Skip {
		if err := e.disableOrphan(j, p); err != nil {
			v.release()
			return e.fail(req, j.trail, err)
		}
		outcome = change.Applied
		if e.target.DryRun {
			outcome = change.DryRun
		}
	} else {
		v.release()
	}
	rec := e.record(req, j.trail, outcome, op.Status, "")
	if err := e.store.Update(func(tx *store.Tx) error { return e.journal.Append(tx.KV(), rec) }); err != nil {
		return e.fail(req, j.trail, err)
	}
	return &Result{Status: op.Status, Record: rec}
}

// disableOrphan journals the intent and makes the deactivation's calls.
func (e *Engine) disableOrphan(j *job, p *plan) error {
	if !e.target.DryRun && e.anyMapped(p) {
		intent, err := e.journal.Prepare(e.record(j.req, j.trail, change.Pending, 0, ""))
		if err != nil {
			return err
		}
		if err := e.store.Update(func(tx *store.Tx) error { return e.journal.AppendPrepared(tx.KV(), intent) }); err != nil {
			return err
		}
	}
	res, err := e.syncNative(j.req.ctx(), p)
	defer res.release()
	var ne *nativeError
	if errors.As(err, &ne) {
		j.trail.noteCalls(ne.calls)
	} else if err == nil {
		j.trail.noteCalls(res.calls)
	}
	return err
}

// RepairDrops returns the attributes the policy in force keeps from the app when a repair
// sends the attributes changed of a resource: the drop_attributes of the decision such a
// repair would get (action "repair", event update, the reconcile's client), without
// counting it. doc is the resource as stored, with its id. A reconcile compares the app's
// account only with what the app may receive: a field made from a dropped attribute is the
// app's own. nil without a policy, and when the repair would not be allowed (its own
// decision says so when it is made); an error when the policy cannot decide.
func (e *Engine) RepairDrops(ctx context.Context, typ, nativeID string, doc scim.Resource, changed []string) ([]string, error) {
	if e.policy == nil {
		return nil, nil
	}
	res := scim.Canonical(typ, doc)
	d, err := e.policy.Decide(ctx, &policy.Input{
		Action: string(change.ActionRepair), ResourceType: typ, Events: []string{string(change.Update)},
		Client: "reconcile", Target: e.targetName(), NativeID: nativeID, Resource: res, Previous: res,
		Changed: changed,
	})
	if err != nil {
		return nil, err
	}
	if !d.Allow || d.Skip {
		return nil, nil
	}
	return d.DropAttributes, nil
}

// Link is a resource's link to its account in the app (the id map).
type Link struct {
	SCIMID, NativeID string
}

// ReleaseGone removes the links of resources of typ to accounts the app no longer has (a
// reconcile's complete listing did not show them), so that the app may give their ids to
// new accounts: an app that lost its data counts its ids from the start again, and a
// create answered with an id still linked to another resource is refused as a reused id
// (two directory entries must never drive one account). A link that changed since it was
// read (the resource was linked again) is kept. The resources stay in the directory and
// keep their marks: a repair or a change that reaches the app makes their accounts again,
// as for a resource without one. It returns how many links were removed, in as few
// transactions as the store takes (a link is two keys), each resource locked as a change
// of it is while its transaction runs.
func (e *Engine) ReleaseGone(typ string, links []Link) (int, error) {
	if e.target == nil || len(links) == 0 {
		return 0, nil
	}
	sorted := slices.Clone(links)
	slices.SortFunc(sorted, func(a, b Link) int { return strings.Compare(a.SCIMID, b.SCIMID) })
	sorted = slices.CompactFunc(sorted, func(a, b Link) bool { return a.SCIMID == b.SCIMID })
	chunk := len(sorted)
	if limit := kv.TxnOpsLimit(e.store.DB()); limit > 0 {
		chunk = max((limit-16)/2, 1) // the forward and reverse keys of each link
	}
	released := 0
	for len(sorted) > 0 {
		part := sorted[:min(chunk, len(sorted))]
		sorted = sorted[len(part):]
		n, err := e.releaseLinks(typ, part)
		released += n
		if err != nil {
			return released, err
		}
	}
	if released > 0 {
		e.logger.Info("released the links of accounts gone from the app", zap.String("target", e.target.Name),
			zap.String("resource_type", typ), zap.Int("links", released))
	}
	return released, nil
}

// releaseLinks is ReleaseGone of links sorted by SCIM id, in one transaction.
func (e *Engine) releaseLinks(typ string, links []Link) (int, error) {
	// Resource locks in one order, none waited for while holding a member's: the order
	// of lockJob.
	for _, l := range links {
		unlock := e.locks.lock(typ + ":" + l.SCIMID)
		defer unlock()
	}
	key := e.target.mapKey(typ)
	n := 0
	err := e.store.Update(func(tx *store.Tx) error {
		n = 0 // the function may run again (group commit)
		for _, l := range links {
			native, err := tx.NativeID(key, l.SCIMID)
			if errors.Is(err, store.ErrNotFound) || (err == nil && native != l.NativeID) {
				continue
			}
			if err != nil {
				return err
			}
			if err := tx.DeleteNativeID(key, l.SCIMID); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
