package etcdkv

import (
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/tidwall/btree"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// Key layout below the prefix (the cache holds the same keys without the prefix):
//
//	d/<path>/<key>  a value; <path> is the bucket's names, each hex-encoded, joined by '.'
//	b/<path>        a bucket exists (empty value)
//	s/<path>        a bucket's sequence, in decimal, absent when zero
//	head            put by every write transaction; its ModRevision guards the next commit
//	e/...           not ours: leader election
//
// Hex digits sort above '.' and '/', which sit next to each other (0x2e, 0x2f) below '0',
// so a bucket's own keys are one contiguous range (d/<path>/ .. d/<path>0) that nested
// buckets never interleave with, and a bucket with everything nested in it is one range
// per kind (d/<path>. .. d/<path>0, b/<path> .. b/<path>/, s/<path> .. s/<path>/): a
// DeleteBucket is three range deletes whatever its size.
const (
	dataKeys   = "d/"
	bucketKeys = "b/"
	seqKeys    = "s/"
	headKey    = "head"
)

// tree is the ordered map the cache and transactions use; Copy is O(1) (copy-on-write).
type tree = btree.Map[string, []byte]

func newTree() *tree { return btree.NewMap[string, []byte](64) }

// keyRange is [lo, hi).
type keyRange struct{ lo, hi string }

// tx is a transaction on a snapshot of the cache. A write transaction changes its own copy
// of the snapshot (m, copy-on-write from base) and remembers which keys and ranges it
// touched; commit turns the difference between base and m into etcd operations.
type tx struct {
	db       *DB
	snap     *snapshot
	base     *tree
	m        *tree
	writable bool
	dirty    []string
	ranges   []keyRange
	hooks    []func()
	// gen counts changes, so cursors know when to find their place again.
	gen uint64
}

func newReadTx(db *DB, s *snapshot) *tx { return &tx{db: db, snap: s, base: s.m, m: s.m} }

func newWriteTx(db *DB, s *snapshot) *tx {
	return &tx{db: db, snap: s, base: s.m, m: s.m.Copy(), writable: true}
}

// savepoint is a transaction's state between two Batch functions, to roll one back alone.
type savepoint struct {
	m                    *tree
	dirty, ranges, hooks int
}

func (t *tx) save() savepoint {
	return savepoint{m: t.m.Copy(), dirty: len(t.dirty), ranges: len(t.ranges), hooks: len(t.hooks)}
}

func (t *tx) restore(sp savepoint) {
	t.m = sp.m
	t.dirty, t.ranges, t.hooks = t.dirty[:sp.dirty], t.ranges[:sp.ranges], t.hooks[:sp.hooks]
	t.gen++
}

func (t *tx) changed() bool { return len(t.dirty) > 0 || len(t.ranges) > 0 }

func (t *tx) has(k string) bool { _, ok := t.m.Get(k); return ok }

func (t *tx) set(k string, v []byte) {
	t.m.Set(k, v)
	t.dirty = append(t.dirty, k)
	t.gen++
}

func (t *tx) del(k string) {
	if _, ok := t.m.Delete(k); ok {
		t.dirty = append(t.dirty, k)
		t.gen++
	}
}

func (t *tx) delRange(lo, hi string) {
	var keys []string
	t.m.Ascend(lo, func(k string, _ []byte) bool {
		if k >= hi {
			return false
		}
		keys = append(keys, k)
		return true
	})
	for _, k := range keys {
		t.m.Delete(k)
	}
	t.ranges = append(t.ranges, keyRange{lo, hi})
	t.gen++
}

func (t *tx) Writable() bool { return t.writable }

func (t *tx) OnCommit(fn func()) {
	if t.writable {
		t.hooks = append(t.hooks, fn)
	}
}

func (t *tx) root() *bucket { return &bucket{tx: t, root: true} }

func (t *tx) Bucket(name []byte) kv.Bucket { return t.root().Bucket(name) }

func (t *tx) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	return t.root().CreateBucketIfNotExists(name)
}

func (t *tx) ForEachBucket(fn func(name []byte) error) error {
	return t.root().ForEachBucket(fn)
}

// bucket is a bucket in a transaction; enc is its path (hex names joined by '.').
type bucket struct {
	tx   *tx
	enc  string
	root bool
}

func (b *bucket) child(name []byte) string {
	if b.root {
		return hex.EncodeToString(name)
	}
	return b.enc + "." + hex.EncodeToString(name)
}

func (b *bucket) dataKey(key []byte) string { return dataKeys + b.enc + "/" + string(key) }

// exists guards writes through a bucket deleted earlier in the transaction.
func (b *bucket) exists() bool { return b.root || b.tx.has(bucketKeys+b.enc) }

func (b *bucket) writeCheck(key []byte) error {
	if !b.tx.writable {
		return kv.ErrTxNotWritable
	}
	if err := kv.CheckKey(key); err != nil {
		return err
	}
	if !b.exists() {
		return kv.ErrBucketNotFound
	}
	return nil
}

func (b *bucket) Get(key []byte) []byte {
	if b.root {
		return nil
	}
	v, ok := b.tx.m.Get(b.dataKey(key))
	if !ok {
		return nil
	}
	return v
}

func (b *bucket) Put(key, value []byte) error {
	if err := b.writeCheck(key); err != nil {
		return err
	}
	if b.root || b.tx.has(bucketKeys+b.child(key)) {
		return kv.ErrIncompatibleValue
	}
	// The value goes into a snapshot other transactions may read later: keep our own copy.
	b.tx.set(b.dataKey(key), append(make([]byte, 0, len(value)), value...))
	return nil
}

