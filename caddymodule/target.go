package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// TargetConfig is the legacy application the gateway provisions: every change Entra makes
// is rewritten, through the mapping file, into the app's own REST calls.
type TargetConfig struct {
	// Name identifies the target in the id map, the journal and policies. Default: the
	// mapping file's base name without extension.
	Name string `json:"name,omitempty"`

	// URL is the app's base URL; mapping paths are relative to it. Placeholders resolved.
	URL string `json:"url"`

	// Mapping is the path of the mapping file (see caddymodule/mapping/doc.go).
	Mapping string `json:"mapping"`

	// DryRun decides, maps and journals every change (outcome dry_run) but sends nothing.
	DryRun bool `json:"dry_run,omitempty"`

	// Timeout is the time one native call may take, per attempt. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// MaxConcurrent bounds the calls in flight to the app. Default 16.
	MaxConcurrent int `json:"max_concurrent,omitempty"`

	// RateLimit bounds the calls per second to the app (0: no limit); RateBurst is the
	// burst allowed above it.
	RateLimit float64 `json:"rate_limit,omitempty"`
	RateBurst int     `json:"rate_burst,omitempty"`

	// MaxRetries is how often a call that is safe to repeat is retried. Default 2.
	MaxRetries int `json:"max_retries,omitempty"`

	// MaxRetryAfter caps how long the gateway waits on the app's 429/503 Retry-After
	// before answering Entra 503 itself. Default 5s.
	MaxRetryAfter caddy.Duration `json:"max_retry_after,omitempty"`

	// MaxResponseBytes bounds the app's responses. Default 4 MiB.
	MaxResponseBytes int64 `json:"max_response_bytes,omitempty"`

	// Headers are added to every native call (after the mapping file's), usually secrets:
	// header values may be placeholders such as {env.APP_API_KEY}, resolved at start-up.
	Headers map[string]string `json:"headers,omitempty"`

	// Transport holds Caddy's HTTP transport options for the app (timeouts, TLS,
	// keep-alive), as in reverse_proxy's `transport http` block.
	Transport *reverseproxy.HTTPTransport `json:"transport,omitempty"`
}

// target is a provisioned TargetConfig.
type target struct {
	adopt   *adoptions
	headers http.Header
	name    string
	dryRun  bool
	mapping *mapping.Mapping
	client  *legacy.Client
}

var validTargetName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (c *TargetConfig) provision(ctx caddy.Context, repl *caddy.Replacer) (*target, error) {
	if c.Mapping == "" {
		return nil, fmt.Errorf("target: mapping is required (the path of the mapping file)")
	}
	mapPath := repl.ReplaceAll(c.Mapping, "")
	name := c.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(mapPath), filepath.Ext(mapPath))
	}
	if !validTargetName.MatchString(name) {
		return nil, fmt.Errorf("target: name %q must be 1-64 letters, digits, '.', '_' or '-'", name)
	}
	base := repl.ReplaceAll(c.URL, "")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %s: url %q must be an absolute http or https URL", name, c.URL)
	}
	resolve := func(s string) (string, error) {
		out, err := repl.ReplaceOrErr(s, true, true)
		if err != nil {
			return "", err
		}
		return out, nil
	}
	m, err := mapping.Load(mapPath, resolve)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", name, err)
	}
	headers := http.Header{}
	for k, v := range c.Headers {
		val, err := resolve(v)
		if err != nil || val == "" {
			return nil, fmt.Errorf("target %s: header %s: %q resolves to an empty value", name, k, v)
		}
		headers.Set(k, val)
	}
	var rt http.RoundTripper
	if c.Transport != nil {
		if err := c.Transport.Provision(ctx); err != nil {
			return nil, fmt.Errorf("target %s: transport: %w", name, err)
		}
		rt = c.Transport
	}
	client, err := legacy.New(legacy.Options{
		BaseURL:          base,
		Transport:        rt,
		Timeout:          time.Duration(c.Timeout),
		MaxConcurrent:    c.MaxConcurrent,
		RateLimit:        c.RateLimit,
		RateBurst:        c.RateBurst,
		MaxRetries:       c.MaxRetries,
		MaxRetryAfter:    time.Duration(c.MaxRetryAfter),
		MaxResponseBytes: c.MaxResponseBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", name, err)
	}
	return &target{headers: headers, name: name, dryRun: c.DryRun, mapping: m, client: client}, nil
}

