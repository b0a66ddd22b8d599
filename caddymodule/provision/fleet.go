package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/fleet"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Intents in a fleet. On a store only this process opens, an intent without an outcome is
// a crash of this process, found when the store opens (recover). On a shared store it may
// also be a change another gateway is making right now, so a gateway must tell the two
// apart without asking the other: every gateway stops a change's calls by a deadline (its
// flow budget, from the target's client settings), so an intent older than that budget
// plus a margin (the intent's bound) belongs to a gateway that died or gave up. Then:
//
//   - recovery closes only stale intents, at start and every half bound after (a gateway
//     that dies while the others run is recovered by them), each in a transaction that
//     first checks the intent is still open, so that an outcome or another gateway's
//     recovery committed meanwhile wins and nothing is closed twice;
//   - a create of a name with an open create intent by another request waits for it (503
//     with Retry-After until the intent is closed or stale) rather than race it, and adopts
//     when the intent is stale: the app may hold the account its gateway made before it
//     died, and the lookup finds it instead of creating a second one;
//   - the transaction that journals an intent checks again that no other request claimed
//     the same calls (a create of the name, or the same queued change's delivery), so of
//     two gateways that decided at once one calls the app and the other backs off;
//   - a queued change whose delivery another gateway is making waits, and one whose
//     delivering gateway died is taken over once that delivery's intent is stale.
//
// What a gateway alone does is unchanged: none of this runs without Config.SharedStore.

const (
	// flowCalls is how many calls at their slowest (legacy.Client.MaxCallDuration) a
	// change's flow may take on a shared store before its gateway stops it. A healthy app
	// answers thousands of calls in that time; a flow cut short fails with what it made
	// kept for its retry (progress, or the create listed for adoption).
	flowCalls = 4
	// intentMargin is added to the flow budget to make an intent's bound: the commit of the
	// outcome after the last call, a call sent just before the deadline reaching the app,
	// and the clocks of the gateways differing (the intent's time is its gateway's clock).
	intentMargin = 30 * time.Second
	// sweepLimit bounds the intents one periodic recovery pass closes; the next pass
	// continues.
	sweepLimit = 256
	// minSweepEvery keeps a tiny bound (a test target's) from spinning the sweep.
	minSweepEvery = time.Second
)

// flowBudget is how long a change's calls to t may run on a shared store.
func (t *Target) flowBudget() time.Duration {
	return flowCalls * t.Client.MaxCallDuration()
}

// intentBound is how long an intent of the engine's target stays open at most while its
// gateway lives; an older one is stale.
func (e *Engine) intentBound() time.Duration {
	return e.target.flowBudget() + intentMargin
}

// flowContext is the context of a change's calls: on a shared store it ends at the flow
// budget, taken before the intent is journaled (so the deadline falls within the budget of
// the intent's time), which is what lets other gateways tell a stale intent from a live
// one. A store only this process opens keeps the request's context.
func (e *Engine) flowContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if !e.fleet {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, e.target.flowBudget())
}

// staleIntent reports whether intent in is older than the bound at now, and how long it
// has to go otherwise. An intent without a time is stale.
func (e *Engine) staleIntent(in *journal.Record, now time.Time) (bool, time.Duration) {
	if in.Time.IsZero() || e.ownerGone(in) {
		return true, 0
	}
	left := in.Time.Add(e.intentBound()).Sub(now)
	if left > 0 && in.Owner != "" {
		// Its gateway lives now; if it dies, its lease ends within the lease's TTL and
		// the intent is stale then: ask again soon rather than at the time bound.
		left = min(left, ownerRecheck)
	}
	return left <= 0, left
}

// ownerRecheck is how soon a change waiting for a live gateway's intent asks again.
const ownerRecheck = 5 * time.Second

// ownIntent names this gateway the owner of an intent it journals on a shared store (its
// etcd lease), so that other gateways can tell the intent of a dead gateway from a live
// one's at once, by the lease, instead of waiting for the intent's time bound.
func (e *Engine) ownIntent(ctx context.Context, rec *journal.Record) error {
	if !e.fleet || e.shared.elector == nil {
		return nil
	}
	owner, err := e.shared.elector.Owner(ctx)
	if err != nil {
		return fmt.Errorf("joining the fleet (an etcd lease): %w (%w)", kv.ErrUnavailable, err)
	}
	rec.Owner = owner
	return nil
}