func (b *bucket) Delete(key []byte) error {
	if err := b.writeCheck(key); err != nil {
		return err
	}
	if b.tx.has(bucketKeys + b.child(key)) {
		return kv.ErrIncompatibleValue
	}
	if !b.root {
		b.tx.del(b.dataKey(key))
	}
	return nil
}

func (b *bucket) Bucket(name []byte) kv.Bucket {
	if len(name) == 0 {
		return nil
	}
	enc := b.child(name)
	if !b.tx.has(bucketKeys + enc) {
		return nil
	}
	return &bucket{tx: b.tx, enc: enc}
}

func (b *bucket) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	if err := b.writeCheck(name); err != nil {
		return nil, err
	}
	enc := b.child(name)
	if !b.tx.has(bucketKeys + enc) {
		if !b.root && b.tx.has(b.dataKey(name)) {
			return nil, kv.ErrIncompatibleValue
		}
		b.tx.set(bucketKeys+enc, []byte{})
	}
	return &bucket{tx: b.tx, enc: enc}, nil
}

func (b *bucket) DeleteBucket(name []byte) error {
	if err := b.writeCheck(name); err != nil {
		return err
	}
	enc := b.child(name)
	if !b.tx.has(bucketKeys + enc) {
		if !b.root && b.tx.has(b.dataKey(name)) {
			return kv.ErrIncompatibleValue
		}
		return kv.ErrBucketNotFound
	}
	b.tx.delRange(dataKeys+enc+".", dataKeys+enc+"0")
	b.tx.delRange(bucketKeys+enc, bucketKeys+enc+"/")
	b.tx.delRange(seqKeys+enc, seqKeys+enc+"/")
	return nil
}

func (b *bucket) ForEachBucket(fn func(name []byte) error) error {
	pfx := bucketKeys
	if !b.root {
		pfx += b.enc + "."
	}
	from := pfx
	for {
		var child string
		found := false
		b.tx.m.Ascend(from, func(k string, _ []byte) bool {
			if strings.HasPrefix(k, pfx) {
				child, found = k[len(pfx):], true
			}
			return false
		})
		if !found {
			return nil
		}
		if i := strings.IndexByte(child, '.'); i >= 0 {
			child = child[:i] // a grandchild without its parent's marker: list the parent
		}
		name, err := hex.DecodeString(child)
		if err != nil {
			return err
		}
		if err := fn(name); err != nil {
			return err
		}
		// Past the child and everything nested in it ('/' sorts right after '.').
		from = pfx + child + "/"
	}
}

func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (b *bucket) seqKey() string { return seqKeys + b.enc }

func (b *bucket) Sequence() uint64 {
	if b.root {
		return 0
	}
	v, ok := b.tx.m.Get(b.seqKey())
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(string(v), 10, 64)
	return n
}

func (b *bucket) SetSequence(v uint64) error {
	if !b.tx.writable {
		return kv.ErrTxNotWritable
	}
	if b.root || !b.exists() {
		return kv.ErrBucketNotFound
	}
	if v == 0 {
		b.tx.del(b.seqKey())
	} else {
		b.tx.set(b.seqKey(), strconv.AppendUint(nil, v, 10))
	}
	return nil
}

func (b *bucket) NextSequence() (uint64, error) {
	n := b.Sequence() + 1
	if err := b.SetSequence(n); err != nil {
		return 0, err
	}
	return n, nil
}

func (b *bucket) Cursor() kv.Cursor {
	lo := dataKeys + b.enc + "/"
	return &cursor{tx: b.tx, b: b, lo: lo, hi: dataKeys + b.enc + "0"}
}

// cursor walks [lo, hi) of the transaction's map. It remembers the key it is on; when the
// transaction changed since it last moved, it finds its place again from that key, so Put
// and Delete during iteration are safe.
type cursor struct {
	tx     *tx
	b      *bucket
	lo, hi string
	it     btree.MapIter[string, []byte]
	gen    uint64
	key    string
	valid  bool
}

func (c *cursor) reset() {
	c.it = c.tx.m.Iter()
	c.gen = c.tx.gen
}

func (c *cursor) at(ok bool) ([]byte, []byte) {
	if ok {
		if k := c.it.Key(); k >= c.lo && k < c.hi {
			c.key, c.valid = k, true
			return []byte(k[len(c.lo):]), c.it.Value()
		}
	}
	c.valid = false
	return nil, nil
}

func (c *cursor) First() ([]byte, []byte) {
	if c.b.root {
		return nil, nil
	}
	c.reset()
	return c.at(c.it.Seek(c.lo))
}

func (c *cursor) Last() ([]byte, []byte) {
	if c.b.root {
		return nil, nil
	}
	c.reset()
	if c.it.Seek(c.hi) {
		return c.at(c.it.Prev())
	}
	return c.at(c.it.Last())
}

func (c *cursor) Seek(seek []byte) ([]byte, []byte) {
	if c.b.root {
		return nil, nil
	}
	c.reset()
	return c.at(c.it.Seek(c.lo + string(seek)))
}

func (c *cursor) Next() ([]byte, []byte) {
	if !c.valid {
		return nil, nil
	}
	if c.gen != c.tx.gen {
		c.reset()
		if !c.it.Seek(c.key) {
			return c.at(false)
		}
		if c.it.Key() != c.key { // our key was deleted: Seek found the next one
			return c.at(true)
		}
	}
	return c.at(c.it.Next())
}

func (c *cursor) Prev() ([]byte, []byte) {
	if !c.valid {
		return nil, nil
	}
	if c.gen != c.tx.gen {
		c.reset()
		if !c.it.Seek(c.key) {
			return c.at(c.it.Last())
		}
	}
	return c.at(c.it.Prev())
}

func (c *cursor) Delete() error {
	if !c.tx.writable {
		return kv.ErrTxNotWritable
	}
	if c.valid {
		c.tx.del(c.key)
	}
	return nil
}
