// Package etcdkv is the kv.DB on etcd: several gateways share one directory.
//
// Everything lives below one prefix (see the key layout in tx.go). Each process mirrors it in
// a local copy-on-write ordered map, loaded at one revision and kept current by a watch, so
// reads cost no round trip to etcd beyond a barrier:
//
//   - View first reads the head key with a linearizable Get (concurrent Views share one), waits
//     until the cache has applied the head's ModRevision, the last commit of any gateway,
//     and runs on a snapshot of the cache: it sees every write acknowledged before it began.
//     ViewRecent, with Config.MaxStaleness, reuses the head of a linearizable Get sent within
//     that time instead (see freshHead): it sees every write acknowledged by then, and this
//     gateway's own writes, at no round trip.
//   - Update runs on a snapshot and commits its changes in one etcd Txn guarded by the head's
//     ModRevision as of the snapshot, putting the head itself; when another gateway committed
//     first, the guard fails, the cache catches up and fn runs again (at once, without sending
//     the Txn, when the cache shows that commit by the time fn is done). Updates within one
//     process take turns, and Batch callers waiting for their turn share one commit.
//   - Changed is notified whenever the cache applies a change, from this gateway or another.
//
// Every write puts the head, so all gateways' writes are serialized by one compare: simple
// and strictly serializable (the journal needs one linear chain anyway), at the price of
// retries when gateways write at the same moment. Every commit adds a revision: run etcd with
// --auto-compaction-mode=periodic --auto-compaction-retention=5m (or compact otherwise) and
// defragment now and then, or its history grows until the space quota stops all writes
// (they then fail with kv.ErrUnavailable). A gateway whose watch falls behind a compaction
// reloads its cache.
package etcdkv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// Config configures Open. Endpoints and Prefix are required.
type Config struct {
	// Endpoints are the etcd client URLs, e.g. https://10.0.0.1:2379.
	Endpoints []string
	// Prefix is the key prefix everything lives below, e.g. "/scimgate/prod/"; it must end in
	// '/', so that no prefix is the beginning of another. Keys below Prefix+"e/" are left to
	// leader election.
	Prefix string
	// Username and Password authenticate to etcd when set.
	Username, Password string
	// TLS is the client's TLS configuration (nil: plain connections).
	TLS *tls.Config
	// DialTimeout bounds authentication and the first contact. Default 5s.
	DialTimeout time.Duration
	// CommitTimeout bounds a commit's Txn and the wait for the cache to show it. Default 5s.
	CommitTimeout time.Duration
	// BarrierTimeout bounds a View's linearizable read and the wait for the cache. Default 2s.
	BarrierTimeout time.Duration
	// LoadTimeout bounds loading the cache (at Open and after a compaction). Default 30s.
	LoadTimeout time.Duration
	// MaxTxnOps is the most operations one commit sends, the head's put included: etcd's
	// --max-txn-ops. Default 128.
	MaxTxnOps int
	// MaxTxnBytes is the most bytes one commit sends; keep it under etcd's
	// --max-request-bytes. Default 1.4 MiB (etcd's default limit is 1.5 MiB).
	MaxTxnBytes int
	// MaxRetries is how often Update runs fn again after losing the race to another gateway
	// before it fails with kv.ErrConflict; it also stops retrying once CommitTimeout has
	// passed since the first attempt. Default 1000.
	MaxRetries int
	// Serializable makes View skip the linearizable barrier and read the local cache as it
	// is: faster, but a View may miss a write another gateway acknowledged a moment ago,
	// for as long as the watch is behind (without bound when it is stuck). Tests only: a
	// gateway uses MaxStaleness.
	Serializable bool
	// MaxStaleness bounds what a ViewRecent may miss (0, the default: ViewRecent is View): it
	// runs without a round trip to etcd on a snapshot that holds the head seen by a
	// linearizable read sent at most MaxStaleness ago and every commit of this DB, so it
	// misses at most the writes other gateways acknowledged within the last MaxStaleness.
	// When that read is older, it sends one (shared with the Views waiting, as usual). View
	// and Update are not affected.
	MaxStaleness time.Duration
	// Name identifies this process in the head key it writes (debugging only). Default
	// hostname:pid.
	Name string
	// Logger receives the backend's logs (default: none). The etcd client logs below it,
	// at warnings and above.
	Logger *zap.Logger
}

