package caddymodule

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/fleet"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/store"
	"github.com/scimgate/scimgate/caddymodule/storeconfig"
)

// stores holds one open store per file for the whole process: a bbolt file can be opened
// only once, and Caddy provisions a new config (which needs the store) before it cleans up
// the old one (which still holds it). Each store carries its audit journal, registered
// with the admin routes (journaladmin) while the store is open.
var stores = caddy.NewUsagePool()

type storeHandle struct {
	*store.Store
	journal     *journal.Journal
	journalKeys []ed25519.PublicKey // verify checkpoints: the signing key's, then earlier ones; none when unsigned
	journalFP   [32]byte            // fingerprint of the journal settings it was opened with
	// shared is the provisioning engines' state of this store, shared by the configs that
	// use it (locks per resource, adoptions, the policy's stats): see provision.Shared.
	shared *provision.Shared
	// elector elects, among the gateways sharing the store, the one that runs each
	// background job (deliveries, scheduled reconciles, checkpoints, retention): fleet.Solo
	// for a store of this process's own (bbolt), an etcd election for a shared one.
	elector    fleet.Elector
	unregister func() // takes the journal off the admin routes (journaladmin)
}

// journalFingerprint identifies journal settings, so that a reload that changes them for a
// store that stays open can say that they apply only after a restart.
func journalFingerprint(o journal.Options) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%q|%q|%d|%d|%q|%d|%d|%d|", o.Name, o.Redact, o.CheckpointEvery, o.CheckpointInterval, o.KeyID, o.MaxAge, o.MaxRecords, o.MaxBytes)
	h.Write(o.SigningKey)
	var fp [32]byte
	copy(fp[:], h.Sum(nil))
	return fp
}

// Destruct closes the journal and the store when their last user is gone.
func (h *storeHandle) Destruct() error {
	h.shared.Close() // the outbox workers stop before the store they deliver from closes
	h.unregister()
	jerr := h.journal.Close()
	// Every job is stopped: resign them (revoking the lease) before the store's client
	// closes, so that another gateway takes them over at once.
	eerr := h.elector.Close()
	if db, ok := h.DB().(*etcdkv.DB); ok {
		etcdStores.Delete(db)
	}
	if err := h.Close(); err != nil {
		return err
	}
	return errors.Join(jerr, eerr)
}

// acquireStore opens the store at path (or shares the open one) with its journal. The
// journal settings of the config that opened the store apply until the process restarts.
func acquireStore(sc *storeconfig.Resolved, jopts journal.Options, jkeys []ed25519.PublicKey) (*storeHandle, error) {
	path := sc.Key
	v, _, err := stores.LoadOrNew(path, func() (caddy.Destructor, error) {
		s, err := openStore(sc)
		if err != nil {
			return nil, err
		}
		el, err := fleet.For(s.DB(), fleet.EtcdOptions{TTL: sc.LeaseTTL, Logger: caddy.Log().Named("scimgate.fleet")})
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("store %s: %w", path, err)
		}
		logger := caddy.Log().Named("scimgate.journal")
		jopts.Logger = logger
		jopts.Elector = el
		jopts.Gateway = fleet.Name(el) // in a fleet, every record names its gateway
		// The journal logs every checkpoint through this logger, so that an external log
		// sink holds a copy of what a tamperer with write access to the file cannot forge.
		j, err := journal.Open(s.DB(), jopts)
		if err != nil {
			_ = el.Close()
			_ = s.Close()
			return nil, fmt.Errorf("opening journal in %s: %w", path, err)
		}
		if len(jkeys) > 0 {
			logger.Info("journal checkpoints are signed",
				zap.String("journal", jopts.Name),
				zap.String("key_id", jopts.KeyID),
				zap.String("public_key", base64.StdEncoding.EncodeToString(jkeys[0])),
				zap.Int("earlier_keys_trusted", len(jkeys)-1))
		}
		h := &storeHandle{Store: s, journal: j, journalKeys: jkeys, journalFP: journalFingerprint(jopts), shared: provision.NewShared(el), elector: el, unregister: journaladmin.Register(j, jkeys)}
		if db, ok := s.DB().(*etcdkv.DB); ok {
			etcdStores.Store(db, struct{}{})
		}
		return h, nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	return v.(*storeHandle), nil
}

// inflight counts a config's requests in progress, so that its Cleanup, which Caddy runs
// as soon as the config's servers begin shutting down, releases the store only once the
// last of them has ended: a reload that moves the store elsewhere would otherwise close it
// under a request whose app call has been made and whose outcome is not yet committed.
type inflight struct {
	mu     sync.Mutex
	n      int
	onIdle func() // what Cleanup left to run when the last request ends
}

func (f *inflight) enter() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inflight) leave() {
	f.mu.Lock()
	f.n--
	var run func()
	if f.n == 0 {
		run, f.onIdle = f.onIdle, nil
	}
	f.mu.Unlock()
	if run != nil {
		run()
	}
}

// whenIdle runs fn now, and returns its error, when no request is in progress; otherwise
// when the last one ends.
func (f *inflight) whenIdle(fn func() error) error {
	f.mu.Lock()
	if f.n > 0 {
		f.onIdle = func() { _ = fn() }
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	return fn()
}

func releaseStore(path string) error {
	if _, err := stores.Delete(path); err != nil {
		return fmt.Errorf("closing store %s: %w", path, err)
	}
	return nil
}
