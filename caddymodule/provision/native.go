package provision

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// syncResult is what the native calls did.
type syncResult struct {
	nativeID   string                // from the create response
	calls      []journal.BackendCall // every call made (or built, in a dry run), in order
	made       sentCalls             // the calls made that may not be repeated
	skipped    []change.Event        // events with no native call mapped
	deferred   []string              // members left out of member calls: no account in the app
	addedSent  []string              // members the add_members calls named (each had an account)
	outOfScope []string              // members left out of member calls: kept out of the app by policy
	adopted    bool                  // the create took an account an unfinished earlier attempt left
	repaired   bool                  // ... or, for a reconcile's repair of a missing account, one its lookup found
	caughtUp   bool                  // a change of a resource without an account became its create
	// memberships the directory already had, sent to the account a catch-up create made:
	// the groups (or, for a group, the number of members) sent, and the failures
	caughtUpGroups  []string
	caughtUpMembers int
	catchUpFailures []string
	dryRun          bool
	sent            sentCalls // the calls made (and those an earlier attempt made), not to repeat
	// attempted are the calls of the create's flow up to the one that makes the account
	// that this attempt tried (answered or not), and beyond says it tried another call
	// too: what an account it may have made holds (sentDigest).
	attempted []callKey
	beyond    bool
	// inLine: the adopted account was brought in line with the resource (an update, the
	// state), its earlier attempt not being known to have sent what this one would;
	// notInLine: it could not be (the mapping has no update, nor a call for the state).
	inLine, notInLine bool

	// Groups as roles (roles.go): the role the group gives after the change and whether to
	// record it, why it gives none (the change is skipped), what the change did to roles,
	// how many users' lists were sent, and the role locks held until the commit.
	role        string
	roleDecided bool
	noRole      string
	roleNotes   []string
	rolesSent   int
	roleLists   []roleJob // the users' lists sent (for rolesMoved)
	unlocks     []func()
}

// nativeError is a failure of the target: the SCIM error Entra gets, and what the journal
// records.
type nativeError struct {
	scim       *scim.Error
	retryAfter time.Duration
	calls      []journal.BackendCall // the calls made, the failed one last
	cause      error
	// mayHaveActed: the call may have reached the app and nothing says the app refused it
	// (a timeout, a dropped connection, a 5xx, an answer that proves nothing).
	mayHaveActed bool
	// gone: the app answered an update of the resource's account with its own "no such
	// object": the account the directory maps is gone (see send).
	gone bool
	// made are the calls of the change made before the failure that may not be repeated.
	made sentCalls
}

func (e *nativeError) Error() string { return e.scim.Error() }
func (e *nativeError) Unwrap() error { return e.scim }

// anyMapped reports whether the plan makes at least one native call.
func (e *Engine) anyMapped(p *plan) bool {
	if roles := e.rolesOf(); roles != nil {
		switch {
		case p.typ == scim.GroupType:
			return len(p.events) > 0 // the role's lookup and the members' lists
		case p.after == nil && roles.ClearOnUserDelete && p.nativeID != "":
			return true // the roles are cleared before the delete
		}
	}
	for _, ev := range nativeEvents(p.events) {
		if e.target.Mapping.Has(p.typ, ev) {
			return true
		}
	}
	return false
}

