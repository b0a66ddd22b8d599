package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// A user's manager is a reference by SCIM id. The directory indexes it (not unique: a
// manager has many reports), so that deleting a manager finds the reports with one lookup
// instead of a scan of every user, and drops their references in the delete's own
// transaction: reads never show a manager that does not exist, and the reports' next
// changes are decided on what the directory really holds.
//
// The app is not called for the reports when the manager is deleted: the delete is one
// request for one resource, and making it wait for (or fail on) the updates of every other
// account that links the manager would block offboarding for links the app no longer
// needs. Instead each report's account in the app is marked (change.MarkManagerGone), and
// the report's next change that reaches the app also sends its manager, which the mapping
// resolves to none: Entra's own removal of the manager, a no-op for the directory by then,
// still clears the link in the app, with "send": "changed" as with "send": "all". Each
// report's change is journaled as its own record (action cascade, the deleting request's
// request_id and client, the manager's removal in changes, and a reason naming the deleted
// manager), so that a report's history, exported by its SCIM id, shows when and why its
// manager went.

// managerIndex is the index attribute of a user's manager reference.
const managerIndex = "manager.value"

// managerAttr is the manager's path, as the mapping matches changed attributes.
const managerAttr = scim.EnterpriseUserSchema + ":manager"

// removeManager is the PATCH operation that drops a manager reference, applied as Entra's
// own removal is (an extension left empty goes too).
var removeManager = func() []scim.PatchOp {
	path, err := scim.ParsePath(managerAttr)
	if err != nil {
		panic(fmt.Sprintf("parsing %s: %v", managerAttr, err))
	}
	return []scim.PatchOp{{Op: "remove", Path: &path, RawPath: managerAttr}}
}()

// managerRef returns the SCIM id a user's manager reference names, "" for none.
func managerRef(doc scim.Resource) string {
	ext, _ := scim.Get(doc, scim.EnterpriseUserSchema)
	m, _ := ext.(map[string]any)
	if m == nil {
		return ""
	}
	raw, _ := scim.Get(m, "manager")
	ref, err := scim.ManagerValue(raw)
	if err != nil || ref == nil {
		return ""
	}
	id, _ := ref["value"].(string)
	return id
}

// unlinkReports drops the references to the user p deletes from its reports, in the
// delete's transaction, and prepares a cascade record for each (p.cascade, appended after
// the delete's own record). It may run more than once (group commit reruns): it reads
// everything from tx and sets p.cascade afresh.
func (e *Engine) unlinkReports(tx *store.Tx, p *plan) error {
	p.cascade = nil
	if p.typ != scim.UserType {
		return nil
	}
	ids, err := tx.Lookup(scim.UserType, managerIndex, p.id)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := e.unlinkReport(tx, p, id, e.cascadeRecord); err != nil {
			return fmt.Errorf("dropping the manager reference of %s: %w", id, err)
		}
	}
	return nil
}