// ownerGuard returns the context of the calls of an intent that names owner: on a shared
// store they go only while this gateway still holds that lease (fleet.OwnerGuard; the
// legacy client checks right before each call). Other gateways take an intent whose lease
// is gone over at once (ownerGone): a gateway paused or cut off from etcd past its lease
// between its intent and its calls would otherwise make them after another gateway looked
// the account up and made it, and the app would hold two.
func (e *Engine) ownerGuard(ctx context.Context, owner string) context.Context {
	if !e.fleet || e.shared.elector == nil {
		return ctx
	}
	return fleet.OwnerGuard(ctx, e.shared.elector, owner)
}

// ownerGone reports whether the gateway that journaled intent in is known dead: its lease
// is gone. Unknown (no owner, our own, etcd unreachable): false, and the time bound decides.
func (e *Engine) ownerGone(in *journal.Record) bool {
	el := e.shared.elector
	if !e.fleet || el == nil || in.Owner == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), ownerCheckTimeout)
	defer cancel()
	if mine, err := el.Owner(ctx); err != nil || mine == in.Owner {
		return false
	}
	alive, err := el.Alive(ctx, in.Owner)
	return err == nil && !alive
}

// ownerCheckTimeout bounds asking etcd about another gateway's lease.
const ownerCheckTimeout = 2 * time.Second

// createInFlight looks, in a create's read transaction on a shared store, for an open
// create intent of the same target, resource type and name by another request. None: nil,
// nil. A stale one: it is returned, for the create to close it (closeStaleCreate) and
// adopt. A live one: an error answering 503 with Retry-After (until the intent goes stale),
// so that Entra's retry comes back when the first attempt has ended one way or the other
// instead of creating a second account beside it. Its cost is the target's open intents,
// one read each; nothing on a store only this process opens.
func (e *Engine) createInFlight(tx *store.Tx, j *job, p *plan) (*journal.Record, error) {
	if !e.fleet {
		return nil, nil
	}
	in, err := e.otherCreate(tx, j, p)
	if err != nil || in == nil {
		return nil, err
	}
	stale, left := e.staleIntent(in, e.now())
	if stale {
		return in, nil
	}
	return nil, createBusy(SubjectOf(p.typ, p.after), left)
}

// otherCreate returns an open create intent of p's name in the target by a request other
// than j's (nil: none).
func (e *Engine) otherCreate(tx *store.Tx, j *job, p *plan) (*journal.Record, error) {
	name := SubjectOf(p.typ, p.after)
	if name == "" {
		return nil, nil
	}
	open, err := e.journal.OpenIntentsMatching(tx.KV(), e.target.Name,
		journal.IntentFilter{Action: change.ActionCreate, ResourceType: p.typ, Subject: name, NotRequestID: j.req.ID})
	if err != nil || len(open) == 0 {
		return nil, err
	}
	return &open[0], nil
}

