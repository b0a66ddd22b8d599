package provision

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// job is one request's change on its way through the engine: what was asked, by whom,
// when, and what the journal will say about it.
type job struct {
	req   Request
	op    *Op
	id    string    // the resource's SCIM id (assigned on create)
	now   time.Time // the change's time: lastModified (and created)
	trail *Trail
	// part is set on one part of a member change applied in parts (parts.go), whose
	// parts run under the locks of the request's job (locked).
	part   *part
	locked bool
	whole  bool // decided whole, not split: the policy's decision on a change applied in parts
	// sent: on a shared store, the change's calls were made; its commit refuses to land on
	// a change another gateway made to the resource meanwhile (overtaken).
	sent bool
}

// plan is a change decided for one request against the stored state: what the directory
// will hold, which semantic events the app must see, and, as the steps go, what they
// found out. Every step reads and writes the plan; nothing is carried in closures.
type plan struct {
	job     *job
	typ, id string
	version uint64        // the stored version the change was decided on (0 on create)
	created time.Time     // the resource's creation time (now on create)
	before  scim.Resource // nil on create; with its id, as the mapping and policies see it
	// beforeDoc is the stored document the change was decided on (nil on create): the
	// commit compares it to tell whether the change must be decided again (redecide).
	beforeDoc []byte
	after     scim.Resource // nil on delete; with its id

	// roleLists are the users' lists of roles the change's calls sent (groups as roles).
	roleLists []roleJob

	events  []change.Event
	changes []journal.Change // the attribute changes (diff of before and after), computed once
	changed []string         // the top-level attributes they touch

	// members: the request's change to a group's member edges (applied as asked, so that
	// a member's display and type follow the request), and the member ids it really adds
	// and removes (the events and the calls).
	delta   *scim.MemberDelta
	added   []string
	removed []string

	// The record to store, prepared outside the shared commit: the attributes as stored
	// (without write-only ones, without id), their JSON and their index entries. Nil on
	// delete.
	stored scim.Resource
	doc    []byte
	index  []store.IndexEntry

	// Filled by the steps before the calls.
	same       bool          // a PATCH or PUT that leaves the resource as it is (see unchanged); rec and answer are set
	current    *store.Record // the stored record the change was decided on (nil on create)
	nativeID   string        // the resource's account in the app ("" without one)
	recreate   bool          // a repair of an account the app lost: create it again (repair.go)
	adopt      bool          // a create listed for adoption: look the account up before creating it
	adoptSent  []byte        // what the listed create's attempts sent (store AdoptionSent), nil when not known
	batched    string        // the account a batch create made for this create: its flow resumes after that call
	progress   sentCalls     // calls a failed earlier attempt of the change made, not to repeat
	mark       change.Mark   // the account's mark, as decided on
	memberRefs policy.Members
	// queuedSelf, queuedRefs: the resource, or a resource the change refers to, has tasks
	// in the target's outbox, read with the account's native id, mark and progress (see
	// deliverOrQueue).
	queuedSelf, queuedRefs bool
	// nameWaits: other resources with tasks in the target's outbox that free, in the app,
	// the name this change takes (nameWaitsOf): the change is queued behind them.
	nameWaits []freeingTask
	// managerKnown: the user's manager, as the change leaves it, was in the directory when
	// the change was decided (see unlinkLateManager).
	managerKnown bool
	// holdMissing: a queued delivery (Entra was answered when the change was queued, and
	// does not retry it): a member it adds that has no account in the app is left out of
	// the member calls and sent once its account is made, instead of refusing the change.
	holdMissing bool

	// Filled by the policy and the calls.
	skipped     bool   // the policy kept the change out of the app
	deactivates bool   // the policy turned the change into a deactivation in the app
	newNativeID string // the account the create made (or adopted)

	// Groups as roles: the role the group gave before the change (read with it), and the
	// one to record with the commit (when roleDecided).
	role        string
	newRole     string
	roleDecided bool
	dropped     []string // members the policy's drop_members left out of the app
	// droppedAttrs are the attributes the policy's drop_attributes kept from the app (the
	// shaped plan's, shapeForApp).
	droppedAttrs []string
	// dropAttributes is the decision's drop_attributes (the shaped plan's): an account
	// brought in line after its adoption is not sent those fields, not even to clear them.
	dropAttributes []string

	// addedKnown are members the change adds that the app was told of (or, queued, will
	// be), each known to the directory or the app then: its commit refuses the change when
	// one of them is gone since (see refuseGoneMembers).
	addedKnown []string

	// unlink is set on a part of a delete before the last: the edges it removes
	// (deleteparts.go); the resource stays.
	unlink *unlinkSet

	// Filled by the commit.
	rec     *store.Record // the record written (nil on delete)
	answer  any           // what Op.Render made of it
	record  *journal.Record
	cascade []*journal.Prepared // the records of other resources the change changed (a deleted manager's reports)
}

