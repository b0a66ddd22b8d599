// Package outbox is scimgate's queued delivery: the task a queued change leaves in the
// store's outbox (written by the engine in the transaction of the directory change and its
// journal record), the delivery settings of a target (mode, retries, dead letters), and the
// worker that delivers a target's outbox.
//
// The worker keeps the order that matters and nothing more: one resource's tasks go one at
// a time in the order they were queued; a task that refers to other resources (the members
// a group change adds, a user's manager) waits for their queued creates (and deletes), not
// their updates; and a resource's first task waits for those too when its next task refers
// to one queued before it, so that both go as one delivery (a user's create with its
// manager link, a group's create with its member adds); different resources go in parallel up to Settings.MaxConcurrent (the legacy client's own rate limit and
// concurrency bound the calls). Each attempt is made by the Deliverer (the engine), which
// journals an intent before the calls and commits the outcome with the task's removal or
// new state. A failed attempt is retried with exponential backoff and jitter, never sooner
// than the app's Retry-After, while the app is unavailable and the task has failed for less
// than Settings.MaxAge (since its first failed attempt); after that, or at once when the app rejects the change, the task becomes
// a dead letter and its resource's later tasks wait behind it. An unavailable app holds back
// the whole target until the next attempt, so that a down app gets one probe at a time;
// a failure while the app takes other tasks' attempts started no earlier (Report.AppUp) is
// the task's own, and holds nothing back.
// With a Deliverer that batches creates (BatchDeliverer: a mapping's create_batch, in
// queued delivery), the ready creates of different resources of one type, each with its
// resource's tasks coalesced into it, never tried before, go to the app in one call, up
// to its batch size; such a batch is one attempt of MaxConcurrent.
// Settings.Schedule delays tasks to batches (every N) and windows (days and hours in a time
// zone); an urgent task (a deprovisioning queued behind its resource's earlier changes)
// and the tasks of its resource ignore it. An operator may pause a target (kept in the
// store), list, show, retry and drop tasks (control.go), each journaled by the Deliverer.
//
// In a fleet (several gateways on one etcd store) one gateway at a time delivers a
// target's outbox: the holder of the fleet job "outbox/<target>" (caddymodule/fleet). It
// loads the outbox when it is elected, picks up what the other gateways queue and what
// operators do through them when they commit, and stops before its next call when it loses
// the job; the next holder takes over within the lease TTL.
//
// Layout of a task (JSON, in the store's outbox bucket; see store/outbox.go): the request
// (request_id, client, action), the resource (resource_type, scim_id, subject), the change
// (events, changed attributes, the resource before and after it, member ids added and
// removed, refs), the policy's obligations, and the delivery state (attempts,
// next_attempt, last_error, last_status, dead).
package outbox
