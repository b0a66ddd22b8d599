package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// snapshot is the cache as of one revision. Its map is never changed again, so any number
// of Views read it concurrently; write transactions Copy it (under DB.updateMu, the only
// place that copies a published map).
type snapshot struct {
	m *tree
	// rev is the last revision applied; head the ModRevision of the head key in it (0: none).
	rev, head int64
}

// loadPage is how many keys one Get of the initial load returns.
const loadPage = 1000

// ours reports whether a key (below the prefix) belongs in the cache.
func ours(k string) bool {
	return strings.HasPrefix(k, dataKeys) || strings.HasPrefix(k, bucketKeys) ||
		strings.HasPrefix(k, seqKeys)
}

// value keeps an empty value non-nil (protobuf decodes it as nil): Get tells an empty value
// from a missing key by nil.
func value(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// load reads everything below the prefix at one revision, a page at a time, and publishes it.
func (db *DB) load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, db.cfg.LoadTimeout)
	defer cancel()
	m := newTree()
	var rev, head int64
	key, end := db.cfg.Prefix, clientv3.GetPrefixRangeEnd(db.cfg.Prefix)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := db.cli.Get(ctx, key, opts...)
		if err != nil {
			return err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, ev := range resp.Kvs {
			k := string(ev.Key[len(db.cfg.Prefix):])
			switch {
			case k == headKey:
				head = ev.ModRevision
			case ours(k):
				m.Set(k, value(ev.Value))
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	db.master = m
	db.publish(rev, head, true)
	db.log.Debug("loaded the cache", zap.Int64("revision", rev), zap.Int("keys", m.Len()))
	return nil
}

// publish makes the master map as of rev the snapshot Views and Updates start from.
func (db *DB) publish(rev, head int64, changed bool) {
	db.snap.Store(&snapshot{m: db.master.Copy(), rev: rev, head: head})
	db.applied.Notify()
	if changed {
		db.changed.Notify()
	}
}

// follow keeps the cache current: it loads it, then applies a watch from the next revision,
// re-establishing the watch (with backoff) when it breaks and reloading when the revisions it
// needs were compacted. It runs until Close.
func (db *DB) follow(loaded bool) {
	defer close(db.followDone)
	backoff := backoffMin
	for db.ctx.Err() == nil {
		if !loaded {
			if err := db.load(db.ctx); err != nil {
				if db.ctx.Err() == nil {
					db.log.Warn("loading the cache from etcd failed; retrying", zap.Error(err))
				}
				backoff = db.sleep(backoff)
				continue
			}
			loaded = true
		}
		err := db.watch()
		if db.ctx.Err() != nil {
			return
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			db.log.Info("the watch fell behind a compaction; reloading the cache", zap.Error(err))
			loaded = false
			continue
		}
		db.log.Warn("the etcd watch broke; re-establishing it", zap.Error(err))
		backoff = db.sleep(backoff)
	}
}

const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 2 * time.Second
)

// sleep waits about d (with jitter) or until Close, and returns the next backoff.
func (db *DB) sleep(d time.Duration) time.Duration {
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
	case <-db.ctx.Done():
	}
	return min(2*d, backoffMax)
}

// watch applies events from the revision after the snapshot's until the watch ends, and
// returns why it ended. WithRequireLeader makes a member that lost its leader cancel the
// watch instead of going silent, so the cache never follows a partitioned member.
func (db *DB) watch() error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(db.ctx))
	defer cancel()
	s := db.snap.Load()
	rev, head := s.rev, s.head
	wch := db.cli.Watch(ctx, db.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case wr, ok = <-wch:
		case <-db.kick:
			return errStalled
		}
		if !ok {
			break
		}
		if err := wr.Err(); err != nil {
			return err
		}
		if len(wr.Events) == 0 {
			continue
		}
		changed := false
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key[len(db.cfg.Prefix):])
			rev = max(rev, ev.Kv.ModRevision)
			switch {
			case k == headKey:
				head = ev.Kv.ModRevision
				if ev.Type == mvccpb.DELETE {
					head = 0
				}
			case !ours(k):
			case ev.Type == mvccpb.DELETE:
				db.master.Delete(k)
				changed = true
			default:
				db.master.Set(k, value(ev.Kv.Value))
				changed = true
			}
		}
		db.publish(rev, head, changed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("the watch channel closed")
}

// errStalled ends a watch that did not deliver a revision etcd had acknowledged in time.
var errStalled = errors.New("the watch did not deliver an acknowledged revision in time")

// stalled asks the follow goroutine to re-establish the watch: a View or Update waited in
// vain for a revision that etcd acknowledged, so the stream may be stuck (a member that
// stopped sending without closing it); a new watch starts from the last applied revision.
func (db *DB) stalled() {
	select {
	case db.kick <- struct{}{}:
	default:
	}
}

// waitApplied returns a snapshot that includes revision rev, waiting up to d for the watch
// to deliver it.
func (db *DB) waitApplied(rev int64, d time.Duration) (*snapshot, error) {
	var timer *time.Timer
	for {
		ch := db.applied.Wait()
		if s := db.snap.Load(); s.rev >= rev {
			if timer != nil {
				timer.Stop()
			}
			return s, nil
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-timer.C:
			db.stalled()
			return nil, fmt.Errorf("waiting %s for the cache to reach revision %d (at %d): %w",
				d, rev, db.snap.Load().rev, kv.ErrUnavailable)
		case <-db.ctx.Done():
			return nil, kv.ErrClosed
		}
	}
}

// barrier coalesces linearizable reads of the head: a View joins the next Get that has not
// been sent yet, so one Get serves every View that started before it was sent, and at most
// one Get is in flight.
type barrier struct {
	db       *DB
	inflight bool
	next     *barrierCall
}

type barrierCall struct {
	done chan struct{}
	head int64
	err  error
}

// wait returns the ModRevision of the head as of a linearizable read sent after wait began.
func (b *barrier) wait() (int64, error) {
	b.db.barrierMu.Lock()
	c := b.next
	if c == nil {
		c = &barrierCall{done: make(chan struct{})}
		b.next = c
	}
	if !b.inflight {
		b.inflight = true
		b.next = nil
		go b.run(c)
	}
	b.db.barrierMu.Unlock()
	<-c.done
	return c.head, c.err
}

func (b *barrier) run(c *barrierCall) {
	for c != nil {
		c.head, c.err = b.db.readHead(b.db.cfg.BarrierTimeout)
		close(c.done)
		b.db.barrierMu.Lock()
		c, b.next = b.next, nil
		b.inflight = c != nil
		b.db.barrierMu.Unlock()
	}
}

// readHead is a linearizable (quorum) Get of the head: its ModRevision is the last commit
// by any gateway.
func (db *DB) readHead(d time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(db.ctx), d)
	defer cancel()
	sent := time.Now()
	db.stats.barriers.Add(1)
	resp, err := db.cli.Get(ctx, db.cfg.Prefix+headKey)
	if err != nil {
		return 0, etcdErr("reading the head", err)
	}
	var head int64
	if len(resp.Kvs) > 0 {
		head = resp.Kvs[0].ModRevision
	}
	db.sawHead(sent, head)
	return head, nil
}