// DB is a kv.DB on etcd.
type DB struct {
	cfg Config
	cli *clientv3.Client
	log *zap.Logger
	id  string

	ctx        context.Context
	cancel     context.CancelFunc
	followDone chan struct{}
	kick       chan struct{}

	// master is the cache, owned by the follow goroutine; snap is its latest published copy.
	master  *tree
	snap    atomic.Pointer[snapshot]
	applied kv.Notifier
	changed kv.Notifier

	barrierMu sync.Mutex
	barrier   barrier
	// fresh is the head of the latest linearizable read of it, and when it was sent; own is
	// the revision of this DB's latest commit (MaxStaleness reads).
	fresh atomic.Pointer[freshness]
	own   atomic.Int64

	// updateMu lets one write transaction at a time run in this process.
	updateMu sync.Mutex
	batchMu  sync.Mutex
	pending  []*call

	closeMu  sync.Mutex
	closed   bool
	inflight sync.WaitGroup

	stats struct{ commits, lost, seen, barriers atomic.Int64 }
}

// freshness is what a linearizable read of the head showed: every commit acknowledged
// before sent has a revision of at most head.
type freshness struct {
	sent time.Time
	head int64
}

// Stats counts a DB's commits and linearizable reads since Open.
type Stats struct {
	// Commits is the transactions that committed (one etcd revision each).
	Commits int64
	// Lost is the transactions sent that found another gateway's commit first (etcd ran
	// them through Raft and refused them); their functions ran again.
	Lost int64
	// Seen is the transactions not sent because the cache already showed another gateway's
	// commit after their snapshot; their functions ran again.
	Seen int64
	// Barriers is the linearizable reads of the head sent (each shared by the Views and
	// read-only Updates waiting for it).
	Barriers int64
}

// Stats returns the DB's counts since Open.
func (db *DB) Stats() Stats {
	return Stats{Commits: db.stats.commits.Load(), Lost: db.stats.lost.Load(), Seen: db.stats.seen.Load(),
		Barriers: db.stats.barriers.Load()}
}

// Open connects to etcd, loads the cache and starts following changes. It fails (wrapping
// kv.ErrUnavailable) if etcd cannot be read within the load timeout or before ctx ends; ctx
// bounds only the opening.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		Username:             cfg.Username,
		Password:             cfg.Password,
		TLS:                  cfg.TLS,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               clientLogger(log),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd %s: %w (%w)", cfg.endpoints(), kv.ErrUnavailable, err)
	}
	db := &DB{cfg: cfg, cli: cli, log: log, id: cfg.Name, followDone: make(chan struct{}), kick: make(chan struct{}, 1)}
	db.ctx, db.cancel = context.WithCancel(context.Background())
	db.barrier.db = db
	if err := db.load(ctx); err != nil {
		db.cancel()
		cli.Close()
		return nil, fmt.Errorf("loading %s: %w (%w)", db, kv.ErrUnavailable, err)
	}
	go db.follow(true)
	return db, nil
}

// clientLogger is the etcd client's logger: log's warnings and above. A logger already
// quieter than that (Caddy's `log { level ERROR }`, or `output discard`, which enables no
// level) is kept as it is: zap's IncreaseLevel refuses to lower it and prints a complaint
// to stderr at every start.
func clientLogger(log *zap.Logger) *zap.Logger {
	log = log.Named("etcdclient")
	if !log.Core().Enabled(zap.WarnLevel) {
		return log
	}
	return log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
}

