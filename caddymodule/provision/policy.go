package provision

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// maxDenyDetail bounds the reasons a 403 carries (Entra shows them in its provisioning
// logs; a policy could produce thousands).
const maxDenyDetail = 2000

// Denied is a change the policy refused: answered 403 with its reasons and journaled as
// denied, with nothing sent to the app and nothing changed in the directory.
type Denied struct {
	Decision policy.Decision
}

func (e *Denied) Error() string { return "denied by policy: " + e.detail() }

// detail is the 403's detail: the reasons, bounded.
func (e *Denied) detail() string {
	reasons := e.Decision.Reasons
	if len(reasons) == 0 {
		reasons = []string{"the policy refused this change without giving a reason"}
	}
	s := strings.Join(reasons, "; ")
	if len(s) > maxDenyDetail {
		s = strings.ToValidUTF8(s[:maxDenyDetail], "") + "…"
	}
	return s
}

// SCIMError is the answer Entra gets. 403 carries no scimType (RFC 7644 defines none for
// it); the reasons show in Entra's provisioning logs.
func (e *Denied) SCIMError() *scim.Error {
	return scim.Errorf(http.StatusForbidden, "", "denied by policy: %s", e.detail())
}

// Undecided is a change the policy could not decide in time (the evaluation timed out or
// was interrupted): no one said no, so it is not a denial. It answers 503 with Retry-After
// and is journaled as failed; Entra retries it.
type Undecided struct {
	Err error
}

func (e *Undecided) Error() string { return "the policy did not decide: " + e.Err.Error() }
func (e *Undecided) Unwrap() error { return e.Err }

// undecidedRetryAfter is what a client is told to wait after a decision that timed out.
const undecidedRetryAfter = 5 * time.Second

// SCIMError is the answer Entra gets.
func (e *Undecided) SCIMError() *scim.Error {
	return scim.Errorf(http.StatusServiceUnavailable, "", "the change was not decided in time by the gateway's policy (%v); nothing was changed; retry later", e.Err)
}

// verdict is the policy's decision on one change and what it means for the app.
type verdict struct {
	decision policy.Decision
	// undecided is set when the policy could not decide (a timeout): the change is neither
	// allowed nor denied.
	undecided error
	// release takes back the change's count in the policy's stats; called when the change
	// does not reach the app after all (skipped, failed).
	release func()
	// err is set when the change could not be counted in the policy's stats (a store that
	// failed): the policy did not decide, and the change is answered as a storage error.
	err error
}

// decidePolicy evaluates the policy on plan p. Without a policy every change is allowed.
// A policy that cannot decide (undefined, error, timeout, wrong type) denies, and the
// failure is logged without the request's payload.
func (e *Engine) decidePolicy(j *job, p *plan) verdict {
	if e.policy == nil {
		return verdict{decision: policy.Decision{Allow: true}, release: func() {}}
	}
	in := &policy.Input{
		Action:       string(j.op.Action),
		ResourceType: p.typ,
		Events:       change.Strings(p.events),
		Client:       j.req.Client,
		Target:       e.targetName(),
		NativeID:     p.nativeID,
		Resource:     scim.Canonical(p.typ, p.after),
		Previous:     scim.Canonical(p.typ, p.before),
		Changed:      changedAttrPaths(j.trail.changes),
		Members:      p.memberRefs,
	}
	if j.op.Action == change.ActionRepair && len(in.Changed) == 0 && len(p.changed) > 0 {
		// A repair changes no attribute of the directory's resource, but it sends the app
		// these: a guardrail that keeps attributes from the app (attribute_allowlist) judges
		// them as it judges Entra's changes, so a repair cannot clear what it keeps out.
		changed := p.changed
		if r := j.op.Repair; r == nil || r.Changed == nil {
			// Every attribute (a re-create, an update of all): named as a create's changes
			// name them, an extension's attributes one by one.
			changed = changedAttrPaths(diffChanges(nil, p.after))
		}
		in.Changed = slices.DeleteFunc(slices.Clone(changed), func(c string) bool {
			return strings.EqualFold(c, "id") || strings.EqualFold(c, "schemas") || strings.EqualFold(c, "meta")
		})
	}
	lastHour, release, err := e.stats.reserve(p.events)
	if err != nil {
		return verdict{release: func() {}, err: err}
	}
	in.Stats = policy.Stats{LastHour: lastHour}
	d, err := e.policy.Decide(j.req.ctx(), in)
	if err == nil && deactivatesInstead(p, d) {
		var countErr error
		if d, release, err, countErr = e.countDeactivation(j, in, p, d, release); countErr != nil {
			release()
			return verdict{release: func() {}, err: countErr}
		}
	}
	if err != nil {
		e.logger.Warn("policy could not decide; the change is refused (fail closed)",
			zap.String("request_id", j.req.ID), zap.String("resource_type", p.typ), zap.String("scim_id", p.id), zap.Error(err))
	}
	if e.onDecision != nil {
		e.onDecision(d, err)
	}
	if !d.Allow || d.Skip {
		release()
	}
	if errors.Is(err, policy.ErrTimeout) {
		return verdict{decision: d, undecided: err, release: release}
	}
	return verdict{decision: d, release: release}
}

