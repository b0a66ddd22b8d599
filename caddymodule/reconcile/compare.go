package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// run is one reconcile in progress.
type run struct {
	rc     *Reconciler
	ctx    context.Context
	report *Report
	// roleGroups are the groups that give each role, read when a user's roles are first
	// compared (see compareRoles).
	roleGroups map[string][]string
	// relisted counts, per resource type, the accounts the app listed more than once.
	relisted map[string]int
	// seen holds, per resource type listed, the native ids the app listed (nil in the fix
	// of a stored report, whose listing is old): a fix releases the links to the others.
	seen map[string]*seenSet
}

// groupRef is a group of the app linked to one of the directory, whose members are
// compared after its page of groups.
type groupRef struct {
	scimID, nativeID, subject string
}

// note adds a finding to the report (listed while under MaxFindings) and counts it.
func (rn *run) note(f Finding) {
	rn.report.Counts.add(f.Kind)
	if len(rn.report.Findings) >= rn.rc.opts.MaxFindings {
		rn.report.Truncated = true
		return
	}
	rn.report.Findings = append(rn.report.Findings, f)
}

// batchDone tells the reconciler's hook that a batch is done.
func (rn *run) batchDone() {
	if rn.rc.batchDone != nil {
		rn.rc.batchDone()
	}
}

// maxNotes bounds a report's notes (an app whose every group fails to list its members
// would otherwise add one per group).
const maxNotes = 100

// addNote adds a note to the report, the last one saying how many more there were.
func (rn *run) addNote(note string) {
	r := rn.report
	switch {
	case len(r.Notes) < maxNotes:
		r.Notes = append(r.Notes, note)
	case len(r.Notes) == maxNotes:
		r.Notes = append(r.Notes, "more notes were left out")
	}
}

// incomplete records that the app could not be read in full.
func (rn *run) incomplete(what string, err error) {
	rn.report.Complete = false
	rn.addNote(what + ": " + err.Error())
}