// claimIntent checks, in the transaction that journals a change's intent on a shared
// store, that no other gateway has claimed the same calls since the change was decided, or
// calls that would race them at the app: a create of the same name by another request, or
// the same queued change (its request) being delivered; another request's change of the same
// resource still in flight (each gateway locks a resource for itself only: the app could
// apply the two in one order and the directory commit them in the other); a create of, or a
// rename to, the name this change gives (the app would get two accounts of one name). The
// store commits the check and the intent together (serializably on etcd), so of two
// gateways racing for the same calls one journals its intent and the other backs off
// (inFlight) before any call. It also refuses a change decided on a resource that another
// gateway has changed since (the calls would carry what the resource was), and a name
// another gateway's change has taken since (409, as the decision would have answered).
func (e *Engine) claimIntent(tx *store.Tx, j *job, p *plan) error {
	if !e.fleet {
		return nil
	}
	if j.trail.Action == change.ActionDeliver {
		in, err := e.journal.OpenIntent(tx.KV(), e.target.Name, j.req.ID)
		if err != nil || in == nil {
			return err
		}
		_, left := e.staleIntent(in, e.now())
		return &inFlight{&nativeError{
			scim:       scim.Errorf(http.StatusServiceUnavailable, "", "a delivery of request %s is in progress through another gateway", j.req.ID),
			retryAfter: max(left, time.Second),
		}}
	}
	if p.before != nil {
		check := e.resourceInFlight
		if membersOnly(p.events) {
			check = e.callsInFlight // the resource's other changes go side by side
		}
		if err := check(tx, j, p); err != nil {
			return err
		}
		if err := membersMoved(tx, p, false); err != nil {
			return err
		}
	}
	name := renamedTo(p, nil)
	if p.before == nil && p.after != nil {
		name = SubjectOf(p.typ, p.after)
	}
	if name == "" {
		return nil
	}
	if err := checkUnique(tx, p.typ, p.id, name); err != nil {
		return err
	}
	if p.before == nil {
		if in, err := e.otherCreate(tx, j, p); err != nil || in != nil {
			if err != nil {
				return err
			}
			_, left := e.staleIntent(in, e.now())
			return createBusy(name, left)
		}
	}
	// A rename to the name (or, for a rename, a create of it) in flight.
	open, err := e.journal.OpenIntentsMatching(tx.KV(), e.target.Name,
		journal.IntentFilter{ResourceType: p.typ, Subject: name, NotRequestID: j.req.ID})
	if err != nil {
		return err
	}
	for i := range open {
		if open[i].SCIMID != p.id {
			_, left := e.staleIntent(&open[i], e.now())
			return createBusy(name, left)
		}
	}
	return nil
}

// membersOnly reports whether events change only a group's members: such changes of one
// group through several gateways touch different edges and calls, and go at once.
func membersOnly(events []change.Event) bool {
	for _, ev := range events {
		if ev != change.AddMembers && ev != change.RemoveMembers {
			return false
		}
	}
	return len(events) > 0
}

// resourceInFlight refuses, in p's claim on a shared store, a change of a resource that
// another request is changing now through another gateway (a live intent of the resource
// whose calls are not all member changes; a dead gateway's is superseded), or that another
// gateway changed after p was decided (other than in its members): 503 with Retry-After,
// before any call, and Entra's retry is decided on the resource as it is then.
func (e *Engine) resourceInFlight(tx *store.Tx, j *job, p *plan) error {
	if err := e.callsInFlight(tx, j, p); err != nil {
		return err
	}
	cur, err := tx.Get(p.typ, p.id)
	if errors.Is(err, store.ErrNotFound) {
		return scim.NotFound("%s %s not found", p.typ, p.id)
	}
	if err != nil {
		return err
	}
	if cur.Version != p.version && !bytes.Equal(cur.Doc, p.beforeDoc) {
		if err := checkIfMatch(j.op.IfMatch, cur.Version); err != nil {
			return err // 412: the client's precondition no longer holds
		}
		return &inFlight{&nativeError{
			scim: scim.Errorf(http.StatusServiceUnavailable, "", "%s %s was changed through another gateway while this change was decided; retry",
				p.typ, p.id),
			retryAfter: time.Second,
		}}
	}
	return nil
}

// callsInFlight refuses (inFlight: 503 with Retry-After) a change of resource p while
// another request's calls for it are in flight through another gateway (a live intent of
// the resource): any such calls, for a change of more than its members; for a change of a
// group's members, the calls of a change of one of the members it names, or of the group's
// delete. Nothing on a store only this gateway writes (its locks order the changes).
//
// A group's member changes through several gateways go side by side, as through one, but
// two changes of one member must not overtake each other, as they cannot through one
// gateway (each member is locked): decided while another gateway's add of the member is in
// flight, a remove finds no member, makes no call and answers 204, and the add then
// commits; or it removes the member in the directory when its commit decides again on the
// add, while the app keeps it. Each intent names the members its calls change (its
// changes), and a change that names one of them waits for it instead.
func (e *Engine) callsInFlight(tx *store.Tx, j *job, p *plan) error {
	if !e.fleet || p.before == nil {
		return nil
	}
	whole := !membersOnly(p.events) && !(p.same && p.delta != nil)
	named, all := namedMembers(p)
	open, err := e.journal.OpenIntentsMatching(tx.KV(), e.target.Name,
		journal.IntentFilter{ResourceType: p.typ, SCIMID: p.id, NotRequestID: j.req.ID})
	if err != nil {
		return err
	}
	for i := range open {
		in := &open[i]
		var busy string
		switch {
		case !membersOnly(in.Events) && (whole || endsAccount(in)):
			busy = fmt.Sprintf("a change of %s %s is in progress through another gateway; retry later", p.typ, p.id)
		case all || len(named) > 0:
			if m, ok := sharedMember(in, named, all); ok && m != "" {
				busy = fmt.Sprintf("a change of member %s of %s %s is in progress through another gateway; retry later", m, p.typ, p.id)
			} else if ok {
				busy = fmt.Sprintf("a change of members of %s %s is in progress through another gateway; retry later", p.typ, p.id)
			}
		}
		if busy == "" {
			continue
		}
		if stale, left := e.staleIntent(in, e.now()); !stale {
			return &inFlight{&nativeError{
				scim:       scim.Errorf(http.StatusServiceUnavailable, "", "%s", busy),
				retryAfter: max(left.Round(time.Second), time.Second),
			}}
		}
	}
	return nil
}

