package provision

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/fleet"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Engine applies changes to the directory and, through a target's mapping, to a legacy
// app. One Engine serves one configuration; configurations that share an open store share
// its Shared state (locks, adoptions, policy stats), so that a reload neither interleaves
// two configs' changes of one resource nor forgets what the previous one had in flight.
type Engine struct {
	chunk     int  // member edges per part of a large member change (parts.go)
	fileParts bool // parts sized by the change instead (FilePartSize): a bbolt file
	// splitDeletes: the store's transactions are bounded, and a delete whose edges do not
	// fit one is applied in parts (deleteparts.go).
	splitDeletes bool
	store        *store.Store
	journal      *journal.Journal
	target       *Target        // nil: the gateway is a SCIM server on its own directory
	policy       *policy.Engine // nil: every change is allowed
	stats        eventCounter   // the policy's input.stats; nil without a policy
	locks        *keyedMutex
	shared       *Shared
	patch        scim.PatchOptions
	reads        bool
	fleet        bool // the store is shared with other gateways (Config.SharedStore)
	logger       *zap.Logger
	now          func() time.Time
	onDecision   func(policy.Decision, error)
	onDelivery   func(target string, outcome change.Outcome)
	worker       *outbox.Worker // delivers the target's outbox; nil without a target
}

// Config is what an Engine is built from.
type Config struct {
	Store   *store.Store
	Journal *journal.Journal
	// Shared is the state of the open store, shared by the configurations that use it.
	Shared *Shared
	// Target is the app every change is rewritten for; nil for none.
	Target *Target
	// Policy decides every write; nil allows every change.
	Policy *policy.Engine
	// PatchOptions say how a PATCH of a group's members is read.
	PatchOptions scim.PatchOptions
	// JournalReads journals successful reads too (Read).
	JournalReads bool
	// SharedStore says that other gateways write the same store (a fleet on etcd). The
	// policy's input.stats are then counted in the store, so that every gateway's brake
	// counts the changes every gateway let through, and changes decided at once on several
	// gateways see each other. This costs a store write per change the policy decides, and
	// another when the change is refused or fails. false (the default: a store only this
	// process opens) counts them in memory.
	//
	// With a target it also bounds how long a change's calls run, recovers only the intents
	// older than that (and keeps recovering them while the gateway runs: another gateway may
	// die), and makes a create wait for, or adopt, another request's unfinished create of
	// the same name (see fleet.go).
	SharedStore bool
	// MemberChunk is how many member edges one part of a large member change holds (see
	// parts.go); 0: by the store (MemberChunk on etcd's default limit; on a bbolt file,
	// FilePartSize of the change).
	MemberChunk int

	Logger *zap.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnDecision, when set, is told every policy decision (metrics).
	OnDecision func(policy.Decision, error)
	// OnDelivery, when set, is told the outcome of every attempt to deliver a queued
	// change (delivered, failed, dead, dry_run; metrics).
	OnDelivery func(target string, outcome change.Outcome)
}

// Target is a legacy app as the engine calls it: a name (the id map's and the journal's),
// the compiled mapping, and the HTTP client with the headers every call carries.
type Target struct {
	Name    string
	DryRun  bool
	Mapping *mapping.Mapping
	Client  *legacy.Client
	// Headers are added to every call after the mapping's own (secrets, usually).
	Headers http.Header
	// Delivery says when changes reach the app (see queue.go): at once by default.
	Delivery outbox.Settings
}

// New builds the engine of a configuration; Activate puts it in force once the
// configuration started, and Release takes it out. With a target it reconciles the journal's
// unfinished changes once per open store (crash recovery); with a policy it takes the
// store's stats of the last hour, seeding them from the journal the first time (on a shared
// store: when the store counts nothing for the target yet, see storeStats).
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Journal == nil || cfg.Shared == nil {
		return nil, errors.New("provision: a store, its journal and its shared state are required")
	}
	e := &Engine{
		store:      cfg.Store,
		chunk:      cfg.MemberChunk,
		journal:    cfg.Journal,
		target:     cfg.Target,
		policy:     cfg.Policy,
		locks:      cfg.Shared.locks,
		shared:     cfg.Shared,
		patch:      cfg.PatchOptions,
		reads:      cfg.JournalReads,
		fleet:      cfg.SharedStore,
		logger:     cfg.Logger,
		now:        cfg.Now,
		onDecision: cfg.OnDecision,
		onDelivery: cfg.OnDelivery,
	}
	if e.chunk <= 0 {
		limit := kv.TxnOpsLimit(cfg.Store.DB())
		e.chunk, e.fileParts = memberChunk(limit), limit <= 0
	}
	e.splitDeletes = kv.TxnOpsLimit(cfg.Store.DB()) > 0
	if e.logger == nil {
		e.logger = zap.NewNop()
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.target != nil {
		if err := e.recover(cfg.Shared); err != nil {
			return nil, err
		}
		w, err := cfg.Shared.startWorker(e)
		if err != nil {
			return nil, err
		}
		e.worker = w
		if e.fleet {
			cfg.Shared.startSweeper(e)
		}
	}
	if e.policy != nil {
		seed := func() (eventCounter, error) { return e.seedStats() }
		if cfg.SharedStore {
			seed = e.storeStats
		}
		w, err := cfg.Shared.statsFor(e.targetName(), seed)
		if err != nil {
			return nil, err
		}
		e.stats = w
	}
	return e, nil
}

// JournalsReads reports whether successful reads are journaled.
func (e *Engine) JournalsReads() bool { return e.reads }

// PolicyHash identifies the policy in force ("" without one).
func (e *Engine) PolicyHash() string {
	if e.policy == nil {
		return ""
	}
	return e.policy.Hash()
}