// compare reads every account of typ in the app, page by page, looking each batch up in
// the directory in one short read transaction, then scans the directory for the
// resources the app lacks.
func (rn *run) compare(typ string) error {
	t := rn.rc.target
	seen := newSeenSet(rn.rc.opts.TempDir)
	if rn.seen != nil {
		rn.seen[typ] = seen
	}
	batch := make([]mapping.Account, 0, rn.rc.opts.Batch)
	flush := func() error {
		var groups []groupRef
		err := rn.rc.store.View(func(tx *store.Tx) error {
			var err error
			groups, err = rn.checkAccounts(tx, typ, batch, seen)
			return err
		})
		batch = batch[:0]
		if err != nil {
			return err
		}
		rn.batchDone()
		for _, g := range groups {
			if err := rn.compareMembers(g); err != nil {
				return err
			}
		}
		return nil
	}
	for acc, err := range t.Mapping.Accounts(rn.ctx, t.Client, t.Headers, typ) {
		if err != nil {
			if cerr := rn.ctx.Err(); cerr != nil {
				return cerr
			}
			rn.incomplete("listing the "+sectionOf(typ)+" of "+t.Name, err)
			continue
		}
		if batch = append(batch, acc); len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if n := rn.relisted[typ]; n > 0 && rn.report.Complete {
		rn.addNote(fmt.Sprintf("the app listed %d %s a second time (pages that overlapped: the app changed while it was listed); each was counted and compared once", n, sectionOf(typ)))
	}
	if !rn.report.Complete {
		rn.addNote("missing " + sectionOf(typ) + " are not reported: the app was not read in full")
		return nil
	}
	return rn.findMissing(typ, seen)
}

// checkAccounts compares a batch of the app's accounts with the directory, in tx. It
// returns the linked groups whose members are to be compared.
func (rn *run) checkAccounts(tx *store.Tx, typ string, batch []mapping.Account, seen *seenSet) ([]groupRef, error) {
	t := rn.rc.target
	key := t.IDMapKey(typ)
	var groups []groupRef
	for _, acc := range batch {
		scimID, native, err := linkedID(tx, key, acc.NativeID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		acc.NativeID = native
		if added, err := seen.add(acc.NativeID); err != nil {
			return nil, err
		} else if !added {
			rn.relisted[typ]++ // listed on an earlier page already: counted and compared there
			continue
		}
		if typ == scim.UserType {
			rn.report.Counts.AppUsers++
		} else {
			rn.report.Counts.AppGroups++
		}
		subject := t.Mapping.Subject(typ, acc.Item)
		if errors.Is(err, store.ErrNotFound) {
			rn.note(Finding{Kind: Orphaned, ResourceType: typ, NativeID: acc.NativeID, Subject: subject, Reason: "not in the directory" + rn.orphanState(typ, acc.Item)})
			continue
		}
		rec, err := tx.Get(typ, scimID)
		if errors.Is(err, store.ErrNotFound) {
			rn.note(Finding{Kind: Orphaned, ResourceType: typ, SCIMID: scimID, NativeID: acc.NativeID, Subject: subject, Reason: "deleted in the directory" + rn.orphanState(typ, acc.Item)})
			continue
		}
		if err != nil {
			return nil, err
		}
		doc, err := provision.DecodeDoc(rec)
		if err != nil {
			return nil, err
		}
		doc["id"] = scimID
		if typ == scim.UserType {
			// Absent is active, as the engine sends it: the account's state fields are
			// expected as for an active user, not as unset.
			doc = provision.WithActive(doc)
		}
		subject = provision.SubjectOf(typ, doc)
		mark := tx.Mark(key, scimID)
		outOfScope := mark == change.MarkSkipped || mark == change.MarkDeactivated
		expect := doc
		if outOfScope && typ == scim.UserType {
			expect = scim.CloneResource(doc)
			expect["active"] = false // the policy keeps the account inactive
		}
		diffs := t.Mapping.Expect(typ, expect, nativeIDOf(tx, t)).Compare(acc.Item)
		if !outOfScope && slices.ContainsFunc(diffs, func(d mapping.Difference) bool { return !d.State }) {
			diffs = rn.sendable(tx, typ, acc, doc, subject, diffs)
		}
		state := slices.ContainsFunc(diffs, func(d mapping.Difference) bool { return d.State })
		f := Finding{ResourceType: typ, SCIMID: scimID, NativeID: acc.NativeID, Subject: subject}
		switch {
		case outOfScope && state:
			f.Kind, f.Reason, f.Fields = Orphaned, "out of scope (the policy keeps it out of the app), but active there", stateOnly(diffs, true)
			rn.note(f)
		case outOfScope:
		case state && !active(doc):
			f.Kind, f.Reason, f.Fields = NotDisabled, "inactive in the directory, active in the app", stateOnly(diffs, true)
			rn.note(f)
			if rest := stateOnly(diffs, false); len(rest) > 0 {
				rn.note(Finding{Kind: Drifted, ResourceType: typ, SCIMID: scimID, NativeID: acc.NativeID, Subject: subject, Reason: "the app holds other values", Fields: rest})
			}
		case len(diffs) > 0:
			f.Kind, f.Reason, f.Fields = Drifted, "the app holds other values", diffs
			if state {
				f.Reason = "active in the directory, inactive in the app; the app holds other values"
			}
			rn.note(f)
		}
		if roles := t.Mapping.Roles(); typ == scim.UserType && !outOfScope && roles != nil && roles.CanRead() {
			if err := rn.compareRoles(tx, acc, scimID, subject); err != nil {
				return nil, err
			}
		}
		if typ == scim.GroupType && !outOfScope && t.Mapping.CanListMembers() {
			groups = append(groups, groupRef{scimID: scimID, nativeID: acc.NativeID, subject: subject})
		}
	}
	return groups, nil
}

// sendable returns the differences of an account that a repair could put right: the
// policy's drop_attributes for that repair (attribute_allowlist, a guardrail keeping a field
// from the app) are applied to what the mapping sends, as the engine applies them to every
// change, and the fields made only from dropped attributes are not compared (the app never
// receives them: what it holds there is its own). Only accounts that differ are decided, so
// a clean account costs no policy evaluation. A policy that cannot decide leaves every
// difference reported, with a note.
func (rn *run) sendable(tx *store.Tx, typ string, acc mapping.Account, doc scim.Resource, subject string, diffs []mapping.Difference) []mapping.Difference {
	t := rn.rc.target
	drops, err := rn.rc.engine.RepairDrops(rn.ctx, typ, acc.NativeID, doc, driftedAttributes(diffs))
	if err == nil && len(drops) > 0 {
		var shaped scim.Resource
		if shaped, _, err = scim.DropAttributes(typ, doc, drops); err == nil {
			return t.Mapping.Expect(typ, shaped, nativeIDOf(tx, t)).Without(typ, drops).Compare(acc.Item)
		}
	}
	if err != nil {
		rn.addNote(fmt.Sprintf("%s %s: the attributes the policy keeps from the app are not known (%v); its differences are listed in full", typ, subject, err))
	}
	return diffs
}

// orphanSuffix says in an orphan's reason that its account is disabled already.
const orphanDisabled = " (disabled in the app)"

// orphanState is orphanDisabled when a user's account is inactive in the app, as the
// mapping's state fields say (those fed by active), else "".
func (rn *run) orphanState(typ string, item []byte) string {
	if typ != scim.UserType {
		return ""
	}
	x := rn.rc.target.Mapping.Expect(typ, scim.Resource{"active": false}, nil)
	hasState := false
	for _, f := range x.Fields {
		hasState = hasState || f.State
	}
	if !hasState || slices.ContainsFunc(x.Compare(item), func(d mapping.Difference) bool { return d.State }) {
		return ""
	}
	return orphanDisabled
}

// stateOnly returns the differences that are (state) or are not (!state) the account's state.
func stateOnly(diffs []mapping.Difference, state bool) []mapping.Difference {
	var out []mapping.Difference
	for _, d := range diffs {
		if d.State == state {
			out = append(out, d)
		}
	}
	return out
}

// active reads a resource's active attribute as the engine does (absent: active).
func active(doc scim.Resource) bool {
	v, ok := scim.Get(doc, "active")
	if !ok {
		return true
	}
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b != "False" && b != "false"
	}
	return true
}

// nativeIDOf resolves references (a manager) in tx, for the mapping.
func nativeIDOf(tx *store.Tx, t *provision.Target) func(string) (string, mapping.RefState) {
	return func(scimID string) (string, mapping.RefState) {
		typ, err := tx.TypeOf(scimID)
		if errors.Is(err, store.ErrNotFound) {
			return "", mapping.RefGone
		}
		if err != nil {
			return "", mapping.RefPending
		}
		n, err := tx.NativeID(t.IDMapKey(typ), scimID)
		if err != nil {
			return "", mapping.RefPending
		}
		return n, mapping.RefLinked
	}
}

// findMissing scans the directory's resources of typ in id order, a batch per read
// transaction, for those in scope that have no account among the ones the app listed.
// Inactive users without an account are not missing: they would have no access.
func (rn *run) findMissing(typ string, seen *seenSet) error {
	key := rn.rc.target.IDMapKey(typ)
	start := ""
	for {
		if err := rn.ctx.Err(); err != nil {
			return err
		}
		next := ""
		n := 0
		err := rn.rc.store.View(func(tx *store.Tx) error {
			return tx.ScanFrom(typ, start, func(rec *store.Record) (bool, error) {
				if n == rn.rc.opts.Batch {
					next = rec.ID
					return false, nil
				}
				n++
				return true, rn.checkDirectory(tx, key, rec, seen)
			})
		})
		if err != nil {
			return err
		}
		rn.batchDone()
		if next == "" {
			return nil
		}
		start = next
	}
}

// checkDirectory checks one resource of the directory against the app's listing.
func (rn *run) checkDirectory(tx *store.Tx, key string, rec *store.Record, seen *seenSet) error {
	if rec.Type == scim.UserType {
		rn.report.Counts.DirUsers++
	} else {
		rn.report.Counts.DirGroups++
	}
	if m := tx.Mark(key, rec.ID); m == change.MarkSkipped || m == change.MarkDeactivated {
		return nil // out of scope: no account on purpose
	}
	native, err := tx.NativeID(key, rec.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err == nil {
		if listed, err := seen.has(native); err != nil || listed {
			return err
		}
	}
	doc, err := provision.DecodeDoc(rec)
	if err != nil {
		return err
	}
	if rec.Type == scim.UserType && !active(doc) {
		return nil
	}
	f := Finding{Kind: Missing, ResourceType: rec.Type, SCIMID: rec.ID, Subject: provision.SubjectOf(rec.Type, doc), Reason: "no account in the app"}
	if native != "" {
		f.NativeID, f.Reason = native, "its account is gone from the app"
	}
	rn.note(f)
	return nil
}

// compareMembers compares the members of one linked group: the app's, page by page,
// against the directory's edges, then the directory's members with an account against the
// app's listing.
func (rn *run) compareMembers(g groupRef) error {
	t := rn.rc.target
	userKey := t.IDMapKey(scim.UserType)
	seen := newSeenSet(rn.rc.opts.TempDir)
	defer seen.close()
	batch := make([]mapping.Account, 0, rn.rc.opts.Batch)
	flush := func() error {
		err := rn.rc.store.View(func(tx *store.Tx) error {
			for _, m := range batch {
				scimID, native, err := linkedID(tx, userKey, m.NativeID)
				if added, serr := seen.add(native); serr != nil {
					return serr
				} else if !added {
					continue // listed on an earlier page already
				}
				member := &Member{NativeID: native, Subject: t.Mapping.Subject(scim.UserType, m.Item)}
				switch {
				case errors.Is(err, store.ErrNotFound):
					rn.note(Finding{Kind: MemberExtra, ResourceType: scim.GroupType, SCIMID: g.scimID, NativeID: g.nativeID, Subject: g.subject,
						Reason: "a member in the app that is not in the directory (an orphaned account)", Member: member})
					continue
				case err != nil:
					return err
				}
				member.SCIMID = scimID
				has, err := tx.HasMember(g.scimID, scimID)
				if err != nil {
					return err
				}
				if !has {
					member.Subject = subjectIn(tx, scim.UserType, scimID, member.Subject)
					rn.note(Finding{Kind: MemberExtra, ResourceType: scim.GroupType, SCIMID: g.scimID, NativeID: g.nativeID, Subject: g.subject,
						Reason: "a member in the app, not in the directory's group", Member: member})
					continue
				}
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	for m, err := range t.Mapping.Members(rn.ctx, t.Client, t.Headers, g.nativeID) {
		if err != nil {
			if cerr := rn.ctx.Err(); cerr != nil {
				return cerr
			}
			rn.addNote("the members of group " + g.subject + " (" + g.scimID + ") could not be listed in full, so the directory's members it lacks are not reported: " + err.Error())
			return flush()
		}
		if batch = append(batch, m); len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return rn.rc.store.View(func(tx *store.Tx) error {
		return tx.Members(g.scimID, func(m store.Member) error {
			if m.Type != scim.UserType {
				return nil
			}
			native, err := tx.NativeID(userKey, m.ID)
			if err != nil {
				return nil // a member without an account is not a membership the app can have
			}
			if listed, err := seen.has(native); err != nil || listed {
				return err
			}
			rn.note(Finding{Kind: MemberMissing, ResourceType: scim.GroupType, SCIMID: g.scimID, NativeID: g.nativeID, Subject: g.subject,
				Reason: "a member in the directory's group, not in the app", Member: &Member{SCIMID: m.ID, NativeID: native, Subject: subjectIn(tx, scim.UserType, m.ID, m.Display)}})
			return nil
		})
	})
}

// linkedID finds the resource the directory links to a native id the app listed, and
// the native id as the id map holds it. A GUID is the same id in either case (RFC 9562:
// its hex digits are case-insensitive), and apps print them in both (a .NET app's create
// in upper case, its listing in lower case): one not linked as listed is looked up in
// lower and in upper case too. Other ids are compared exactly (an id of letters may
// tell accounts apart by case).
func linkedID(tx *store.Tx, key, native string) (scimID, linked string, err error) {
	scimID, err = tx.SCIMIDOf(key, native)
	if !errors.Is(err, store.ErrNotFound) || !isGUID(native) {
		return scimID, native, err
	}
	for _, v := range []string{strings.ToLower(native), strings.ToUpper(native)} {
		if v == native {
			continue
		}
		if id, verr := tx.SCIMIDOf(key, v); verr == nil {
			return id, v, nil
		}
	}
	return "", native, err
}

// isGUID reports whether s is a GUID in its usual text form, 8-4-4-4-12 hex digits,
// optionally in braces.
func isGUID(s string) bool {
	if len(s) == 38 && s[0] == '{' && s[37] == '}' {
		s = s[1:37]
	}
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'):
			return false
		}
	}
	return true
}

// subjectIn is the userName (or displayName) of a resource in the directory, or fallback
// when it cannot be read.
func subjectIn(tx *store.Tx, typ, id, fallback string) string {
	rec, err := tx.Get(typ, id)
	if err != nil {
		return fallback
	}
	want := "userName"
	if typ == scim.GroupType {
		want = "displayName"
	}
	for _, e := range rec.Index {
		if e.Attr == want {
			return e.Value
		}
	}
	return fallback
}
