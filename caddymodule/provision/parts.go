package provision

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// MemberChunk is the most member edges one transaction of a group's member change writes. A
// create, PATCH or PUT of a group that changes more is applied in parts of at most
// MemberChunk edges, each a change of its own (see runParts), so that every transaction fits
// a store whose transactions are bounded: etcd holds at most 128 operations (and about
// 1.5 MiB) in one. A part's transaction writes at most 3 keys per edge (the edge, its
// reverse, a role's withheld mark: 75), the group's record and its index entries (at most
// 10), the journal's record, head, size, open-intent entry and a checkpoint (at most 6), the
// account's id map entry, mark, role, progress and adoption (at most 5), a deleted account's
// retirement (store.RetireNativeID: at most 5) and a queued task (at most 4): about 105 in
// all. A change of MemberChunk edges or fewer is one transaction, as
// any other change.
//
// MemberChunk is the part size on etcd with its default limit (a store with another limit
// scales it). On a bbolt file, whose transactions are not bounded, a change of more than
// FileMemberChunk edges is applied in parts of FilePartSize edges: each part costs a commit
// (an fsync), and parts bound the memory a change holds.
const MemberChunk = 25

// FileMemberChunk is the most member edges one transaction writes on a bbolt file, and the
// largest part there.
const FileMemberChunk = 2000

// FileMinPart is the smallest part on a bbolt file.
const FileMinPart = 500

// FilePartSize is the part size on a bbolt file of a change of edges member edges (more
// than FileMemberChunk): a twentieth of the change, at least FileMinPart and at most
// FileMemberChunk. A part's transaction holds memory in proportion to its edges (bbolt's
// dirty nodes, the pages written at its commit: about 800 bytes an edge), so a part sized
// by the change keeps that in proportion to the request's body (issue 11: a PATCH of 10,000
// members, a 0.5 MB body, held 1.6 MB per part of 2,000), while the parts of a large change
// stay large enough that their commits (an fsync each) do not dominate.
func FilePartSize(edges int) int {
	return min(FileMemberChunk, max(FileMinPart, edges/20))
}

// memberChunk is the part size for a store whose transactions hold at most limit
// operations (0: no limit).
func memberChunk(limit int) int {
	if limit <= 0 {
		return FileMemberChunk
	}
	return max(1, MemberChunk*limit/128)
}

// part is one part of a member change applied in parts: its place among them and the member
// edges it changes (removals first, as applyMembers does).
type part struct {
	index, count int // index from 0
	delta        *scim.MemberDelta
	// unlink is set on a part of a delete before the last: the edges it removes
	// (deleteparts.go).
	unlink *unlinkSet
	// decision is the policy's decision on the whole request, which every part follows
	// (nil without a policy).
	decision *policy.Decision
}

// last reports whether the part is the request's last: it carries the change of the group's
// attributes and renders the answer.
func (pt *part) last() bool { return pt.index == pt.count-1 }

// memberSplit is what decide returns instead of a plan when the change of a group's members
// is larger than one transaction holds: the member edges to change, every one named (a
// "remove all" is resolved to the members the group had). run applies them in parts.
type memberSplit struct {
	delta        *scim.MemberDelta
	edges, chunk int
}

func (s *memberSplit) Error() string {
	return fmt.Sprintf("a change of %d member edges is applied in parts of %d", s.edges, s.chunk)
}

// splitOf returns the split err asks for, nil when err is something else.
func splitOf(err error) *memberSplit {
	if err == nil {
		return nil // errors.As's target escapes: not allocated for every request
	}
	var s *memberSplit
	if errors.As(err, &s) {
		return s
	}
	return nil
}

// errEnough stops a walk over a group's members once it has seen enough of them.
var errEnough = errors.New("enough members")