// decide computes the change of j against the state in tx, without writing.
func (e *Engine) decide(tx *store.Tx, j *job) (*plan, error) {
	switch {
	case j.part != nil && j.part.unlink != nil:
		return e.decideUnlink(tx, j)
	case j.part != nil && j.op.Action != change.ActionCreate && j.op.Action != change.ActionDelete:
		return e.decidePart(tx, j)
	}
	switch j.op.Action {
	case change.ActionCreate:
		return e.decideCreate(tx, j)
	case change.ActionReplace:
		return e.decideReplace(tx, j)
	case change.ActionPatch:
		return e.decidePatch(tx, j)
	case change.ActionDelete:
		return e.decideDelete(tx, j)
	case change.ActionRepair:
		return e.decideRepair(tx, j)
	}
	return nil, scim.Errorf(http.StatusMethodNotAllowed, "", "%s is not a change the gateway makes", j.op.Action)
}

func (e *Engine) decideCreate(tx *store.Tx, j *job) (*plan, error) {
	typ, in := j.op.Type, j.op.Resource
	if err := checkUnique(tx, typ, "", SubjectOf(typ, in.Doc)); err != nil {
		return nil, err
	}
	p := &plan{job: j, typ: typ, id: j.id, created: j.now, after: withID(in.Doc, j.id)}
	if typ == scim.GroupType && len(in.Members) > 0 {
		p.delta = &scim.MemberDelta{Add: in.Members}
	}
	if err := e.checkSplit(tx, j, p.id, p.delta); err != nil {
		return nil, err
	}
	if err := p.planMembers(tx); err != nil {
		return nil, err
	}
	p.events = []change.Event{change.Create}
	if len(p.added) > 0 {
		p.events = append(p.events, change.AddMembers)
	}
	p.changes = diffChanges(nil, in.Doc)
	p.changed = changedPathsOf(p.changes)
	return p, p.prepareRecord(in.Doc)
}