func (cfg *Config) defaults() error {
	if len(cfg.Endpoints) == 0 {
		return errors.New("etcd store: no endpoints")
	}
	if cfg.Prefix == "" || !strings.HasSuffix(cfg.Prefix, "/") {
		return fmt.Errorf("etcd store: the prefix %q must be set and end in '/'", cfg.Prefix)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DialTimeout, 5*time.Second)
	def(&cfg.CommitTimeout, 5*time.Second)
	def(&cfg.BarrierTimeout, 2*time.Second)
	def(&cfg.LoadTimeout, 30*time.Second)
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = 128
	}
	if cfg.MaxTxnBytes <= 0 {
		cfg.MaxTxnBytes = 1400 * 1024
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 1000
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return nil
}

func (cfg *Config) endpoints() string { return strings.Join(cfg.Endpoints, ",") }

// String names the store: endpoints and prefix, never credentials.
func (db *DB) String() string { return "etcd " + db.cfg.endpoints() + " prefix " + db.cfg.Prefix }

// Shared is true: other gateways write the same data.
func (db *DB) Shared() bool { return true }

// Client is the etcd client, for code that needs etcd itself on the same connection (leader
// election below Prefix+"e/"). It is closed by Close.
func (db *DB) Client() *clientv3.Client { return db.cli }

// Prefix is the key prefix everything lives below.
func (db *DB) Prefix() string { return db.cfg.Prefix }

// Changed returns a channel closed after the cache next applied a change by any gateway.
func (db *DB) Changed() <-chan struct{} { return db.changed.Wait() }

// Close waits for transactions in flight, stops following etcd and closes the client.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return nil
	}
	db.closed = true
	db.closeMu.Unlock()
	db.inflight.Wait()
	db.cancel()
	<-db.followDone
	return db.cli.Close()
}

func (db *DB) enter() error {
	db.closeMu.Lock()
	defer db.closeMu.Unlock()
	if db.closed {
		return kv.ErrClosed
	}
	db.inflight.Add(1)
	return nil
}

// View runs fn on a snapshot that includes every commit acknowledged (by any gateway) before
// View was called, unless Config.Serializable.
func (db *DB) View(fn func(kv.Tx) error) error { return db.view(fn, false) }

// ViewRecent is View on a snapshot that may miss what other gateways committed within
// Config.MaxStaleness (see there).
func (db *DB) ViewRecent(fn func(kv.Tx) error) error { return db.view(fn, true) }

func (db *DB) view(fn func(kv.Tx) error, recent bool) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.inflight.Done()
	s := db.snap.Load()
	if !db.cfg.Serializable {
		var head int64
		ok := false
		if recent {
			head, ok = db.freshHead()
		}
		var err error
		if !ok {
			if head, err = db.barrier.wait(); err != nil {
				return err
			}
		}
		if s.rev < head {
			if s, err = db.waitApplied(head, db.cfg.BarrierTimeout); err != nil {
				return err
			}
		}
	}
	return fn(newReadTx(db, s))
}

// freshHead returns, with Config.MaxStaleness, the revision a snapshot must hold to miss
// no more than MaxStaleness allows: the head seen by a linearizable read sent within
// MaxStaleness, or this DB's own latest commit if later. ok is false when there is no such
// read (or no MaxStaleness): the caller needs a new one.
func (db *DB) freshHead() (head int64, ok bool) {
	if db.cfg.MaxStaleness <= 0 {
		return 0, false
	}
	f := db.fresh.Load()
	if f == nil || time.Since(f.sent) > db.cfg.MaxStaleness {
		return 0, false
	}
	return max(f.head, db.own.Load()), true
}

// sawHead records a linearizable read of the head sent at sent, unless a later one is
// already recorded.
func (db *DB) sawHead(sent time.Time, head int64) {
	f := &freshness{sent: sent, head: head}
	for {
		old := db.fresh.Load()
		if old != nil && !old.sent.Before(sent) {
			return
		}
		if db.fresh.CompareAndSwap(old, f) {
			return
		}
	}
}