// unlinkReport drops report id's reference to the deleted manager of p, journaled by the
// record record makes.
func (e *Engine) unlinkReport(tx *store.Tx, p *plan, id string, record func(p *plan, id string, before, after scim.Resource) *journal.Record) error {
	cur, err := tx.Get(scim.UserType, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	before, err := DecodeDoc(cur)
	if err != nil {
		return err
	}
	if managerRef(before) != p.id {
		return nil // the index folds case: another id that differs only in case
	}
	after, _, err := scim.ApplyPatch(scim.UserType, before, removeManager, e.patch)
	if err != nil {
		return err
	}
	doc, err := json.Marshal(after)
	if err != nil {
		return err
	}
	rec := &store.Record{Type: scim.UserType, ID: id, Created: cur.Created, LastModified: p.job.now,
		Doc: doc, Index: IndexEntries(scim.UserType, after)}
	if err := tx.Put(rec); err != nil {
		return err
	}
	if err := e.markManagerGone(tx, id); err != nil {
		return err
	}
	prepared, err := e.journal.Prepare(record(p, id, before, after))
	if err != nil {
		return err
	}
	p.cascade = append(p.cascade, prepared)
	return nil
}

// unlinkLateManager drops, in the commit of user p's change whose calls were made, the
// manager reference the change set when that manager, known when the change was decided,
// was deleted since (through another request: a manager's delete locks only itself). The
// delete's own unlinking of its reports missed p, whose reference was not committed yet,
// and the calls linked the manager's account in the app; committed as it is, the user would
// name a deleted manager, and the app would keep the link with no mark to clear it. The
// commit does what the delete did to its other reports instead: the reference goes, the
// account is marked (its next change clears the manager in the app), and a cascade record
// of p's request says why.
func (e *Engine) unlinkLateManager(tx *store.Tx, p *plan) error {
	if p.typ != scim.UserType || p.after == nil || !p.managerKnown {
		return nil
	}
	m := managerRef(p.after)
	if m == "" || m == p.id {
		return nil
	}
	if _, err := tx.TypeOf(m); !errors.Is(err, store.ErrNotFound) {
		return err
	}
	gone := &plan{job: p.job, typ: scim.UserType, id: m}
	if err := e.unlinkReport(tx, gone, p.id, e.lateCascadeRecord); err != nil {
		return fmt.Errorf("dropping the reference of %s to its deleted manager: %w", p.id, err)
	}
	p.cascade = append(p.cascade, gone.cascade...)
	return nil
}

// lateCascadeRecord is the record of unlinkLateManager's drop of a reference to manager
// p.id from user id.
func (e *Engine) lateCascadeRecord(p *plan, id string, before, after scim.Resource) *journal.Record {
	rec := e.cascadeRecord(p, id, before, after)
	reason := fmt.Sprintf("its manager %s, which this request set, was deleted by another request before this one committed: the directory drops the reference", p.id)
	if t := e.target; t != nil {
		reason += "; the account in " + t.Name + " was linked to it by this request's calls: the user's next change that reaches it clears the manager there"
	}
	rec.Decision.Reasons = []string{reason}
	return rec
}

// markManagerGone marks the report's account in the app, if it has one, so that its next
// change clears the manager there. A mark the policy set is left: the policy's own
// catch-up (stale, deactivated) sends every attribute the user has.
func (e *Engine) markManagerGone(tx *store.Tx, id string) error {
	t := e.target
	if t == nil {
		return nil
	}
	key := t.mapKey(scim.UserType)
	if _, err := tx.NativeID(key, id); errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if tx.Mark(key, id) != change.MarkNone {
		return nil
	}
	return tx.SetMark(key, id, change.MarkManagerGone)
}

// sendManager makes an app-shaped plan of a user whose account still links a deleted
// manager send the manager (absent now, so none), in an update even when nothing else
// changed. It does nothing when the policy dropped the manager for the app. It reports
// whether the plan sends it.
func sendManager(np *plan, dropped []string) bool {
	for _, d := range dropped {
		if strings.EqualFold(d, "manager") || strings.EqualFold(d, managerAttr) {
			return false
		}
	}
	np.changed = append(slices.Clone(np.changed), managerAttr)
	if !change.Has(np.events, change.Update) {
		np.events = append(slices.Clone(np.events), change.Update)
	}
	return true
}

// cascadeRecord is the journal record of a report that lost its manager reference to the
// delete of p: the deleting request's id and client, the report, and the removal.
func (e *Engine) cascadeRecord(p *plan, id string, before, after scim.Resource) *journal.Record {
	reason := fmt.Sprintf("its manager %s (%s) was deleted by this request: the directory drops the reference", p.id, SubjectOf(scim.UserType, p.before))
	if t := e.target; t != nil {
		reason += "; " + t.Name + " is not called now: the user's next change that reaches it clears the manager there"
	}
	return &journal.Record{
		RequestID:    p.job.req.ID,
		Client:       p.job.req.Client,
		Action:       change.ActionCascade,
		ResourceType: scim.UserType,
		SCIMID:       id,
		Subject:      SubjectOf(scim.UserType, after),
		Outcome:      change.Applied,
		Changes:      diffChanges(before, after),
		Decision:     &journal.Decision{Allow: true, Reasons: []string{reason}},
	}
}