// keyedMutex serialises work per key (a SCIM id, or a userName being created), so that
// the native calls and the commit of one resource are never interleaved with another
// request's for the same resource.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func newKeyedMutex() *keyedMutex { return &keyedMutex{locks: map[string]*keyedEntry{}} }

// lock locks key and returns its unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// plan is a change decided for one request: what the directory will hold, and which
// semantic events the target must see.
type plan struct {
	typ, id  string
	version  uint64        // the stored version the change was decided on (0 on create)
	before   scim.Resource // nil on create
	after    scim.Resource // nil on delete
	events   []string
	changes  []journal.Change // the attribute changes (diffChanges of before and after), computed once
	changed  []string
	added    []string // member SCIM ids added
	removed  []string // member SCIM ids removed
	nativeID string   // the resource's native id, known before the calls (empty on create)

	// The record a PATCH stores, prepared by decide outside the shared commit: the
	// attributes as stored (without write-only ones, without id), their JSON and their
	// index entries.
	stored scim.Resource
	doc    []byte
	index  []store.IndexEntry
}

// syncResult is what the native calls did.
type syncResult struct {
	nativeID   string // from the create response
	backend    *journal.BackendCall
	skipped    []string // events with no native call mapped
	deferred   []string // members left out of member calls: no account in the app
	outOfScope []string // members left out of member calls: kept out of the app by policy
	adopted    bool     // the create took an account an unfinished earlier attempt left
	caughtUp   bool     // a change of a resource without an account became its create
	// memberships the directory already had, sent to the account a catch-up create made:
	// the groups (or, for a group, the number of members) sent, and the failures
	caughtUpGroups  []string
	caughtUpMembers int
	catchUpFailures []string
	dryRun          bool
}

// nativeEvents are the events the mapping knows, in the order the calls are made.
func nativeEvents(events []string) []string {
	var out []string
	for _, e := range events {
		switch e {
		case "rename":
			// a rename is an update of the native record
			if !slices.Contains(out, "update") && !slices.Contains(events, "update") {
				out = append(out, "update")
			}
		default:
			out = append(out, e)
		}
	}
	return out
}

// syncNative makes the native calls of p (or, in a dry run, only builds them). It returns
// a SCIM error for Entra when the app refused or failed; nothing is committed then.
func (g *Gateway) syncNative(ctx context.Context, p *plan) (*syncResult, error) {
	t := g.target
	res := &syncResult{dryRun: t.dryRun}
	for _, ev := range g.catchUp(p, res, nativeEvents(p.events)) {
		if !t.mapping.Has(p.typ, ev) {
			res.skipped = append(res.skipped, ev)
			continue
		}
		previous := p.before
		if ev == "create" {
			previous = nil
		}
		in := mapping.Input{
			ResourceType: p.typ,
			Event:        ev,
			Resource:     p.after,
			Previous:     previous,
			Changed:      p.changed,
			NativeID:     p.nativeID,
			NativeIDOf:   g.storedNativeID,
		}
		if ev == "delete" {
			in.Resource = p.before
		}
		if in.NativeID == "" {
			in.NativeID = res.nativeID
		}
		if ev == "add_members" || ev == "remove_members" {
			ids := p.added
			if ev == "remove_members" {
				ids = p.removed
			}
			members, skipped, missing := g.nativeMembers(ids)
			res.outOfScope = append(res.outOfScope, skipped...)
			if len(missing) > 0 && ev == "add_members" && !t.dryRun {
				// A reference failure: refused as a whole, so the directory does not record
				// a membership the app lacks; Entra retries it in a later cycle, when the
				// member's account exists.
				return res, &nativeError{scim: scim.BadRequest(scim.TypeInvalidValue,
					"member %s has no account in %s yet (its creation failed or has not happened); Entra retries this membership in a later cycle",
					strings.Join(missing, ", "), t.name)}
			}
			res.deferred = append(res.deferred, missing...)
			if len(members) == 0 {
				continue // nothing to send (a dry run, or members never provisioned)
			}
			in.Members = members
		}
		if ev == "create" {
			adopted, err := g.adoptExisting(ctx, p)
			if err != nil {
				return res, err
			}
			if adopted != "" {
				// An earlier attempt of this create reached the app; take that account.
				res.nativeID, res.adopted = adopted, true
				continue
			}
		}
		if ev != "create" && in.NativeID == "" {
			// The resource never reached the app (created before the target was
			// configured, or skipped): nothing to change there.
			res.skipped = append(res.skipped, ev)
			continue
		}
		reqs, err := t.mapping.Requests(in)
		if err != nil {
			return nil, scim.BadRequest(scim.TypeInvalidValue, "mapping the %s of %s %s for %s: %v", ev, p.typ, p.id, t.name, err)
		}
		for _, r := range reqs {
			res.backend = &journal.BackendCall{Method: r.Method, URL: redactURL(r.Path)}
			if t.dryRun {
				continue
			}
			resp, err := t.call(ctx, r)
			if resp != nil {
				res.backend.Status = resp.Status
				res.backend.DurationMS = resp.Duration.Milliseconds()
				res.backend.Attempts = resp.Attempts
			}
			if err != nil {
				var le *legacy.Error
				if errors.As(err, &le) && res.backend.Attempts == 0 {
					res.backend.Attempts = le.Attempts
				}
				se, retryAfter := legacy.ToSCIM(ev, resp, err)
				if se == nil { // e.g. 404 on delete: already gone
					continue
				}
				return res, &nativeError{scim: se, retryAfter: retryAfter, backend: res.backend, cause: err}
			}
			if ev == "create" && r.IDPath != "" {
				id, err := mapping.ExtractID(resp.Body, r.IDPath)
				if err != nil {
					return res, &nativeError{scim: scim.Errorf(http.StatusServiceUnavailable, "", "%s answered the create of %s without a usable id (%v); retry later", t.name, p.id, err), retryAfter: legacy.DefaultOutageRetryAfter, backend: res.backend, cause: err}
				}
				res.nativeID = id
			}
		}
	}
	if res.caughtUp && res.nativeID != "" && !t.dryRun {
		g.catchUpMemberships(ctx, p, res)
	}
	return res, nil
}