// committed records this DB's commit at rev.
func (db *DB) committed(rev int64) {
	for {
		old := db.own.Load()
		if old >= rev || db.own.CompareAndSwap(old, rev) {
			return
		}
	}
}

// Revision returns the etcd revision a transaction of this package reads (every write up to
// it, none after), and false for another backend's transaction.
func Revision(t kv.Tx) (int64, bool) {
	if tt, ok := t.(*tx); ok {
		return tt.snap.rev, true
	}
	return 0, false
}

// Backup writes a consistent copy as a bbolt file (through a temporary file).
func (db *DB) Backup(w io.Writer) (int64, error) { return kv.WriteBolt(w, db) }

// call is one Update or Batch function and its outcome.
type call struct {
	fn    func(kv.Tx) error
	err   error
	hooks []func()
	// panicked holds what fn panicked with, to panic again in its caller's goroutine.
	panicked any
	done     chan struct{}
}

// Update runs fn in a write transaction and commits it; see the package doc.
func (db *DB) Update(fn func(kv.Tx) error) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.inflight.Done()
	c := &call{fn: fn}
	db.updateMu.Lock()
	db.run([]*call{c})
	db.updateMu.Unlock()
	return c.result()
}

// Batch is Update sharing one commit with the Batch callers that queued while the previous
// write was in flight (group commit). A function that fails is rolled back alone.
func (db *DB) Batch(fn func(kv.Tx) error) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.inflight.Done()
	c := &call{fn: fn, done: make(chan struct{})}
	db.batchMu.Lock()
	db.pending = append(db.pending, c)
	db.batchMu.Unlock()
	db.updateMu.Lock()
	select {
	case <-c.done: // an earlier turn took it
	default:
		db.batchMu.Lock()
		calls := db.pending
		db.pending = nil
		db.batchMu.Unlock()
		db.run(calls)
	}
	db.updateMu.Unlock()
	<-c.done
	return c.result()
}

// result runs the call's OnCommit functions if it committed and returns its error. It runs
// in the caller's goroutine without updateMu, so a hook may start another transaction.
func (c *call) result() error {
	if c.panicked != nil {
		panic(c.panicked)
	}
	if c.err == nil {
		for _, h := range c.hooks {
			h()
		}
	}
	return c.err
}

// run commits calls, in as many groups as the limits require. Called with updateMu held.
func (db *DB) run(calls []*call) {
	for len(calls) > 0 {
		n := db.commitGroup(calls)
		for _, c := range calls[:n] {
			if c.done != nil {
				close(c.done)
			}
		}
		calls = calls[n:]
	}
}

// commitGroup runs a prefix of calls on one transaction and commits it, retrying when
// another gateway committed first. It returns how many calls it settled (at least one).
func (db *DB) commitGroup(calls []*call) int {
	var current int64 // a head read linearizably during this call; see commit
	start := time.Now()
	for attempt := 0; ; attempt++ {
		t := newWriteTx(db, db.snap.Load())
		n := db.runCalls(t, calls)
		group := calls[:n]
		var rev int64
		var err error
		if !settled(group) {
			rev, err = db.commit(t, &current)
		}
		// Retry at once: exactly one of the colliding writers wins each round, so there is
		// no livelock to break, and a loser that slept would only fall behind a winner that
		// commits back to back (seen: 33 losses in a row with a backoff between tries).
		if errors.Is(err, errConflict) && attempt < db.cfg.MaxRetries && time.Since(start) < db.cfg.CommitTimeout {
			continue
		}
		if errors.Is(err, errConflict) {
			err = fmt.Errorf("committing to %s: %w (%d attempts)", db, kv.ErrConflict, attempt+1)
		}
		if err == nil && rev > 0 {
			db.committed(rev)
			if _, werr := db.waitApplied(rev, db.cfg.CommitTimeout); werr != nil {
				// Stored: report success. Later Views and Updates wait for the cache
				// themselves and fail if it stays behind.
				db.log.Warn("a commit is stored but the cache did not show it in time",
					zap.Int64("revision", rev), zap.Error(werr))
			}
		}
		for _, c := range group {
			if c.err == nil && c.panicked == nil {
				c.err = err
			}
		}
		return n
	}
}

