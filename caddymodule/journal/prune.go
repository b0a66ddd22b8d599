package journal

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// prunePage bounds the records one retention transaction deletes, so retention never holds
// the write lock (and request latency) for long.
const prunePage = 10000

// prunePageFor is the page for db: prunePage, or half of what one transaction of a backend
// with a limit may hold (the rest is the checkpoints, the anchor and the prune record).
func prunePageFor(db kv.DB) int {
	if l := kv.TxnOpsLimit(db); l > 0 {
		return min(prunePage, max(1, l/2))
	}
	return prunePage
}

// Prune applies retention (Options.MaxAge, Options.MaxRecords, Options.MaxBytes) as of now: it deletes the
// oldest records, in sequence order, stopping at the first record retention keeps, so the
// remaining records stay contiguous. It moves the anchor (first kept sequence number and the
// hash it continues from) in the same transactions, so the rest still verifies, drops
// checkpoints the anchor passed, and appends one "prune" record saying what it removed.
//
// MaxRecords and MaxBytes are applied with 1% slack (at least one record): retention runs once the journal
// exceeds it by that much, then cuts it back to MaxRecords. Otherwise the prune record
// itself would start a new run on every timer tick.
func (j *Journal) Prune(ctx context.Context, now time.Time) (removed uint64, err error) {
	return j.prune(ctx, now, true)
}

// prune runs retention; with wait false it gives up at once when a Verify or Export runs.
func (j *Journal) prune(ctx context.Context, now time.Time, wait bool) (removed uint64, err error) {
	if j.opts.MaxAge <= 0 && j.opts.MaxRecords == 0 && j.opts.MaxBytes == 0 {
		return 0, nil
	}
	if wait {
		j.pruneMu.Lock()
	} else if !j.pruneMu.TryLock() {
		return 0, nil
	}
	defer j.pruneMu.Unlock()
	var ageCut time.Time
	if j.opts.MaxAge > 0 {
		ageCut = now.Add(-j.opts.MaxAge)
	}
	for {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		var n uint64
		var done bool
		err := j.db.Update(func(tx kv.Tx) error {
			var err error
			n, done, err = j.prunePageTx(tx, ageCut, removed)
			return err
		})
		if err != nil {
			return removed, fmt.Errorf("pruning journal %s: %w", j.opts.Name, err)
		}
		removed += n
		if done {
			return removed, nil
		}
	}
}

// prunePageTx deletes up to prunePage records in tx. done is true when retention keeps the
// next record; the transaction that finishes a run with removals appends the prune record.
func (j *Journal) prunePageTx(tx kv.Tx, ageCut time.Time, before uint64) (n uint64, done bool, err error) {
	b, err := journalBucket(tx, j.name)
	if err != nil {
		return 0, true, err
	}
	head, _, err := headOf(b)
	if err != nil {
		return 0, true, err
	}
	anchor, _, ok := readAnchor(b)
	if !ok {
		return 0, true, fmt.Errorf("%w: anchor", ErrCorrupt)
	}
	countCut := j.countCut(anchor, head, before)
	size := storedBytes(b)
	overSize := j.overSize(size, before)
	rb := b.Bucket(bucketRecords)
	var dead [][]byte
	var lastHash [32]byte
	var lastSeq uint64
	cur := rb.Cursor()
	k, v := cur.First()
	page := prunePageFor(j.db)
	for ; k != nil && len(dead) < page; k, v = cur.Next() {
		seq, ok := keySeq(k)
		h, raw, ok2 := splitValue(v)
		bySize := overSize && size > j.opts.MaxBytes
		if !ok || !ok2 || !(seq < countCut || olderThan(raw, ageCut) || bySize) {
			break
		}
		size -= uint64(len(v))
		dead = append(dead, k)
		lastSeq, lastHash = seq, h
	}
	done = len(dead) < page || k == nil
	if len(dead) == 0 {
		return 0, true, nil
	}
	for _, k := range dead {
		if err := rb.Delete(k); err != nil {
			return 0, true, err
		}
	}
	if err := b.Put(keyAnchor, append(u64(lastSeq+1), lastHash[:]...)); err != nil {
		return 0, true, err
	}
	if err := b.Put(keyBytes, u64(size)); err != nil {
		return 0, true, err
	}
	if err := dropCheckpointsBefore(b.Bucket(bucketCheckpoints), lastSeq); err != nil {
		return 0, true, err
	}
	n = uint64(len(dead))
	if done {
		err = j.Append(tx, pruneRecord(before+n, lastSeq+1, lastHash))
	}
	return n, done, err
}

// countCut is the first sequence number MaxRecords keeps (0: it removes nothing) in a
// journal holding records anchor..head. before is what this run already removed: the slack
// is applied only when the run starts.
func (j *Journal) countCut(anchor, head, before uint64) uint64 {
	keep := j.opts.MaxRecords
	if keep == 0 || head < anchor || head-anchor+1 <= keep {
		return 0
	}
	if before == 0 && head-anchor+1-keep <= max(1, keep/100) {
		return 0
	}
	return head - keep + 1
}

// overSize reports whether MaxBytes asks for removals in a journal of size bytes, with the
// same 1% slack as MaxRecords when a run starts (before is what the run already removed).
func (j *Journal) overSize(size, before uint64) bool {
	limit := j.opts.MaxBytes
	if limit == 0 || size <= limit {
		return false
	}
	return before > 0 || size-limit > max(1, limit/100)
}

// olderThan reports whether the record's time is before cut (never for a zero cut or an
// unreadable time: retention keeps what it cannot date).
func olderThan(raw []byte, cut time.Time) bool {
	if cut.IsZero() {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, gjson.GetBytes(raw, "time").Str)
	return err == nil && t.Before(cut)
}

// dropCheckpointsBefore deletes checkpoints of records before the new anchor; the one of
// the last removed record stays, as it still checks the anchor's hash.
func dropCheckpointsBefore(cb kv.Bucket, lastRemoved uint64) error {
	var dead [][]byte
	cur := cb.Cursor()
	for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
		if seq, ok := keySeq(k); !ok || seq >= lastRemoved {
			break
		}
		dead = append(dead, k)
	}
	for _, k := range dead {
		if err := cb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// pruneRecord is the record a retention run appends.
func pruneRecord(removed, anchorSeq uint64, anchorPrev [32]byte) *Record {
	num := func(v uint64) json.RawMessage { return json.RawMessage(strconv.FormatUint(v, 10)) }
	str, _ := json.Marshal(hex.EncodeToString(anchorPrev[:]))
	return &Record{
		Action:  change.ActionPrune,
		Outcome: change.Applied,
		Changes: []Change{
			{Path: "removed_records", Value: num(removed)},
			{Path: "anchor_seq", Value: num(anchorSeq)},
			{Path: "anchor_prev_hash", Value: str},
		},
	}
}
