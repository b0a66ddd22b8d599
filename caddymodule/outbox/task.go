package outbox

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// Mode is how a target's changes reach its app.
type Mode string

// Delivery modes.
const (
	// Immediate: Entra's request waits for the app's calls (the default).
	Immediate Mode = "immediate"
	// Queued: the change is committed with a task in the outbox and Entra is answered at
	// once; the worker makes the calls later.
	Queued Mode = "queued"
	// Fallback: the calls are made at once; when the app is unavailable (refused, timed
	// out, 5xx, 429, open circuit) the change is queued and Entra is answered success.
	Fallback Mode = "fallback"
)

// Modes lists the delivery modes.
var Modes = [...]Mode{Immediate, Queued, Fallback}

// Valid reports whether m is a known mode.
func (m Mode) Valid() bool { return m == Immediate || m == Queued || m == Fallback }

// Defaults of Settings.
const (
	DefaultMaxAge        = 72 * time.Hour
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = 5 * time.Minute
	DefaultMaxConcurrent = 4
)

// Settings say how a target delivers: its mode and how the worker retries.
type Settings struct {
	Mode Mode
	// DeprovisionQueued queues deactivations, deletions and member removals like every
	// other change; by default they go at once even in queued mode (when the resource has
	// no task waiting), because losing access must not wait.
	DeprovisionQueued bool
	// MaxAge is how long a task is retried while the app is unavailable before it becomes
	// a dead letter. Default 72h.
	MaxAge time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (exponential, with jitter).
	// Default 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// MaxConcurrent is how many tasks (of different resources) are delivered at once.
	MaxConcurrent int
	// Schedule says when tasks are delivered (default: continuously).
	Schedule Schedule
}

// WithDefaults returns s with its zero values replaced by the defaults.
func (s Settings) WithDefaults() Settings {
	if s.Mode == "" {
		s.Mode = Immediate
	}
	if s.MaxAge <= 0 {
		s.MaxAge = DefaultMaxAge
	}
	if s.MinBackoff <= 0 {
		s.MinBackoff = DefaultMinBackoff
	}
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = DefaultMaxBackoff
	}
	if s.MaxBackoff < s.MinBackoff {
		s.MaxBackoff = s.MinBackoff
	}
	if s.MaxConcurrent <= 0 {
		s.MaxConcurrent = DefaultMaxConcurrent
	}
	return s
}

// Obligations are what the policy's decision asks of the calls; they are applied when
// the worker builds the calls.
type Obligations struct {
	Reasons        []string `json:"reasons,omitempty"`
	DropAttributes []string `json:"drop_attributes,omitempty"`
	DropMembers    []string `json:"drop_members,omitempty"`
	Deactivate     bool     `json:"deactivate,omitempty"`
	// Skip: the policy skipped the change (out of scope). It was queued behind its
	// resource's earlier changes only so that the account's mark (missed a change) is set
	// after them: nothing is sent.
	Skip bool `json:"skip,omitempty"`
	// PolicyHash names the policy that decided ("" without one).
	PolicyHash string `json:"policy_hash,omitempty"`
}