func (e *Engine) decideReplace(tx *store.Tx, j *job) (*plan, error) {
	typ, in := j.op.Type, j.op.Resource
	p, before, err := e.loadCurrent(tx, j)
	if err != nil {
		return nil, err
	}
	// PUT replaces the member set when the body has one; without a members attribute the
	// members are left as they are (no implicit wipe).
	if typ == scim.GroupType && in.HasMembers {
		keep := make(map[string]bool, len(in.Members))
		for _, m := range in.Members {
			keep[m.Value] = true
		}
		d := &scim.MemberDelta{Add: in.Members}
		err := tx.Members(p.id, func(m store.Member) error {
			if !keep[m.ID] {
				d.Remove = append(d.Remove, m.ID)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		p.delta = d
	}
	if err := checkRename(tx, typ, p.id, before, in.Doc); err != nil {
		return nil, err
	}
	if err := e.checkSplit(tx, j, p.id, p.delta); err != nil {
		return nil, err
	}
	if err := p.planMembers(tx); err != nil {
		return nil, err
	}
	p.after = withID(in.Doc, p.id)
	p.diff(before, in.Doc)
	return p, p.prepareRecord(in.Doc)
}

func (e *Engine) decidePatch(tx *store.Tx, j *job) (*plan, error) {
	typ := j.op.Type
	p, before, err := e.loadCurrent(tx, j)
	if err != nil {
		return nil, err
	}
	// kept: the ops set values the resource holds (Entra's periodic "active": "True"), and
	// after is before itself. Nothing of the plan modifies either document.
	after, d, kept, err := scim.ApplyPatchShared(typ, before, j.op.Patch, e.patch)
	if err != nil {
		return nil, err
	}
	if err := scim.CheckTypes(typ, after); err != nil {
		return nil, err
	}
	if err := scim.CheckRequired(typ, after); err != nil {
		return nil, err
	}
	if !kept {
		if err := checkRename(tx, typ, p.id, before, after); err != nil {
			return nil, err
		}
	}
	p.delta = d
	if err := e.checkSplit(tx, j, p.id, p.delta); err != nil {
		return nil, err
	}
	if err := p.planMembers(tx); err != nil {
		return nil, err
	}
	if kept {
		// No attribute changes, by construction: no diff to walk, no copy of the document,
		// nothing to encode (keepsRecord), and nothing for WithoutWriteOnly to drop.
		p.after = p.before
		p.changed = changedPathsOf(nil) // as diff leaves it: empty, not nil
		p.events = semanticEvents(p.typ, before, after, nil, len(p.added), len(p.removed))
		p.stored = after
		return p, nil
	}
	p.after = withID(after, p.id)
	p.diff(before, after)
	return p, p.prepareRecord(after)
}

func (e *Engine) decideDelete(tx *store.Tx, j *job) (*plan, error) {
	p, before, err := e.loadCurrent(tx, j)
	if err != nil {
		return nil, err
	}
	if err := e.checkDeleteSplit(tx, j, p); err != nil {
		return nil, err
	}
	p.events = []change.Event{change.Delete}
	p.changes = diffChanges(before, nil)
	return p, nil
}

// loadCurrent reads the resource a change modifies, checks the request's If-Match against
// it and decodes its attributes: the plan starts from it.
func (e *Engine) loadCurrent(tx *store.Tx, j *job) (*plan, scim.Resource, error) {
	typ, id := j.op.Type, j.id
	cur, err := tx.Get(typ, id)
	if err != nil {
		return nil, nil, notFound(err, typ, id)
	}
	if err := checkIfMatch(j.op.IfMatch, cur.Version); err != nil {
		return nil, nil, err
	}
	doc, err := DecodeDoc(cur)
	if err != nil {
		return nil, nil, err
	}
	p := &plan{job: j, typ: typ, id: id, version: cur.Version, created: cur.Created, before: withID(doc, id), beforeDoc: cur.Doc, current: cur}
	return p, doc, nil
}

// diff computes the attribute changes from before to after and the events they mean.
func (p *plan) diff(before, after scim.Resource) {
	p.changes = diffChanges(before, after)
	p.changed = changedPathsOf(p.changes)
	p.events = semanticEvents(p.typ, before, after, p.changes, len(p.added), len(p.removed))
}

// prepareRecord builds the record to store from the resource's attributes: what the store
// keeps (never a write-only attribute such as a password; the journal's change list keeps
// it, redacted), encoded, and its index entries.
func (p *plan) prepareRecord(attrs scim.Resource) error {
	p.stored = scim.WithoutWriteOnly(p.typ, attrs)
	if p.keepsRecord() {
		return nil // nothing to encode: applyPlan leaves the stored record as it is
	}
	var err error
	p.doc, err = scim.MarshalJSON(p.stored, true) // json.Marshal's bytes, fewer allocations
	p.index = IndexEntries(p.typ, p.stored)
	return err
}

// keepsRecord reports whether p is a PATCH that changes no attribute and no member: the
// stored record (and its version) stays as it is.
func (p *plan) keepsRecord() bool {
	return p.before != nil && p.job.op.Action == change.ActionPatch && len(p.changed) == 0 && len(p.added)+len(p.removed) == 0
}

// applyPlan writes plan p in tx. It may run more than once (group commit reruns), so it
// only writes what p says and sets p's results afresh.
func (e *Engine) applyPlan(tx *store.Tx, p *plan) error {
	p.cascade = nil
	if p.unlink != nil {
		return e.applyUnlink(tx, p)
	}
	if p.after == nil {
		p.rec = nil
		if err := tx.Delete(p.typ, p.id); err != nil {
			return err
		}
		return e.unlinkReports(tx, p)
	}
	if err := applyMembers(tx, p.id, p.delta); err != nil {
		return err
	}
	if p.before != nil {
		cur, err := tx.Get(p.typ, p.id)
		if err != nil {
			return notFound(err, p.typ, p.id)
		}
		p.created = cur.Created
		if p.job.op.Action == change.ActionRepair {
			// A repair changes the app, never the directory (nor its versions).
			p.rec = cur
			return nil
		}
		if p.keepsRecord() {
			p.rec = cur
			return p.render(tx)
		}
	}
	rec := &store.Record{Type: p.typ, ID: p.id, Created: p.created, LastModified: p.job.now, Doc: p.doc, Index: p.index}
	if err := tx.Put(rec); err != nil {
		return err
	}
	p.rec = rec
	return p.render(tx)
}

// render makes the answer from the record just written, when the request wants one.
func (p *plan) render(tx *store.Tx) error { return p.renderDoc(tx, maps.Clone(p.stored)) }

// renderDoc is render from doc, p.stored or a copy of it at the top level, which Render
// may add to: p.stored itself only when p is never rendered again.
func (p *plan) renderDoc(tx *store.Tx, doc scim.Resource) error {
	p.answer = nil
	if p.job.op.Render == nil {
		return nil
	}
	var err error
	p.answer, err = p.job.op.Render(tx, p.rec, doc)
	return err
}

// planMembers works out which of the request's member changes really change the edges:
// ids added that were not members, ids removed that were. A member removed and added
// again is no change.
func (p *plan) planMembers(tx *store.Tx) error {
	var err error
	p.added, p.removed, err = memberChangesOf(tx, p.id, p.delta)
	return err
}

// memberChangesOf returns the member ids delta d really adds to group id and removes from
// it, against the edges in tx (removed sorted). It allocates no map: a change of many
// members (a part of 2,000, a PATCH of 100,000) costs its two result lists and, unless its
// additions are already in key order without duplicates (a part's are), an index of them
// (issue 11).
func memberChangesOf(tx *store.Tx, groupID string, d *scim.MemberDelta) (added, removed []string, err error) {
	if d == nil {
		return nil, nil, nil
	}
	// The members that go, sorted without duplicates; kept marks those added again.
	var gone []string
	if d.RemoveAll {
		err := tx.Members(groupID, func(m store.Member) error {
			gone = append(gone, m.ID)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	for _, id := range d.Remove {
		has, err := tx.HasMember(groupID, id)
		if err != nil {
			return nil, nil, err
		}
		if has {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	gone = slices.Compact(gone)
	var kept []bool
	if len(gone) > 0 {
		kept = make([]bool, len(gone))
	}
	dup := duplicateAdds(d.Add)
	for i, m := range d.Add {
		if dup != nil && dup[i] {
			continue
		}
		if m.Value == groupID {
			return nil, nil, scim.BadRequest(scim.TypeInvalidValue, "group %s cannot be a member of itself", groupID)
		}
		has, err := tx.HasMember(groupID, m.Value)
		if err != nil {
			return nil, nil, err
		}
		if k, ok := slices.BinarySearch(gone, m.Value); ok {
			kept[k] = true // removed and re-added: no change
			continue
		}
		if !has {
			if added == nil {
				added = make([]string, 0, len(d.Add)-i)
			}
			added = append(added, m.Value)
		}
	}
	for k, id := range gone {
		if !kept[k] {
			removed = append(removed, id)
		}
	}
	return added, removed, nil
}

// duplicateAdds marks the additions whose id an earlier one has, or returns nil when there
// are none. Additions in strictly increasing id order (a part's) need no index.
func duplicateAdds(add []scim.MemberRef) []bool {
	increasing := true
	for i := 1; i < len(add) && increasing; i++ {
		increasing = add[i-1].Value < add[i].Value
	}
	if increasing {
		return nil
	}
	order := keyOrder(len(add), func(i int) string { return add[i].Value })
	var dup []bool
	for k := 1; k < len(order); k++ {
		first, i := order[k-1], order[k]
		if add[first].Value != add[i].Value {
			continue
		}
		if dup == nil {
			dup = make([]bool, len(add))
		}
		// keyOrder sorts by id only: of a run of equal ids, all but the earliest index are
		// marked (the earliest so far moves along the run).
		dup[max(first, i)] = true
		order[k] = min(first, i)
	}
	return dup
}

// applyMembers applies a group's member changes as edges: every member first when asked,
// then the listed ones, then the additions (which also refresh an existing member's display
// and type).
func applyMembers(tx *store.Tx, groupID string, d *scim.MemberDelta) error {
	if d == nil {
		return nil
	}
	if d.RemoveAll {
		if _, err := tx.RemoveAllMembers(groupID); err != nil {
			return err
		}
	}
	for _, i := range keyOrder(len(d.Remove), func(i int) string { return d.Remove[i] }) {
		if _, err := tx.RemoveMember(groupID, d.Remove[i]); err != nil {
			return err
		}
	}
	for _, i := range keyOrder(len(d.Add), func(i int) string { return d.Add[i].Value }) {
		if err := addMember(tx, groupID, d.Add[i]); err != nil {
			return err
		}
	}
	return nil
}

// keyOrder returns the indexes 0..n-1 in the order of their member ids. bbolt splits its
// nodes only at commit, so a transaction's inserts at random places each move the rest of a
// node that grows to the whole change (quadratic); in key order they append. A group PATCH
// adding 100,000 members with Entra's unordered ids took 58 s, in key order 0.6 s (issue 11).
// The request's order is kept everywhere else (the events, the calls, the journal), except
// in a change applied in parts, whose parts go in key order too (memberParts).
func keyOrder(n int, id func(int) string) []int32 {
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(id(int(a)), id(int(b))) })
	return order
}

// addMember adds one member edge, resolving the member's type from the store (Entra sends
// nested groups without a type). A member id that names no resource is kept as given:
// Entra's reference pass may race with deletes, and failing the whole PATCH would hide the
// other members' changes.
func addMember(tx *store.Tx, groupID string, m scim.MemberRef) error {
	if m.Value == groupID {
		return scim.BadRequest(scim.TypeInvalidValue, "group %s cannot be a member of itself", groupID)
	}
	edge, err := memberEdge(tx, m)
	if err != nil {
		return err
	}
	_, err = tx.AddMember(groupID, edge)
	return err
}

// memberEdge is the edge a member reference is stored as: its type from the store when the
// member exists, else the one the request gave.
func memberEdge(tx *store.Tx, m scim.MemberRef) (store.Member, error) {
	typ, err := tx.TypeOf(m.Value)
	switch {
	case errors.Is(err, store.ErrNotFound):
		typ = ""
		if rt := scim.ResourceTypeByName(m.Type); rt != nil {
			typ = rt.Name
		}
	case err != nil:
		return store.Member{}, err
	}
	return store.Member{ID: m.Value, Type: typ, Display: m.Display}, nil
}

// unchanged reports whether p, a PATCH or PUT, leaves the resource exactly as it is: no
// attribute changes (a write-only one such as a password counts as a change: it is sent to
// the app), no member added or removed, and every member it re-adds stored as it would be
// written. Entra re-sends unchanged values routinely (its periodic "active": true); such a
// request is answered from a read transaction (see Engine.run).
func (p *plan) unchanged(tx *store.Tx) (bool, error) {
	if p.before == nil || p.after == nil || len(p.changes) > 0 || len(p.added)+len(p.removed) > 0 {
		return false, nil
	}
	if a := p.job.op.Action; a != change.ActionPatch && a != change.ActionReplace {
		return false, nil
	}
	if p.delta == nil {
		return true, nil
	}
	for _, m := range p.delta.Add {
		want, err := memberEdge(tx, m)
		if err != nil {
			return false, err
		}
		have, ok, err := tx.Member(p.id, m.Value)
		if err != nil || !ok || have != want {
			return false, err
		}
	}
	return true, nil
}

// checkUnique refuses a change that gives resource id (a create: "") a userName (a group's
// displayName) that another resource holds, before any native call is made. The store
// enforces it again when the record is written, but by then the app has been told.
func checkUnique(tx *store.Tx, typ, id, name string) error {
	attr := "userName"
	if typ == scim.GroupType {
		attr = "displayName"
	}
	ids, err := tx.Lookup(typ, attr, name)
	if err != nil {
		return err
	}
	for _, owner := range ids {
		if owner != id {
			return &store.UniqueError{Type: typ, Attr: attr, Value: name, OwnerID: owner}
		}
	}
	return nil
}

// checkRename is checkUnique for a PUT or PATCH of resource id from before to after, when
// it renames it (see renamed).
func checkRename(tx *store.Tx, typ, id string, before, after scim.Resource) error {
	if name := renamed(typ, before, after); name != "" {
		return checkUnique(tx, typ, id, name)
	}
	return nil
}

// renamed is the name after gives a resource that before named otherwise (other than in
// case: the index equates those), "" when the name stays.
func renamed(typ string, before, after scim.Resource) string {
	name := SubjectOf(typ, after)
	if name == "" || strings.EqualFold(name, SubjectOf(typ, before)) {
		return ""
	}
	return name
}

// renamedTo is renamed for a decided change ("" when it failed or is no update).
func renamedTo(p *plan, err error) string {
	if err != nil || p == nil || p.before == nil || p.after == nil {
		return ""
	}
	return renamed(p.typ, p.before, p.after)
}

// checkIfMatch enforces an If-Match precondition against the current version.
func checkIfMatch(ifMatch string, version uint64) error {
	if ifMatch == "" || ETagListMatches(ifMatch, version) {
		return nil
	}
	return scim.Errorf(http.StatusPreconditionFailed, "", "If-Match %s does not match the current version %s; read the resource again", ifMatch, ETag(version))
}

// ETagListMatches reports whether an If-Match or If-None-Match list names version: "*", or
// an entity tag equal to the version's by weak comparison (W/ aside, RFC 9110 §8.8.3.2). A
// tag without its quotes is not an entity tag and matches nothing.
func ETagListMatches(list string, version uint64) bool {
	cur := `"` + strconv.FormatUint(version, 10) + `"`
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == cur {
			return true
		}
	}
	return false
}

// ETag is the weak entity tag of a stored version.
func ETag(version uint64) string { return `W/"` + strconv.FormatUint(version, 10) + `"` }

func notFound(err error, typ, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return scim.NotFound("%s %s not found", typ, id)
	}
	return err
}

// DecodeDoc decodes a stored record's attributes. Extension attributes a record still
// holds as flat "URN:attr" keys (stored before they were nested on write) come back
// nested, and empty arrays (stored before they meant unassigned) not at all, so that
// reads, filters, diffs and patches see each attribute one way.
func DecodeDoc(rec *store.Record) (scim.Resource, error) {
	v, err := scim.Decode(rec.Doc)
	if err != nil {
		return nil, err
	}
	doc, _ := v.(map[string]any)
	if doc == nil {
		doc = scim.Resource{}
	}
	scim.NestFlatAttributes(rec.Type, doc)
	scim.UnassignEmpty(doc) // an empty array stored by an earlier version is unassigned
	return doc, nil
}

// IndexEntries are the store indexes of a resource: userName (unique), externalId, every
// emails.value and the manager's id (manager.value) for users; displayName (unique) and
// externalId for groups.
func IndexEntries(typ string, doc scim.Resource) []store.IndexEntry {
	var out []store.IndexEntry
	str := func(name string) string {
		v, _ := scim.Get(doc, name)
		s, _ := v.(string)
		return s
	}
	if typ == scim.UserType {
		out = append(out, store.IndexEntry{Attr: "userName", Value: str("userName"), Unique: true})
		if emails, ok := scim.Get(doc, "emails"); ok {
			list, _ := emails.([]any)
			for _, e := range list {
				if em, ok := e.(map[string]any); ok {
					if v, _ := scim.Get(em, "value"); v != nil {
						if s, ok := v.(string); ok && s != "" {
							out = append(out, store.IndexEntry{Attr: "emails.value", Value: s})
						}
					}
				}
			}
		}
		if m := managerRef(doc); m != "" {
			out = append(out, store.IndexEntry{Attr: managerIndex, Value: m})
		}
	} else {
		out = append(out, store.IndexEntry{Attr: "displayName", Value: str("displayName"), Unique: true})
	}
	if ext := str("externalId"); ext != "" {
		out = append(out, store.IndexEntry{Attr: "externalId", Value: ext})
	}
	return out
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
