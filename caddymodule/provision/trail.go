package provision

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// storageRetryAfter is what a client is told to wait after a storage or journal failure.
const storageRetryAfter = 30 * time.Second

// unavailableRetryAfter is what a client is told to wait when a shared store has lost its
// quorum: etcd elects a new leader within seconds.
const unavailableRetryAfter = 5 * time.Second

// Trail is what one request contributes to its journal record. The HTTP layer names the
// request (action, resource, filter) for reads and for requests rejected before they reach
// the engine; the engine fills in the rest as a change goes through its steps. Record is
// the one place a request's record is built.
type Trail struct {
	Action  change.Action
	Type    string
	ID      string
	Subject string
	Filter  string // a list or search filter (the journal keeps its hash)

	part *journal.Part // one part of a change applied in parts (parts.go)

	events   []change.Event
	changes  []journal.Change
	target   string
	nativeID string
	backend  *journal.BackendCall // the last native call, the one that decided the outcome
	calls    []journal.BackendCall
	decision *journal.Decision
}

// noteCalls records the native calls of the change (the last one decided the outcome).
func (t *Trail) noteCalls(calls []journal.BackendCall) {
	t.calls, t.backend = calls, nil
	if len(calls) > 0 {
		last := calls[len(calls)-1]
		t.backend = &last
	}
}

// fill copies a decided plan into the trail.
func (t *Trail) fill(p *plan) {
	t.ID = p.id
	doc := p.after
	if doc == nil {
		doc = p.before
	}
	t.Subject = SubjectOf(p.typ, doc)
	t.changes = slices.Concat(p.changes, memberChanges(p.added, p.removed))
	t.events = p.events
	t.nativeID = p.nativeID
}

// scrub takes out of text (a SCIM error's detail, from an app's answer or a policy) the
// values of the change that the journal redacts: a password that the app echoed in its
// error must not reach Entra's provisioning logs, the journal or the gateway's logs.
func (e *Engine) scrub(t *Trail, text string) string {
	return e.journal.Scrub(t.changes, text)
}

// record builds the journal record of a request with the given outcome and status.
func (e *Engine) record(req Request, t *Trail, outcome change.Outcome, status int, detail string) *journal.Record {
	rec := &journal.Record{
		RequestID:    req.ID,
		Part:         t.part,
		Client:       req.Client,
		Action:       t.Action,
		ResourceType: t.Type,
		SCIMID:       t.ID,
		Subject:      t.Subject,
		Events:       t.events,
		Outcome:      outcome,
		Status:       status,
		Changes:      t.changes,
		Error:        detail,
		Target:       t.target,
		NativeID:     t.nativeID,
		Backend:      t.backend,
		Calls:        t.calls,
		Decision:     t.decision,
	}
	if t.Filter != "" {
		rec.FilterHash = e.journal.HashFilter(t.Filter)
	}
	return rec
}

// Read journals a successful read that the trail names (reads are journaled only when the
// configuration asks; see JournalsReads).
func (e *Engine) Read(req Request, t *Trail) error {
	rec := e.record(req, t, change.Applied, http.StatusOK, "")
	return e.store.Update(func(tx *store.Tx) error { return e.journal.Append(tx.KV(), rec) })
}

// Fail answers a request that failed outside Apply (a body that does not parse, a read the
// store could not serve): err becomes the SCIM error it means, journaled when t names the
// request (nil: not journaled, e.g. a read while reads are not journaled).
func (e *Engine) Fail(req Request, t *Trail, err error) *Result {
	return e.fail(req, t, err)
}