// syncNative makes the native calls of p (or, in a dry run, only builds them). It returns
// a SCIM error for Entra when the app refused or failed; nothing is committed then.
func (e *Engine) syncNative(ctx context.Context, p *plan) (*syncResult, error) {
	t := e.target
	res := &syncResult{dryRun: t.DryRun, sent: slices.Clone(p.progress)} // calls an earlier attempt made are not repeated
	if roles := e.rolesOf(); roles != nil {
		switch {
		case p.typ == scim.GroupType:
			return res, e.syncRoles(ctx, p, res)
		case p.after == nil && roles.ClearOnUserDelete && p.nativeID != "":
			if err := e.clearRoles(ctx, p, res); err != nil {
				return res, err
			}
		}
	}
	events := e.startState(p, e.catchUp(p, res, nativeEvents(p.events)))
	// The members the change adds, decided before its first call: a refusal after the
	// group's create or rename would leave that call made for a change that never commits.
	adds, err := e.memberAdds(p, res, events)
	if err != nil {
		return res, err
	}
	for i := 0; i < len(events); i++ {
		ev := events[i]
		if !t.Mapping.Has(p.typ, ev) {
			res.skipped = append(res.skipped, ev)
			continue
		}
		previous := p.before
		if ev == change.Create {
			previous = nil
		}
		in := mapping.Input{
			ResourceType: p.typ,
			Event:        ev,
			Resource:     p.after,
			Previous:     previous,
			Changed:      p.changed,
			NativeID:     p.nativeID,
			NativeIDOf:   e.storedNativeID,
		}
		if ev == change.Delete {
			in.Resource = p.before
		}
		if ev == change.Update && res.inLine {
			in.Changed = e.everyAttribute(p) // the adopted account is brought in line
		}
		if in.NativeID == "" {
			in.NativeID = res.nativeID
		}
		if ev == change.AddMembers || ev == change.RemoveMembers {
			members := adds
			if ev == change.RemoveMembers {
				var skipped, missing []string
				if members, skipped, missing, err = e.nativeMembers(p.removed); err != nil {
					return res, res.failure(membersUnreadable(t.Name, err))
				}
				res.outOfScope = append(res.outOfScope, skipped...)
				res.deferred = append(res.deferred, missing...) // no account: nothing to remove
			}
			if len(members) == 0 {
				continue // nothing to send (a dry run, or members never provisioned)
			}
			in.Members = members
		}
		if ev == change.Create && p.batched != "" {
			res.nativeID = p.batched // a batch create made the account (batch.go)
		} else if ev == change.Create {
			adopted, err := e.adoptExisting(ctx, p, res)
			if err != nil {
				return res, err
			}
			if adopted != "" {
				// An earlier attempt of this create reached the app; take that account, and
				// make the rest of the create's flow (its calls after the one that made it).
				// The account holds what that attempt sent: unless it is known to be what
				// this one would send, it is brought in line with the resource as it is now.
				res.nativeID, res.adopted, res.repaired = adopted, true, p.recreate
				if !e.adoptedAsSent(p, in) {
					events = e.bringInLine(p, events, i, res)
				}
			}
		}
		if ev != change.Create && in.NativeID == "" {
			// The resource never reached the app (created before the target was
			// configured, or skipped): nothing to change there.
			res.skipped = append(res.skipped, ev)
			continue
		}
		// The event's flow, a call at a time: a later call of a create's flow may use the
		// native id an earlier one's answer gave.
		first, made := 0, accountSteps(t.Mapping, p.typ)
		if ev == change.Create && (res.adopted || p.batched != "") {
			// Resume after the call that made the account; without such a call (the
			// create's answer gives no id), the whole create was made.
			first = made
		}
		in.Answers = make([]mapping.Answer, first)
		for step := first; step < t.Mapping.FlowLen(p.typ, ev); step++ {
			if in.NativeID == "" {
				in.NativeID = res.nativeID
			}
			in.Answers = append(in.Answers, mapping.Answer{}) // this call's, once it answers
			reqs, err := t.Mapping.StepRequests(in, step)
			if err != nil {
				return res, res.failure(&nativeError{scim: mappingError(ev, p, t.Name, err), cause: err})
			}
			for _, r := range reqs {
				if res.sent.has(r) {
					continue // the same call was already made for this change (a full PUT for update and deactivate)
				}
				if t.DryRun {
					res.calls = append(res.calls, journal.BackendCall{Method: r.Method, URL: redactURL(r.Path)})
					res.sent.add(r)
					continue
				}
				if ev == change.Create && step < made {
					res.attempted = append(res.attempted, keyOf(r))
				} else {
					res.beyond = true
				}
				resp, err := t.call(ctx, r)
				res.noteCall(r.Method, r.Path, resp, err)
				if err != nil {
					var le *legacy.Error
					errors.As(err, &le)
					se, retryAfter := legacy.ToSCIM(ev, resp, err)
					if se == nil { // e.g. 404 on delete: already gone
						continue
					}
					if res.inLine && ev != change.Create && se.Status == http.StatusNotFound {
						// The account the lookup just found is gone again: never a 404 for a
						// create; its retry looks the account up once more.
						se, retryAfter = scim.Errorf(http.StatusServiceUnavailable, "", "%s answered \"no such object\" to the %s of account %s, which its lookup found for %s %s; retry later",
							t.Name, ev, res.nativeID, p.typ, p.id), legacy.DefaultOutageRetryAfter
					}
					gone := le != nil && le.NotFound && updatesAccount(ev) && p.after != nil && p.nativeID != "" && in.NativeID == p.nativeID
					return res, res.failure(&nativeError{scim: se, retryAfter: retryAfter, cause: err, mayHaveActed: le != nil && le.MayHaveActed(), gone: gone})
				}
				res.sent.add(r)
				if !r.Idempotent {
					res.made.add(r)
				}
				in.Answers[step] = mapping.Answer{Header: resp.Header, Body: resp.Body}
				if ev == change.Create && r.ID.IsSet() {
					id, err := r.ID.Extract(resp.Header, resp.Body)
					if err != nil {
						// Not a create that made an account as far as the gateway can tell: it
						// is not kept as made (Entra's retry looks the account up, as after a
						// lost answer, and makes the create again when there is none).
						res.sent.drop(r)
						res.made.drop(r)
						return res, res.failure(&nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "", "%s answered the create of %s without a usable id (%v); retry later", t.Name, p.id, err),
							retryAfter: legacy.DefaultOutageRetryAfter, cause: err, mayHaveActed: true})
					}
					res.nativeID = id
				}
			}
		}
		if ev == change.Create && !t.DryRun && res.nativeID == "" && t.Mapping.IDStep(p.typ) >= 0 {
			// The flow's call that gives the account's id was not made (an earlier attempt
			// made an identical one): without the id there is no account the gateway can map.
			return res, res.failure(&nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "",
				"the create of %s %s in %s made no call that gave the account's id; retry later", p.typ, p.id, t.Name),
				retryAfter: legacy.DefaultOutageRetryAfter, mayHaveActed: true})
		}
	}
	switch {
	case res.nativeID == "" || t.DryRun:
	case res.caughtUp:
		e.catchUpMemberships(ctx, p, res, true)
		if e.rolesOf() != nil && p.typ == scim.UserType {
			e.catchUpRoles(ctx, p, res)
		}
	case p.holdMissing && p.before == nil && change.Has(events, change.Create):
		// A queued create is delivered after the directory recorded the resource's
		// memberships (Entra knew its id at once); a group's delivery may have held one
		// back meanwhile (the create was refused, then retried by an operator): it follows
		// the account. A create Entra waits for has no memberships yet.
		e.catchUpMemberships(ctx, p, res, false)
	}
	return res, nil
}

