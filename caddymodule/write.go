package caddymodule

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/journal"
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
// writeError, which journals them as rejected or failed.
func (g *Gateway) runWrite(req *request, op *writeOp) error {
	a := req.audit
	if g.target == nil {
		return g.store.Update(func(tx *store.Tx) error {
			p, err := op.decide(tx)
			if err != nil {
				return err
			}
			if err := op.apply(tx, p); err != nil {
				return err
			}
			fillAudit(a, p)
			return g.appendRecord(tx, g.newRecord(req, a, "applied", op.status, ""))
		})
	}

	t := g.target
	unlock := t.locks.lock(op.lockKey)
	defer unlock()
	a.target = t.name
	var p *plan
	err := g.store.View(func(tx *store.Tx) error {
		var err error
		if p, err = op.decide(tx); err != nil {
			return err
		}
		if p.before != nil {
			p.nativeID, _ = tx.NativeID(t.mapKey(p.typ), p.id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fillAudit(a, p)
	a.nativeID = p.nativeID

	// The intent, durable before the app sees anything: after a crash between the call and
	// the commit, the journal shows a pending change without an outcome.
	if !t.dryRun && g.anyMapped(p) {
		intent := g.newRecord(req, a, journal.OutcomePending, 0, "")
		if err := g.store.Update(func(tx *store.Tx) error { return g.appendRecord(tx, intent) }); err != nil {
			return err
		}
	}
	res, err := g.syncNative(req.r.Context(), p)
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
	var reasons []string
	if len(res.skipped) > 0 {
		reasons = append(reasons, "no native call for "+strings.Join(res.skipped, ", ")+" (not mapped, or the resource has no account in "+t.name+")")
	}
	if res.caughtUp {
		reasons = append(reasons, "created in "+t.name+" on this change: the resource had no account there yet")
	}
	if res.adopted {
		reasons = append(reasons, "adopted account "+res.nativeID+" that an unfinished earlier attempt of this create left in "+t.name)
		defer t.adopt.done(p.typ, a.subject)
	}
	if len(res.deferred) > 0 {
		reasons = append(reasons, "members without an account in "+t.name+" left out of the member calls: "+strings.Join(res.deferred, ", "))
	}
	if len(reasons) > 0 {
		a.decision = &journal.Decision{Allow: true, Reasons: reasons}
	}
	outcome := "applied"
	if res.dryRun {
		outcome = journal.OutcomeDryRun
	}
	err = g.store.Update(func(tx *store.Tx) error {
		// The resource is locked for this request, so the state is the one decided on.
		p2, err := op.decide(tx)
		if err != nil {
			return err
		}
		if err := op.apply(tx, p2); err != nil {
			return err
		}
		switch {
		case p2.after == nil:
			if err := tx.DeleteNativeID(t.mapKey(p2.typ), p2.id); err != nil {
				return err
			}
		case res.nativeID != "":
			if err := tx.SetNativeID(t.mapKey(p2.typ), p2.id, res.nativeID); err != nil {
				return err
			}
		}
		return g.appendRecord(tx, g.newRecord(req, a, outcome, op.status, ""))
	})
	if err != nil && res.nativeID != "" && !res.dryRun && p.before == nil {
		// The app has the account but the directory could not record it: let Entra's
		// retry adopt it rather than create a second one.
		t.adopt.add(p.typ, a.subject)
	}
	return err
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
	a.changes = append(diffChanges(p.before, p.after), memberChanges(p.added, p.removed)...)
	a.events = p.events
}

// changedPaths lists the top-level attributes (extension attributes as URN:attr) whose
// values differ.
func changedPaths(before, after scim.Resource) []string {
	seen := map[string]bool{}
	for _, c := range diffChanges(before, after) {
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
