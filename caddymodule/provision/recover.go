package provision

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// recover runs when an engine with a target is built: it reports every intent of the
// target that has no outcome (journaling a reconcile record for each, which closes it in
// the journal's open-intent index, so a later start does not report it again) and
// remembers the creates among them for adoption. It reads the index, not the records, so
// its cost does not grow with the journal. It scans once per target after the store is
// opened: a reload on the open store shares what the first scan found, because the intents
// still without outcome then belong to requests the previous config is still serving, not
// to a crash. On a shared store it closes only stale intents (younger ones may be another
// gateway's changes in flight), and then again every half bound (see fleet.go).
func (e *Engine) recover(shared *Shared) error {
	if !shared.firstScan(e.target.Name) {
		return nil
	}
	_, err := e.closeOpenIntents(0)
	return err
}

// closeOpenIntents closes the target's intents without outcome that recovery may close:
// every one on a store only this process opens, the stale ones on a shared store; at most
// limit (0: all). It returns how many it closed (an intent closed meanwhile by its outcome
// or by another gateway is not counted).
func (e *Engine) closeOpenIntents(limit int) (int, error) {
	open, err := e.journal.OpenIntents(e.target.Name)
	if err != nil {
		return 0, fmt.Errorf("reading the journal's unfinished changes: %w", err)
	}
	now := e.now()
	n := 0
	for i := range open {
		if limit > 0 && n >= limit {
			break
		}
		if stale, _ := e.staleIntent(&open[i], now); e.fleet && !stale {
			continue
		}
		closed, err := e.closeIntent(&open[i], now)
		if err != nil {
			return n, err
		}
		if closed {
			n++
		}
	}
	return n, nil
}

