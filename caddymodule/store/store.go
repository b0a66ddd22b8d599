// Package store is the gateway's directory: SCIM resources, their lookup indexes and group
// membership edges, kept in one bbolt file.
//
// The store is storage only. It knows nothing of SCIM semantics: callers decide what a
// resource's attributes mean and hand the store the index values to maintain. What the store
// guarantees is the cost model the gateway depends on: a lookup by an indexed value is one
// cursor seek (O(log n)), and adding or removing one member of a group costs the same for a
// group of 100,000 members as for an empty one, because every membership edge is its own key.
//
// Layout (all keys are byte strings; ids, types and attribute names never contain NUL):
//
//	records/<type>  id                                   -> record (header, index entries, doc)
//	ids             id                                   -> type
//	index           type \0 attr \0 folded value \0 id   -> flags
//	members         groupID \0 memberID                  -> member type and display
//	memberOf        memberID \0 groupID                  -> (empty)
//	meta            "format"                             -> format version
//	                "count" \0 type                      -> number of records of type
//	                "outboxNames" \0 target              -> version its outbox's name index was built to
//	idmap           target \0 SCIM id                    -> native id
//	idmapRev        target \0 native id                  -> SCIM id
//	marks           target \0 SCIM id                    -> what policy did to the app's account
//	outbox          target \0 seq                        -> a queued delivery (see outbox.go)
//	outboxRes       target \0 resource id \0 seq         -> (empty)
//	outboxState     target                               -> paused by an operator
//	outboxName      target \0 type \0 folded name \0 seq -> resource id (a task that frees the name)
//	outboxNameOf    target \0 seq                        -> type \0 folded name
//	retired         target \0 native id                  -> when, the deleted resource's SCIM id and name (retired.go)
//	retiredAt       target \0 when \0 native id           -> (empty)
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// formatVersion is written into a new file and checked on every Open, so that a binary never
// misreads a file written with a layout it does not know. Every release so far writes 1 and
// refuses any other value: a layout change that earlier releases would misread must raise it
// (they then refuse the file, and rollback needs the backup taken before the upgrade); one
// they can ignore (a new bucket) must not, so that rolling back stays possible.
const formatVersion uint64 = 1

// defaultTimeout bounds how long Open waits for the file lock. A second gateway (or a config
// reload that failed to release the old store) must fail fast with a clear error, not hang.
const defaultTimeout = time.Second

var (
	bucketRecords      = []byte("records")
	bucketIDs          = []byte("ids")
	bucketIndex        = []byte("index")
	bucketMembers      = []byte("members")
	bucketMemberOf     = []byte("memberOf")
	bucketMeta         = []byte("meta")
	bucketIDMap        = []byte("idmap")        // target \x00 SCIM id -> native id
	bucketIDMapRev     = []byte("idmapRev")     // target \x00 native id -> SCIM id
	bucketMarks        = []byte("marks")        // target \x00 SCIM id -> what policy did to the app's account
	bucketAdopt        = []byte("adopt")        // target \x00 type \x00 folded name -> seq of the create's intent, then what it sent (SetAdoptionSent)
	bucketProgress     = []byte("progress")     // target \x00 SCIM id -> the calls a failed flow made
	bucketRoles        = []byte("roles")        // target \x00 group's SCIM id -> the app's role it stands for
	bucketWithheld     = []byte("withheld")     // target \x00 group \x00 member -> kept out of the role by policy
	bucketOutbox       = []byte("outbox")       // target \x00 seq -> a queued delivery (outbox.go)
	bucketOutboxRes    = []byte("outboxRes")    // target \x00 resource id \x00 seq -> (empty)
	bucketOutboxState  = []byte("outboxState")  // target -> paused by an operator
	bucketOutboxName   = []byte("outboxName")   // target \x00 type \x00 folded name \x00 seq -> resource id (outbox.go)
	bucketOutboxNameOf = []byte("outboxNameOf") // target \x00 seq -> type \x00 folded name
	bucketReports      = []byte("reports")      // 8-byte seq -> a reconcile report (reports.go)
	bucketRepSums      = []byte("repsums")      // 8-byte seq -> the report's summary
	bucketStats        = []byte("stats")        // target \x00 Unix minute -> the policy's counts (stats.go)
	bucketRetired      = []byte("retired")      // target \x00 native id -> a deleted resource's account (retired.go)
	bucketRetiredAt    = []byte("retiredAt")    // target \x00 when \x00 native id -> (empty)

	keyFormat = []byte("format")
)

