package caddymodule

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// stores holds one open store per file for the whole process: a bbolt file can be opened
// only once, and Caddy provisions a new config (which needs the store) before it cleans up
// the old one (which still holds it). Each store carries its audit journal, registered
// with the admin routes (journaladmin) while the store is open.
var stores = caddy.NewUsagePool()

type storeHandle struct {
	*store.Store
	journal    *journal.Journal
	journalPub ed25519.PublicKey // verifies checkpoints; nil when they are unsigned
	journalFP  [32]byte          // fingerprint of the journal settings it was opened with
	unregister func()            // takes the journal off the admin routes (journaladmin)
	// locks serialise requests per resource across the configs that share the store, so a
	// reload does not let an old and a new config interleave changes of one resource.
	locks *keyedMutex

	// adoptMu guards adopt: per target, the creates an unfinished earlier attempt may have
	// left in the app. The start-up scan fills it once per store and target; configs that
	// reload on the same open store share it (their in-flight intents are not crashes).
	adoptMu sync.Mutex
	adopt   map[string]*adoptions

	// statsMu guards stats: per target, the policy's counts of the last hour. The first
	// config with a policy seeds them from the journal; configs that reload on the same
	// open store with a policy share them, so a reload neither scans the journal again nor
	// loses the changes the previous config still has in flight.
	statsMu sync.Mutex
	stats   map[string]*eventWindow
}

// statsFor returns the target's stats window, made by seed when no config with a policy
// has one on this store yet. A seed that fails leaves nothing behind.
func (h *storeHandle) statsFor(target string, seed func() (*eventWindow, error)) (*eventWindow, error) {
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	if w, ok := h.stats[target]; ok {
		return w, nil
	}
	w, err := seed()
	if err != nil {
		return nil, err
	}
	if h.stats == nil {
		h.stats = map[string]*eventWindow{}
	}
	h.stats[target] = w
	return w, nil
}

// dropStats forgets the target's stats window: a config without a policy does not count
// changes, so the next config with one must seed its counts from the journal again.
func (h *storeHandle) dropStats(target string) {
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	delete(h.stats, target)
}

// adoptionsFor returns the target's adoptions and whether they are new (the journal has
// not been scanned for this target since the store was opened).
func (h *storeHandle) adoptionsFor(target string) (*adoptions, bool) {
	h.adoptMu.Lock()
	defer h.adoptMu.Unlock()
	if a, ok := h.adopt[target]; ok {
		return a, false
	}
	if h.adopt == nil {
		h.adopt = map[string]*adoptions{}
	}
	a := &adoptions{pending: map[string]uint64{}}
	h.adopt[target] = a
	return a, true
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
	h.unregister()
	jerr := h.journal.Close()
	if err := h.Close(); err != nil {
		return err
	}
	return jerr
}

// acquireStore opens the store at path (or shares the open one) with its journal. The
// journal settings of the config that opened the store apply until the process restarts.
func acquireStore(path string, jopts journal.Options, jpub ed25519.PublicKey) (*storeHandle, error) {
	v, _, err := stores.LoadOrNew(path, func() (caddy.Destructor, error) {
		s, err := store.Open(path, store.Options{})
		if err != nil {
			return nil, err
		}
		logger := caddy.Log().Named("scimgate.journal")
		jopts.Logger = logger
		// The journal logs every checkpoint through this logger, so that an external log
		// sink holds a copy of what a tamperer with write access to the file cannot forge.
		j, err := journal.Open(s.DB(), jopts)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("opening journal in %s: %w", path, err)
		}
		if jpub != nil {
			logger.Info("journal checkpoints are signed",
				zap.String("journal", jopts.Name),
				zap.String("key_id", jopts.KeyID),
				zap.String("public_key", base64.StdEncoding.EncodeToString(jpub)))
		}
		return &storeHandle{Store: s, journal: j, journalPub: jpub, journalFP: journalFingerprint(jopts), locks: newKeyedMutex(), unregister: journaladmin.Register(j, jpub)}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	return v.(*storeHandle), nil
}

func releaseStore(path string) error {
	if _, err := stores.Delete(path); err != nil {
		return fmt.Errorf("closing store %s: %w", path, err)
	}
	return nil
}
