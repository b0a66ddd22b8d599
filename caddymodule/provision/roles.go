package provision

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Groups as roles (the mapping's groups.roles): each group stands for a role the app
// already has, found by a table or the groups lookup when the group is created or renamed
// (and, while it gives none, on each of its changes, in case the role was made since). The
// role is recorded with the group. A change of a group's members, its role or its existence
// sends each user it affects the user's whole list of roles: every role of every group the
// user belongs to, read from the directory as the change leaves it. The users' role locks
// are held from the reading until the commit, so that two changes of different groups that
// share a user send that user's lists in turn, each from the other's committed state.

// rolesOf returns the target's role rules, nil when its groups are not roles.
func (e *Engine) rolesOf() *mapping.Roles {
	if e.target == nil {
		return nil
	}
	return e.target.Mapping.Roles()
}

// roleLockKey is the lock of a user's list of roles (see syncRoles).
func roleLockKey(userID string) string { return "roles:" + userID }

// lockRoles locks the role lists of users (in order, so that two changes never wait on each
// other) and returns the function that unlocks them.
func (e *Engine) lockRoles(users []string) func() {
	sorted := slices.Clone(users)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	unlocks := make([]func(), 0, len(sorted))
	for _, u := range sorted {
		unlocks = append(unlocks, e.locks.lock(roleLockKey(u)))
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

// roleJob is one user's list to send: the user as the directory holds it, its account, and
// every role it has after the change.
type roleJob struct {
	id, nativeID string
	user         scim.Resource
	roles        []string
	// others are the roles the user's other groups gave when the list was read: on a
	// shared store the commit checks that they still do (rolesMoved).
	others []string
}

// syncRoles makes the native calls of a change of a group that is a role: find the role
// (created, renamed, or none so far), then send the whole list of roles of every user the
// change affects: the members added and removed, or, when the role the group gives changed
// (found, renamed to another, gone with the group), every member.
func (e *Engine) syncRoles(ctx context.Context, p *plan, res *syncResult) error {
	t, roles := e.target, e.rolesOf()
	newRole := p.role
	switch {
	case p.after == nil:
		newRole = ""
	case p.before == nil || p.role == "" || SubjectOf(p.typ, p.before) != SubjectOf(p.typ, p.after):
		found, err := e.findRole(ctx, p, res)
		if err != nil {
			return err
		}
		newRole = found
	}
	res.role, res.roleDecided = newRole, !t.DryRun
	changed := newRole != p.role
	if p.after == nil && changed && !roles.RevokeOnDelete {
		res.roleNotes = append(res.roleNotes, fmt.Sprintf("its members keep role %s in %s (revoke_on_delete is off)", p.role, t.Name))
		return nil
	}
	var affected []string
	switch {
	case changed:
		err := e.store.View(func(tx *store.Tx) error {
			return tx.Members(p.id, func(m store.Member) error {
				if m.Type == scim.UserType {
					affected = append(affected, m.ID)
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		// The members the change removes too: a queued change is delivered after its
		// commit, when they are no longer the group's.
		affected = slices.Concat(affected, p.added, p.removed)
	case newRole != "":
		affected = slices.Concat(p.added, p.removed)
	}
	switch {
	case newRole == "" && p.role == "":
		res.noRole = fmt.Sprintf("the group gives no role in %s (%s has none for it): it is kept in the directory only", t.Name, roles.Source())
	case newRole == "":
		res.roleNotes = append(res.roleNotes, fmt.Sprintf("the group no longer gives role %s in %s: its members' lists are sent without it", p.role, t.Name))
	case changed && p.role != "":
		res.roleNotes = append(res.roleNotes, fmt.Sprintf("the group gives role %s in %s instead of %s", newRole, t.Name, p.role))
	case changed:
		res.roleNotes = append(res.roleNotes, fmt.Sprintf("the group gives role %s in %s", newRole, t.Name))
	}
	if len(affected) == 0 {
		return nil
	}
	res.holdLock(e.lockRoles(affected))
	jobs, err := e.roleJobs(p, newRole, affected, res)
	if err != nil {
		return err
	}
	if err := e.sendRoles(ctx, p, jobs, res); err != nil {
		return err
	}
	res.roleLists = jobs
	return nil
}

// rolesMoved refuses, in the commit of a change of a group that is a role on a shared
// store, a change that sent a user's list of roles while another gateway changed the
// user's other groups: the role locks are this gateway's only, so the two lists were read
// each without the other's change, and the app holds the one sent last while the
// directory holds both. The change is answered 503 with Retry-After (the directory keeps
// the other's), and Entra's retry sends the list with both.
func (e *Engine) rolesMoved(tx *store.Tx, p *plan) error {
	for _, j := range p.roleLists {
		cur, err := e.rolesOfUser(tx, j.id, p.id)
		if err != nil {
			return err
		}
		if !slices.Equal(sortedSet(cur), j.others) {
			return &nativeError{
				scim: scim.Errorf(http.StatusServiceUnavailable, "",
					"the groups of user %s changed through another gateway while this change sent the user's roles to %s; retry to send them again",
					j.id, e.target.Name),
				retryAfter: time.Second,
			}
		}
	}
	return nil
}

// findRole finds the role the group p leaves stands for: by the table, or by the groups
// lookup ("" when it finds none). In a dry run the lookup is built, not made, and the group
// keeps the role recorded before.
func (e *Engine) findRole(ctx context.Context, p *plan, res *syncResult) (string, error) {
	t, roles := e.target, e.rolesOf()
	if !roles.ByLookup() {
		id, err := roles.FromTable(p.after)
		if err != nil {
			return "", &nativeError{scim: scim.BadRequest(scim.TypeInvalidValue, "finding the role of group %s in %s: %v", p.id, t.Name, err), cause: err}
		}
		return id, nil
	}
	req, _, err := t.Mapping.LookupRequest(scim.GroupType, p.after)
	if err != nil {
		return "", &nativeError{scim: scim.BadRequest(scim.TypeInvalidValue, "finding the role of group %s in %s: %v", p.id, t.Name, err), cause: err}
	}
	if t.DryRun {
		res.calls = append(res.calls, journal.BackendCall{Method: req.Method, URL: redactURL(req.Path)})
		return p.role, nil
	}
	// Its answer must prove that the role is there or not (a {} proves nothing): "no such
	// role" when it is not, an outage otherwise (see lookupAccount).
	return e.lookupAccount(ctx, req, fmt.Sprintf("the role lookup of group %s (%q)", p.id, SubjectOf(p.typ, p.after)), res)
}

// roleJobs reads, from the directory as the change of group p leaves it, the whole list of
// roles of each affected user. A user added to the group without an account in the app is
// a reference failure (400, as for native groups: Entra retries once the account exists);
// one kept out of the app by policy, or one without an account whose list only shrinks, is
// left out.
func (e *Engine) roleJobs(p *plan, newRole string, users []string, res *syncResult) ([]roleJob, error) {
	t := e.target
	slices.Sort(users)
	users = slices.Compact(users)
	var jobs []roleJob
	var missing []string
	err := e.store.View(func(tx *store.Tx) error {
		for _, u := range users {
			rec, err := tx.Get(scim.UserType, u)
			if errors.Is(err, store.ErrNotFound) {
				continue // a member that is no user (a nested group, a dangling edge)
			}
			if err != nil {
				return err
			}
			key := t.mapKey(scim.UserType)
			native, err := tx.NativeID(key, u)
			switch {
			case errors.Is(err, store.ErrNotFound) && tx.Mark(key, u) == change.MarkSkipped:
				res.outOfScope = append(res.outOfScope, u)
				continue
			case errors.Is(err, store.ErrNotFound):
				if slices.Contains(p.added, u) {
					missing = append(missing, u)
				} else {
					res.deferred = append(res.deferred, u)
				}
				continue
			case err != nil:
				return err
			}
			doc, err := DecodeDoc(rec)
			if err != nil {
				return err
			}
			member := slices.Contains(p.added, u)
			if !member && p.after != nil && !slices.Contains(p.removed, u) {
				if member, err = tx.HasMember(p.id, u); err != nil {
					return err
				}
				member = member && !tx.Withheld(t.Name, p.id, u)
			}
			list, err := e.rolesOfUser(tx, u, p.id)
			if err != nil {
				return err
			}
			others := sortedSet(list)
			if member && newRole != "" {
				list = append(list, newRole)
			}
			jobs = append(jobs, roleJob{id: u, nativeID: native, user: withID(doc, u), roles: sortedSet(list), others: others})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 && !t.DryRun {
		return nil, &nativeError{scim: scim.BadRequest(scim.TypeInvalidValue,
			"member %s has no account in %s yet (its creation failed or has not happened); Entra retries this membership in a later cycle", listIDs(missing), t.Name)}
	}
	return jobs, nil
}

// rolesOfUser lists the roles the directory's groups give user u, leaving out the group
// except (whose change is being decided) and the memberships the policy kept out.
func (e *Engine) rolesOfUser(tx *store.Tx, u, except string) ([]string, error) {
	var out []string
	err := tx.GroupsOf(u, func(gid string) error {
		if gid != except && !tx.Withheld(e.target.Name, gid, u) {
			if r := tx.Role(e.target.Name, gid); r != "" {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// UserRoles returns, in tx, the list of roles the assign call sends user u: every role
// of every group u is in, without the memberships the policy kept out, sorted, each once.
// nil when the target's groups are not roles.
func (e *Engine) UserRoles(tx *store.Tx, u string) ([]string, error) {
	if e.rolesOf() == nil {
		return nil, nil
	}
	list, err := e.rolesOfUser(tx, u, "")
	return sortedSet(list), err
}

// sortedSet sorts ids and drops repeats (two groups may give one role).
func sortedSet(ids []string) []string {
	out := slices.Clone(ids)
	if out == nil {
		out = []string{}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// sendRoles sends each job's list with the assign call. Calls a failed earlier attempt of
// the change made that may not be repeated are skipped; an account the app says is gone
// has no roles to set.
func (e *Engine) sendRoles(ctx context.Context, p *plan, jobs []roleJob, res *syncResult) error {
	t, roles := e.target, e.rolesOf()
	for _, j := range jobs {
		r, err := roles.AssignRequest(mapping.Input{Resource: j.user, NativeID: j.nativeID, RoleIDs: j.roles, NativeIDOf: e.storedNativeID})
		if err != nil {
			return res.failure(&nativeError{scim: scim.BadRequest(scim.TypeInvalidValue, "mapping the roles of user %s for %s: %v", j.id, t.Name, err), cause: err})
		}
		if res.sent.has(r) {
			continue
		}
		if t.DryRun {
			res.calls = append(res.calls, journal.BackendCall{Method: r.Method, URL: redactURL(r.Path)})
			continue
		}
		resp, err := t.call(ctx, r)
		res.noteCall(r.Method, r.Path, resp, err)
		if err != nil {
			var le *legacy.Error
			errors.As(err, &le)
			se, retryAfter := legacy.ToSCIM(change.AddMembers, resp, err)
			if se == nil || se.Status == http.StatusNotFound {
				res.roleNotes = append(res.roleNotes, fmt.Sprintf("user %s has no account in %s any more: no roles to set", j.id, t.Name))
				continue
			}
			return res.failure(&nativeError{scim: se, retryAfter: retryAfter, cause: err, mayHaveActed: le != nil && le.MayHaveActed()})
		}
		res.sent.add(r)
		if !r.Idempotent {
			res.made.add(r)
		}
		res.rolesSent++
	}
	return nil
}

// heldRoles locks the list of roles of user u until the commit and reads it from the
// directory.
func (e *Engine) heldRoles(u string, res *syncResult) ([]string, error) {
	res.holdLock(e.lockRoles([]string{u}))
	var list []string
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		list, err = e.rolesOfUser(tx, u, "")
		return err
	})
	return sortedSet(list), err
}

// clearRoles sends, before a user's delete, the user's roles as an empty list (groups.roles
// clear_on_user_delete), when the directory gives the user any: the same flow as the
// delete, under its intent. The user's role lock is held until the commit.
func (e *Engine) clearRoles(ctx context.Context, p *plan, res *syncResult) error {
	list, err := e.heldRoles(p.id, res)
	if err != nil || len(list) == 0 {
		return err
	}
	res.roleNotes = append(res.roleNotes, fmt.Sprintf("its roles in %s (%d) were cleared before the delete (clear_on_user_delete)", e.target.Name, len(list)))
	return e.sendRoles(ctx, p, []roleJob{{id: p.id, nativeID: p.nativeID, user: p.before}}, res)
}

// catchUpRoles sends the roles the directory already gives a user to the account a
// catch-up create just made (see catchUpMemberships), best effort: a failure is journaled
// and logged, and the list follows with the user's next membership change.
func (e *Engine) catchUpRoles(ctx context.Context, p *plan, res *syncResult) {
	list, err := e.heldRoles(p.id, res)
	if err == nil && len(list) > 0 {
		err = e.sendRoles(ctx, p, []roleJob{{id: p.id, nativeID: res.nativeID, user: p.after, roles: list}}, res)
	}
	if err != nil {
		e.logger.Warn("sending the roles a user already has to its new account failed; they follow with its next membership change",
			zap.String("target", e.target.Name), zap.String("user", p.id), zap.Error(err))
		res.catchUpFailures = append(res.catchUpFailures, "roles of "+p.id+": "+err.Error())
	}
}

// recordWithheld records, in the commit of a change of a group that is a role (decided as
// p, applied as p2), which of the members it adds the policy kept out of the app (the
// change skipped, or the member dropped): they are the directory's members, but later
// lists of their roles leave the group out. A member removed, or added with the policy's
// consent, is no longer withheld.
func (e *Engine) recordWithheld(tx *store.Tx, p, p2 *plan) error {
	if e.rolesOf() == nil || p2.typ != scim.GroupType || p2.after == nil {
		return nil
	}
	for _, id := range p2.added {
		if err := tx.SetWithheld(e.target.Name, p2.id, id, p.skipped || slices.Contains(p.dropped, id)); err != nil {
			return err
		}
	}
	for _, id := range p2.removed {
		if err := tx.SetWithheld(e.target.Name, p2.id, id, false); err != nil {
			return err
		}
	}
	return nil
}

// roleReasons explains, for the journal, what a change did to roles.
func roleReasons(target string, res *syncResult) []string {
	out := slices.Clone(res.roleNotes)
	if res.noRole != "" {
		out = append(out, res.noRole)
	}
	if res.rolesSent > 0 {
		out = append(out, fmt.Sprintf("the whole list of roles sent to %s for %d user(s)", target, res.rolesSent))
	}
	return out
}

// holdLock keeps a lock until the change is committed or has failed (release).
func (res *syncResult) holdLock(unlock func()) { res.unlocks = append(res.unlocks, unlock) }

// release lets go of the locks the calls took (see holdLock); nil-safe.
func (res *syncResult) release() {
	if res == nil {
		return
	}
	for i := len(res.unlocks) - 1; i >= 0; i-- {
		res.unlocks[i]()
	}
	res.unlocks = nil
}