// topBuckets are created by Open, so read transactions can rely on them existing.
var topBuckets = [][]byte{bucketRecords, bucketIDs, bucketIndex, bucketMembers, bucketMemberOf, bucketMeta, bucketIDMap, bucketIDMapRev, bucketMarks, bucketAdopt, bucketProgress, bucketRoles, bucketWithheld, bucketOutbox, bucketOutboxRes, bucketOutboxState, bucketOutboxName, bucketOutboxNameOf, bucketReports, bucketRepSums, bucketStats, bucketRetired, bucketRetiredAt}

// ErrNotFound is returned when a record (or the type holding an id) does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrInvalidKey is returned (wrapped, with details) for an empty or NUL-containing type, id or
// attribute name, or a key longer than bbolt accepts. Callers bound client input before it
// reaches the store; this is the last line of defence, and it never panics.
var ErrInvalidKey = errors.New("store: invalid key")

// ErrIDInUse is returned (wrapped) when Put is given an id already held by a record of another
// type. Ids are the gateway's own and unique across types, so that a membership edge (which
// names only an id) always resolves to one record.
var ErrIDInUse = errors.New("store: id already used by a record of another type")

// ErrReadOnly is returned by write methods called inside View.
var ErrReadOnly = errors.New("store: write in a read-only transaction")

// ErrCorrupt is returned (wrapped) when a stored value cannot be decoded.
var ErrCorrupt = errors.New("store: corrupt value")

// UniqueError reports that Put would give the (Type, Attr, folded Value) of a unique index
// entry to a second id. OwnerID is the id that already holds it.
type UniqueError struct {
	Type, Attr, Value, OwnerID string
}

func (e *UniqueError) Error() string {
	return fmt.Sprintf("store: %s %s %q is already used by %s", e.Type, e.Attr, e.Value, e.OwnerID)
}

// Options tune Open. The zero value is usable.
type Options struct {
	// Timeout is how long Open waits for the file lock. Default 1s.
	Timeout time.Duration
}

// Store is an open directory file. It is safe for concurrent use.
type Store struct {
	db      kv.DB
	commits atomic.Uint64
	group   committer

	// hookedTx is the last write transaction that got the commit counter hook. It is read and
	// written only inside write transactions, which the backend serialises within a process,
	// so it needs no lock of its own. Holding it keeps the old transaction from being
	// collected, so a new one can never reuse its address.
	hookedTx kv.Tx
}