// catchUpJob is one add_members call of a membership catch-up: a group and the members to
// send it.
type catchUpJob struct {
	groupID, groupNative string
	group                scim.Resource
	members              []mapping.Member
}

// catchUpMemberships sends the memberships the directory already holds to the account a
// catch-up create just made (a resource that existed before the target was configured, or
// that the policy kept out of the app until now): a user joins the teams of its groups that
// have accounts; a group gets its members that have accounts. Without it the app would
// miss them until Entra changes those memberships, which it has no reason to do.
//
// Best effort: the account exists in the app now and must be recorded with the change, so
// a failed membership call is journaled and logged rather than failing the request (whose
// retry would create the account a second time); the membership reaches the app with the
// group's next member change.
func (g *Gateway) catchUpMemberships(ctx context.Context, p *plan, res *syncResult) {
	t := g.target
	if !t.mapping.Has(scim.GroupType, "add_members") {
		return
	}
	jobs, err := g.catchUpJobs(p, res.nativeID)
	if err != nil {
		res.catchUpFailures = append(res.catchUpFailures, "reading the memberships: "+err.Error())
		return
	}
	for _, j := range jobs {
		reqs, err := t.mapping.Requests(mapping.Input{
			ResourceType: scim.GroupType, Event: "add_members", Resource: j.group,
			NativeID: j.groupNative, Members: j.members, NativeIDOf: g.storedNativeID,
		})
		if err == nil {
			for _, r := range reqs {
				if _, err = t.call(ctx, r); err != nil {
					break
				}
			}
		}
		if err != nil {
			g.logger.Warn("sending existing memberships to a new account failed; they reach the app with the group's next member change",
				zap.String("target", t.name), zap.String("group", j.groupID), zap.Error(err))
			res.catchUpFailures = append(res.catchUpFailures, j.groupID+": "+err.Error())
			continue
		}
		res.caughtUpGroups = append(res.caughtUpGroups, j.groupID)
		res.caughtUpMembers += len(j.members)
	}
}