// endsAccount reports whether intent in makes or deletes its resource's account: a member
// call of the resource made alongside would meet no account, or one about to go.
func endsAccount(in *journal.Record) bool {
	return in.Action == change.ActionDelete || change.Has(in.Events, change.Delete) || change.Has(in.Events, change.Create)
}

// namedMembers returns the members p's request names (adds or removes, whether or not
// that changes an edge: a remove of a member that is not one names it too); all when it
// names every member (a remove of all, a replace of the list).
func namedMembers(p *plan) (ids map[string]bool, all bool) {
	d := p.delta
	if d == nil {
		return nil, false
	}
	ids = make(map[string]bool, len(d.Add)+len(d.Remove))
	for _, m := range d.Add {
		ids[m.Value] = true
	}
	for _, id := range d.Remove {
		ids[id] = true
	}
	return ids, d.RemoveAll
}

// sharedMember returns a member whose edge intent in changes (its "members" changes) that
// named holds (any, with all). A list the record could not hold whole (a summary, or left
// out) may hold any member: ok without a member.
func sharedMember(in *journal.Record, named map[string]bool, all bool) (string, bool) {
	for _, c := range in.Changes {
		if c.Path != "members" {
			continue
		}
		var ids []string
		if c.Redacted || c.Truncated || json.Unmarshal(c.Value, &ids) != nil {
			return "", true
		}
		for _, id := range ids {
			if all || named[id] {
				return id, true
			}
		}
	}
	return "", false
}

// membersMoved refuses a change of a group's members when, since it was decided, another
// gateway changed one of the member edges it names (other member changes of the group
// commit beside it): in its claim, before any call (the calls would carry what the group
// was: 503, and Entra's retry is decided on the group as it is); in its commit after the
// calls (sent), where deciding again would commit edges the calls did not change: 503,
// the directory keeps the other change, and Entra's retry applies this one on top of it.
func membersMoved(tx *store.Tx, p *plan, sent bool) error {
	if p.before == nil || p.delta == nil {
		return nil
	}
	if v, err := tx.Version(p.typ, p.id); err != nil || v == p.version {
		return nil // gone: the commit answers 404
	}
	added, removed, err := memberChangesOf(tx, p.id, p.delta)
	if err != nil {
		return err
	}
	if slices.Equal(added, p.added) && slices.Equal(removed, p.removed) {
		return nil
	}
	why := "a member this change names was changed through another gateway while it was decided; retry"
	if sent {
		why = "a member this change names was changed through another gateway while this change's calls were made; the directory keeps that change: retry to apply this one on top of it"
	}
	ne := &nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "", "%s %s: %s", p.typ, p.id, why), retryAfter: time.Second}
	if sent {
		return ne
	}
	return &inFlight{ne}
}