// memberAdds looks up, before any call of the change, the accounts of the members it adds
// (when its events send add_members). A member without an account in the app (its create
// failed, was refused, or has not happened) is a reference failure: in a change Entra
// waits for, the change is refused as a whole before anything reaches the app, so that the
// directory does not record a membership the app lacks and Entra's retry, once the
// member's account exists, makes no call twice; in a queued delivery (holdMissing), which
// Entra will not retry, the member is left out (res.deferred) and its membership is sent
// when its account is made (catchUpMemberships). A dry run sends nothing either way.
func (e *Engine) memberAdds(p *plan, res *syncResult, events []change.Event) ([]mapping.Member, error) {
	t := e.target
	if len(p.added) == 0 || !change.Has(events, change.AddMembers) || !t.Mapping.Has(p.typ, change.AddMembers) {
		return nil, nil
	}
	members, skipped, missing, err := e.nativeMembers(p.added)
	if err != nil {
		return nil, res.failure(membersUnreadable(t.Name, err))
	}
	res.outOfScope = append(res.outOfScope, skipped...)
	if len(missing) > 0 && !t.DryRun && !p.holdMissing {
		return nil, res.failure(&nativeError{scim: scim.BadRequest(scim.TypeInvalidValue,
			"member %s has no account in %s yet (its creation failed or has not happened): nothing of this change was sent to %s; Entra retries it in a later cycle, and it goes through once the member's account exists (see the member's own failed change)",
			listIDs(missing), t.Name, t.Name)})
	}
	res.deferred = append(res.deferred, missing...)
	for _, m := range members {
		res.addedSent = append(res.addedSent, m.SCIMID)
	}
	return members, nil
}