// Task is one change to deliver: what Entra asked, what the directory made of it, the
// policy's obligations, and the state of its delivery.
type Task struct {
	// Seq is the task's place in the outbox (not stored in its data).
	Seq uint64 `json:"-"`

	RequestID string          `json:"request_id"`
	Client    string          `json:"client,omitempty"`
	Action    change.Action   `json:"action"`
	Type      string          `json:"resource_type"`
	ID        string          `json:"scim_id"`
	Subject   string          `json:"subject,omitempty"`
	Queued    time.Time       `json:"queued"`
	Events    []change.Event  `json:"events,omitempty"`
	Changed   []string        `json:"changed,omitempty"`
	Before    json.RawMessage `json:"before,omitempty"` // the resource before the change (null on create)
	After     json.RawMessage `json:"after,omitempty"`  // after it (null on delete)
	Added     []string        `json:"added,omitempty"`  // member ids the change adds
	Removed   []string        `json:"removed,omitempty"`
	// Refs are other resources (members added, the manager) whose earlier tasks this one
	// waits for: a membership is not delivered before the member's create.
	Refs []string `json:"refs,omitempty"`
	// WaitsFor are other resources with tasks queued before this one that free, in the
	// app, the name this change takes (a userName or a group's displayName: a deleted
	// resource, or one renamed away from it): the app holds the name for their account
	// until those tasks reach it (an app refuses a second account with a login it has, or
	// a lookup by the login finds the old account). The task goes after every task of
	// theirs queued before it, and is held behind their dead letters.
	WaitsFor    []string    `json:"waits_for,omitempty"`
	Obligations Obligations `json:"obligations"`
	// Urgent: a deprovisioning queued behind earlier changes of its resource; it and they
	// go outside the schedule (losing access does not wait for a batch or a window).
	Urgent bool `json:"urgent,omitempty"`

	// Delivery state.
	Attempts int `json:"attempts,omitempty"`
	// Failing is when its first failed attempt was (since an operator's retry, which
	// clears it): MaxAge counts from then, not from when it was queued, which may be long
	// before (a schedule's window, a pause).
	Failing     time.Time `json:"failing,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastStatus  int       `json:"last_status,omitempty"` // the app's status of the last failed attempt (0: no answer)
	Dead        bool      `json:"dead,omitempty"`
}

// Encode is the task as the outbox stores it.
func (t *Task) Encode() ([]byte, error) { return json.Marshal(t) }

// Decode reads a task the outbox stored at seq.
func Decode(seq uint64, data []byte) (*Task, error) {
	t := &Task{}
	if err := json.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("decoding outbox task %d: %w", seq, err)
	}
	t.Seq = seq
	return t, nil
}

// Failure is how one delivery attempt failed.
type Failure struct {
	// Rejected: the app refused the change itself (400, 409, 422, its own not-found on an
	// update), or it cannot be built: retrying cannot help.
	Rejected bool
	// Status is the app's answer (0: none, e.g. a refused connection).
	Status int
	// RetryAfter is what the app asked to wait (0: nothing said).
	RetryAfter time.Duration
	// Detail says what happened, for the task and the journal.
	Detail string
	// App: the app was called and failed (not the gateway's own failure, such as its
	// storage): the worker holds back the target's other tasks too.
	App bool
}

// Fail records a failed attempt on t at now: a rejection makes it a dead letter at once;
// an unavailable app makes it wait (exponential backoff from the first attempt, with
// jitter, and at least the app's Retry-After) until it has failed for MaxAge (since its
// first failed attempt: a change that waited for its schedule's window is retried as long
// as one that went at once), when it becomes a dead letter. It reports whether t is now
// dead.
func (s Settings) Fail(t *Task, f Failure, now time.Time) bool {
	if t.Failing.IsZero() {
		t.Failing = now
	}
	t.Attempts++
	t.LastError, t.LastStatus = f.Detail, f.Status
	if f.Rejected || now.Sub(t.Failing) >= s.MaxAge {
		t.Dead, t.NextAttempt = true, time.Time{}
		return true
	}
	t.NextAttempt = now.Add(s.Backoff(t.Attempts, f.RetryAfter))
	return false
}

// Backoff is the wait before attempt n+1: MinBackoff doubled per attempt up to MaxBackoff,
// half of it random (jitter, so that tasks that failed together do not return together),
// and never less than retryAfter.
func (s Settings) Backoff(n int, retryAfter time.Duration) time.Duration {
	d := s.MinBackoff
	for i := 1; i < n && d < s.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	return max(d, retryAfter)
}

// Coalescible reports whether t may be delivered together with first, the task before it
// of the same resource: first was never attempted (after a failed attempt, the app may
// hold part of it, and a rejection must name the change the app refused: it goes alone),
// and both have the same resource type and obligations (the policy's apply per change).
func Coalescible(first, t *Task) bool {
	o, p := first.Obligations, t.Obligations
	return first.Attempts == 0 && first.Type == t.Type && o.Deactivate == p.Deactivate && o.Skip == p.Skip &&
		slices.Equal(o.DropAttributes, p.DropAttributes) && slices.Equal(o.DropMembers, p.DropMembers)
}