// overtaken refuses, in the commit of a change whose calls were made on a shared store, to
// commit it on top of a change another gateway made to the resource since it was decided
// (other than in its members): that gateway went ahead because this one's intent had lost
// its owner (this gateway paused or cut off from etcd past its lease, see ownerGone), so its
// calls reached the app after these, and the directory, deciding this change again on top
// of it, would hold the opposite order. The change is answered 503 with Retry-After
// instead, the directory keeps the other gateway's change (the app's last), and Entra's
// retry applies this one on top of it in both. A resource deleted meanwhile is left to the
// commit (404, as in the app).
func (e *Engine) overtaken(tx *store.Tx, p *plan) error {
	if err := membersMoved(tx, p, true); err != nil {
		return err
	}
	if p.before == nil || membersOnly(p.events) {
		return nil
	}
	cur, err := tx.Get(p.typ, p.id)
	if err != nil || cur.Version == p.version || bytes.Equal(cur.Doc, p.beforeDoc) {
		return nil
	}
	return &nativeError{
		scim: scim.Errorf(http.StatusServiceUnavailable, "",
			"%s %s was changed through another gateway while this change's calls were made (this gateway's fleet lease lapsed); the directory keeps that change: retry to apply this one on top of it",
			p.typ, p.id),
		retryAfter: time.Second,
	}
}

// inFlight is the error of a change whose calls another request is making: 503 with
// Retry-After for Entra, a later attempt without a record for a queued change (a record of
// its request would close the other gateway's intent).
type inFlight struct{ ne *nativeError }

func (e *inFlight) Error() string { return e.ne.Error() }
func (e *inFlight) Unwrap() error { return e.ne }

// createBusy is the answer to a create of name while another request's create of it is in
// flight, for left more at most.
func createBusy(name string, left time.Duration) error {
	return &inFlight{&nativeError{
		scim:       scim.Errorf(http.StatusServiceUnavailable, "", "a create of %s is in progress through another request; retry later", name),
		retryAfter: max(left.Round(time.Second), time.Second),
	}}
}

// inFlightWait reports whether err says another gateway is making the change's calls, and
// how long to wait.
func inFlightWait(err error) (time.Duration, bool) {
	var busy *inFlight
	if errors.As(err, &busy) {
		return busy.ne.retryAfter, true
	}
	return 0, false
}

// takeOverDelivery looks, on a shared store, before a queued change's delivery, for an
// open intent of its request: another gateway delivering it now (the attempt waits until
// that intent goes stale, without a record of its own), or a gateway that died delivering
// it, whose intent is closed (a create listed for adoption) before the plan is read again,
// so that this attempt looks the account up instead of creating a second one.
func (e *Engine) takeOverDelivery(ctx context.Context, task *outbox.Task, j *job, p *plan) (*job, *plan, time.Duration, error) {
	var in *journal.Record
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		in, err = e.journal.OpenIntent(tx.KV(), e.target.Name, j.req.ID)
		return err
	})
	if err != nil || in == nil {
		return j, p, 0, err
	}
	now := e.now()
	if stale, left := e.staleIntent(in, now); !stale {
		return j, p, max(left, time.Second), nil
	}
	if _, err := e.closeIntent(in, now); err != nil {
		return j, p, 0, err
	}
	j, p, err = e.taskPlan(ctx, task)
	return j, p, 0, err
}

// closeStaleCreate closes, before a create adopts, the stale intent createInFlight found:
// the create's retry does what recovery would have done (journal the intent's end, list
// the name for adoption), so the journal shows why the account was looked up.
func (e *Engine) closeStaleCreate(in *journal.Record) error {
	_, err := e.closeIntent(in, e.now())
	return err
}

// sweeper runs recovery of a target's stale intents periodically on a shared store: a
// gateway that dies while others run leaves intents no start would find.
type sweeper struct {
	eng  atomic.Pointer[Engine] // the configuration built last (a reload hands it over)
	kick chan struct{}          // a pass now (tests)
	stop context.CancelFunc
	done chan struct{}

	// ended holds the request ids of this gateway's intents whose calls are over but whose
	// outcome could not be committed (the store failed after the calls), with when to give
	// up on each (the intent's bound: other gateways close it from then on). They are
	// closed every endedRetry until the store takes it.
	endedMu   sync.Mutex
	ended     map[string]endedIntent
	endedKick chan struct{}
}

// endedRetry is how often the sweeper tries again to close this gateway's ended intents
// while the store refuses: once etcd is back, they close within it.
const endedRetry = time.Second