// membersUnreadable is the failure of a change whose members' accounts could not be read
// from the directory: nothing is sent, and the change is tried again.
func membersUnreadable(target string, err error) *nativeError {
	return &nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "", "reading the members' accounts in %s from the directory failed (%v); retry later", target, err),
		retryAfter: legacy.DefaultOutageRetryAfter, cause: err}
}

// callKey identifies a call by what it does: its method, path and body.
type callKey [sha256.Size]byte

func keyOf(r mapping.Request) callKey {
	h := sha256.New()
	h.Write([]byte(r.Method))
	h.Write([]byte{0})
	h.Write([]byte(r.Path))
	h.Write([]byte{0})
	h.Write(r.Body)
	var k callKey
	copy(k[:], h.Sum(nil))
	return k
}

// sentCalls are the calls a change made (and, from its progress, the calls an earlier
// attempt of it made that may not be repeated), so that an identical one is not made twice.
type sentCalls []callKey

func (s sentCalls) has(r mapping.Request) bool { return slices.Contains(s, keyOf(r)) }

func (s *sentCalls) add(r mapping.Request) { *s = append(*s, keyOf(r)) }

// drop forgets r: a call that is to be made again.
func (s *sentCalls) drop(r mapping.Request) {
	k := keyOf(r)
	*s = slices.DeleteFunc(*s, func(x callKey) bool { return x == k })
}

// progress is what a failed attempt of a change's flow made that may not be repeated,
// stored with the resource until a later attempt commits.
func decodeProgress(data []byte) sentCalls {
	var out sentCalls
	for len(data) >= sha256.Size {
		var k callKey
		copy(k[:], data)
		out = append(out, k)
		data = data[sha256.Size:]
	}
	return out
}

func encodeProgress(calls sentCalls) []byte {
	out := make([]byte, 0, len(calls)*sha256.Size)
	for _, k := range calls {
		out = append(out, k[:]...)
	}
	return out
}

// syncReasons explains, for the journal, native calls that were not made as the change's
// events suggest.
func syncReasons(target string, res *syncResult) []string {
	var reasons []string
	if len(res.skipped) > 0 {
		reasons = append(reasons, "no native call for "+strings.Join(change.Strings(res.skipped), ", ")+" (not mapped, or the resource has no account in "+target+")")
	}
	if res.caughtUp {
		reasons = append(reasons, "created in "+target+" on this change: the resource had no account there yet")
	}
	if len(res.caughtUpGroups) > 0 {
		reasons = append(reasons, fmt.Sprintf("memberships it already had sent to %s: %d member(s) in %d group(s)", target, res.caughtUpMembers, len(res.caughtUpGroups)))
	}
	if len(res.catchUpFailures) > 0 {
		reasons = append(reasons, "memberships it already had not sent to "+target+" (a reconcile reports them missing; --fix sends them): "+strings.Join(res.catchUpFailures, "; "))
	}
	reasons = append(reasons, roleReasons(target, res)...)
	switch {
	case res.adopted && res.repaired:
		reasons = append(reasons, "linked account "+res.nativeID+" that the lookup found in "+target+" (the reconcile's listing did not show it) instead of creating a second one"+inLineReason(res))
	case res.adopted:
		reasons = append(reasons, "adopted account "+res.nativeID+" that an unfinished earlier attempt of this create left in "+target+inLineReason(res))
	}
	if len(res.outOfScope) > 0 {
		reasons = append(reasons, "members kept out of "+target+" by policy left out of the member calls: "+listIDs(res.outOfScope))
	}
	if len(res.deferred) > 0 {
		reasons = append(reasons, "members without an account in "+target+" left out of the member calls (an added member's membership is sent when its account is made): "+listIDs(res.deferred))
	}
	return reasons
}

// inLineReason completes the reason of an adoption: whether the account was brought in
// line with the resource.
func inLineReason(res *syncResult) string {
	switch {
	case res.inLine:
		return ", and updated it to the resource's current state (the calls that made it are not known to have sent that state)"
	case res.notInLine:
		return "; the calls that made it are not known to have sent the resource's current state, and the mapping has no update to send it (a reconcile reports the difference)"
	}
	return " (the calls that made it sent the resource's current state)"
}

