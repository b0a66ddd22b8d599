package kv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// BoltOptions tune OpenBolt. The zero value is usable.
type BoltOptions struct {
	// Timeout is how long OpenBolt waits for the file lock. Default 1s.
	Timeout time.Duration
	// ReadOnly opens the file shared, for tools that read a gateway's file (verify, export).
	ReadOnly bool
}

// Bolt is a DB in one bbolt file: the embedded default.
type Bolt struct {
	db      *bbolt.DB
	changed Notifier
}

// OpenBolt opens the bbolt file at path, creating it (and its directories, 0o700; the file
// 0o600) if needed. A bbolt file can be open only once at a time, even within one process:
// if the lock is not obtained within opts.Timeout, the error says that another process holds
// the file and wraps go.etcd.io/bbolt/errors.ErrTimeout.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	bopts := &bbolt.Options{Timeout: opts.Timeout, InitialMmapSize: 1 << 30, ReadOnly: opts.ReadOnly}
	if opts.ReadOnly {
		bopts.InitialMmapSize = 0
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating directory for store %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, bopts)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("opening store %s: another process holds the file (waited %s): %w",
			path, opts.Timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// NewBolt wraps an open bbolt database.
func NewBolt(db *bbolt.DB) *Bolt { return &Bolt{db: db} }

// Bolt is the underlying bbolt database.
func (b *Bolt) Bolt() *bbolt.DB { return b.db }

// Path is the file's path.
func (b *Bolt) Path() string { return b.db.Path() }

func (b *Bolt) String() string { return b.db.Path() }

// Shared is false: a bbolt file has one writer process.
func (b *Bolt) Shared() bool { return false }

// Close closes the file.
func (b *Bolt) Close() error { return b.db.Close() }

// Changed returns a channel closed after the next commit.
func (b *Bolt) Changed() <-chan struct{} { return b.changed.Wait() }

// View runs fn in a bbolt read transaction.
func (b *Bolt) View(fn func(Tx) error) error {
	return boltErr(b.db.View(func(tx *bbolt.Tx) error { return fn(newBoltTx(tx)) }))
}

// Update runs fn in a bbolt write transaction.
func (b *Bolt) Update(fn func(Tx) error) error {
	err := b.db.Update(func(tx *bbolt.Tx) error { return fn(newBoltTx(tx)) })
	if err == nil {
		b.changed.Notify()
	}
	return boltErr(err)
}

// Batch runs fn through bbolt's Batch (one commit for concurrent callers).
func (b *Bolt) Batch(fn func(Tx) error) error {
	err := b.db.Batch(func(tx *bbolt.Tx) error { return fn(newBoltTx(tx)) })
	if err == nil {
		b.changed.Notify()
	}
	return boltErr(err)
}

// Backup writes the file as of one read transaction.
func (b *Bolt) Backup(w io.Writer) (int64, error) {
	var n int64
	err := b.db.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// BoltTx returns the bbolt transaction behind tx, for code that needs bbolt itself (tests
// that corrupt a file on purpose). It returns nil for other backends.
func BoltTx(tx Tx) *bbolt.Tx {
	if t, ok := tx.(boltTx); ok {
		return t.s.tx
	}
	return nil
}

// The wrappers are single pointers, so converting them to interfaces does not allocate.
// A transaction keeps the buckets it opened (bbolt's read transactions open a bucket afresh
// at every lookup), each with a cursor for Get: bbolt's Get makes a cursor per call, and a
// change of thousands of member edges spent a fifth of its allocations there (issue 11). A
// transaction is used by one goroutine at a time, as the kv contract has it.
type boltTx struct{ s *boltTxState }

type boltTxState struct {
	tx      *bbolt.Tx
	buckets map[string]*boltBucketState // top-level buckets opened, by name
}

func newBoltTx(tx *bbolt.Tx) boltTx { return boltTx{&boltTxState{tx: tx}} }

func (t boltTx) Writable() bool     { return t.s.tx.Writable() }
func (t boltTx) OnCommit(fn func()) { t.s.tx.OnCommit(fn) }

func (t boltTx) Bucket(name []byte) Bucket {
	if st := t.s.buckets[string(name)]; st != nil {
		return boltBucket{st}
	}
	b := t.s.tx.Bucket(name)
	if b == nil {
		return nil
	}
	return boltBucket{keepBucket(&t.s.buckets, name, b)}
}

func (t boltTx) CreateBucketIfNotExists(name []byte) (Bucket, error) {
	b, err := t.s.tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, boltErr(err)
	}
	return boltBucket{keepBucket(&t.s.buckets, name, b)}, nil
}

// keepBucket records bucket b under name in m (made when nil) and returns its state: the
// one recorded already when it is b's.
func keepBucket(m *map[string]*boltBucketState, name []byte, b *bbolt.Bucket) *boltBucketState {
	if st := (*m)[string(name)]; st != nil && st.b == b {
		return st
	}
	if *m == nil {
		*m = make(map[string]*boltBucketState)
	}
	st := &boltBucketState{b: b}
	(*m)[string(name)] = st
	return st
}

func (t boltTx) ForEachBucket(fn func(name []byte) error) error {
	return t.s.tx.ForEach(func(name []byte, _ *bbolt.Bucket) error { return fn(name) })
}

type boltBucket struct{ s *boltBucketState }

type boltBucketState struct {
	b        *bbolt.Bucket
	get      *bbolt.Cursor               // Get's, made at the first Get
	children map[string]*boltBucketState // nested buckets opened, by name
}

// Get returns nil for a nested bucket's name, as bbolt does. It seeks with the bucket's
// own cursor (bbolt's Get makes one per call); a seek starts from the bucket's root, so
// it sees every write of the transaction.
func (b boltBucket) Get(key []byte) []byte {
	st := b.s
	if st.get == nil {
		st.get = st.b.Cursor()
	}
	k, v := st.get.Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v // nil for a nested bucket
}

func (b boltBucket) Put(key, value []byte) error { return boltErr(b.s.b.Put(key, value)) }
func (b boltBucket) Delete(key []byte) error     { return boltErr(b.s.b.Delete(key)) }
func (b boltBucket) Cursor() Cursor              { return boltCursor{b.s.b.Cursor()} }
func (b boltBucket) NextSequence() (uint64, error) {
	n, err := b.s.b.NextSequence()
	return n, boltErr(err)
}
func (b boltBucket) Sequence() uint64           { return b.s.b.Sequence() }
func (b boltBucket) SetSequence(v uint64) error { return boltErr(b.s.b.SetSequence(v)) }

func (b boltBucket) ForEach(fn func(k, v []byte) error) error {
	return b.s.b.ForEach(func(k, v []byte) error {
		if v == nil {
			return nil // a nested bucket
		}
		return fn(k, v)
	})
}

func (b boltBucket) ForEachBucket(fn func(name []byte) error) error {
	return b.s.b.ForEachBucket(fn)
}

func (b boltBucket) Bucket(name []byte) Bucket {
	if st := b.s.children[string(name)]; st != nil {
		return boltBucket{st}
	}
	nb := b.s.b.Bucket(name)
	if nb == nil {
		return nil
	}
	return boltBucket{keepBucket(&b.s.children, name, nb)}
}

func (b boltBucket) CreateBucketIfNotExists(name []byte) (Bucket, error) {
	nb, err := b.s.b.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, boltErr(err)
	}
	return boltBucket{keepBucket(&b.s.children, name, nb)}, nil
}