// intentEnded tells the sweeper of e's target that request requestID's intent, journaled
// by this gateway, has no outcome and no calls to come: its commit failed after the calls
// (etcd lost its quorum, or the gateway was cut off). Other gateways see the intent of a
// live gateway and hold its resource (a create's retry answers 503 with Retry-After) until
// the intent's time bound, minutes; closing it at once, as recovery would, lets Entra's
// retry go on (a create's adopts the account the calls made) once the store is back.
func (e *Engine) intentEnded(requestID, why string) {
	if !e.fleet || requestID == "" {
		return
	}
	e.shared.sweepMu.Lock()
	w := e.shared.sweepers[e.target.Name]
	e.shared.sweepMu.Unlock()
	if w == nil {
		return
	}
	w.endedMu.Lock()
	if w.ended == nil {
		w.ended = map[string]endedIntent{}
	}
	w.ended[requestID] = endedIntent{until: e.now().Add(e.intentBound()), why: why}
	w.endedMu.Unlock()
	select {
	case w.endedKick <- struct{}{}:
	default:
	}
}

// endedIntent is an intent of this gateway left for its sweeper to close: until the
// intent's time bound (other gateways' recovery closes it after), with why it has no outcome.
type endedIntent struct {
	until time.Time
	why   string
}

// The reasons an ended intent is closed with.
const (
	endedAfterCalls  = "its gateway could not store the outcome (the store failed after the calls)"
	endedBeforeCalls = "its own commit failed (the store was unavailable); no call was made"
)

// closeEnded closes the ended intents it can and reports whether some remain.
func (w *sweeper) closeEnded(e *Engine) bool {
	w.endedMu.Lock()
	ids := make(map[string]endedIntent, len(w.ended))
	maps.Copy(ids, w.ended)
	w.endedMu.Unlock()
	if len(ids) == 0 {
		return false
	}
	open, err := e.journal.OpenIntents(e.target.Name)
	now := e.now()
	done := map[string]bool{}
	if err == nil {
		byRequest := map[string]*journal.Record{}
		for i := range open {
			byRequest[open[i].RequestID] = &open[i]
		}
		for id, ended := range ids {
			in := byRequest[id]
			if in == nil {
				done[id] = true // closed already: its outcome, or another gateway's recovery
				continue
			}
			if _, err = e.closeIntentAs(in, now, ended.why); err != nil {
				break
			}
			done[id] = true
		}
	}
	if err != nil {
		e.logger.Debug("closing an intent whose outcome could not be stored failed; trying again",
			zap.String("target", e.target.Name), zap.Error(err))
	}
	w.endedMu.Lock()
	defer w.endedMu.Unlock()
	for id, ended := range w.ended {
		if done[id] || now.After(ended.until) {
			delete(w.ended, id)
		}
	}
	return len(w.ended) > 0
}