// checkSplit returns a *memberSplit when delta d of group groupID changes more than
// e.chunk member edges and j is not already one part of a split change; nil otherwise.
// Only a "remove all" needs the store: the members the group has are counted (up to the
// bound) and, for a split, listed as removals, except those d adds again.
func (e *Engine) checkSplit(tx *store.Tx, j *job, groupID string, d *scim.MemberDelta) error {
	if j.part != nil || j.whole || d == nil {
		return nil
	}
	edges := len(d.Add) + len(d.Remove)
	if d.RemoveAll && edges <= e.chunk {
		err := tx.Members(groupID, func(store.Member) error {
			if edges++; edges > e.chunk {
				return errEnough
			}
			return nil
		})
		if err != nil && !errors.Is(err, errEnough) {
			return err
		}
	}
	if edges <= e.chunk {
		return nil
	}
	for _, m := range d.Add {
		if m.Value == groupID {
			// Refused before any part is written, as one transaction would refuse it.
			return scim.BadRequest(scim.TypeInvalidValue, "group %s cannot be a member of itself", groupID)
		}
	}
	if !d.RemoveAll {
		return &memberSplit{delta: d, edges: edges, chunk: e.partSize(edges)}
	}
	// Every member goes, but those added again stay (removed and re-added: no change).
	adds := make(map[string]struct{}, len(d.Add))
	for _, m := range d.Add {
		adds[m.Value] = struct{}{}
	}
	listed := make(map[string]struct{}, len(d.Remove))
	for _, id := range d.Remove {
		listed[id] = struct{}{}
	}
	resolved := &scim.MemberDelta{Add: d.Add, Remove: d.Remove}
	err := tx.Members(groupID, func(m store.Member) error {
		_, add := adds[m.ID]
		_, dup := listed[m.ID]
		if !add && !dup {
			resolved.Remove = append(resolved.Remove, m.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	edges = len(resolved.Add) + len(resolved.Remove)
	return &memberSplit{delta: resolved, edges: edges, chunk: e.partSize(edges)}
}

// partSize is the part size of a change of edges member edges applied in parts.
func (e *Engine) partSize(edges int) int {
	if e.fileParts {
		return FilePartSize(edges)
	}
	return e.chunk
}

// memberParts is a member change cut into parts of at most n edges each: the removals
// first, then the additions, each sorted by member id, so that each part's edges are
// neighbours in the store: a part of Entra's unordered ids would rewrite a page of edges
// for nearly every edge it writes (in bbolt, 24 KB written and allocated per member for
// 100,000), a part of sorted ids a page or two. The parts, their calls and their records
// follow this order; what the request means does not depend on it (Remove and Add never
// share an id). The additions are not sorted in place, as they are the caller's (a
// create's or a PUT's) or a PATCH operation's own list (scim.MemberList): each part copies
// its own, in the order of a sorted index (4 bytes a member instead of a sorted copy's 64;
// issue 11). The removals are the change's own, sorted in place.
type memberParts struct {
	d     *scim.MemberDelta
	order []int32 // indexes of d.Add in key order (keyOrder)
	n     int
}

func newMemberParts(d *scim.MemberDelta, n int) *memberParts {
	slices.Sort(d.Remove)
	return &memberParts{d: d, order: keyOrder(len(d.Add), func(i int) string { return d.Add[i].Value }), n: n}
}

// count is the number of parts.
func (mp *memberParts) count() int {
	return (len(mp.d.Remove) + len(mp.d.Add) + mp.n - 1) / mp.n
}

// part returns part i (from 0): its removals share the change's array, its additions are
// its own.
func (mp *memberParts) part(i int) *scim.MemberDelta {
	start := i * mp.n
	end := min(start+mp.n, len(mp.d.Remove)+len(mp.d.Add))
	pd := &scim.MemberDelta{}
	if rem := len(mp.d.Remove); start < rem {
		e := min(end, rem)
		pd.Remove = mp.d.Remove[start:e:e]
	}
	if rem := len(mp.d.Remove); end > rem {
		s, e := max(start, rem)-rem, end-rem
		pd.Add = make([]scim.MemberRef, 0, e-s)
		for _, k := range mp.order[s:e] {
			pd.Add = append(pd.Add, mp.d.Add[k])
		}
	}
	return pd
}

// runParts applies job j, a change of a group's members larger than one transaction holds,
// in parts of at most s.chunk edges (see the package doc): each part is a change of its
// own through the whole pipeline (policy, intent, native calls, commit and outcome), under
// the job's locks, journaled with the request's id and its place among the parts. The first
// part of a create creates the group; the last part of a PATCH or PUT changes the group's
// other attributes and renders the answer. The parts run in turn and the first that fails
// ends the request: the parts before it stay applied (the app has their members, and the
// directory and journal say so), and j's trail becomes the failed part's, which the failure
// is journaled with. Entra retries the whole request; the parts already applied then change
// nothing (an existing member added, an absent one removed) and make no call.
func (e *Engine) runParts(j *job, s *memberSplit) (*plan, error) {
	decision, release, err := e.decideWhole(j)
	if err != nil {
		return nil, err
	}
	parts := newMemberParts(s.delta, s.chunk)
	// The request's members are in the split now: the job lets go of them as the request
	// decoded them (a map per member, several times the body's size; issue 11).
	op := *j.op
	switch {
	case op.Action == change.ActionPatch:
		op.Patch = attributeOps(op.Patch)
	case op.Resource != nil:
		res := *op.Resource
		res.Members = nil
		op.Resource = &res
	}
	j.op = &op
	var last *plan
	for i := range parts.count() {
		pj := e.partJob(j, &part{index: i, count: parts.count(), delta: parts.part(i), decision: decision})
		p, err := e.run(pj)
		if err != nil {
			if i == 0 {
				release() // no part reached the app
			}
			j.trail = pj.trail
			return nil, err
		}
		last = p
	}
	return last, nil
}

// decideWhole has the policy decide on job j as a whole, before it is applied in parts,
// as it would decide on the change made in one transaction: the policy sees every member
// the request adds and removes, its stats count the request once, and a deny or a decision
// that does not come is the request's (journaled once, without a part; nothing is applied).
// Every part then follows the decision, obligations included (a dropped member is dropped
// from the part that names it). It returns nil without a policy, and the function that takes
// the request's count back from the stats when no part reaches the app.
func (e *Engine) decideWhole(j *job) (*policy.Decision, func(), error) {
	if e.policy == nil {
		return nil, func() {}, nil
	}
	j.whole = true
	p, err := e.decideView(j)
	j.whole = false
	if err != nil {
		return nil, nil, err
	}
	j.trail.fill(p)
	if e.target != nil {
		j.trail.target = e.target.Name
	}
	v := e.decidePolicy(j, p)
	if v.err != nil {
		return nil, nil, v.err
	}
	if v.undecided != nil {
		return nil, nil, &Undecided{Err: v.undecided}
	}
	j.trail.decision = e.journalDecision(v.decision, nil, nil)
	if !v.decision.Allow {
		return nil, nil, &Denied{Decision: v.decision}
	}
	return &v.decision, v.release, nil
}

// partJob is the job of one part of j (whose op has its members taken out: a PATCH keeps
// the operations that change other attributes). Every part keeps j's request, time and
// SCIM id and runs under j's locks; only the first keeps the If-Match (the version it names
// moves with each part), only the last renders the answer. A create's first part creates
// the group with its members of the part; its other parts are PATCHes of the group's
// members. A PATCH's last part applies the operations that change other attributes; a
// PUT's last part stores the body's attributes.
func (e *Engine) partJob(j *job, pt *part) *job {
	op := *j.op
	if pt.index > 0 {
		op.IfMatch = ""
	}
	if !pt.last() {
		op.Render = nil
	}
	switch {
	case op.Action == change.ActionCreate && pt.index == 0:
		res := *op.Resource
		res.Members = pt.delta.Add
		op.Resource = &res
	case op.Action == change.ActionCreate:
		op.Action, op.ID, op.Resource = change.ActionPatch, j.id, nil
		op.Patch = nil
	case op.Action == change.ActionPatch && !pt.last():
		op.Patch = nil
	}
	pj := &job{req: j.req, op: &op, id: j.id, now: j.now, part: pt, locked: true}
	pj.trail = &Trail{Action: op.Action, Type: op.Type, ID: j.id, Subject: j.trail.Subject,
		part: &journal.Part{Index: pt.index + 1, Count: pt.count}}
	return pj
}

// attributeOps are the operations of a PATCH that change something other than the members
// (a path-less operation may do both: it is kept, and its members are taken from the
// split).
func attributeOps(ops []scim.PatchOp) []scim.PatchOp {
	var out []scim.PatchOp
	for _, op := range ops {
		if p := op.Path; p != nil && p.Attr.URN == "" && strings.EqualFold(p.Attr.Name, "members") {
			continue
		}
		out = append(out, op)
	}
	return out
}

// decidePart decides one part of a member change applied in parts (see runParts) against
// the group as it is stored: the part's member edges, and, on the last part, the request's
// change of the group's other attributes (a PATCH's attribute operations, a PUT's body).
func (e *Engine) decidePart(tx *store.Tx, j *job) (*plan, error) {
	p, before, err := e.loadCurrent(tx, j)
	if err != nil {
		return nil, err
	}
	after := before
	switch {
	case !j.part.last():
	case j.op.Action == change.ActionReplace:
		after = j.op.Resource.Doc
	case j.op.Action == change.ActionPatch && len(j.op.Patch) > 0:
		// The members a path-less operation names are in the split already.
		if after, _, err = scim.ApplyPatch(p.typ, before, j.op.Patch, e.patch); err != nil {
			return nil, err
		}
		if err := scim.CheckTypes(p.typ, after); err != nil {
			return nil, err
		}
		if err := scim.CheckRequired(p.typ, after); err != nil {
			return nil, err
		}
	}
	p.delta = j.part.delta
	if err := p.planMembers(tx); err != nil {
		return nil, err
	}
	p.after = withID(after, p.id)
	p.diff(before, after)
	return p, p.prepareRecord(after)
}
