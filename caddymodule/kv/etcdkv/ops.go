package etcdkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// opOverhead approximates the protobuf framing of one operation in a Txn request, so the
// byte count errs on the safe side of etcd's --max-request-bytes.
const opOverhead = 16

// plan is what a write transaction sends: the operations (puts and deletes, without the
// head) and their size.
type plan struct {
	ops   []clientv3.Op
	bytes int
}

// plan turns the difference between the snapshot and the transaction's map into etcd
// operations: a put for every key whose value changed, a delete for every key gone, and for
// the ranges DeleteBucket cleared, range deletes split around the keys put again after the
// clear (etcd rejects a Txn whose puts and deletes overlap), leaving out pieces that held
// nothing. The Txn's compare on the head guarantees that etcd holds exactly the snapshot, so
// the difference is the whole change.
func (t *tx) plan(prefix string) plan {
	var p plan
	ranges := mergeRanges(t.ranges)
	covered := func(k string) bool {
		i := sort.Search(len(ranges), func(i int) bool { return ranges[i].hi > k })
		return i < len(ranges) && ranges[i].lo <= k
	}
	keys := slices.Clone(t.dirty)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for _, k := range keys {
		nv, inNew := t.m.Get(k)
		ov, inOld := t.base.Get(k)
		switch {
		case inNew && (!inOld || !bytes.Equal(nv, ov)):
			p.ops = append(p.ops, clientv3.OpPut(prefix+k, string(nv)))
			p.bytes += len(prefix) + len(k) + len(nv) + opOverhead
		case !inNew && inOld && !covered(k):
			p.ops = append(p.ops, clientv3.OpDelete(prefix+k))
			p.bytes += len(prefix) + len(k) + opOverhead
		}
	}
	for _, r := range ranges {
		lo := r.lo
		var pieces []keyRange
		t.m.Ascend(r.lo, func(k string, _ []byte) bool {
			if k >= r.hi {
				return false
			}
			pieces = append(pieces, keyRange{lo, k})
			lo = k + "\x00"
			return true
		})
		pieces = append(pieces, keyRange{lo, r.hi})
		for _, piece := range pieces {
			if !t.baseHolds(piece) {
				continue
			}
			p.ops = append(p.ops, clientv3.OpDelete(prefix+piece.lo, clientv3.WithRange(prefix+piece.hi)))
			p.bytes += 2*len(prefix) + len(piece.lo) + len(piece.hi) + opOverhead
		}
	}
	return p
}

// baseHolds reports whether the snapshot has a key in r.
func (t *tx) baseHolds(r keyRange) bool {
	if r.lo >= r.hi {
		return false
	}
	found := false
	t.base.Ascend(r.lo, func(k string, _ []byte) bool {
		found = k < r.hi
		return false
	})
	return found
}

func mergeRanges(rs []keyRange) []keyRange {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b keyRange) int {
		if a.lo < b.lo {
			return -1
		} else if a.lo > b.lo {
			return 1
		}
		return 0
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.lo <= last.hi {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// tooLarge is the error for a plan over the limits; headBytes is the head put and compare.
func (db *DB) tooLarge(p plan) error {
	ops, size := len(p.ops)+1, p.bytes+db.headBytes()
	if ops > db.cfg.MaxTxnOps || size > db.cfg.MaxTxnBytes {
		return fmt.Errorf("%w: %d operations (limit %d), %d bytes (limit %d)",
			kv.ErrTxnTooLarge, ops, db.cfg.MaxTxnOps, size, db.cfg.MaxTxnBytes)
	}
	return nil
}

func (db *DB) headBytes() int { return 2*(len(db.cfg.Prefix)+len(headKey)) + len(db.id) + 3*opOverhead }

// etcdErr maps an error of an etcd call: a request etcd found too large is ErrTxnTooLarge
// (the server's limits are below the configured ones); anything else (no leader, timeouts,
// connection loss, deadline, a closed client) means the data cannot be reached: ErrUnavailable.
// The original error stays in the chain.
func etcdErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrRequestTooLarge) ||
		status.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("%s: %w (%w)", what, kv.ErrTxnTooLarge, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w (%w)", what, kv.ErrClosed, err)
	}
	return fmt.Errorf("%s: %w (%w)", what, kv.ErrUnavailable, err)
}
