// Package change is the gateway's vocabulary for what happens to a resource: the semantic
// events a change means to an app, the request actions the journal records, the outcomes a
// record carries, and the marks the gateway keeps on an app's account. The engine, the
// mapping, the legacy client, the store and the journal all speak it; none of them spells
// these values as raw strings.
package change

import "slices"

// Event is what a change means to an app: the mapping's call for it, the policy's input,
// the journal's events.
type Event string

// The semantic events, in the order their native calls are made.
const (
	Create        Event = "create"
	Update        Event = "update"
	Deactivate    Event = "deactivate"
	Reactivate    Event = "reactivate"
	Rename        Event = "rename"
	AddMembers    Event = "add_members"
	RemoveMembers Event = "remove_members"
	Delete        Event = "delete"
)

// Events lists every semantic event in a fixed order (the policy's stats count them in it).
var Events = [...]Event{Create, Update, Deactivate, Reactivate, Delete, Rename, AddMembers, RemoveMembers}

// Removes reports whether the event takes access away: a deactivation, a deletion or a
// member removal.
func (e Event) Removes() bool { return e == Deactivate || e == Delete || e == RemoveMembers }

// Strings returns events as plain strings (for the policy's input and logs).
func Strings(events []Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = string(e)
	}
	return out
}

// Has reports whether events contains e.
func Has(events []Event, e Event) bool { return slices.Contains(events, e) }

// Action is what a request asked for, as the journal records it.
type Action string

// Request actions: the four writes Entra makes, the reads (journaled when configured),
// and the gateway's own records.
const (
	ActionCreate    Action = "create"
	ActionReplace   Action = "replace"
	ActionPatch     Action = "patch"
	ActionDelete    Action = "delete"
	ActionGet       Action = "get"
	ActionList      Action = "list"
	ActionSearch    Action = "search"
	ActionReconcile Action = "reconcile"
	ActionPrune     Action = "prune"
	// ActionCascade is a change the directory made to another resource because of the
	// request with the same request_id (a deleted manager's reports lose the reference).
	ActionCascade Action = "cascade"
	// ActionDeliver is an attempt of the delivery worker to make a queued change's native
	// calls (its request_id is the queued request's).
	ActionDeliver Action = "deliver"
	// An operator's action on a target's outbox (the record's client is who did it): a
	// dead letter sent again, a task dropped (the app never gets it), deliveries paused
	// and resumed.
	ActionRetry  Action = "retry"
	ActionDrop   Action = "drop"
	ActionPause  Action = "pause"
	ActionResume Action = "resume"
	// ActionRepair is a change a reconcile made to bring an app's account back in line with
	// the directory (create, deactivate, update, members): decided by the policy and
	// counted by its stats like Entra's changes.
	ActionRepair Action = "repair"
)

// Outcome is how a request ended, as its journal record says.
type Outcome string

// Outcomes a record can carry.
const (
	Applied  Outcome = "applied"  // the change is in the directory (and the app, with a target)
	Rejected Outcome = "rejected" // the request was invalid (4xx other than a policy denial)
	Failed   Outcome = "failed"   // the gateway or the app could not complete it (5xx)
	Denied   Outcome = "denied"   // the policy decided no (403)
	Skipped  Outcome = "skipped"  // the policy kept the change out of the app; the directory has it
	Pending  Outcome = "pending"  // an intent: native calls follow; its outcome is a later record
	DryRun   Outcome = "dry_run"  // decided, mapped and journaled; nothing sent
	// Queued: the directory has the change and a task in the outbox delivers it to the app
	// later (queued delivery); a delivery attempt that fails but will be retried is Failed.
	Queued    Outcome = "queued"
	Delivered Outcome = "delivered" // a queued change reached the app
	Dead      Outcome = "dead"      // a queued change the app refused, or that expired: kept as a dead letter
)

// Outcomes lists every outcome, for validating filters.
var Outcomes = [...]Outcome{Applied, Rejected, Failed, Denied, Skipped, Pending, DryRun, Queued, Delivered, Dead}

// Valid reports whether o is a known outcome.
func (o Outcome) Valid() bool { return slices.Contains(Outcomes[:], o) }

// Mark is what the gateway's policy did to a resource's account in an app, kept per target
// so that later changes can undo or respect it.
type Mark string

// Account marks.
const (
	// MarkNone: nothing to remember.
	MarkNone Mark = ""
	// MarkSkipped: the resource was left out of the app (out of scope), so it has no
	// account there on purpose; member calls leave it out instead of failing.
	MarkSkipped Mark = "skipped"
	// MarkDeactivated: the app's account was deactivated by policy although the directory's
	// resource is active (it left scope); coming back reactivates it with every attribute.
	MarkDeactivated Mark = "deactivated"
	// MarkStale: the app's account exists but missed changes the policy skipped, so the
	// next change that reaches the app carries every attribute.
	MarkStale Mark = "stale"
	// MarkManagerGone: the user's manager was deleted and the directory dropped the
	// reference without calling the app, whose account still links the manager; the next
	// change of the user that reaches the app sends its manager (none), even a change
	// that changes nothing else.
	MarkManagerGone Mark = "manager_gone"
)