// scanRecords calls fn with every record q selects, oldest first (through the journal's
// JSONL export, which reads in short transactions).
func scanRecords(j *journal.Journal, q journal.Query, fn func(*journal.Record)) error {
	pr, pw := io.Pipe()
	go func() {
		_, err := j.Export(context.Background(), pw, q, journal.FormatJSONL)
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 2<<20)
	for sc.Scan() {
		var line struct {
			Record *journal.Record `json:"record"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Record == nil {
			continue
		}
		fn(line.Record)
	}
	return sc.Err()
}

// adoptExisting looks up, by the mapping's lookup call, the account an unfinished create
// may have left in the app. It returns the account's native id, or "" to create it: only
// when the app's answer proves there is none (see lookupAccount).
func (e *Engine) adoptExisting(ctx context.Context, p *plan, res *syncResult) (string, error) {
	t := e.target
	if !p.adopt {
		return "", nil
	}
	req, ok, err := t.Mapping.LookupRequest(p.typ, p.after)
	if err != nil || !ok {
		return "", err
	}
	what := fmt.Sprintf("the lookup of %s %q (which tells whether an earlier attempt of its create made the account)", strings.ToLower(p.typ), SubjectOf(p.typ, p.after))
	id, err := e.lookupAccount(ctx, req, what, res)
	if err != nil || id == "" {
		return id, err
	}
	if err := e.othersAccount(p, id, res); err != nil {
		return "", err
	}
	return id, e.retiredAccount(p, id, res)
}

// retireAccount retires, in the commit of resource p's delete, the account the id map
// links it to (store.RetireNativeID): an app whose delete only deactivates the account
// keeps it with its login, and a later resource with the same name must not get it
// through a lookup (retiredAccount). A group that stands for one of the app's roles has
// no account of its own to retire.
func (e *Engine) retireAccount(tx *store.Tx, key string, p *plan) error {
	if p.typ == scim.GroupType && e.rolesOf() != nil {
		return nil
	}
	native, err := tx.NativeID(key, p.id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return tx.RetireNativeID(key, native, store.RetiredAccount{SCIMID: p.id, Name: SubjectOf(p.typ, p.before), At: e.now()})
}

// retiredAccount refuses account id, which the lookup of p's name found, when it belonged
// to a resource deleted less than store.RetiredFor ago: the app kept that account when
// its delete came (it deactivates instead of deleting, and keeps the login), and p is
// another resource that reuses the name (a recycled login). Adopted or linked, p would
// get the deleted resource's account, with whatever the app attached to it (its history,
// data, roles). The change is refused (409, a dead letter in queued delivery) naming the
// deleted resource, for an operator to delete or rename that account in the app.
func (e *Engine) retiredAccount(p *plan, id string, res *syncResult) error {
	var who store.RetiredAccount
	var retired bool
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		who, retired, err = tx.Retired(e.target.mapKey(p.typ), id, e.now())
		return err
	})
	if err != nil {
		return res.failure(&nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "", "reading whether account %s of %s belonged to a deleted resource failed (%v); nothing was created; retry later", id, e.target.Name, err),
			retryAfter: legacy.DefaultOutageRetryAfter, cause: err})
	}
	if !retired || who.SCIMID == p.id {
		return nil
	}
	typ := strings.ToLower(p.typ)
	return res.failure(&nativeError{scim: scim.Conflict(
		"%s %q is held in %s by account %s, which belonged to deleted %s %s (%q, deleted %s): %s kept that account when the %s was deleted, and its lookup finds it by the name; %s %s is another %s and does not take that account over; delete or rename that account in %s, then retry",
		nameAttr(p.typ), SubjectOf(p.typ, p.after), e.target.Name, id, typ, who.SCIMID, who.Name, who.At.Format(time.DateOnly),
		e.target.Name, typ, typ, p.id, typ, e.target.Name)})
}

// othersAccount refuses to adopt account id, which the lookup of create p found by its
// name, when the directory maps it to another resource: that resource's account, which
// still has the name in the app (its delete, or its rename away from the name, has not
// reached the app: a dead letter an operator dropped, a delete the policy skipped), is
// not this create's to take. Taken over, it would drive one account from two directory
// entries (the commit refuses that), or, once the other's delete reaches the app, leave
// the new resource without its account; and the other account would stay enabled. The
// change is refused (409, a dead letter in queued delivery) naming the other resource,
// for an operator to delete or rename that account in the app, or drop its mapping
// (reconcile), before Entra's next attempt.
func (e *Engine) othersAccount(p *plan, id string, res *syncResult) error {
	var owner string
	var gone bool
	err := e.store.View(func(tx *store.Tx) error {
		o, err := tx.SCIMIDOf(e.target.mapKey(p.typ), id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		owner = o
		_, err = tx.TypeOf(o)
		gone = errors.Is(err, store.ErrNotFound)
		if gone {
			err = nil
		}
		return err
	})
	if err != nil {
		return res.failure(&nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "", "reading which resource account %s of %s is mapped to failed (%v); nothing was created; retry later", id, e.target.Name, err),
			retryAfter: legacy.DefaultOutageRetryAfter, cause: err})
	}
	if owner == "" || owner == p.id {
		return nil
	}
	state := "which the directory still has"
	if gone {
		state = "deleted from the directory, whose delete has not reached " + e.target.Name + " (see its task in the outbox, or the policy skipped it)"
	}
	return res.failure(&nativeError{scim: scim.Conflict(
		"%s %q is held in %s by account %s of %s %s (%s), which its lookup finds: this create does not take that account over; delete or rename that account in %s (or drop its stale mapping: reconcile), then retry",
		nameAttr(p.typ), SubjectOf(p.typ, p.after), e.target.Name, id, strings.ToLower(p.typ), owner, state, e.target.Name)})
}

// lookupAccount makes a lookup call (following its pages until one names the account) and
// returns the native id it finds, or "" when the app's answers prove there is none: every
// page is well formed and names no such account (see mapping.Request.FindID), or the app
// answers its own "no such object". Anything else says nothing about the account and is
// an outage, never a "not found" that would create a second account: a failed call, the
// app's other errors (its 400 included: a lookup is no change the app could refuse), an
// answer that proves nothing ({} where the app answers with a list), a listing that runs
// past its max_pages. The outage (503 with Retry-After) names the lookup (what), and every
// call is in res with what came back.
func (e *Engine) lookupAccount(ctx context.Context, req *mapping.Request, what string, res *syncResult) (string, error) {
	t := e.target
	lr := legacy.Request{Method: req.Method, Path: req.Path, Header: t.withHeaders(req.Header), Idempotent: true, Expect: req.Expect}
	pages := func(yield func(*legacy.Response, error) bool) {
		if req.Paging == nil {
			resp, err := t.Client.Do(ctx, lr)
			yield(resp, err)
			return
		}
		t.Client.Pages(ctx, lr, *req.Paging)(yield)
	}
	for resp, err := range pages {
		var le *legacy.Error
		if err == nil {
			id, found, ferr := req.FindID(resp.Body)
			if ferr == nil {
				res.noteCall(req.Method, req.Path, resp, nil)
				if found {
					return id, nil
				}
				continue // not on this page
			}
			err = legacy.Unproven(resp, ferr)
		}
		if resp != nil || errors.As(err, &le) {
			res.noteCall(req.Method, req.Path, resp, err)
		}
		if errors.As(err, &le) && le.NotFound {
			return "", nil // the app's own "no such object"
		}
		return "", res.failure(lookupOutage(t.Name, req, what, err))
	}
	return "", nil
}

// lookupOutage is the outage of a lookup that proved nothing: 503 with the app's
// Retry-After, else the default, naming the lookup and how it failed (never the answer's
// content, nor the URL's query).
func lookupOutage(target string, req *mapping.Request, what string, err error) *nativeError {
	cause := err.Error()
	var le *legacy.Error
	if errors.As(err, &le) {
		cause = le.Cause()
	}
	retryAfter := legacy.OutageRetryAfter(err)
	se := scim.Errorf(http.StatusServiceUnavailable, "", "%s in %s (%s %s) failed: %s; nothing was created or changed; retry later",
		what, target, req.Method, redactURL(req.Path), cause)
	return &nativeError{scim: se, retryAfter: retryAfter, cause: err}
}

// adoptionKey names a create to adopt in memory (see Shared.holdAdoption).
func (e *Engine) adoptionKey(p *plan) string {
	return e.target.Name + "\x00" + p.typ + "\x00" + strings.ToLower(SubjectOf(p.typ, p.after))
}

// listAdoption lists a create whose outcome in the app is unknown (the call failed in a way
// that does not say the app refused it, or the commit failed after the app made the
// account), so that its retry looks the account up instead of creating a second one; with
// what the attempt sent (res, see syncResult.sentDigest), so that a retry that sends the
// same needs no call to bring the account in line.
func (e *Engine) listAdoption(j *job, p *plan, res *syncResult) {
	name := SubjectOf(p.typ, p.after)
	sent := res.sentDigest()
	err := e.store.Update(func(tx *store.Tx) error {
		if sent == nil {
			return tx.SetAdoption(e.target.Name, p.typ, name, 0)
		}
		return tx.SetAdoptionSent(e.target.Name, p.typ, name, sent)
	})
	if err != nil {
		e.shared.holdAdoption(e.adoptionKey(p), true)
		e.logger.Warn("listing a create for adoption failed; this process still adopts it",
			zap.String("request_id", j.req.ID), zap.String("target", e.target.Name), zap.Error(err))
	}
}

// adoptionSent reads, for a create to adopt, what its listed attempts sent (nil when not
// known): known only when the listing is all there is (known false: the account may be
// another attempt's, a stale intent's, whose calls are not known), and not when this
// process holds a newer attempt that the store could not list.
func (e *Engine) adoptionSent(tx *store.Tx, p *plan, known bool) []byte {
	if !known || e.shared.unrecordedAdoption(e.adoptionKey(p)) {
		return nil
	}
	return tx.AdoptionSent(e.target.Name, p.typ, SubjectOf(p.typ, p.after))
}

// findMoved looks up, with the mapping's lookup, the account of a resource whose mapped
// account answered a change with its own "no such object" (ne): an app that renames its
// ids (a migration, a re-keyed account) still holds the account under its natural key,
// and creating another one would leave two, the old one with the state Entra changed
// since (a leaver's account left enabled). It returns the id the lookup finds, or "" when
// the lookup proves there is none (or the mapping has no lookup): the account is gone. A
// lookup that proves nothing, or that finds the very account that answered "no such
// object", is an outage: the mapping stays as it is and the change is tried again.
func (e *Engine) findMoved(j *job, p *plan, ne *nativeError) (string, error) {
	t := e.target
	req, ok, err := t.Mapping.LookupRequest(p.typ, p.after)
	if err != nil || !ok {
		return "", nil // without a lookup, what the app said is all there is to go by
	}
	ctx, cancel := e.flowContext(j.req.ctx())
	defer cancel()
	res := &syncResult{}
	what := fmt.Sprintf("the lookup of %s %q (whose account %s answered \"no such object\": the app may have renamed it)", strings.ToLower(p.typ), SubjectOf(p.typ, p.after), p.nativeID)
	found, err := e.lookupAccount(ctx, req, what, res)
	if err == nil && found == p.nativeID {
		err = res.failure(&nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "",
			"%s answered \"no such object\" for account %s of %s %s, and its lookup finds that account; retry later", t.Name, found, p.typ, p.id),
			retryAfter: legacy.DefaultOutageRetryAfter})
	}
	if err == nil && found != "" {
		err = e.retiredAccount(p, found, res) // a deleted resource's account, which the app kept
	}
	if err != nil {
		var le *nativeError
		if errors.As(err, &le) {
			le.calls = append(slices.Clone(ne.calls), le.calls...)
			j.trail.noteCalls(le.calls)
		}
		return "", err
	}
	if found != "" {
		ne.calls = append(ne.calls, res.calls...)
	}
	return found, nil
}

// sendToMoved sends change p to the account the lookup found as moved (findMoved), once
// the id map names it: with every attribute, since the account missed what Entra changed
// while its id was another.
func (e *Engine) sendToMoved(j *job, p *plan, d policy.Decision, ne *nativeError, moved string) (*syncResult, error) {
	old := p.nativeID
	if err := e.dropGoneAccount(j, p, ne, moved); err != nil {
		return nil, err
	}
	events, changed := p.events, p.changed
	if p.after != nil && !change.Has(p.events, change.Update) {
		p.events = append([]change.Event{change.Update}, p.events...)
	}
	if p.after != nil {
		p.changed = attributeNames(p.after)
	}
	res, err := e.sendOnce(j, p, d)
	p.events, p.changed = events, changed
	var again *nativeError
	if errors.As(err, &again) && again.gone {
		again.gone = false
		again.scim = scim.Errorf(http.StatusServiceUnavailable, "", "%s answered \"no such object\" for account %s too, which its lookup found for %s %s; retry later", e.target.Name, moved, p.typ, p.id)
		again.retryAfter = legacy.DefaultOutageRetryAfter
	}
	if err == nil {
		e.noteReasons(j.trail, "account "+old+" was gone from "+e.target.Name+" and its lookup found the account as "+moved+" (the app renamed it): the mapping names "+moved+" now, and the change was sent to it with every attribute")
	}
	return res, err
}