// startSweeper starts the periodic recovery of e's target on this store, unless one runs:
// that one stays with the configuration in force until e is activated (handSweeper).
func (s *Shared) startSweeper(e *Engine) {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if s.sweepers[e.target.Name] != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &sweeper{kick: make(chan struct{}, 1), endedKick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	w.eng.Store(e)
	if s.sweepers == nil {
		s.sweepers = map[string]*sweeper{}
	}
	s.sweepers[e.target.Name] = w
	go w.run(ctx)
}

// handSweeper hands the target's sweeper, if it has one, to e (the engine in force): a
// configuration Caddy throws away never sweeps, nor keeps its engine referenced.
func (s *Shared) handSweeper(target string, e *Engine) {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if w := s.sweepers[target]; w != nil {
		w.eng.Store(e)
	}
}

// stopSweeper stops the target's sweeper, if it has one (no configuration names the
// target any more), and waits for a pass in flight.
func (s *Shared) stopSweeper(target string) {
	s.sweepMu.Lock()
	w := s.sweepers[target]
	delete(s.sweepers, target)
	s.sweepMu.Unlock()
	if w != nil {
		w.stop()
		<-w.done
	}
}

// run sweeps every half bound of the current configuration until ctx ends.
func (w *sweeper) run(ctx context.Context) {
	defer close(w.done)
	next := time.Now().Add(max(w.eng.Load().intentBound()/2, minSweepEvery))
	pending := false
	for {
		wait := time.Until(next)
		if pending {
			wait = min(wait, endedRetry)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-w.kick:
			t.Stop()
			next = time.Now() // a test's kick asks for a whole pass
		case <-w.endedKick:
			t.Stop()
		}
		e := w.eng.Load() // a reload while this pass waited hands it the new configuration
		pending = w.closeEnded(e)
		if time.Now().Before(next) {
			continue
		}
		next = time.Now().Add(max(e.intentBound()/2, minSweepEvery))
		if _, err := e.closeOpenIntents(sweepLimit); err != nil {
			e.logger.Warn("closing stale intents failed; the next pass tries again",
				zap.String("target", e.target.Name), zap.Error(err))
		}
	}
}

// stopSweepers stops the periodic recoveries and waits for a pass in flight.
func (s *Shared) stopSweepers() {
	s.sweepMu.Lock()
	sweepers := s.sweepers
	s.sweepers = nil
	s.sweepMu.Unlock()
	var wg sync.WaitGroup
	for _, w := range sweepers {
		w.stop()
		wg.Go(func() { <-w.done })
	}
	wg.Wait()
}

// closeIntent closes intent in, if it is still open, with a reconcile record (and lists a
// create for adoption), in one transaction that reads the open-intent index first: when
// the intent's outcome, or another gateway's recovery, committed since in was read, it
// does nothing. It reports whether it closed the intent.
func (e *Engine) closeIntent(in *journal.Record, now time.Time) (bool, error) {
	return e.closeIntentAs(in, now, "")
}

// closeIntentAs is closeIntent with why the intent has no outcome ("": its gateway stopped).
func (e *Engine) closeIntentAs(in *journal.Record, now time.Time, why string) (bool, error) {
	t := e.target
	rec := &journal.Record{
		RequestID:    in.RequestID,
		Action:       change.ActionReconcile,
		ResourceType: in.ResourceType,
		SCIMID:       in.SCIMID,
		Subject:      in.Subject,
		Target:       t.Name,
		Outcome:      change.Applied,
		Error:        intentEnd(in, t.Name, e.fleet, now, why),
	}
	prepared, err := e.journal.Prepare(rec)
	if err != nil {
		return false, err
	}
	var closed bool
	err = e.store.Update(func(tx *store.Tx) error {
		closed = false
		seq, open, err := e.journal.OpenIntentSeq(tx.KV(), t.Name, in.RequestID)
		if err != nil || !open || seq != in.Seq {
			return err
		}
		// A create, a delivery with one, or a change that makes the account of a resource
		// without one (its intent's events hold create, see prepareIntent).
		if (in.Action == change.ActionCreate || change.Has(in.Events, change.Create)) && in.Subject != "" {
			if err := tx.SetAdoption(t.Name, in.ResourceType, in.Subject, in.Seq); err != nil {
				return err
			}
		}
		closed = true
		return e.journal.AppendPrepared(tx.KV(), prepared)
	})
	if err != nil || !closed {
		return false, err
	}
	e.logger.Warn("a change reached the target but has no outcome in the journal (its gateway stopped in between)",
		zap.String("target", t.Name), zap.Uint64("seq", in.Seq), zap.String("request_id", in.RequestID),
		zap.String("action", string(in.Action)), zap.String("resource_type", in.ResourceType), zap.String("scim_id", in.SCIMID),
		zap.Time("intent_time", in.Time))
	return true, nil
}

// intentEnd is the reconcile record's account of an intent without outcome.
func intentEnd(in *journal.Record, target string, fleet bool, now time.Time, why string) string {
	stopped := "the gateway stopped"
	switch {
	case why != "":
		stopped = why
	case fleet:
		stopped = fmt.Sprintf("its gateway stopped or gave up (the intent is %s old, longer than a gateway keeps a change's calls open)",
			now.Sub(in.Time).Round(time.Second))
	}
	if in.Action == change.ActionDeliver {
		return fmt.Sprintf("intent %d has no outcome: %s while it delivered a queued change to %s; "+
			"the task stays in the outbox and is delivered again, a create matched to the account by lookup", in.Seq, stopped, target)
	}
	return fmt.Sprintf("intent %d has no outcome: %s between the call to %s and the commit; "+
		"the directory was not changed, and a retried create is matched to the account by lookup", in.Seq, stopped, target)
}
