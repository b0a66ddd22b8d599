package kv

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Copy bounds: into a store whose transactions are limited (etcd), each Update holds at
// most copyMaxOps writes and about copyMaxBytes of keys and values, well under etcd's
// default limits (128 operations, 1.5 MiB per request); into one that is not (bbolt), at
// most fileCopyMaxOps and fileCopyMaxBytes, so a large copy is not one fsync per 100 keys.
const (
	copyMaxOps       = 100
	copyMaxBytes     = 1 << 20
	fileCopyMaxOps   = 20_000
	fileCopyMaxBytes = 16 << 20
)

// errStop ends a ForEachBucket walk early.
var errStop = errors.New("stop")

// Copy copies every bucket, nested bucket, key and sequence of src, read in one View (one
// consistent snapshot), into dst, which must be empty. It writes in Updates of at most 100
// operations when dst is etcd; the copy as a whole is therefore not atomic: if it
// fails, dst holds a part and should be discarded. It is what `scimgate store copy` and the
// etcd backend's Backup use.
func Copy(dst, src DB) error { return CopySnapshot(dst, src, nil) }

// CopySnapshot is Copy that also runs read, when not nil, in the source's read transaction
// before copying: what read learns (journal heads, key counts) describes exactly the
// snapshot copied, even when other writers change src meanwhile.
func CopySnapshot(dst, src DB, read func(Tx) error) error {
	empty := true
	if err := dst.View(func(tx Tx) error {
		return tx.ForEachBucket(func([]byte) error { empty = false; return errStop })
	}); err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("checking that %s is empty: %w", dst, err)
	}
	if !empty {
		return fmt.Errorf("copying into %s: the destination is not empty", dst)
	}
	return src.View(func(stx Tx) error {
		if read != nil {
			if err := read(stx); err != nil {
				return err
			}
		}
		c := &copier{dst: dst, maxOps: copyMaxOps, maxBytes: copyMaxBytes}
		if limit := TxnOpsLimit(dst); limit == 0 {
			c.maxOps, c.maxBytes = fileCopyMaxOps, fileCopyMaxBytes
		} else {
			c.maxOps = min(c.maxOps, limit)
		}
		var names [][]byte
		if err := stx.ForEachBucket(func(name []byte) error {
			names = append(names, clone(name))
			return nil
		}); err != nil {
			return fmt.Errorf("listing buckets of %s: %w", src, err)
		}
		for _, name := range names {
			if err := c.bucket([][]byte{name}, stx.Bucket(name)); err != nil {
				return err
			}
		}
		return c.flush()
	})
}

// Summary is what Summarize reads of a store.
type Summary struct {
	// Keys is how many keys each bucket holds, by bucket path (see BucketPath), nested
	// buckets included and counted apart from their parents. An empty bucket counts 0.
	Keys map[string]int
	// Digest is a SHA-256 of every bucket's path and sequence and every key and value, in
	// order: two stores with the same Digest hold the same data, whatever their backend.
	Digest [32]byte
}

// Summarize counts the keys of every bucket in tx and digests everything it holds.
func Summarize(tx Tx) (Summary, error) {
	s := Summary{Keys: map[string]int{}}
	h := sha256.New()
	var scratch [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(scratch[:], uint64(len(b)))
		h.Write(scratch[:])
		h.Write(b)
	}
	var walk func(path [][]byte, b Bucket) error
	walk = func(path [][]byte, b Bucket) error {
		if b == nil {
			return fmt.Errorf("bucket %s vanished while reading it", BucketPath(path))
		}
		h.Write([]byte{'b'})
		binary.BigEndian.PutUint64(scratch[:], uint64(len(path)))
		h.Write(scratch[:])
		for _, p := range path {
			field(p)
		}
		binary.BigEndian.PutUint64(scratch[:], b.Sequence())
		h.Write(scratch[:])
		n := 0
		if err := b.ForEach(func(k, v []byte) error {
			n++
			h.Write([]byte{'k'})
			field(k)
			field(v)
			return nil
		}); err != nil {
			return err
		}
		s.Keys[BucketPath(path)] = n
		var names [][]byte
		if err := b.ForEachBucket(func(name []byte) error {
			names = append(names, clone(name))
			return nil
		}); err != nil {
			return err
		}
		for _, name := range names {
			if err := walk(append(append([][]byte(nil), path...), name), b.Bucket(name)); err != nil {
				return err
			}
		}
		return nil
	}
	var names [][]byte
	if err := tx.ForEachBucket(func(name []byte) error {
		names = append(names, clone(name))
		return nil
	}); err != nil {
		return Summary{}, err
	}
	for _, name := range names {
		if err := walk([][]byte{name}, tx.Bucket(name)); err != nil {
			return Summary{}, err
		}
	}
	h.Sum(s.Digest[:0])
	return s, nil
}