// fail maps err to the SCIM error it means and journals the request as rejected, denied or
// failed. A rejection that cannot be journaled is answered 503 instead, so that no outcome
// goes unrecorded.
func (e *Engine) fail(req Request, t *Trail, err error) *Result {
	se, retryAfter := e.scimError(req, t, err)
	if t != nil {
		if d := e.scrub(t, se.Detail); d != se.Detail {
			se = &scim.Error{Status: se.Status, ScimType: se.ScimType, Detail: d}
		}
	}
	res := &Result{Status: se.Status, Err: se, RetryAfter: retryAfter}
	if t == nil {
		return res
	}
	outcome := change.Rejected
	switch {
	case se.Status >= 500:
		outcome = change.Failed
	case se.Status == http.StatusForbidden && t.decision != nil && !t.decision.Allow:
		outcome = change.Denied
	}
	if e.fleet && errors.Is(err, kv.ErrUnavailable) {
		// The store (etcd) just failed this request: journaling the failure would wait
		// out its request_timeout again, almost surely in vain, before Entra hears the
		// 503. Nothing is lost: an intent this request may have stored is closed by its
		// gateway once the store takes writes again (intentEnded).
		e.logger.Warn("request failed on the unavailable store; not journaled",
			zap.String("request_id", req.ID), zap.Int("status", se.Status))
		return res
	}
	rec := e.record(req, t, outcome, se.Status, se.Detail)
	prepared, jerr := e.journal.Prepare(rec)
	if jerr == nil {
		jerr = e.store.Update(func(tx *store.Tx) error { return e.journal.AppendPrepared(tx.KV(), prepared) })
	}
	if jerr == nil {
		res.Record = rec
		return res
	}
	e.logger.Error("journaling a rejected request failed", zap.String("request_id", req.ID), zap.Error(jerr))
	if se.Status >= 500 {
		return res
	}
	se = scim.Errorf(http.StatusServiceUnavailable, "", "the gateway could not record the request in its audit journal; retry later")
	return &Result{Status: se.Status, Err: se, RetryAfter: storageRetryAfter}
}

// scimError maps an error to the SCIM error it means and the Retry-After to send with it.
// Anything unexpected is a 503 with Retry-After (logged with the request, never with its
// body): Entra retries those, where a 500 would count toward quarantine.
func (e *Engine) scimError(req Request, t *Trail, err error) (*scim.Error, time.Duration) {
	var (
		undecided *Undecided
		denied    *Denied
		native    *nativeError
		se        *scim.Error
		ue        *store.UniqueError
		taken     *store.NativeIDTakenError
	)
	switch {
	case errors.As(err, &undecided):
		return undecided.SCIMError(), undecidedRetryAfter
	case errors.As(err, &denied):
		return denied.SCIMError(), 0
	case errors.As(err, &native):
		return native.scim, native.retryAfter
	case errors.As(err, &se):
		return se, 0
	case errors.As(err, &ue):
		return scim.Conflict("%s %q is already used by %s %s; %s values must be unique (case-insensitively)", ue.Attr, ue.Value, ue.Type, ue.OwnerID, ue.Attr), 0
	case errors.As(err, &taken):
		// The app answered with an id it had already given another resource: nothing is
		// committed (two directory entries must never drive one account), and only an
		// operator can tell which mapping is stale.
		e.logger.Warn("the app reused a native id", zap.String("request_id", req.ID), zap.String("target", taken.Target),
			zap.String("native_id", taken.NativeID), zap.String("mapped_to", taken.Owner))
		return scim.Errorf(http.StatusServiceUnavailable, "", "%s", takenDetail(taken)), storageRetryAfter
	case errors.Is(err, store.ErrNotFound):
		return scim.NotFound("resource not found"), 0
	case (errors.Is(err, kv.ErrUnavailable) || errors.Is(err, kv.ErrConflict)) && t != nil && len(t.calls) > 0:
		// The calls were made, their outcome could not be stored: Entra's retry finds
		// what they did (a create adopts the account they made).
		e.logger.Warn("store unavailable after the change reached the app", zap.String("request_id", req.ID),
			zap.String("target", t.target), zap.Error(err))
		return scim.Errorf(http.StatusServiceUnavailable, "", "the change reached %s but the gateway's store is unavailable (%v), so its outcome is not stored; retry later (the retry takes up what the change did)", t.target, err), unavailableRetryAfter
	case errors.Is(err, kv.ErrUnavailable), errors.Is(err, kv.ErrConflict):
		// A shared store (etcd) without quorum, or too many gateways writing the same
		// directory at once: nothing was acknowledged, and Entra retries a 503.
		e.logger.Warn("store unavailable", zap.String("request_id", req.ID), zap.Error(err))
		return scim.Errorf(http.StatusServiceUnavailable, "", "the gateway's store is unavailable (%v); nothing was changed; retry later", err), unavailableRetryAfter
	case errors.Is(err, kv.ErrTxnTooLarge):
		return scim.Errorf(http.StatusRequestEntityTooLarge, "", "the change is too large for the gateway's store to commit at once (%v); send it in smaller requests", err), 0
	case errors.Is(err, store.ErrInvalidKey):
		// An id or name no resource can have (the HTTP layer refuses most before): the
		// client's data, not the gateway's storage.
		return scim.BadRequest(scim.TypeInvalidValue, "%s", strings.TrimPrefix(err.Error(), store.ErrInvalidKey.Error()+": ")), 0
	}
	fields := []zap.Field{zap.String("request_id", req.ID), zap.String("client", req.Client), zap.Error(err)}
	if t != nil {
		fields = append(fields, zap.String("action", string(t.Action)), zap.String("resource_type", t.Type), zap.String("scim_id", t.ID))
	}
	e.logger.Error("scim request failed", fields...)
	return scim.Errorf(http.StatusServiceUnavailable, "", "the gateway could not complete the request (storage error); retry later"), storageRetryAfter
}

