// Package kv is the ordered key-value interface the gateway keeps everything in: the
// directory (store), the journal, the outbox and the policy's counts. It has the shape of
// bbolt's API (transactions, nested buckets, cursors, sequences) so that code written for
// bbolt reads the same, and two implementations: Bolt, one embedded file (the default), and
// the etcd backend in kv/etcdkv, which lets several gateways share one directory.
//
// The contract both implementations keep:
//   - View runs fn on a consistent snapshot; Update runs fn in a serializable write
//     transaction that commits entirely or not at all.
//   - Update and Batch may run fn more than once (bbolt's Batch retries a failed batch; etcd
//     reruns fn when another gateway committed first). fn must compute everything from what
//     it reads in the transaction and perform side effects only after Update returns nil, or
//     in OnCommit.
//   - Values returned by Get and cursors are valid only inside the transaction; copy them to
//     keep them.
//   - Put keeps its own copy of the key (the caller may reuse the key's buffer at once), but
//     not of the value on bbolt: a value passed to Put must stay unchanged until the
//     transaction ends.
//   - Cursor and ForEach visit the keys that hold values, in byte order; nested buckets are
//     listed with ForEachBucket. A key and a nested bucket never share a name.
//   - A transaction too large for the backend fails with ErrTxnTooLarge before anything is
//     written; a backend that cannot reach its data (etcd without quorum) fails with
//     ErrUnavailable, and the caller must not report the change as done.
package kv

import (
	"errors"
	"io"
)

// MaxKeySize is the longest key either backend accepts (bbolt's limit).
const MaxKeySize = 32768

var (
	// ErrTxnTooLarge is returned (wrapped, with the counts) by Update when the transaction
	// holds more operations or bytes than the backend commits at once. Nothing is written;
	// the caller splits the work.
	ErrTxnTooLarge = errors.New("kv: transaction too large")
	// ErrUnavailable is returned (wrapped) when the backend cannot be reached or has no
	// quorum. Whether a write that failed this way was stored is unknown only for the
	// commit in flight; the caller answers 503 and lets the client retry.
	ErrUnavailable = errors.New("kv: store unavailable")
	// ErrConflict is returned (wrapped) when a write transaction kept losing races with
	// other writers past the backend's retry budget.
	ErrConflict = errors.New("kv: too many conflicting writers")
	// ErrTxNotWritable is returned by writes in a View.
	ErrTxNotWritable = errors.New("kv: write in a read-only transaction")
	// ErrBucketNotFound is returned by DeleteBucket for a bucket that does not exist.
	ErrBucketNotFound = errors.New("kv: bucket not found")
	// ErrIncompatibleValue is returned when a key is used as a bucket or a bucket as a key.
	ErrIncompatibleValue = errors.New("kv: key and bucket share a name")
	// ErrKeyRequired and ErrKeyTooLarge reject keys either backend would refuse.
	ErrKeyRequired = errors.New("kv: key required")
	ErrKeyTooLarge = errors.New("kv: key too large")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("kv: database closed")
)

// DB is an open store.
type DB interface {
	// View runs fn in a read-only transaction on a consistent snapshot. On a shared backend
	// the snapshot includes every write acknowledged before View was called, by any gateway.
	View(fn func(Tx) error) error
	// Update runs fn in a write transaction and commits it.
	Update(fn func(Tx) error) error
	// Batch is Update for callers that accept sharing one commit with concurrent callers.
	Batch(fn func(Tx) error) error
	// Changed returns a channel that is closed after the next commit, by this process or (on
	// a shared backend) any other, has become visible to View. Call it again for the next.
	Changed() <-chan struct{}
	// Backup writes a consistent copy of everything as a bbolt file to w.
	Backup(w io.Writer) (int64, error)
	// String names the store for messages and logs: a file path, or etcd endpoints and prefix.
	String() string
	// Shared reports whether other processes may write the same data concurrently (etcd).
	Shared() bool
	// Close releases the store. Transactions in flight finish first.
	Close() error
}

// RecentViewer is a shared DB that can run a read on a snapshot that may miss the writes
// other processes acknowledged within a bound it was configured with, at less cost than
// View (etcd: without a round trip). The snapshot always holds this process's own writes.
// Use it only for reads that answer a client and decide nothing: a write must be decided
// on View's snapshot.
type RecentViewer interface {
	ViewRecent(fn func(Tx) error) error
}

// ViewRecent runs fn with db's ViewRecent when it has one, else with View.
func ViewRecent(db DB, fn func(Tx) error) error {
	if rv, ok := db.(RecentViewer); ok {
		return rv.ViewRecent(fn)
	}
	return db.View(fn)
}

// Tx is a transaction.
type Tx interface {
	Writable() bool
	// Bucket returns the top-level bucket name, or nil if it does not exist.
	Bucket(name []byte) Bucket
	// CreateBucketIfNotExists returns the top-level bucket name, creating it.
	CreateBucketIfNotExists(name []byte) (Bucket, error)
	// ForEachBucket calls fn with the name of every top-level bucket, in order (what Copy
	// and Backup walk).
	ForEachBucket(fn func(name []byte) error) error
	// OnCommit registers fn to run after the transaction committed and became visible.
	OnCommit(fn func())
}

// Bucket is a set of ordered keys and nested buckets.
type Bucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
	Cursor() Cursor
	// ForEach calls fn for every key holding a value, in order. fn must not modify the bucket.
	ForEach(fn func(k, v []byte) error) error
	// Bucket returns the nested bucket name, or nil.
	Bucket(name []byte) Bucket
	CreateBucketIfNotExists(name []byte) (Bucket, error)
	// DeleteBucket removes the nested bucket name and everything in it.
	DeleteBucket(name []byte) error
	// ForEachBucket calls fn with the name of every nested bucket, in order.
	ForEachBucket(fn func(name []byte) error) error
	// NextSequence increments and returns the bucket's sequence.
	NextSequence() (uint64, error)
	Sequence() uint64
	SetSequence(v uint64) error
}

// Cursor walks a bucket's keys in byte order. Each method returns nil, nil past either end.
// A cursor stays usable after its own Delete: Next and Prev move from the key it was on.
// After Put or Delete through the bucket, Seek before moving on: bbolt's cursors do not
// follow such writes (etcd's do, but code must work on both).
type Cursor interface {
	First() (key, value []byte)
	Last() (key, value []byte)
	Seek(seek []byte) (key, value []byte)
	Next() (key, value []byte)
	Prev() (key, value []byte)
	// Delete removes the key the cursor is on.
	Delete() error
}

// CheckKey returns ErrKeyRequired or ErrKeyTooLarge for a key either backend would refuse.
func CheckKey(key []byte) error {
	switch {
	case len(key) == 0:
		return ErrKeyRequired
	case len(key) > MaxKeySize:
		return ErrKeyTooLarge
	}
	return nil
}

// TxnOpsLimit is how many writes one transaction of db may hold, for work that splits
// itself into transactions (retention, copies): the backend's limit (etcd's --max-txn-ops),
// or 0 when there is none worth splitting for (bbolt).
func TxnOpsLimit(db DB) int {
	if l, ok := db.(interface{ MaxTxnOps() int }); ok {
		return l.MaxTxnOps()
	}
	return 0
}