// accountSteps is the number of steps of the create's flow up to the one whose answer
// gives the account's id (the whole flow when none does): the calls an adopted create does
// not make again.
func accountSteps(m *mapping.Mapping, typ string) int {
	if s := m.IDStep(typ); s >= 0 {
		return s + 1
	}
	return m.FlowLen(typ, change.Create)
}

// sentDigest is what an attempt's calls sent to an account it may have made (listed for
// adoption): a digest of the calls of the create's flow up to the one that makes the
// account, nil when it is not known (no such call tried, or another call of the change
// tried too, which may have changed the account after).
func (res *syncResult) sentDigest() []byte {
	if res == nil || len(res.attempted) == 0 || res.beyond {
		return nil
	}
	return digestOf(res.attempted)
}

func digestOf(keys []callKey) []byte {
	h := sha256.New()
	for _, k := range keys {
		h.Write(k[:])
	}
	return h.Sum(nil)
}

// adoptedAsSent reports whether the account an earlier attempt of p's create made, which
// this attempt adopts, holds what this attempt would send: every attempt listed made the
// calls of the create's flow up to the one that made the account and nothing else, and
// they are the calls this attempt builds from the resource as it is now (in, the create's
// input). Only what the gateway sent counts: what the lookup's answer shows of the account
// may be an index's, not the account.
func (e *Engine) adoptedAsSent(p *plan, in mapping.Input) bool {
	if len(p.adoptSent) == 0 {
		return false
	}
	m := e.target.Mapping
	var keys []callKey
	in.Answers = nil
	for step := range accountSteps(m, p.typ) {
		in.Answers = append(in.Answers, mapping.Answer{})
		reqs, err := m.StepRequests(in, step)
		if err != nil {
			return false
		}
		for _, r := range reqs {
			keys = append(keys, keyOf(r))
		}
	}
	return len(keys) > 0 && string(digestOf(keys)) == string(p.adoptSent)
}

// bringInLine adds, after the create at events[at] that adopted an account, the events
// that bring that account in line with the resource as a drift repair does: the update
// with every attribute (everyAttribute), and for a user whose update does not carry its
// state, the deactivation or reactivation of that state (unless the change makes it
// already).
func (e *Engine) bringInLine(p *plan, events []change.Event, at int, res *syncResult) []change.Event {
	m := e.target.Mapping
	if p.after == nil {
		return events
	}
	var add []change.Event
	if m.Has(p.typ, change.Update) && !change.Has(events, change.Update) {
		add = append(add, change.Update)
	}
	if p.typ == scim.UserType && !m.Carries(p.typ, change.Update, "active") {
		state := change.Reactivate
		if !activeOf(p.after) {
			state = change.Deactivate
		}
		if m.Has(p.typ, state) && !change.Has(events, state) {
			add = append(add, state)
		}
	}
	if len(add) == 0 && !change.Has(events, change.Update) {
		res.notInLine = true
		return events
	}
	res.inLine = true
	return slices.Concat(events[:at+1], add, events[at+1:])
}

// everyAttribute is what the update that brings an adopted account in line sends: every
// attribute the resource has, and every one the mapping's update reads (one the resource
// lacks is sent as the mapping sends an absent value: the account may hold what an
// earlier attempt sent), but those the policy keeps from the app.
func (e *Engine) everyAttribute(p *plan) []string {
	out := attributeNames(p.after)
	for _, a := range e.target.Mapping.Reads(p.typ, change.Update) {
		if !slices.ContainsFunc(out, func(c string) bool { return strings.EqualFold(c, a) }) {
			out = append(out, a)
		}
	}
	return slices.DeleteFunc(out, func(c string) bool {
		short := c
		if i := strings.LastIndexByte(c, ':'); i >= 0 {
			short = c[i+1:]
		}
		return slices.ContainsFunc(p.dropAttributes, func(d string) bool { return attrWithin(p.typ, c, d) || attrWithin(p.typ, short, d) })
	})
}