// deactivatesInstead reports whether decision d sends the app a deactivation instead of
// the change p (shapeForApp): a deprovisioning the change's own events do not count.
func deactivatesInstead(p *plan, d policy.Decision) bool {
	return d.Allow && !d.Skip && d.Deactivate && p.typ == scim.UserType && p.after != nil &&
		!change.Has(p.events, change.Deactivate)
}

// countDeactivation counts, in the policy's stats, the deactivation the policy asked for
// instead of the change (a user leaving scope): the mass-deprovision brake counts
// deprovisionings, whoever asked for them, so a scoping mistake in Entra cannot lock
// every account past max_per_hour. The deactivation is reserved once the policy has asked
// for it; when other changes were counted between the decision and this reservation, the
// policy decides again on the counts that include them, holding this reservation, so
// concurrent deactivations see each other (a brake of 10 lets 10 through). It returns the
// decision that stands (and the error of its evaluation), the release of everything
// reserved for the change, and countErr when the deactivation could not be counted.
func (e *Engine) countDeactivation(j *job, in *policy.Input, p *plan, d policy.Decision, release func()) (_ policy.Decision, _ func(), err, countErr error) {
	now, releaseDeactivation, countErr := e.stats.reserve([]change.Event{change.Deactivate})
	if countErr != nil {
		return d, release, nil, countErr
	}
	both := func() {
		release()
		releaseDeactivation()
	}
	// now holds this change's own events (reserved before the decision): the policy is
	// shown the others', as it was.
	others := maps.Clone(now)
	for ev, n := range eventDelta(p.events, 1) {
		if others[ev] -= n; others[ev] < 0 {
			others[ev] = 0
		}
	}
	if maps.Equal(others, in.Stats.LastHour) {
		return d, both, nil, nil
	}
	in.Stats = policy.Stats{LastHour: others}
	d, err = e.policy.Decide(j.req.ctx(), in)
	if err != nil || !deactivatesInstead(p, d) {
		releaseDeactivation()
		return d, release, err, nil
	}
	return d, both, nil, nil
}

// changedAttrPaths lists the attribute paths a change touches, as the policy sees them:
// name.givenName, urn:...:User:department, members.
func changedAttrPaths(changes []journal.Change) []string {
	out := make([]string, 0, len(changes))
	for _, c := range changes {
		if !slices.Contains(out, c.Path) {
			out = append(out, c.Path)
		}
	}
	return out
}

// memberRefs describes member ids for the policy: type and display name (a user's
// userName, a group's displayName). An id that names no resource keeps an empty type.
func memberRefs(tx *store.Tx, ids []string) []policy.Member {
	out := make([]policy.Member, 0, len(ids))
	for _, id := range ids {
		m := policy.Member{ID: id}
		if typ, err := tx.TypeOf(id); err == nil {
			m.Type = typ
			if rec, err := tx.Get(typ, id); err == nil {
				m.Display = displayOf(rec)
			}
		}
		out = append(out, m)
	}
	return out
}

// displayOf reads a record's userName (users) or displayName (groups) from its index
// entries, without decoding the document.
func displayOf(rec *store.Record) string {
	want := "userName"
	if rec.Type == scim.GroupType {
		want = "displayName"
	}
	for _, e := range rec.Index {
		if e.Attr == want {
			return e.Value
		}
	}
	return ""
}

