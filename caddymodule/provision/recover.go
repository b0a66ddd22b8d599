package provision

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// reconcileWindow bounds the start-up scan for intents without an outcome to the newest
// records: a crash leaves its intents at the head of the journal.
const reconcileWindow = 100_000

// adoptions are creates that may already have happened in the app without reaching the
// directory: the gateway stopped between the native call and the commit, or the commit
// failed after the app created the account. When Entra retries such a create, the gateway
// first looks the account up by its natural key and adopts it instead of creating a second
// one. Only these creates are matched: a client's value must never select an arbitrary
// existing account.
type adoptions struct {
	mu      sync.Mutex
	pending map[string]uint64 // type + "\x00" + folded subject -> seq of the intent
}

func adoptKey(typ, subject string) string { return typ + "\x00" + strings.ToLower(subject) }

func (a *adoptions) has(typ, subject string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.pending[adoptKey(typ, subject)]
	return ok
}

// add remembers a create to adopt; seq is its intent's sequence number (0: not known).
func (a *adoptions) add(typ, subject string, seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending[adoptKey(typ, subject)] = seq
}

func (a *adoptions) done(typ, subject string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.pending, adoptKey(typ, subject))
}

// recover runs when an engine with a target is built: it reports every intent of the
// target that has no outcome (journaling a reconcile record for each, once) and remembers
// the creates among them for adoption. It scans once per target after the store is
// opened: a reload on the open store shares what the first scan found, because the intents
// still without outcome then belong to requests the previous config is still serving, not
// to a crash.
func (e *Engine) recover(shared *Shared) error {
	t := e.target
	adopt, fresh := shared.adoptionsFor(t.Name)
	t.adopt = adopt
	if !fresh {
		return nil
	}
	j := e.journal
	info, err := j.Info()
	if err != nil || info.LastSeq == 0 {
		return err
	}
	q := journal.Query{}
	if info.LastSeq > reconcileWindow {
		q.FromSeq = info.LastSeq - reconcileWindow
	}
	open, reported, err := scanIntents(j, q, t.Name)
	if err != nil {
		return fmt.Errorf("scanning the journal for unfinished changes: %w", err)
	}
	for _, in := range open {
		e.logger.Warn("a change reached the target but has no outcome in the journal (the gateway stopped in between)",
			zap.String("target", t.Name), zap.Uint64("seq", in.Seq), zap.String("request_id", in.RequestID),
			zap.String("action", string(in.Action)), zap.String("resource_type", in.ResourceType), zap.String("scim_id", in.SCIMID))
		if in.Action == change.ActionCreate && in.Subject != "" {
			t.adopt.add(in.ResourceType, in.Subject, in.Seq)
		}
		if reported[in.RequestID] {
			continue
		}
		rec := &journal.Record{
			RequestID:    in.RequestID,
			Action:       change.ActionReconcile,
			ResourceType: in.ResourceType,
			SCIMID:       in.SCIMID,
			Subject:      in.Subject,
			Target:       t.Name,
			Outcome:      change.Applied,
			Error: fmt.Sprintf("intent %d has no outcome: the gateway stopped between the call to %s and the commit; "+
				"the directory was not changed, and a retried create is matched to the account by lookup", in.Seq, t.Name),
		}
		if err := e.store.Update(func(tx *store.Tx) error { return j.Append(tx.Bolt(), rec) }); err != nil {
			return err
		}
	}
	return nil
}

// scanIntents returns the target's intents whose request has no outcome record, and the
// request ids that already have a reconcile record.
func scanIntents(j *journal.Journal, q journal.Query, target string) ([]journal.Record, map[string]bool, error) {
	open := map[string]journal.Record{}
	reported := map[string]bool{}
	err := scanRecords(j, q, func(r *journal.Record) {
		if r.Target != target || r.RequestID == "" {
			return
		}
		switch {
		case r.Outcome == change.Pending:
			open[r.RequestID] = *r
		case r.Action == change.ActionReconcile:
			reported[r.RequestID] = true
		default:
			delete(open, r.RequestID)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]journal.Record, 0, len(open))
	for _, r := range open {
		out = append(out, r)
	}
	return out, reported, nil
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
// may have left in the app. It returns the account's native id, or "" to create it.
func (e *Engine) adoptExisting(ctx context.Context, p *plan) (string, error) {
	t := e.target
	if t.adopt == nil || !t.adopt.has(p.typ, SubjectOf(p.typ, p.after)) {
		return "", nil
	}
	req, ok, err := t.Mapping.LookupRequest(p.typ, p.after)
	if err != nil || !ok {
		return "", err
	}
	resp, err := t.Client.Do(ctx, legacy.Request{Method: req.Method, Path: req.Path, Header: t.withHeaders(req.Header), Idempotent: true, Expect: req.Expect})
	if err != nil {
		se, _ := legacy.ToSCIM(change.Update, resp, err)
		if se == nil {
			return "", nil
		}
		return "", &nativeError{scim: se, retryAfter: legacy.DefaultOutageRetryAfter, backend: &journal.BackendCall{Method: req.Method, URL: redactURL(req.Path)}, cause: err}
	}
	id, err := mapping.ExtractID(resp.Body, req.IDPath)
	if err != nil || id == "" {
		return "", nil // not there: the app never applied the create
	}
	return id, nil
}
