package teststore

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// Limited is a kv.DB wrapped so that its write transactions are bounded as etcd's are: a
// transaction that writes more than MaxTxnOps keys (etcd's count: each key put or deleted
// once, plus the head every commit puts) fails with kv.ErrTxnTooLarge and writes nothing.
// It reports the limit (kv.TxnOpsLimit), so that code which splits its work for etcd does
// so on a bbolt file too. It can also fail a chosen commit (FailCommit), to stop a
// multi-transaction change between two of its transactions as a crash or an outage would.
type Limited struct {
	kv.DB
	limit int

	mu      sync.Mutex
	commits int   // write transactions committed or failed since the last FailCommit
	failAt  int   // the commit (1-based) to fail, 0 for none
	failErr error // what it fails with
	largest int   // the most keys one committed transaction wrote
}

// OpenLimited opens a store for t, as Open does, with its transactions bounded to limit
// writes (etcd's default is 128).
func OpenLimited(t testing.TB, dir string, limit int) (*store.Store, *Limited) {
	t.Helper()
	var (
		db  kv.DB
		err error
	)
	if Etcd() {
		var s *store.Store
		if s, err = openEtcd(); err == nil {
			db = s.DB()
		}
	} else {
		db, err = kv.OpenBolt(filepath.Join(dir, "scimgate.db"), kv.BoltOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	l := &Limited{DB: db, limit: limit}
	s, err := store.New(l)
	if err != nil {
		_ = db.Close()
		t.Fatal(err)
	}
	return s, l
}

// MaxTxnOps is the limit, for kv.TxnOpsLimit.
func (l *Limited) MaxTxnOps() int { return l.limit }

// FailCommit makes the nth write transaction from now (1: the next) fail with err, before
// anything of it is written.
func (l *Limited) FailCommit(n int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.commits, l.failAt, l.failErr = 0, n, err
}

// Largest is the most keys one committed transaction wrote (the head included).
func (l *Limited) Largest() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.largest
}

// Update runs fn in a write transaction of the wrapped DB, counting the keys it writes.
func (l *Limited) Update(fn func(kv.Tx) error) error {
	var n int
	err := l.DB.Update(func(tx kv.Tx) error {
		ct := &countTx{Tx: tx, keys: map[string]bool{}}
		if err := fn(ct); err != nil {
			return err
		}
		n = len(ct.keys) + 1 // the head
		if n > l.limit {
			return fmt.Errorf("%w: %d operations (limit %d)", kv.ErrTxnTooLarge, n, l.limit)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.commits++
		if l.failAt > 0 && l.commits == l.failAt {
			l.failAt = 0
			return l.failErr
		}
		return nil
	})
	if err == nil {
		l.mu.Lock()
		l.largest = max(l.largest, n)
		l.mu.Unlock()
	}
	return err
}

// Batch is Update: each function's writes are counted in a transaction of its own.
func (l *Limited) Batch(fn func(kv.Tx) error) error { return l.Update(fn) }

// countTx records the keys a transaction writes, by bucket path.
type countTx struct {
	kv.Tx
	keys map[string]bool
}

func (t *countTx) note(path, key string) { t.keys[path+"\x00"+key] = true }

func (t *countTx) Bucket(name []byte) kv.Bucket {
	b := t.Tx.Bucket(name)
	if b == nil {
		return nil
	}
	return &countBucket{in: b, tx: t, path: string(name)}
}

func (t *countTx) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	existed := t.Tx.Bucket(name) != nil
	b, err := t.Tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	if !existed {
		t.note("", "b/"+string(name))
	}
	return &countBucket{in: b, tx: t, path: string(name)}, nil
}

type countBucket struct {
	in   kv.Bucket
	tx   *countTx
	path string
}

func (b *countBucket) Get(key []byte) []byte                          { return b.in.Get(key) }
func (b *countBucket) ForEach(fn func(k, v []byte) error) error       { return b.in.ForEach(fn) }
func (b *countBucket) ForEachBucket(fn func(name []byte) error) error { return b.in.ForEachBucket(fn) }
func (b *countBucket) Sequence() uint64                               { return b.in.Sequence() }

func (b *countBucket) Put(key, value []byte) error {
	b.tx.note(b.path, string(key))
	return b.in.Put(key, value)
}

func (b *countBucket) Delete(key []byte) error {
	if b.in.Get(key) != nil {
		b.tx.note(b.path, string(key))
	}
	return b.in.Delete(key)
}

func (b *countBucket) Cursor() kv.Cursor { return &countCursor{in: b.in.Cursor(), b: b} }

func (b *countBucket) Bucket(name []byte) kv.Bucket {
	nb := b.in.Bucket(name)
	if nb == nil {
		return nil
	}
	return &countBucket{in: nb, tx: b.tx, path: b.path + "/" + string(name)}
}

func (b *countBucket) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	existed := b.in.Bucket(name) != nil
	nb, err := b.in.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	if !existed {
		b.tx.note(b.path, "b/"+string(name))
	}
	return &countBucket{in: nb, tx: b.tx, path: b.path + "/" + string(name)}, nil
}

func (b *countBucket) DeleteBucket(name []byte) error {
	b.tx.note(b.path, "b/"+string(name))
	return b.in.DeleteBucket(name)
}

func (b *countBucket) NextSequence() (uint64, error) {
	b.tx.note(b.path, "s/")
	return b.in.NextSequence()
}

func (b *countBucket) SetSequence(v uint64) error {
	b.tx.note(b.path, "s/")
	return b.in.SetSequence(v)
}

type countCursor struct {
	in  kv.Cursor
	b   *countBucket
	key []byte
}

func (c *countCursor) remember(k, v []byte) ([]byte, []byte) {
	c.key = append(c.key[:0], k...)
	return k, v
}

func (c *countCursor) First() ([]byte, []byte)        { return c.remember(c.in.First()) }
func (c *countCursor) Last() ([]byte, []byte)         { return c.remember(c.in.Last()) }
func (c *countCursor) Next() ([]byte, []byte)         { return c.remember(c.in.Next()) }
func (c *countCursor) Prev() ([]byte, []byte)         { return c.remember(c.in.Prev()) }
func (c *countCursor) Seek(s []byte) ([]byte, []byte) { return c.remember(c.in.Seek(s)) }

func (c *countCursor) Delete() error {
	if c.key != nil {
		c.b.tx.note(c.b.path, string(c.key))
	}
	return c.in.Delete()
}

// ErrInjected is the error FailCommit's callers usually inject: an outage of the store.
var ErrInjected = fmt.Errorf("%w: injected by the test", kv.ErrUnavailable)
