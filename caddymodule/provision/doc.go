// Package provision is scimgate's provisioning engine: it applies one SCIM change to the
// gateway's directory and, through a target's declarative mapping, to a legacy app, and
// journals what happened. It knows nothing of Caddy or of HTTP servers: the caddymodule
// package parses Entra's requests into an Op, calls Engine.Apply and renders the Result.
//
// A change goes through these steps, each in its own file, top to bottom:
//
//	apply.go    Apply: the pipeline; the intent, the commit and the account's mark
//	plan.go     decide: load the current resource, compute the new one (create, replace,
//	            patch, delete), the member deltas, the record to store; applyPlan writes it
//	events.go   the semantic events a change means and the attribute diff
//	policy.go   the policy's decision on the change and its obligations (shapeForApp)
//	native.go   the native calls of the events through the mapping and the legacy client,
//	            catch-up creates and their memberships
//	queue.go    queued delivery: a change committed with its outbox task (queued mode, a
//	            fallback after an outage, a resource with changes still queued), and
//	            Deliver, the outbox worker's attempt (see package outbox)
//	coalesce.go consecutive queued changes of one resource as their net effect
//	batch.go    DeliverBatch: the ready queued creates of different resources of one type
//	            in the mapping's bulk create call (create_batch), intents committed before
//	            it and outcomes after it in one transaction each
//	recover.go  crash recovery: intents without an outcome, adoption of unfinished creates
//	parts.go    a member change larger than one transaction holds, applied in parts
//	deleteparts.go  a delete whose edges do not fit one transaction of a bounded store:
//	            its edges unlinked in parts, then the delete itself
//	fleet.go    on a shared store: the calls' deadline that bounds an intent's life, stale
//	            intents recovered by any gateway (at start and periodically), and a create
//	            that waits for (503) or adopts another request's unfinished create
//	roles.go    groups as roles: a group's role, and each affected user's whole list of
//	            roles sent under the users' role locks until the commit
//	stats.go    the policy's counts of the last hour (the brake's input): in memory, or in
//	            the store when gateways share it (Config.SharedStore)
//	trail.go    the journal record of a request and the SCIM error of a failure
//	repair.go   Repair and DisableOrphan: a reconcile's repairs of the app, through Apply
//	            (action repair: the policy decides, the stats count, intent and outcome)
//
// Beside the pipeline, read-only, for a change an operator is about to make:
//
//	preview.go         PolicyImpact: every resource decided by a proposed policy and the
//	                   policy in force, as a re-sync; what differs (denied, leaves scope, ...)
//	mappingpreview.go  MappingImpact: every resource's native calls built by a proposed
//	                   mapping and the mapping in force; each kind of difference, counted
//
// Requests for one resource are serialised (lockJob): the native calls and the commit of
// a change never interleave with another change of the same resource. A group PATCH that
// only adds and removes members it names (Entra's member changes) locks the group shared
// and those members exclusively, so changes of different members of one group run at once
// and commit in any order (they commute; the journal's order is the commit order), while
// renames, replaces, deletes and changes of the same member wait. A user's delete holds,
// besides the user, each group it belongs to shared with the user as its member, until its
// commit (the last part's, for a delete in parts): a member change of one of those groups
// naming the user runs before the delete or after it (the user gone), never between its
// parts nor with a membership the delete has just removed. The locks are the process's own:
// in a fleet, a member change through another gateway that adds a member deleted after it
// was decided is refused in its commit (refuseGoneMembers). Locks are taken in one order
// (the resource, its members or a deleted user's groups sorted, users' role lists sorted),
// so no two requests wait on each other.
//
// A change of a group's members larger than MemberChunk edges (a PATCH's adds and removes,
// a "remove all" or a PUT's member list resolved against the stored members, a create with
// members) is applied in parts of at most MemberChunk edges, so that each transaction fits
// a store whose transactions are bounded (etcd: 128 operations). On a bbolt file, whose
// transactions are not bounded, a change of more than FileMemberChunk (2,000) edges is
// applied in parts of FilePartSize edges (a twentieth of the change, from 500 to 2,000), so
// that what a part holds in memory stays in proportion to the request. The policy decides the
// request once, whole (it sees every member, its stats count the request once; a deny is
// the request's, and nothing is applied); then each part is a change of its own through the
// pipeline, under the request's locks, following that decision: it has its
// own intent before its native calls and its own outcome committed with its edges (one
// intent/outcome pair per part, not one intent for the request: an intent closes with the
// first outcome of its request, and a crash in a later part must leave an intent without
// outcome for recovery to report). Its records carry the request's request_id and part
// {index, count}, which join them for an auditor. The native calls stay as the mapping says
// (per member, or batched within a part). A create's first part creates the group; a PATCH's
// or PUT's last part changes the group's other attributes and renders the answer. The first
// part that fails ends the request with its error (journaled with that part): the parts
// before it stay applied in the directory and the app; Entra retries the whole request, whose
// parts already applied then change nothing and call nothing (an existing member added, an
// absent one removed), and whose failed part skips the non-idempotent calls it made (its
// progress).
//
// On a store whose transactions are bounded (etcd), a delete whose edges (a group's
// members, the groups the resource belongs to, a manager's reports) do not fit one
// transaction is applied in parts too (deleteparts.go): the policy decides the delete once,
// whole; the parts before the last unlink edges in the directory alone (no call: the app's
// delete removes the memberships there, except a role group's revocation, sent per part),
// and the last part is the delete as it is for a small resource (intent, the app's delete
// call, the commit of the removal and outcome). The resource stays in the directory until
// the app has been called; a failed part leaves the app untouched, and Entra's retry of the
// DELETE unlinks what is left and deletes it.
//
// The rules it keeps (see DESIGN.md): no native call without a durable intent before it
// and an outcome after it; the resource, its memberships, the id map, the account's mark
// and the outcome record commit in one transaction, shared with concurrent writers (group
// commit), whose functions may run more than once; a policy that cannot decide denies;
// an app's outage is a 503 with Retry-After, never a 2xx and never the app's 4xx passed on.
package provision