// startState follows a user's create with its deactivation when the user starts inactive
// and the mapping's create cannot carry that (its body does not send active): otherwise
// the account would be created active in an app whose deactivation is a call of its own
// (POST .../suspend). The two calls are one flow, under one intent.
func (e *Engine) startState(p *plan, events []change.Event) []change.Event {
	m := e.target.Mapping
	if p.typ != scim.UserType || p.after == nil || activeOf(p.after) || !change.Has(events, change.Create) ||
		change.Has(events, change.Deactivate) || m.Carries(p.typ, change.Create, "active") || !m.Has(p.typ, change.Deactivate) {
		return events
	}
	out := make([]change.Event, 0, len(events)+1)
	for _, ev := range events {
		out = append(out, ev)
		if ev == change.Create {
			out = append(out, change.Deactivate)
		}
	}
	return out
}

// updatesAccount reports whether an event changes the resource's own account (its
// attributes or its state), which its own "no such object" says is gone.
func updatesAccount(ev change.Event) bool {
	return ev == change.Update || ev == change.Deactivate || ev == change.Reactivate
}

// catchUp turns the attribute events of a resource that has no account in the app (it
// existed before the target was configured, a dry run preceded, or its account was gone
// from the app) into a create, so the app gets the account on the resource's next change
// instead of never.
func (e *Engine) catchUp(p *plan, res *syncResult, events []change.Event) []change.Event {
	out, caught := e.catchUpEvents(p, events)
	if caught {
		res.caughtUp = true
	}
	return out
}

// catchUpEvents is catchUp's decision: the events to send, and whether they create the
// account of a resource without one.
func (e *Engine) catchUpEvents(p *plan, events []change.Event) ([]change.Event, bool) {
	if p.before == nil || p.after == nil || p.nativeID != "" || !e.target.Mapping.Has(p.typ, change.Create) {
		return events, false
	}
	out := []change.Event{change.Create}
	caught := false
	for _, ev := range events {
		switch {
		case updatesAccount(ev):
			caught = true // the create carries the current attributes and state
		default:
			out = append(out, ev)
		}
	}
	if !caught {
		return events, false
	}
	return out, true
}

// catchesUp reports whether the calls of p create the account of a resource without one.
func (e *Engine) catchesUp(p *plan) bool {
	if e.rolesOf() != nil && p.typ == scim.GroupType {
		return false // a group that is a role has no account
	}
	_, caught := e.catchUpEvents(p, nativeEvents(p.events))
	return caught
}

// catchUpJob is one add_members call of a membership catch-up: a group and the members to
// send it.
type catchUpJob struct {
	groupID, groupNative string
	group                scim.Resource
	members              []mapping.Member
}

// catchUpMemberships sends the memberships the directory already holds to the account a
// create just made: a user (or a nested group) joins those of its groups that have
// accounts; with ownMembers (a catch-up create of a resource that existed before the
// target was configured, or that the policy kept out of the app until now), a group also
// gets its members that have accounts. Without it the app would miss them until Entra
// changes those memberships, which it has no reason to do. A plain create has no
// memberships in the directory unless a queued delivery of a group held the member back
// while its create had not been made (holdMissing): those follow it here. A membership an
// outbox task of the group still adds is left to that task.
//
// Best effort: the account exists in the app now and must be recorded with the change, so
// a failed membership call is journaled and logged rather than failing the request (whose
// retry would create the account a second time); the membership stays missing in the app
// until a reconcile reports it (member_missing) and --fix sends it.
func (e *Engine) catchUpMemberships(ctx context.Context, p *plan, res *syncResult, ownMembers bool) {
	t := e.target
	if !t.Mapping.Has(scim.GroupType, change.AddMembers) {
		return
	}
	jobs, err := e.catchUpJobs(p, res.nativeID, ownMembers)
	if err != nil {
		res.catchUpFailures = append(res.catchUpFailures, "reading the memberships: "+err.Error())
		return
	}
	for _, cj := range jobs {
		reqs, err := t.Mapping.Requests(mapping.Input{
			ResourceType: scim.GroupType, Event: change.AddMembers, Resource: cj.group,
			NativeID: cj.groupNative, Members: cj.members, NativeIDOf: e.storedNativeID,
		})
		if err == nil {
			for _, r := range reqs {
				var resp *legacy.Response
				resp, err = t.call(ctx, r)
				res.noteCall(r.Method, r.Path, resp, err)
				if err != nil {
					break
				}
			}
		}
		if err != nil {
			e.logger.Warn("sending existing memberships to a new account failed; a reconcile reports them missing and --fix sends them",
				zap.String("target", t.Name), zap.String("group", cj.groupID), zap.Error(err))
			res.catchUpFailures = append(res.catchUpFailures, cj.groupID+": "+err.Error())
			continue
		}
		res.caughtUpGroups = append(res.caughtUpGroups, cj.groupID)
		res.caughtUpMembers += len(cj.members)
	}
}