// catchUpJobs reads, from the committed directory, the add_members calls a catch-up create
// of p needs. A group's members this very request adds or removes are left out: the
// request's own member calls deal with them.
func (g *Gateway) catchUpJobs(p *plan, nativeID string) ([]catchUpJob, error) {
	t := g.target
	var jobs []catchUpJob
	err := g.store.View(func(tx *store.Tx) error {
		switch p.typ {
		case scim.UserType:
			return tx.GroupsOf(p.id, func(gid string) error {
				groupNative, err := tx.NativeID(t.mapKey(scim.GroupType), gid)
				if err != nil {
					return nil // the group has no account in the app
				}
				rec, err := tx.Get(scim.GroupType, gid)
				if err != nil {
					return nil
				}
				doc, err := decodeDoc(rec)
				if err != nil {
					return err
				}
				jobs = append(jobs, catchUpJob{groupID: gid, groupNative: groupNative, group: withID(doc, gid),
					members: []mapping.Member{{SCIMID: p.id, NativeID: nativeID, Type: scim.UserType}}})
				return nil
			})
		case scim.GroupType:
			var members []mapping.Member
			err := tx.Members(p.id, func(m store.Member) error {
				if slices.Contains(p.added, m.ID) || slices.Contains(p.removed, m.ID) || m.Type == "" {
					return nil
				}
				if n, err := tx.NativeID(t.mapKey(m.Type), m.ID); err == nil {
					members = append(members, mapping.Member{SCIMID: m.ID, NativeID: n, Type: m.Type})
				}
				return nil
			})
			if err == nil && len(members) > 0 {
				jobs = append(jobs, catchUpJob{groupID: p.id, groupNative: nativeID, group: p.after, members: members})
			}
			return err
		}
		return nil
	})
	return jobs, err
}

// catchUp turns the attribute events of a resource that has no account in the app (it
// existed before the target was configured, or a dry run preceded) into a create, so the
// app gets the account on the resource's next change instead of never.
func (g *Gateway) catchUp(p *plan, res *syncResult, events []string) []string {
	if p.before == nil || p.after == nil || p.nativeID != "" || !g.target.mapping.Has(p.typ, "create") {
		return events
	}
	out := []string{"create"}
	caught := false
	for _, ev := range events {
		switch ev {
		case "update", "deactivate", "reactivate":
			caught = true // the create carries the current attributes and state
		default:
			out = append(out, ev)
		}
	}
	if !caught {
		return events
	}
	res.caughtUp = true
	return out
}

// nativeError is a failure of the target: the SCIM error Entra gets, and what the journal
// records.
type nativeError struct {
	scim       *scim.Error
	retryAfter time.Duration
	backend    *journal.BackendCall
	cause      error
}

func (e *nativeError) Error() string { return e.scim.Error() }
func (e *nativeError) Unwrap() error { return e.scim }

// nativeMembers looks up the members' native ids in one read transaction. A member
// without one has no account in the app: skipped when the policy kept it out on purpose
// (out of scope), missing otherwise (never created there, or its creation failed). When the
// directory cannot be read, every member counts as missing, the safe side.
func (g *Gateway) nativeMembers(ids []string) (found []mapping.Member, skipped, missing []string) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	err := g.store.View(func(tx *store.Tx) error {
		for _, id := range ids {
			typ, err := tx.TypeOf(id)
			if err != nil {
				missing = append(missing, id)
				continue
			}
			key := g.target.mapKey(typ)
			switch n, err := tx.NativeID(key, id); {
			case err == nil:
				found = append(found, mapping.Member{SCIMID: id, NativeID: n, Type: typ})
			case tx.Mark(key, id) == store.MarkSkipped:
				skipped = append(skipped, id)
			default:
				missing = append(missing, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, ids
	}
	return found, skipped, missing
}

// redactURL drops the query string, where an API key could sit.
func redactURL(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i] + "?…"
	}
	return p
}

// withHeaders returns a call's headers (from the mapping file) plus the target's own, which
// win; h is not changed.
func (t *target) withHeaders(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for k, v := range t.headers {
		out[k] = v
	}
	return out
}

// call makes one native call the mapping built, with the target's headers.
func (t *target) call(ctx context.Context, r mapping.Request) (*legacy.Response, error) {
	return t.client.Do(ctx, legacy.Request{Method: r.Method, Path: r.Path, Header: t.withHeaders(r.Header), Body: r.Body, Idempotent: r.Idempotent})
}

// mapKey is the id map namespace of a resource type in this target: users and groups have
// separate native id spaces (account 2 and team 2 are different things).
func (t *target) mapKey(typ string) string { return t.name + "/" + typ }