// settled reports whether every call in group failed already, leaving nothing to commit.
func settled(group []*call) bool {
	for _, c := range group {
		if c.err == nil && c.panicked == nil {
			return false
		}
	}
	return true
}

// runCalls runs calls on t one after another, each from a savepoint: a call that fails is
// rolled back alone, and a call that would take the group over the limits ends the group
// (it runs in the next one) unless no call before it changed anything, in which case it
// fails with kv.ErrTxnTooLarge. It returns how many calls the group holds.
func (db *DB) runCalls(t *tx, calls []*call) int {
	for i, c := range calls {
		sp := t.save()
		before := t.changed()
		c.err, c.panicked, c.hooks = nil, nil, nil
		err := c.invoke(t)
		if err == nil && t.changed() {
			if err = db.tooLarge(t.plan(db.cfg.Prefix)); err != nil && before {
				t.restore(sp)
				return i
			}
		}
		if err != nil {
			t.restore(sp)
			c.err = err
			continue
		}
		c.hooks = append(c.hooks, t.hooks[sp.hooks:]...)
	}
	return len(calls)
}

func (c *call) invoke(t *tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.panicked = p
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return c.fn(t)
}

// errConflict is commit's "another gateway committed first".
var errConflict = errors.New("conflict")

// commit sends t's changes in one Txn guarded by the head's ModRevision of t's snapshot and
// returns the revision it committed at. A transaction that changed nothing commits nothing,
// but what fn read must still have been current: the snapshot must include the head as read
// linearizably during this call (*current, read here if not yet).
func (db *DB) commit(t *tx, current *int64) (int64, error) {
	p := t.plan(db.cfg.Prefix)
	if len(p.ops) == 0 {
		if db.cfg.Serializable || (*current > 0 && t.snap.rev >= *current) {
			return 0, nil
		}
		head, err := db.readHead(db.cfg.BarrierTimeout)
		if err != nil {
			return 0, err
		}
		if head == t.snap.head {
			return 0, nil
		}
		*current = head
		if _, err := db.waitApplied(head, db.cfg.BarrierTimeout); err != nil {
			return 0, err
		}
		return 0, errConflict
	}
	if err := db.tooLarge(p); err != nil {
		return 0, err
	}
	if s := db.snap.Load(); s.head != t.snap.head {
		// The cache already shows another gateway's commit after t's snapshot: the compare
		// would fail, and a Txn that fails its compare still costs a Raft round (a WAL
		// fsync on every member).
		db.stats.seen.Add(1)
		return 0, errConflict
	}
	head := db.cfg.Prefix + headKey
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(db.ctx), db.cfg.CommitTimeout)
	defer cancel()
	resp, err := db.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(head), "=", t.snap.head)).
		Then(append(p.ops, clientv3.OpPut(head, db.id))...).
		Else(clientv3.OpGet(head)).
		Commit()
	if err != nil {
		// Whether it was stored is unknown: never retry (fn would run on top of its own
		// commit) and never report success.
		return 0, etcdErr("committing", err)
	}
	if resp.Succeeded {
		db.stats.commits.Add(1)
		return resp.Header.Revision, nil
	}
	db.stats.lost.Add(1)
	var newer int64
	if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
		newer = rr.Kvs[0].ModRevision
	}
	if _, err := db.waitApplied(newer, db.cfg.CommitTimeout); err != nil {
		return 0, err
	}
	return 0, errConflict
}

var (
	_ kv.DB           = (*DB)(nil)
	_ kv.RecentViewer = (*DB)(nil)
)