// catchUpJobs reads, from the committed directory, the add_members calls that send the
// memberships of p's new account (see catchUpMemberships). A group's members this very
// request adds or removes are left out: the request's own member calls deal with them; so
// are memberships a task of the group still in the outbox adds. A group or member without
// an account in the app is left out; any other failure to read the directory is an error.
func (e *Engine) catchUpJobs(p *plan, nativeID string, ownMembers bool) ([]catchUpJob, error) {
	t := e.target
	var jobs []catchUpJob
	err := e.store.View(func(tx *store.Tx) error {
		err := tx.GroupsOf(p.id, func(gid string) error {
			groupNative, err := tx.NativeID(t.mapKey(scim.GroupType), gid)
			if errors.Is(err, store.ErrNotFound) {
				return nil // the group has no account in the app
			}
			if err != nil {
				return err
			}
			if queued, err := e.queuedAdds(tx, gid); err != nil || queued[p.id] {
				return err // the group's queued task sends this membership
			}
			rec, err := tx.Get(scim.GroupType, gid)
			if errors.Is(err, store.ErrNotFound) {
				return nil // the group is gone; only its dangling edge is left
			}
			if err != nil {
				return err
			}
			doc, err := DecodeDoc(rec)
			if err != nil {
				return err
			}
			jobs = append(jobs, catchUpJob{groupID: gid, groupNative: groupNative, group: withID(doc, gid),
				members: []mapping.Member{{SCIMID: p.id, NativeID: nativeID, Type: p.typ}}})
			return nil
		})
		if err != nil || !ownMembers || p.typ != scim.GroupType {
			return err
		}
		queued, err := e.queuedAdds(tx, p.id)
		if err != nil {
			return err
		}
		var members []mapping.Member
		err = tx.Members(p.id, func(m store.Member) error {
			if slices.Contains(p.added, m.ID) || slices.Contains(p.removed, m.ID) || queued[m.ID] || m.Type == "" {
				return nil
			}
			n, err := tx.NativeID(t.mapKey(m.Type), m.ID)
			switch {
			case errors.Is(err, store.ErrNotFound):
				return nil // the member has no account in the app
			case err != nil:
				return err
			}
			members = append(members, mapping.Member{SCIMID: m.ID, NativeID: n, Type: m.Type})
			return nil
		})
		if err == nil && len(members) > 0 {
			jobs = append(jobs, catchUpJob{groupID: p.id, groupNative: nativeID, group: p.after, members: members})
		}
		return err
	})
	return jobs, err
}

// queuedAdds is the set of members that group's tasks in the target's outbox add (pending
// or dead: their delivery, or an operator's retry, sends them).
func (e *Engine) queuedAdds(tx *store.Tx, group string) (map[string]bool, error) {
	var out map[string]bool
	err := tx.TasksOf(e.target.Name, group, func(st store.Task) error {
		task, err := outbox.Decode(st.Seq, st.Data)
		if err != nil {
			return err
		}
		for _, id := range task.Added {
			if out == nil {
				out = map[string]bool{}
			}
			out[id] = true
		}
		return nil
	})
	return out, err
}