// shapeForApp applies an allow decision's obligations to what the app receives: dropped
// attributes are removed from the resource the mapping sees, dropped members from the
// member calls, and a deactivate obligation replaces the change with a deactivation. The
// directory is not affected: it keeps what Entra wrote. It returns the plan for the app and
// the attributes and members actually dropped (for the journal).
func shapeForApp(p *plan, d policy.Decision) (*plan, []string, []string, error) {
	np := *p
	if p.typ == scim.UserType {
		// A user without active is active, as the engine reads it (SCIM leaves the default
		// to the server; Entra always sends it): the app gets an active account's state,
		// not its own default for an unset field, which may be disabled. Before the drops,
		// so that a policy that keeps active from the app still does.
		np.after, np.before = WithActive(p.after), WithActive(p.before)
	}
	var droppedAttrs, droppedMembers []string
	if len(d.DropAttributes) > 0 {
		after, dropped, err := scim.DropAttributes(p.typ, p.after, d.DropAttributes)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("the policy's drop_attributes: %w", err)
		}
		before, _, err := scim.DropAttributes(p.typ, p.before, d.DropAttributes)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("the policy's drop_attributes: %w", err)
		}
		np.after, np.before, droppedAttrs = after, before, dropped
		// The decision's list, not only what the resource held: a change (a repair) may
		// send an attribute the resource no longer has, as the mapping clears it.
		np.changed = slices.DeleteFunc(slices.Clone(np.changed), func(c string) bool {
			return slices.ContainsFunc(d.DropAttributes, func(d string) bool { return attrWithin(p.typ, c, d) })
		})
		// Only dropped attributes changed: the app has nothing to update. A repair changes
		// nothing in the directory (before is after): what it sends is its changed list,
		// and it has nothing to send only when the policy dropped all of that.
		var nothingLeft bool
		if p.job.op.Action == change.ActionRepair {
			nothingLeft = len(p.changed) > 0 && len(np.changed) == 0
		} else {
			nothingLeft = np.before != nil && np.after != nil && !attributesDiffer(np.before, np.after)
		}
		if nothingLeft && change.Has(np.events, change.Update) {
			np.events = slices.DeleteFunc(slices.Clone(np.events), func(e change.Event) bool { return e == change.Update })
		}
	}
	if len(d.DropMembers) > 0 {
		keep := func(ids []string) []string {
			return slices.DeleteFunc(slices.Clone(ids), func(id string) bool {
				if slices.Contains(d.DropMembers, id) {
					droppedMembers = append(droppedMembers, id)
					return true
				}
				return false
			})
		}
		np.added, np.removed = keep(p.added), keep(p.removed)
		np.events = slices.DeleteFunc(slices.Clone(np.events), func(e change.Event) bool {
			return (e == change.AddMembers && len(np.added) == 0) || (e == change.RemoveMembers && len(np.removed) == 0)
		})
	}
	if d.Deactivate && p.typ == scim.UserType && p.after != nil {
		after := scim.CloneResource(np.after)
		scim.Set(after, "active", false)
		np.after = after
		np.events = []change.Event{change.Deactivate}
	}
	return &np, droppedAttrs, droppedMembers, nil
}

// attrWithin reports whether attribute path c is outer or part of it (a sub-attribute, an
// attribute of an extension), as SCIM compares names: case-insensitively, with the core
// schema's URN optional.
func attrWithin(typ, c, outer string) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		if rt := scim.ResourceTypeByName(typ); rt != nil {
			s = strings.TrimPrefix(s, strings.ToLower(rt.Schema)+":")
		}
		return s
	}
	c, outer = norm(c), norm(outer)
	return c == outer || (strings.HasPrefix(c, outer) && (c[len(outer)] == '.' || c[len(outer)] == ':'))
}

// WithActive returns doc with active true when it has no active (a shallow copy), and doc
// itself otherwise (nil stays nil): a user as the app gets it (shapeForApp), and as
// reconcile expects the app to hold it.
func WithActive(doc scim.Resource) scim.Resource {
	if doc == nil {
		return nil
	}
	if v, ok := scim.Get(doc, "active"); ok && v != nil {
		return doc
	}
	out := make(scim.Resource, len(doc)+1)
	for k, v := range doc {
		if !strings.EqualFold(k, "active") {
			out[k] = v
		}
	}
	out["active"] = true
	return out
}
