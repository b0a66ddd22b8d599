package reconcile

import (
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

// fix makes the repairs of the report's findings, each through the engine (the policy
// decides it, its stats count it, the journal records its intent and outcome with the
// run's id as request_id and "reconcile" as client): missing accounts are created,
// not-disabled ones deactivated, drifted ones sent the fields that differ, and each
// group's members added and removed in one repair. Orphans are deactivated only with
// Orphans "disable", and never deleted. Only the findings the report lists are repaired.
func (rn *run) fix() {
	r := rn.report
	t := rn.rc.target
	req := provision.Request{Ctx: rn.ctx, ID: r.Run, Client: "reconcile"}
	type memberFix struct {
		repair   provision.Repair
		findings []int
	}
	var groups []*memberFix
	byGroup := map[string]*memberFix{}
	// The links to accounts the app no longer has go first: a missing account made again
	// may get the id the app gave a gone one (an app that lost its data counts from 1).
	if err := rn.releaseGone(); err != nil {
		rn.addNote("the links to accounts gone from the app were not released (" + err.Error() + "): a create the app answers with the id of a gone account fails as a reused id")
	}
	// Missing accounts first: the other repairs may refer to them (a manager's account made
	// again has a new native id, which a report's update then sends). A missing manager's
	// account is made before its missing reports', whose creates then send it.
	for _, i := range rn.missingInOrder() {
		if rn.ctx.Err() != nil {
			return
		}
		f := &r.Findings[i]
		rn.done(f, rn.rc.engine.Repair(req, provision.Repair{Kind: provision.RepairCreate, Type: f.ResourceType, ID: f.SCIMID}))
	}
	for i := range r.Findings {
		if rn.ctx.Err() != nil {
			return
		}
		f := &r.Findings[i]
		switch f.Kind {
		case NotDisabled:
			rn.done(f, rn.rc.engine.Repair(req, provision.Repair{Kind: provision.RepairDisable, Type: f.ResourceType, ID: f.SCIMID}))
		case Drifted:
			reactivate := slices.ContainsFunc(f.Fields, func(d mapping.Difference) bool { return d.State })
			rn.done(f, rn.rc.engine.Repair(req, provision.Repair{Kind: provision.RepairUpdate, Type: f.ResourceType, ID: f.SCIMID,
				Reactivate: reactivate, Changed: driftedAttributes(f.Fields)}))
		case Orphaned:
			switch {
			case rn.rc.opts.Orphans != OrphansDisable:
				f.Fix = "reported only (orphans are disabled with orphans disable)"
			case strings.HasSuffix(f.Reason, orphanDisabled):
				f.Fix = "nothing to do: disabled already"
			case f.ResourceType != scim.UserType || !t.Mapping.Has(scim.UserType, change.Deactivate):
				f.Fix = "reported only (the mapping has no deactivation for it)"
			default:
				rn.done(f, rn.rc.engine.DisableOrphan(req, f.ResourceType, f.NativeID, f.Subject))
			}
		case MemberMissing, MemberExtra:
			if f.Member.SCIMID == "" {
				f.Fix = "reported only (the member is an orphaned account: see orphans)"
				continue
			}
			if f.SCIMID == "" {
				f.Fix = "reported only (no group of the directory gives the role: the user's next list of roles leaves it out)"
				continue
			}
			g := byGroup[f.SCIMID]
			if g == nil {
				g = &memberFix{repair: provision.Repair{Kind: provision.RepairMembers, Type: scim.GroupType, ID: f.SCIMID}}
				byGroup[f.SCIMID] = g
				groups = append(groups, g)
			}
			if f.Kind == MemberMissing {
				g.repair.Add = append(g.repair.Add, f.Member.SCIMID)
			} else {
				g.repair.Remove = append(g.repair.Remove, f.Member.SCIMID)
			}
			g.findings = append(g.findings, i)
		}
	}
	for _, g := range groups {
		if rn.ctx.Err() != nil {
			return
		}
		res := rn.rc.engine.Repair(req, g.repair)
		for _, i := range g.findings {
			rn.done(&r.Findings[i], res)
		}
	}
}

// done records what a repair did in its finding and the counts.
func (rn *run) done(f *Finding, res *provision.Result) {
	if res.Err != nil {
		outcome := "failed"
		if res.Record != nil && res.Record.Outcome == change.Denied {
			outcome = "denied"
		}
		f.Fix = outcome + ": " + res.Err.Detail
		rn.report.Counts.FixFailed++
		return
	}
	f.Fix = string(change.Applied)
	if res.Record != nil {
		f.Fix = string(res.Record.Outcome)
	}
	if res.Record != nil && (res.Record.Outcome == change.Skipped || res.Record.Outcome == change.DryRun) {
		// The app got nothing: not fixed. A skip says why (the policy's reasons).
		if d := res.Record.Decision; d != nil && len(d.Reasons) > 0 && res.Record.Outcome == change.Skipped {
			f.Fix += ": " + strings.Join(d.Reasons, "; ")
		}
		rn.report.Counts.FixSkipped++
		return
	}
	rn.report.Counts.Fixed++
}

// driftedAttributes are the SCIM attributes of the drifted fields that are not the state
// (the reactivation puts that right): the update sends exactly those fields, including
// one whose attribute the directory no longer has (sent as the mapping clears it).
func driftedAttributes(fields []mapping.Difference) []string {
	out := []string{}
	for _, d := range fields {
		if !d.State {
			out = append(out, d.Attributes...)
		}
	}
	return out
}

// releaseGone removes the id map's links to accounts the complete listing of this run did
// not show (missing accounts, and those of inactive or out-of-scope resources, which are not
// missing), a batch of the directory at a time, and counts them (Counts.Unlinked). Only a
// run that listed the app itself does: a stored report's listing is old.
func (rn *run) releaseGone() error {
	for _, typ := range []string{scim.UserType, scim.GroupType} {
		seen := rn.seen[typ]
		if seen == nil {
			continue
		}
		key := rn.rc.target.IDMapKey(typ)
		start := ""
		for {
			if err := rn.ctx.Err(); err != nil {
				return err
			}
			var gone []provision.Link
			next, n := "", 0
			err := rn.rc.store.View(func(tx *store.Tx) error {
				gone = gone[:0]
				return tx.ScanFrom(typ, start, func(rec *store.Record) (bool, error) {
					if n == rn.rc.opts.Batch {
						next = rec.ID
						return false, nil
					}
					n++
					native, err := tx.NativeID(key, rec.ID)
					switch {
					case errors.Is(err, store.ErrNotFound):
						return true, nil
					case err != nil:
						return false, err
					}
					listed, err := seen.has(native)
					if err == nil && !listed {
						gone = append(gone, provision.Link{SCIMID: rec.ID, NativeID: native})
					}
					return err == nil, err
				})
			})
			if err != nil {
				return err
			}
			released, err := rn.rc.engine.ReleaseGone(typ, gone)
			rn.report.Counts.Unlinked += released
			if err != nil {
				return err
			}
			if next == "" {
				break
			}
			start = next
		}
	}
	if n := rn.report.Counts.Unlinked; n > 0 {
		rn.addNote(fmt.Sprintf("%d link(s) of the directory to accounts the app no longer lists were released before the repairs (the app may give their ids to new accounts); their resources get accounts again when a repair or a change reaches the app", n))
	}
	return nil
}

// managerIndex is the store's index attribute of a user's manager reference.
const managerIndex = "manager.value"

// missingInOrder returns the indexes of the report's missing findings in the order their
// accounts are made: each missing user after its manager when the manager is missing too
// (a report made first would be sent without its manager, whose account the mapping
// cannot name yet, and need a second fix), otherwise in the report's order. A cycle of
// managers is cut where it is found. When the directory cannot be read, the report's order.
func (rn *run) missingInOrder() []int {
	var missing []int
	users := map[string]int{} // SCIM id -> finding, of missing users
	for i, f := range rn.report.Findings {
		if f.Kind == Missing {
			missing = append(missing, i)
			if f.ResourceType == scim.UserType {
				users[f.SCIMID] = i
			}
		}
	}
	manager := map[string]string{} // a missing user's missing manager
	if len(users) > 1 {
		err := rn.rc.store.View(func(tx *store.Tx) error {
			for id := range users {
				rec, err := tx.Get(scim.UserType, id)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				for _, e := range rec.Index {
					if _, ok := users[e.Value]; ok && e.Attr == managerIndex && e.Value != id {
						manager[id] = e.Value
					}
				}
			}
			return nil
		})
		if err != nil {
			return missing
		}
	}
	if len(manager) == 0 {
		return missing
	}
	order := make([]int, 0, len(missing))
	placed := map[int]bool{}
	var place func(i int)
	place = func(i int) {
		if placed[i] {
			return
		}
		placed[i] = true // before its manager: a cycle ends here
		if m, ok := manager[rn.report.Findings[i].SCIMID]; ok {
			place(users[m])
		}
		order = append(order, i)
	}
	for _, i := range missing {
		place(i)
	}
	return order
}