// nativeMembers looks up the members' native ids in one read transaction. A member
// without one has no account in the app: skipped when the policy kept it out on purpose
// (out of scope), missing otherwise (never created there, or its creation failed).
func (e *Engine) nativeMembers(ids []string) (found []mapping.Member, skipped, missing []string, err error) {
	if len(ids) == 0 {
		return nil, nil, nil, nil
	}
	err = e.store.View(func(tx *store.Tx) error {
		for _, id := range ids {
			typ, err := tx.TypeOf(id)
			if err != nil {
				typ = e.mappedType(tx, id)
			}
			if typ == "" {
				missing = append(missing, id)
				continue
			}
			key := e.target.mapKey(typ)
			switch n, err := tx.NativeID(key, id); {
			case err == nil:
				found = append(found, mapping.Member{SCIMID: id, NativeID: n, Type: typ})
			case tx.Mark(key, id) == change.MarkSkipped:
				skipped = append(skipped, id)
			default:
				missing = append(missing, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return found, skipped, missing, nil
}

// mappedType is the type of a resource the directory no longer has but whose account the
// app still has (a queued delivery of a change made before the resource's delete), or "".
func (e *Engine) mappedType(tx *store.Tx, id string) string { return mappedTypeOf(tx, e.target, id) }

// mappedTypeOf is mappedType for target t.
func mappedTypeOf(tx *store.Tx, t *Target, id string) string {
	for _, typ := range []string{scim.UserType, scim.GroupType} {
		if _, err := tx.NativeID(t.mapKey(typ), id); err == nil {
			return typ
		}
	}
	return ""
}

// storedNativeID looks up the native id of a resource in its own read transaction (used
// while no transaction is open: during the native calls), for the mapping's NativeIDOf
// (a manager's native id), and says whether the directory has the resource at all. A
// directory that cannot be read says pending: the change fails and is retried, rather
// than sent without the reference.
func (e *Engine) storedNativeID(scimID string) (string, mapping.RefState) {
	var nativeID string
	state := mapping.RefPending
	_ = e.store.View(func(tx *store.Tx) error {
		typ, err := tx.TypeOf(scimID)
		if errors.Is(err, store.ErrNotFound) {
			state = mapping.RefGone
			return nil
		}
		if err != nil {
			return err
		}
		if nativeID, err = tx.NativeID(e.target.mapKey(typ), scimID); err == nil {
			state = mapping.RefLinked
		}
		return err
	})
	return nativeID, state
}

// callError says, for the journal, how a call failed: the error's class and status, and
// why where it says (an answer that proved nothing: its media type and size, never its
// content; a network failure: which, without addresses; an open circuit: what opened it).
func callError(e *legacy.Error) string { return e.Cause() }

// failure completes the error of a change whose calls failed: the calls made so far, and,
// when a create earlier in the flow made the account, that the app acted (so the create is
// listed for adoption and Entra's retry takes that account).
func (res *syncResult) failure(ne *nativeError) *nativeError {
	ne.calls, ne.made = res.calls, res.made
	if res.nativeID != "" {
		ne.mayHaveActed = true
	}
	return ne
}

// noteCall adds a native call to the result (every call goes to the journal), with what
// the client reports of it: the status, the time and attempts, and how it failed. It
// returns the call's record.
func (res *syncResult) noteCall(method, path string, resp *legacy.Response, err error) journal.BackendCall {
	call := journal.BackendCall{Method: method, URL: redactURL(path)}
	if resp != nil {
		call.Status, call.DurationMS, call.Attempts = resp.Status, resp.Duration.Milliseconds(), resp.Attempts
	}
	var le *legacy.Error
	if errors.As(err, &le) {
		if call.Attempts == 0 {
			call.Attempts = le.Attempts
		}
		if call.Status == 0 {
			call.Status = le.Status
		}
		call.Error = callError(le)
	}
	res.calls = append(res.calls, call)
	return call
}

// redactURL drops the query string, where an API key could sit.
func redactURL(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i] + "?…"
	}
	return p
}

// mappingError is the answer to a change the mapping cannot turn into calls (a field the
// app requires is empty, a manager without an account): a 400 naming the event, the
// resource and the mapping's own words. When the policy kept attributes from the app, it
// says which: a required one among them is the policy's doing, not the client's.
func mappingError(ev change.Event, p *plan, target string, err error) *scim.Error {
	detail := err.Error()
	var se *scim.Error
	if errors.As(err, &se) {
		detail = se.Detail
	}
	if len(p.droppedAttrs) > 0 {
		detail += fmt.Sprintf(" (the policy's drop_attributes kept %s from %s: if the mapping needs one of them, let the policy pass it or stop requiring it in the mapping)", strings.Join(p.droppedAttrs, ", "), target)
	}
	return scim.BadRequest(scim.TypeInvalidValue, "mapping the %s of %s %s for %s: %s", ev, p.typ, p.id, target, detail)
}
