package journal

import (
	"context"
	"fmt"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// Scan calls fn with the sequence number and the stored JSON of every record q selects,
// oldest first, and stops at fn's first error, which it returns. Like Export it reads a page
// at a time in short read transactions, so a long scan never holds up writers (nor a
// bbolt file's growth), and records appended after it started are not included; unlike
// Export it encodes nothing, so a caller that needs a few fields of many records reads
// just those (with gjson) instead of decoding whole records. raw is valid only during the
// call, and fn must not write to the journal's store.
func (j *Journal) Scan(ctx context.Context, q Query, fn func(seq uint64, raw []byte) error) error {
	j.pruneMu.RLock()
	defer j.pruneMu.RUnlock()
	s, err := readSnapshot(j.db, j.name)
	if err != nil {
		return fmt.Errorf("scanning journal %s: %w", j.name, err)
	}
	next, to := s.span(q)
	for next <= to {
		if err := ctx.Err(); err != nil {
			return err
		}
		more := false
		err := j.db.View(func(tx kv.Tx) error {
			b, err := journalBucket(tx, j.name)
			if err != nil {
				return err
			}
			more, err = readPage(b.Bucket(bucketRecords), &next, to, q, nil,
				func(seq uint64, _ [32]byte, raw []byte) error { return fn(seq, raw) })
			return err
		})
		if err != nil {
			return fmt.Errorf("scanning journal %s: %w", j.name, err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// readPage calls fn with each record from *next to to that q selects, in one transaction's
// bucket rb: at most exportPage records read, fewer once full (nil: never) reports true.
// *next moves past every record read. It reports whether records after the page remain.
func readPage(rb kv.Bucket, next *uint64, to uint64, q Query, full func() bool, fn func(seq uint64, h [32]byte, raw []byte) error) (more bool, err error) {
	cur := rb.Cursor()
	n := 0
	k, v := cur.Seek(u64(*next))
	for ; k != nil && n < exportPage && (full == nil || !full()); k, v = cur.Next() {
		seq, ok := keySeq(k)
		if !ok || seq > to {
			return false, nil
		}
		n++
		*next = seq + 1
		h, raw, ok := splitValue(v)
		if !ok {
			return false, errCorruptSeq(seq)
		}
		if q.matches(raw) {
			if err := fn(seq, h, raw); err != nil {
				return false, err
			}
		}
	}
	return k != nil, nil
}
