package journal

import (
	"context"
	"fmt"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// scanPage is how many records Scan reads in one read transaction.
const scanPage = 10000

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
	next, to := max(q.FromSeq, s.anchorSeq), s.head
	if q.ToSeq != 0 && q.ToSeq < to {
		to = q.ToSeq
	}
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
			cur := b.Bucket(bucketRecords).Cursor()
			n := 0
			k, v := cur.Seek(u64(next))
			for ; k != nil && n < scanPage; k, v = cur.Next() {
				seq, ok := keySeq(k)
				if !ok || seq > to {
					return nil
				}
				n++
				next = seq + 1
				_, raw, ok := splitValue(v)
				if !ok {
					return errCorruptSeq(seq)
				}
				if q.matches(raw) {
					if err := fn(seq, raw); err != nil {
						return err
					}
				}
			}
			more = k != nil
			return nil
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