// Open opens the bbolt file at path, creating it (and its directories, 0o700; the file 0o600)
// if needed, and creates the store's buckets. A bbolt file can be open only once at a time,
// even within one process: if the lock is not obtained within opts.Timeout, the error says
// that another process holds the file and wraps go.etcd.io/bbolt/errors.ErrTimeout.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	db, err := kv.OpenBolt(path, kv.BoltOptions{Timeout: opts.Timeout})
	if err != nil {
		return nil, err
	}
	s, err := New(db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// New makes a store of an open kv database (bbolt or etcd), creating its buckets. Close
// closes db.
func New(db kv.DB) (*Store, error) {
	if err := db.Update(initBuckets); err != nil {
		return nil, fmt.Errorf("initialising store %s: %w", db, err)
	}
	return &Store{db: db, group: committer{db: db}}, nil
}

// initBuckets creates the top-level buckets and checks (or writes) the format version.
func initBuckets(tx kv.Tx) error {
	for _, name := range topBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("creating bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keyFormat)
	if v == nil {
		return meta.Put(keyFormat, encodeUint64(formatVersion))
	}
	if len(v) != 8 {
		return fmt.Errorf("%w: the format key holds %x", ErrCorrupt, v)
	}
	switch got := binary.BigEndian.Uint64(v); {
	case got > formatVersion:
		return fmt.Errorf("unsupported store format %d: newer than this binary's %d (a newer scimgate wrote it); "+
			"run that version, or go on with this one from the backup taken before the upgrade", got, formatVersion)
	case got != formatVersion:
		return fmt.Errorf("unsupported store format %d: this binary reads format %d only", got, formatVersion)
	}
	return nil
}

// Close closes the file. Transactions in flight finish first.
func (s *Store) Close() error { return s.db.Close() }

// DB is the underlying bbolt database, for packages (the journal) that keep their own buckets
// in the same file and write them in the same transaction as the directory.
func (s *Store) DB() kv.DB { return s.db }

// Commits is the number of write transactions Update has committed. Concurrent Updates that
// bbolt groups into one commit count once, so Commits against the number of Update calls
// shows how well group commit works.
func (s *Store) Commits() uint64 { return s.commits.Load() }

// View runs fn in a read-only transaction. Records it returns are copies and stay valid after
// View returns.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(btx kv.Tx) error {
		return fn(&Tx{tx: btx})
	})
}

// ViewRecent is View for a read that answers a client and decides nothing: on a store
// configured so (etcd's read_staleness), its snapshot may miss what other gateways wrote
// within that bound, and costs no round trip (kv.RecentViewer).
func (s *Store) ViewRecent(fn func(*Tx) error) error {
	return kv.ViewRecent(s.db, func(btx kv.Tx) error {
		return fn(&Tx{tx: btx})
	})
}

// ViewRecentFound is ViewRecent for a read that may find nothing: when fn reports it found
// nothing on a snapshot that may miss other gateways' latest writes, fn runs again on View's
// snapshot, so that what another gateway has just acknowledged is never answered as missing
// (a GET of the user it created, the filter that looks for it). A miss costs the round trip
// a hit saves; fn may run twice and must start from nothing each time.
func (s *Store) ViewRecentFound(fn func(*Tx) (found bool, err error)) error {
	var found bool
	err := s.ViewRecent(func(tx *Tx) (err error) {
		found, err = fn(tx)
		return err
	})
	if err != nil || found {
		return err
	}
	if _, stale := s.db.(kv.RecentViewer); !stale {
		return nil
	}
	return s.View(func(tx *Tx) error {
		_, err := fn(tx)
		return err
	})
}

// Update runs fn in a write transaction shared with concurrent callers (group commit: many
// requests, one fsync; see committer).
//
// fn may run more than once: if any function in the shared transaction fails, the whole
// transaction is rolled back and the functions run again (the failing one alone), exactly as
// with bbolt's db.Batch. Each run
// starts from the committed state, so fn must be idempotent with respect to anything outside
// the transaction: compute everything from what it reads in tx, and perform side effects
// (responses, backend calls, metrics) only after Update returns nil. Put and Delete are safe
// to rerun: a second Put of the same record replaces it (counters unchanged) and a second
// Delete returns ErrNotFound.
func (s *Store) Update(fn func(*Tx) error) error {
	return s.group.update(func(btx kv.Tx) error {
		s.hookCommit(btx)
		return fn(&Tx{tx: btx, writable: true})
	})
}

// hookCommit registers the commit counter once per bbolt transaction, however many batched
// functions share it.
func (s *Store) hookCommit(btx kv.Tx) {
	if s.hookedTx == btx {
		return
	}
	s.hookedTx = btx
	btx.OnCommit(func() { s.commits.Add(1) })
}
