package provision

import (
	"errors"
	"fmt"
	"slices"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// A delete takes with it every edge of the resource: a group's members, the groups the
// resource belongs to, and a manager's references from its reports (reports.go). On a store
// whose transactions are bounded (etcd: 128 operations), a delete whose edges do not fit
// one transaction removes them in parts first, each a transaction of the directory alone,
// and then deletes the resource in the last part, which is the delete as it is made for a
// small resource: its intent, the app's delete call (once, where it always is) and the
// commit of the resource's removal, the edges left and the outcome.
//
// The order keeps the directory from ever showing the resource gone while the app still
// has it: until the last part commits, the resource is there (with fewer edges). A crash or
// a failure between parts leaves the resource in the directory and the app untouched by the
// delete; Entra's retry of the DELETE finds it, works out the edges left and removes them
// the same way, then makes the delete (one app call for the request; the call is repeated
// only when the last part's commit failed after it, as for any delete, where the app's 404
// means already gone).
//
// The parts before the last make no native call: the app's delete removes the resource's
// memberships there, as it does for a small delete. Two exceptions follow what a small
// delete sends: a group that is a role with revoke_on_delete sends each member it unlinks
// its list of roles without the group's (the part's intent, calls and outcome, as a member
// removal's part), and a user with clear_on_user_delete keeps the memberships of groups
// that give it a role for the last part, whose clear of the user's roles reads them.
//
// Each part is journaled as a member change's part is: action delete, the request's
// request_id, part {index, count}, the edges it removed (members, groups) and a reason;
// a manager's reports unlinked in a part get their cascade records in it. The parts
// before the last carry no event (a part with calls carries remove_members): the policy
// decided the delete once, whole (decideWhole), and its stats count the delete.

// reportWeight is what a manager's report counts against a part's edges: its record, its
// index entry, its mark and its cascade record (4 operations), where an edge and its
// reverse are 2 (3 with a role's withheld mark). groupWeight is a membership of the
// deleted resource in a group: the edge, its reverse and the group's record, touched for
// its new version (3 operations, 4 with a role's withheld mark).
const (
	reportWeight = 2
	groupWeight  = 2
)

// unlinkSet is the edges one part of a delete removes before the resource goes.
type unlinkSet struct {
	members []string // the group's members (edges group -> member)
	groups  []string // the groups the resource belongs to (edges group -> resource)
	reports []string // users whose manager the resource is
}

func (u *unlinkSet) weight() int {
	return len(u.members) + groupWeight*len(u.groups) + reportWeight*len(u.reports)
}

// deleteSplit is what decide returns instead of a delete's plan when the delete's edges do
// not fit one transaction of a bounded store: every edge, in the order the parts remove
// them (the last ones, up to a part's worth, stay for the delete itself).
type deleteSplit struct {
	edges unlinkSet
	chunk int
}

func (s *deleteSplit) Error() string {
	return fmt.Sprintf("a delete of weight %d is applied in parts of %d", s.edges.weight(), s.chunk)
}

// deleteSplitOf returns the split err asks for, nil when err is something else.
func deleteSplitOf(err error) *deleteSplit {
	if err == nil {
		return nil // errors.As's target escapes: not allocated for every request
	}
	var s *deleteSplit
	if errors.As(err, &s) {
		return s
	}
	return nil
}

// checkDeleteSplit returns a *deleteSplit when the delete of p, on a bounded store, has
// more edges than one part holds and j is not already one part of a split delete (nor its
// decision as a whole); nil otherwise. The edges are counted up to the bound first, and
// listed only for a split.
func (e *Engine) checkDeleteSplit(tx *store.Tx, j *job, p *plan) error {
	if !e.splitDeletes || j.part != nil || j.whole {
		return nil
	}
	n := 0
	count := func(w int) error {
		if n += w; n > e.chunk {
			return errEnough
		}
		return nil
	}
	err := e.deleteEdges(tx, p, func(kind int, _ string) error { return count(kindWeight(kind)) })
	if err == nil {
		return nil
	}
	if !errors.Is(err, errEnough) {
		return err
	}
	s := &deleteSplit{chunk: e.chunk}
	var roleGroups []string
	keepRoles := e.keepsRoleEdges(p)
	err = e.deleteEdges(tx, p, func(kind int, id string) error {
		switch {
		case kind == edgeMember:
			s.edges.members = append(s.edges.members, id)
		case kind == edgeReport:
			s.edges.reports = append(s.edges.reports, id)
		case keepRoles && tx.Role(e.target.Name, id) != "" && !tx.Withheld(e.target.Name, id, p.id):
			roleGroups = append(roleGroups, id)
		default:
			s.edges.groups = append(s.edges.groups, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Groups that give the user a role go last: the last part keeps them (clearRoles).
	s.edges.groups = append(s.edges.groups, roleGroups...)
	return s
}

const (
	edgeMember = iota
	edgeGroup
	edgeReport
)

func kindWeight(kind int) int {
	switch kind {
	case edgeReport:
		return reportWeight
	case edgeGroup:
		return groupWeight
	}
	return 1
}

// deleteEdges calls fn with every edge the delete of p removes, each list in key order:
// the group's members, the groups it belongs to, the user's reports.
func (e *Engine) deleteEdges(tx *store.Tx, p *plan, fn func(kind int, id string) error) error {
	if p.typ == scim.GroupType {
		if err := tx.Members(p.id, func(m store.Member) error { return fn(edgeMember, m.ID) }); err != nil {
			return err
		}
	}
	if err := tx.GroupsOf(p.id, func(g string) error { return fn(edgeGroup, g) }); err != nil {
		return err
	}
	if p.typ != scim.UserType {
		return nil
	}
	ids, err := tx.Lookup(scim.UserType, managerIndex, p.id)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := fn(edgeReport, id); err != nil {
			return err
		}
	}
	return nil
}

// keepsRoleEdges reports whether the delete of user p clears the user's roles first
// (clear_on_user_delete): the last part must still find the groups that give them.
func (e *Engine) keepsRoleEdges(p *plan) bool {
	roles := e.rolesOf()
	return roles != nil && roles.ClearOnUserDelete && p.typ == scim.UserType
}

// parts cuts the split's edges into the parts before the delete, of at most chunk each
// (by weight), in order: reports, members, groups. What the last chunk's worth leaves is
// deleted with the resource.
func (s *deleteSplit) parts() []*unlinkSet {
	type item struct {
		kind int
		id   string
	}
	var items []item
	for _, id := range s.edges.reports {
		items = append(items, item{edgeReport, id})
	}
	for _, id := range s.edges.members {
		items = append(items, item{edgeMember, id})
	}
	for _, id := range s.edges.groups {
		items = append(items, item{edgeGroup, id})
	}
	// The tail, up to a part's weight, stays for the delete.
	end, tail := len(items), 0
	for end > 0 && tail+kindWeight(items[end-1].kind) <= s.chunk {
		end--
		tail += kindWeight(items[end].kind)
	}
	var out []*unlinkSet
	cur, w := &unlinkSet{}, 0
	for _, it := range items[:end] {
		if w+kindWeight(it.kind) > s.chunk && w > 0 {
			out = append(out, cur)
			cur, w = &unlinkSet{}, 0
		}
		w += kindWeight(it.kind)
		switch it.kind {
		case edgeReport:
			cur.reports = append(cur.reports, it.id)
		case edgeMember:
			cur.members = append(cur.members, it.id)
		default:
			cur.groups = append(cur.groups, it.id)
		}
	}
	if w > 0 {
		out = append(out, cur)
	}
	return out
}

// runDeleteParts applies job j, a delete whose edges do not fit one transaction, in parts
// (see the comment at the top of this file): the policy decides the delete once, whole;
// the parts before the last remove edges; the last is the delete itself. The first part
// that fails ends the request with its error (journaled with that part): the parts before
// it stay applied, and Entra's retry of the DELETE finishes the rest.
func (e *Engine) runDeleteParts(j *job, s *deleteSplit) (*plan, error) {
	decision, release, err := e.decideWhole(j)
	if err != nil {
		return nil, err
	}
	units := s.parts()
	count := len(units) + 1
	for i := range count {
		pt := &part{index: i, count: count, decision: decision}
		if i < len(units) {
			pt.unlink = units[i]
		}
		pj := e.partJob(j, pt)
		p, err := e.run(pj)
		if err != nil {
			if i == 0 {
				release() // nothing of the request was applied
			}
			j.trail = pj.trail
			return nil, err
		}
		if pt.last() {
			return p, nil
		}
	}
	return nil, errors.New("a delete in parts without a last part") // not reached: count >= 1
}

// decideUnlink decides one part of a delete before the last (j.part.unlink): the resource
// stays as it is; the part removes its edges that are still there.
func (e *Engine) decideUnlink(tx *store.Tx, j *job) (*plan, error) {
	p, _, err := e.loadCurrent(tx, j)
	if err != nil {
		return nil, err
	}
	u := j.part.unlink
	p.after = p.before
	p.unlink = &unlinkSet{reports: u.reports}
	for _, m := range u.members {
		if has, err := tx.HasMember(p.id, m); err != nil {
			return nil, err
		} else if has {
			p.unlink.members = append(p.unlink.members, m)
		}
	}
	for _, g := range u.groups {
		if has, err := tx.HasMember(g, p.id); err != nil {
			return nil, err
		} else if has {
			p.unlink.groups = append(p.unlink.groups, g)
		}
	}
	p.removed = p.unlink.members
	if len(p.unlink.groups) > 0 {
		p.changes = []journal.Change{changeOf("groups", "remove", memberList(p.unlink.groups))}
	}
	if e.revokesInParts(tx, p) && len(p.removed) > 0 {
		p.events = []change.Event{change.RemoveMembers}
	}
	return p, nil
}

// revokesInParts reports whether the parts of group p's delete send its members' lists of
// roles: the group gives a role, and its delete revokes it (what the delete would send
// them).
func (e *Engine) revokesInParts(tx *store.Tx, p *plan) bool {
	roles := e.rolesOf()
	return roles != nil && roles.RevokeOnDelete && p.typ == scim.GroupType && tx.Role(e.target.Name, p.id) != ""
}

// applyUnlink writes one part of a delete before the last: the edges it removes (with a
// role's withheld marks of those memberships) and the reports' references to their manager
// (with their cascade records). It may run more than once.
func (e *Engine) applyUnlink(tx *store.Tx, p *plan) error {
	p.cascade = nil
	p.rec = p.current
	roles := e.rolesOf() != nil
	unlink := func(group, member string) error {
		if _, err := tx.RemoveMember(group, member); err != nil {
			return err
		}
		if roles {
			return tx.SetWithheld(e.target.Name, group, member, false)
		}
		return nil
	}
	for _, m := range p.unlink.members {
		if err := unlink(p.id, m); err != nil {
			return err
		}
	}
	for _, g := range p.unlink.groups {
		if err := unlink(g, p.id); err != nil {
			return err
		}
		if err := tx.Touch(g); err != nil { // its members changed: a new version (see Tx.Touch)
			return err
		}
	}
	for _, id := range p.unlink.reports {
		if err := e.unlinkReport(tx, p, id, e.cascadeRecord); err != nil {
			return fmt.Errorf("dropping the manager reference of %s: %w", id, err)
		}
	}
	return nil
}

// unlinkReason is the journal's reason for one part of a delete before the last.
func (e *Engine) unlinkReason(p *plan) string {
	u := p.unlink
	what := fmt.Sprintf("%d member(s), %d group membership(s), %d report(s)", len(u.members), len(u.groups), len(u.reports))
	reason := "part of a delete whose edges do not fit one transaction of the store: " + what + " unlinked in the directory before the resource is deleted in the last part"
	switch {
	case len(p.events) > 0:
		reason += "; the members unlinked get their lists of roles without the group's (revoke_on_delete)"
	case e.target != nil:
		reason += "; " + e.target.Name + " is not called for them: its delete in the last part removes them there"
	}
	return reason
}

// noteUnlink adds the reason of a delete's part before the last to its trail, once (a
// commit's function may run more than once).
func (e *Engine) noteUnlink(j *job, p *plan) {
	reason := e.unlinkReason(p)
	d := j.trail.decision
	if d == nil {
		d = &journal.Decision{Allow: true}
	}
	if slices.Contains(d.Reasons, reason) {
		return
	}
	c := *d
	c.Reasons = append(slices.Clone(c.Reasons), reason)
	j.trail.decision = &c
}