// BucketPath names a nested bucket for messages: its names joined with '/', each quoted
// (Go syntax) only when it holds a '/', a quote or a byte that is not printable ASCII.
func BucketPath(path [][]byte) string {
	var sb strings.Builder
	for i, p := range path {
		if i > 0 {
			sb.WriteByte('/')
		}
		plain := len(p) > 0
		for _, c := range p {
			if c < 0x21 || c > 0x7e || c == '/' || c == '"' {
				plain = false
				break
			}
		}
		if plain {
			sb.Write(p)
		} else {
			sb.WriteString(strconv.Quote(string(p)))
		}
	}
	return sb.String()
}

// WriteBolt writes a consistent copy of src as a bbolt file to w: it copies src into a
// temporary bbolt file (removed afterwards) and streams that. Backends other than Bolt use it
// for Backup.
func WriteBolt(w io.Writer, src DB) (int64, error) {
	dir, err := os.MkdirTemp("", "kv-backup-")
	if err != nil {
		return 0, fmt.Errorf("creating a temporary directory for the backup: %w", err)
	}
	defer os.RemoveAll(dir)
	b, err := OpenBolt(filepath.Join(dir, "backup.db"), BoltOptions{})
	if err != nil {
		return 0, err
	}
	defer b.Close()
	if err := Copy(b, src); err != nil {
		return 0, fmt.Errorf("copying %s into a bbolt file: %w", src, err)
	}
	return b.Backup(w)
}

// copyOp is one write of a copy: create the bucket at path, set its sequence, or put a key.
type copyOp struct {
	path   [][]byte
	create bool
	seq    uint64
	key    []byte
	value  []byte
}

type copier struct {
	dst              DB
	maxOps, maxBytes int // per Update
	ops              []copyOp
	bytes            int
}

func (c *copier) bucket(path [][]byte, b Bucket) error {
	if b == nil {
		return fmt.Errorf("bucket %q vanished during the copy", path)
	}
	if err := c.add(copyOp{path: path, create: true}); err != nil {
		return err
	}
	if seq := b.Sequence(); seq != 0 {
		if err := c.add(copyOp{path: path, seq: seq}); err != nil {
			return err
		}
	}
	cur := b.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if err := c.add(copyOp{path: path, key: clone(k), value: clone(v)}); err != nil {
			return err
		}
	}
	var names [][]byte
	if err := b.ForEachBucket(func(name []byte) error {
		names = append(names, clone(name))
		return nil
	}); err != nil {
		return err
	}
	for _, name := range names {
		sub := append(append([][]byte(nil), path...), name)
		if err := c.bucket(sub, b.Bucket(name)); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) add(op copyOp) error {
	size := len(op.key) + len(op.value) + 16
	for _, p := range op.path {
		size += len(p)
	}
	if len(c.ops) >= c.maxOps || (len(c.ops) > 0 && c.bytes+size > c.maxBytes) {
		if err := c.flush(); err != nil {
			return err
		}
	}
	c.ops = append(c.ops, op)
	c.bytes += size
	return nil
}

func (c *copier) flush() error {
	if len(c.ops) == 0 {
		return nil
	}
	ops := c.ops
	err := c.dst.Update(func(tx Tx) error {
		buckets := map[string]Bucket{}
		for _, op := range ops {
			b, err := openPath(tx, op.path, buckets)
			if err != nil {
				return err
			}
			switch {
			case op.create:
			case op.key != nil:
				err = b.Put(op.key, op.value)
			default:
				err = b.SetSequence(op.seq)
			}
			if err != nil {
				return fmt.Errorf("writing into bucket %q: %w", op.path, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copying into %s: %w", c.dst, err)
	}
	c.ops, c.bytes = c.ops[:0], 0
	return nil
}

// openPath returns the bucket at path in tx, creating it and its parents, remembering each in
// buckets (keyed by the path) so a batch resolves every path once.
func openPath(tx Tx, path [][]byte, buckets map[string]Bucket) (Bucket, error) {
	key := fmt.Sprintf("%q", path)
	if b, ok := buckets[key]; ok {
		return b, nil
	}
	var b Bucket
	var err error
	if len(path) == 1 {
		b, err = tx.CreateBucketIfNotExists(path[0])
	} else {
		var parent Bucket
		if parent, err = openPath(tx, path[:len(path)-1], buckets); err == nil {
			b, err = parent.CreateBucketIfNotExists(path[len(path)-1])
		}
	}
	if err != nil {
		return nil, fmt.Errorf("creating bucket %q: %w", path, err)
	}
	buckets[key] = b
	return b, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