// takenDetail says what a native id the app answered with that the directory already maps
// to another resource (store.NativeIDTakenError) means, and what to do.
func takenDetail(taken *store.NativeIDTakenError) string {
	return fmt.Sprintf("the app answered with native id %q, which the gateway already maps to resource %s of target %s: the app reused an id (did it lose its data?) or merged two accounts; the directory is unchanged; reconcile the target or remove the stale mapping, then retry", taken.NativeID, taken.Owner, taken.Target)
}

// journalDecision is what the journal records of a decision: the verdict, its reasons,
// what the obligations dropped, whether it deactivates instead, and which policy (its
// content hash) decided.
func (e *Engine) journalDecision(d policy.Decision, droppedAttrs, droppedMembers []string) *journal.Decision {
	reasons := boundReasons(d.Reasons)
	if len(droppedMembers) > maxListedMembers {
		// The record must fit the journal: the list is cut, and a reason says so.
		reasons = append(slices.Clone(reasons), fmt.Sprintf("dropped_members lists %d of the %d members the policy dropped", maxListedMembers, len(droppedMembers)))
		droppedMembers = droppedMembers[:maxListedMembers]
	}
	return &journal.Decision{
		Allow:             d.Allow,
		Skip:              d.Allow && d.Skip,
		Reasons:           reasons,
		DroppedAttributes: droppedAttrs,
		DroppedMembers:    droppedMembers,
		Deactivate:        d.Allow && !d.Skip && d.Deactivate,
		PolicyHash:        e.PolicyHash(),
	}
}

// maxJournaledReason and maxJournaledReasons bound the text of a decision's reasons in its
// journal record, each and together. The policy writes them, and may echo data into them:
// unbounded, a record could pass the journal's size limit, and every such change, even a
// denial, would fail as a storage error for as long as Entra retried it. (The 403's detail
// is bounded apart, by maxDenyDetail.)
const (
	maxJournaledReason  = 4 << 10
	maxJournaledReasons = 64 << 10
)

// boundReasons returns reasons cut to maxJournaledReason each and maxJournaledReasons in
// all, with a last reason saying what was left out; reasons themselves when they fit.
func boundReasons(reasons []string) []string {
	total := 0
	for _, r := range reasons {
		total += len(r)
	}
	if total <= maxJournaledReasons && !slices.ContainsFunc(reasons, func(r string) bool { return len(r) > maxJournaledReason }) {
		return reasons
	}
	out := make([]string, 0, len(reasons)+1)
	kept, cut, omitted := 0, 0, 0
	for _, r := range reasons {
		if kept >= maxJournaledReasons {
			omitted++
			continue
		}
		if n := min(maxJournaledReason, maxJournaledReasons-kept); len(r) > n {
			r = strings.ToValidUTF8(r[:n], "") + "…"
			cut++
		}
		kept += len(r)
		out = append(out, r)
	}
	note := fmt.Sprintf("the policy's reasons hold %d bytes: %d reason(s) were cut to %d bytes and %d left out of the journal", total, cut, maxJournaledReason, omitted)
	return append(out, note)
}