// targetName is the name of the engine's target, "" without one.
func (e *Engine) targetName() string {
	if e.target == nil {
		return ""
	}
	return e.target.Name
}

// Shared is the engine state of one open store, shared by every configuration using it.
type Shared struct {
	// locks serialise requests per resource across the configs that share the store, so a
	// reload does not let an old and a new config interleave changes of one resource.
	locks *keyedMutex

	// scanned lists the targets whose journal was scanned for unfinished changes since the
	// store was opened: configs that reload on the same open store do not scan again
	// (their in-flight intents are not crashes). unrecorded holds the creates to adopt
	// that could not be listed in the store (its write failed: the disk was full), so
	// that this process still adopts them.
	adoptMu    sync.Mutex
	scanned    map[string]bool
	unrecorded map[string]bool

	// stats holds, per target, the policy's counts of the last hour (or, on a store other
	// gateways share, the window that counts them in the store). The first config with a
	// policy seeds them from the journal; configs that reload on the same open store with
	// a policy share them, so a reload neither scans the journal again nor loses the
	// changes the previous config still has in flight.
	statsMu sync.Mutex
	stats   map[string]eventCounter

	// elector elects the gateway that delivers each target's outbox (nil: fleet.Solo).
	elector fleet.Elector

	// workers deliver each target's outbox, one per target for the open store, for the
	// engine activated last that is not released (active lists them, oldest first): a
	// reload hands the worker to the new engine once it started, and a configuration that
	// started and was thrown away hands it back.
	workersMu sync.Mutex
	workers   map[string]*outbox.Worker
	active    map[string][]*Engine

	// sweepers recover each target's stale intents periodically on a shared store, one per
	// target for the open store (see fleet.go).
	sweepMu  sync.Mutex
	sweepers map[string]*sweeper
}

// NewShared returns the engine state for a store that was just opened. el elects the
// gateway that delivers each target's outbox (nil: the store is this process's alone).
func NewShared(el fleet.Elector) *Shared { return &Shared{locks: newKeyedMutex(), elector: el} }

// statsFor returns the target's stats window, made by seed when no config with a policy
// has one on this store yet. A seed that fails leaves nothing behind.
func (s *Shared) statsFor(target string, seed func() (eventCounter, error)) (eventCounter, error) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if w, ok := s.stats[target]; ok {
		return w, nil
	}
	w, err := seed()
	if err != nil {
		return nil, err
	}
	if s.stats == nil {
		s.stats = map[string]eventCounter{}
	}
	s.stats[target] = w
	return w, nil
}

// dropStats forgets the target's stats window: a config without a policy does not count
// changes, so the next config with one must seed its counts from the journal again.
func (s *Shared) dropStats(target string) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	delete(s.stats, target)
}

// firstScan reports whether the target's journal is to be scanned for unfinished changes:
// true the first time it is asked for a target since the store was opened.
func (s *Shared) firstScan(target string) bool {
	s.adoptMu.Lock()
	defer s.adoptMu.Unlock()
	if s.scanned[target] {
		return false
	}
	if s.scanned == nil {
		s.scanned = map[string]bool{}
	}
	s.scanned[target] = true
	return true
}

// unrecordedAdoption tells whether a create to adopt is held in memory only, because the
// store could not list it.
func (s *Shared) unrecordedAdoption(key string) bool {
	s.adoptMu.Lock()
	defer s.adoptMu.Unlock()
	return s.unrecorded[key]
}

// holdAdoption keeps a create to adopt in memory (the store could not list it), or lets it
// go (held false) once it is resolved.
func (s *Shared) holdAdoption(key string, held bool) {
	s.adoptMu.Lock()
	defer s.adoptMu.Unlock()
	if !held {
		delete(s.unrecorded, key)
		return
	}
	if s.unrecorded == nil {
		s.unrecorded = map[string]bool{}
	}
	s.unrecorded[key] = true
}

// keyedMutex serialises work per key (a SCIM id, or a userName being created), so that
// the native calls and the commit of one resource are never interleaved with another
// request's for the same resource. A key may also be held shared (rlock): a group's
// member changes hold the group shared and each member they name exclusively (see
// lockJob).
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.RWMutex
	refs int
}

func newKeyedMutex() *keyedMutex { return &keyedMutex{locks: map[string]*keyedEntry{}} }

// lock locks key exclusively and returns its unlock function.
func (k *keyedMutex) lock(key string) func() {
	e := k.acquire(key)
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.release(key, e)
	}
}

// rlock locks key shared with other rlocks (and against lock) and returns its unlock
// function.
func (k *keyedMutex) rlock(key string) func() {
	e := k.acquire(key)
	e.mu.RLock()
	return func() {
		e.mu.RUnlock()
		k.release(key, e)
	}
}

// acquire returns key's entry, counting the holder in.
func (k *keyedMutex) acquire(key string) *keyedEntry {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	return e
}

// release counts a holder of key's entry out, forgetting the entry with its last holder.
func (k *keyedMutex) release(key string, e *keyedEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(k.locks, key)
	}
}

// call makes one native call the mapping built, with the target's headers.
func (t *Target) call(ctx context.Context, r mapping.Request) (*legacy.Response, error) {
	return t.Client.Do(ctx, legacy.Request{Method: r.Method, Path: r.Path, Header: t.withHeaders(r.Header), Body: r.Body, Idempotent: r.Idempotent, Expect: r.Expect})
}

// withHeaders returns a call's headers (from the mapping file) plus the target's own, which
// win; h is not changed.
func (t *Target) withHeaders(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for k, v := range t.Headers {
		out[k] = v
	}
	return out
}

// mapKey is the id map namespace of a resource type in this target: users and groups have
// separate native id spaces (account 2 and team 2 are different things).
func (t *Target) mapKey(typ string) string { return t.Name + "/" + typ }