func (b boltBucket) DeleteBucket(name []byte) error {
	delete(b.s.children, string(name))
	return boltErr(b.s.b.DeleteBucket(name))
}

// boltCursor skips nested buckets (bbolt lists them with a nil value).
type boltCursor struct{ c *bbolt.Cursor }

func (c boltCursor) skip(k, v []byte, next func() ([]byte, []byte)) ([]byte, []byte) {
	for k != nil && v == nil {
		k, v = next()
	}
	return k, v
}

func (c boltCursor) First() ([]byte, []byte) { k, v := c.c.First(); return c.skip(k, v, c.c.Next) }
func (c boltCursor) Last() ([]byte, []byte)  { k, v := c.c.Last(); return c.skip(k, v, c.c.Prev) }
func (c boltCursor) Next() ([]byte, []byte)  { k, v := c.c.Next(); return c.skip(k, v, c.c.Next) }
func (c boltCursor) Prev() ([]byte, []byte)  { k, v := c.c.Prev(); return c.skip(k, v, c.c.Prev) }
func (c boltCursor) Seek(seek []byte) ([]byte, []byte) {
	k, v := c.c.Seek(seek)
	return c.skip(k, v, c.c.Next)
}
func (c boltCursor) Delete() error { return boltErr(c.c.Delete()) }

// boltErr maps bbolt's errors to this package's, keeping the original in the chain.
func boltErr(err error) error {
	var kvErr error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrTxNotWritable):
		kvErr = ErrTxNotWritable
	case errors.Is(err, berrors.ErrBucketNotFound):
		kvErr = ErrBucketNotFound
	case errors.Is(err, berrors.ErrIncompatibleValue):
		kvErr = ErrIncompatibleValue
	case errors.Is(err, berrors.ErrKeyRequired), errors.Is(err, berrors.ErrBucketNameRequired):
		kvErr = ErrKeyRequired
	case errors.Is(err, berrors.ErrKeyTooLarge):
		kvErr = ErrKeyTooLarge
	case errors.Is(err, berrors.ErrDatabaseNotOpen), errors.Is(err, berrors.ErrTxClosed):
		kvErr = ErrClosed
	default:
		return err
	}
	if errors.Is(err, kvErr) { // mapped already (a bucket's error returned by fn)
		return err
	}
	return fmt.Errorf("%w (%w)", kvErr, err)
}

// Notifier is a broadcast of "something changed": Wait returns a channel that Notify closes.
// The zero value is ready to use.
type Notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns the channel the next Notify closes.
func (n *Notifier) Wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// Notify wakes everyone waiting.
func (n *Notifier) Notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// SetFillPercent tells a bbolt bucket how full to fill its pages before splitting them (0.1
// to 1.0; high for buckets whose keys only ever grow). Other backends ignore it.
func SetFillPercent(b Bucket, f float64) {
	if bb, ok := b.(boltBucket); ok {
		bb.s.b.FillPercent = f
	}
}
