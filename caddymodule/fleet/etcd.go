package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// Defaults of EtcdOptions.
const (
	// DefaultTTL is the lease TTL: how long a dead gateway's jobs wait for another.
	DefaultTTL = 10 * time.Second
	// resignTimeout bounds a resignation and a lease revocation on the way out.
	resignTimeout = 2 * time.Second
	// maxRetry bounds the pause between two failed attempts to create a session or to
	// campaign (etcd unreachable).
	maxRetry = 2 * time.Second
)

// ErrClosed is returned by Run on an elector that was closed.
var ErrClosed = errors.New("fleet: elector closed")

// EtcdOptions configure NewEtcd. The zero value is usable.
type EtcdOptions struct {
	// TTL is the lease's time to live, in whole seconds (rounded up): a gateway that dies
	// keeps its jobs this long at most. Default 10s; etcd may grant more (its minimum is
	// 1.5 election timeouts).
	TTL time.Duration
	// Margin is how long before the lease could expire on the server this process stops
	// believing it holds its jobs: it covers the difference between this machine's and the
	// etcd leader's clock rates and the latency of cancelling the work. Default TTL/10
	// (at least 200ms); at most TTL/3.
	Margin time.Duration
	// ID is written in the election keys, to tell operators who holds a job. Default the
	// host name and process id.
	ID string
	// Logger receives the elector's events. Nil: no logging.
	Logger *zap.Logger
}

// Etcd elects through etcd: one lease per process (a concurrency.Session) kept alive while
// the process runs, and per job an election (concurrency.Election) under prefix+job+"/":
// each candidate's key is prefix+job+"//"+its lease id in hex, holding its ID.
// The holder of a job is the process whose key has the lowest create revision; a process
// that dies stops renewing its lease, etcd deletes its keys when the lease expires, and the
// next candidate is elected.
//
// This process considers its lease valid until a local deadline: the time it sent the last
// keepalive that etcd acknowledged, plus the TTL etcd granted, less Margin. The server
// renews the lease from when it receives the keepalive, which is later, so the local
// deadline passes first, even when etcd cannot be reached and the session's own channels
// would tell only later. Past the deadline every job's work is cancelled, the lease is
// revoked (when etcd can be reached) and the elector campaigns again on a new lease.
type Etcd struct {
	cli    *clientv3.Client
	prefix string
	ttl    int64 // seconds asked for
	margin time.Duration
	id     string
	log    *zap.Logger
	base   time.Time // monotonic origin of the deadlines

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	bg     sync.WaitGroup // keepalive loops and revocations
	runs   sync.WaitGroup

	sem chan struct{} // one session is created at a time

	mu     sync.Mutex
	sess   *session
	terms  map[string]*term
	local  map[string]chan struct{} // per job: one Run of it campaigns at a time
	closed bool
}

// session is one lease and what this process believes of it.
type session struct {
	e     *Etcd
	cs    *concurrency.Session
	id    clientv3.LeaseID
	ttl   time.Duration // granted
	until atomic.Int64  // local deadline, e.mono() nanoseconds
	acked atomic.Int64  // when the newest acknowledged grant or keepalive was sent (e.mono())
	lost  chan struct{} // closed when the session is given up
	once  sync.Once
}

// term is one holding of a job.
type term struct {
	Term
	s     *session
	el    *concurrency.Election
	ended atomic.Bool
}

func (t *term) held() bool { return !t.ended.Load() && t.s.valid() }

// NewEtcd returns an elector on cli keeping its elections under prefix (the store's prefix
// + "e/", see ElectionPrefix). It creates no lease until the first Run. cli stays the
// caller's: Close does not close it.
func NewEtcd(cli *clientv3.Client, prefix string, opts EtcdOptions) (*Etcd, error) {
	if cli == nil {
		return nil, errors.New("fleet: an etcd elector needs a client")
	}
	if prefix == "" {
		return nil, errors.New("fleet: an etcd elector needs a key prefix")
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < time.Second {
		return nil, fmt.Errorf("fleet: the lease TTL must be at least 1s, got %s", opts.TTL)
	}
	ttl := int64(math.Ceil(opts.TTL.Seconds()))
	if opts.Margin == 0 {
		opts.Margin = max(opts.TTL/10, 200*time.Millisecond)
	}
	if opts.Margin < 0 || opts.Margin > opts.TTL/3 {
		return nil, fmt.Errorf("fleet: the safety margin must be between 0 and a third of the TTL (%s), got %s", opts.TTL/3, opts.Margin)
	}
	if opts.ID == "" {
		host, _ := os.Hostname()
		opts.ID = host + ":" + strconv.Itoa(os.Getpid())
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	e := &Etcd{cli: cli, prefix: prefix, ttl: ttl, margin: opts.Margin, id: opts.ID, log: opts.Logger,
		base: time.Now(), sem: make(chan struct{}, 1), terms: map[string]*term{}, local: map[string]chan struct{}{}}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// ID is what e writes in its election keys (EtcdOptions.ID).
func (e *Etcd) ID() string { return e.id }

// mono is the time since e was made, on the monotonic clock (wall clock jumps do not move
// the deadlines).
func (e *Etcd) mono() int64 { return int64(time.Since(e.base)) }

// valid reports whether the lease is still this process's: not given up and within the
// local deadline.
func (s *session) valid() bool {
	select {
	case <-s.lost:
		return false
	default:
	}
	return s.e.mono() < s.until.Load()
}

// extend moves the local deadline to until when that is later.
func (s *session) extend(until int64) {
	for {
		old := s.until.Load()
		if until <= old || s.until.CompareAndSwap(old, until) {
			return
		}
	}
}

// lose gives the session up: every job held on it is cancelled, and the lease is revoked
// (when etcd answers) so that the next holders need not wait for it to expire.
func (s *session) lose(why string) {
	s.once.Do(func() {
		close(s.lost)
		s.cs.Orphan() // stop its keepalives: the lease must lapse if it cannot be revoked
		e := s.e
		e.log.Warn("fleet lease given up; its jobs stop and are campaigned for again",
			zap.Int64("lease", int64(s.id)), zap.String("reason", why))
		e.mu.Lock()
		if e.sess == s {
			e.sess = nil
		}
		e.mu.Unlock()
		e.bg.Add(1)
		go func() {
			defer e.bg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), resignTimeout)
			defer cancel()
			_, _ = e.cli.Revoke(ctx, s.id) // unreachable or expired: it lapses on its own
		}()
	})
}

// session returns the valid session, creating one when there is none.
func (e *Etcd) session(ctx context.Context) (*session, error) {
	for attempt := 0; ; attempt++ {
		e.mu.Lock()
		s, closed := e.sess, e.closed
		e.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if s != nil && s.valid() {
			return s, nil
		}
		select {
		case e.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		e.mu.Lock()
		s = e.sess
		e.mu.Unlock()
		if s != nil && s.valid() { // another Run made one meanwhile
			<-e.sem
			return s, nil
		}
		s, err := e.newSession(ctx)
		if err == nil {
			e.mu.Lock()
			e.sess = s
			e.mu.Unlock()
		}
		<-e.sem
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		e.log.Warn("creating the fleet lease failed; trying again", zap.Error(err))
		if err := sleep(ctx, retryDelay(attempt)); err != nil {
			return nil, err
		}
	}
}

// newSession grants a lease, wraps it in a concurrency.Session and starts keeping it alive.
func (e *Etcd) newSession(ctx context.Context) (*session, error) {
	sent := e.mono()
	gctx, cancel := context.WithTimeout(ctx, time.Duration(e.ttl)*time.Second)
	resp, err := e.cli.Grant(gctx, e.ttl)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("granting a lease: %w", err)
	}
	s := &session{e: e, id: resp.ID, ttl: time.Duration(resp.TTL) * time.Second, lost: make(chan struct{})}
	s.until.Store(sent + int64(s.ttl-e.margin))
	s.acked.Store(sent)
	cs, err := concurrency.NewSession(e.cli, concurrency.WithLease(resp.ID), concurrency.WithContext(e.ctx))
	if err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), resignTimeout)
		_, _ = e.cli.Revoke(rctx, resp.ID)
		cancel()
		return nil, fmt.Errorf("starting the session of lease %x: %w", resp.ID, err)
	}
	s.cs = cs
	e.log.Info("fleet lease granted", zap.Int64("lease", int64(s.id)), zap.Duration("ttl", s.ttl), zap.String("id", e.id))
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		e.keepAlive(s)
	}()
	return s, nil
}

// keepAlive renews s every third of its TTL (sooner after a failure) and moves its local
// deadline on each acknowledgement. It gives s up when the deadline passes without one or
// etcd says the lease is gone. The session's own keepalives run too: they renew the same
// lease, which only makes the local deadline more conservative.
func (e *Etcd) keepAlive(s *session) {
	interval := s.ttl / 3
	retry := max(interval/5, 100*time.Millisecond)
	next := interval
	timer := time.NewTimer(next)
	defer timer.Stop()
	for {
		left := time.Duration(s.until.Load() - e.mono())
		if left <= 0 {
			s.lose("no keepalive was acknowledged in time (etcd unreachable?)")
			return
		}
		timer.Reset(min(next, left))
		select {
		case <-e.ctx.Done():
			return
		case <-s.lost:
			return
		case <-s.cs.Done():
			s.lose("the etcd session ended")
			return
		case <-timer.C:
		}
		left = time.Duration(s.until.Load() - e.mono())
		if left <= 0 {
			continue
		}
		sent := e.mono()
		kctx, cancel := context.WithTimeout(e.ctx, min(interval, left))
		resp, err := e.cli.KeepAliveOnce(kctx, s.id)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			s.acked.Store(sent)
			s.extend(sent + int64(time.Duration(resp.TTL)*time.Second-e.margin))
			next = interval
		case err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.lose("the lease expired on the etcd server")
			return
		default:
			if e.ctx.Err() != nil {
				return
			}
			e.log.Debug("fleet lease keepalive failed; trying again", zap.Int64("lease", int64(s.id)), zap.Error(err))
			next = retry
		}
	}
}

// Run campaigns for job and runs work while this process holds it (see Elector).
func (e *Etcd) Run(ctx context.Context, job string, work func(ctx context.Context)) error {
	if err := CheckJob(job); err != nil {
		return err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	e.runs.Add(1)
	turn := e.local[job]
	if turn == nil {
		turn = make(chan struct{}, 1)
		e.local[job] = turn
	}
	e.mu.Unlock()
	defer e.runs.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel) // Close ends every Run
	defer stop()
	// Runs of one job in this process (an old and a new configuration during a reload)
	// would share this process's election key: they take turns instead.
	select {
	case turn <- struct{}{}:
		defer func() { <-turn }()
	case <-ctx.Done():
		return e.runErr(ctx, ctx.Err())
	}
	// The keys are prefix+job+"//"+lease: a job name has no empty segment, so no job's
	// keys fall under another's.
	pfx := e.prefix + job + "/"
	for attempt := 0; ; attempt++ {
		s, err := e.session(ctx)
		if err != nil {
			return e.runErr(ctx, err)
		}
		t, err := e.campaign(ctx, s, job, pfx)
		if err != nil {
			if ctx.Err() != nil {
				return e.runErr(ctx, ctx.Err())
			}
			if s.valid() {
				e.log.Warn("campaigning for a job failed; trying again", zap.String("job", job), zap.Error(err))
				if err := sleep(ctx, retryDelay(attempt)); err != nil {
					return e.runErr(ctx, err)
				}
			}
			continue
		}
		attempt = 0
		e.log.Info("this gateway now runs the job", zap.String("job", job), zap.Int64("rev", t.Rev), zap.Int64("lease", t.Lease))
		returned := e.hold(ctx, t, work)
		if returned || ctx.Err() != nil {
			e.resign(t)
			return e.runErr(ctx, ctx.Err())
		}
		e.log.Warn("this gateway lost the job; it campaigns again", zap.String("job", job))
	}
}

// runErr is what Run returns: ErrClosed when Close ended it.
func (e *Etcd) runErr(ctx context.Context, err error) error {
	if e.ctx.Err() != nil {
		return ErrClosed
	}
	if err == nil {
		return ctx.Err()
	}
	return err
}

// errLostInCampaign: the campaign ended after this process's own key was gone (its lease
// lapsed while it waited).
var errLostInCampaign = errors.New("fleet: the lease lapsed during the campaign")

// campaign waits until this process holds job on s.
func (e *Etcd) campaign(ctx context.Context, s *session, job, pfx string) (*term, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.lost:
			cancel()
		case <-cctx.Done():
		}
	}()
	el := concurrency.NewElection(s.cs, pfx)
	if err := el.Campaign(cctx, e.id); err != nil {
		return nil, err
	}
	// Campaign returns once every earlier key is gone, even when this process's own key
	// went with its lease meanwhile: check that the key is still there, on this lease.
	resp, err := e.cli.Get(cctx, el.Key())
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != el.Rev() || resp.Kvs[0].Lease != int64(s.id) || !s.valid() {
		return nil, errLostInCampaign
	}
	return &term{Term: Term{Job: job, Lease: int64(s.id), Key: el.Key(), Rev: el.Rev()}, s: s, el: el}, nil
}

// hold runs work for term t until it returns; its context is cancelled when the session
// is lost or the election key deleted (by an operator). returned reports that work ended
// by itself while t still held.
func (e *Etcd) hold(ctx context.Context, t *term, work func(ctx context.Context)) (returned bool) {
	wctx, cancel := context.WithCancel(WithGuard(ctx, t.held))
	defer cancel()
	e.mu.Lock()
	e.terms[t.Job] = t
	e.mu.Unlock()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		defer cancel()
		// A deleted key (an operator's etcdctl del) ends the term at once; a watch that
		// fails (no leader) leaves it to the lease.
		wch := e.cli.Watch(wctx, t.Key, clientv3.WithRev(t.Rev+1), clientv3.WithFilterPut())
		for {
			select {
			case <-t.s.lost:
				return
			case <-wctx.Done():
				return
			case wr, ok := <-wch:
				if !ok {
					wch = nil
					continue
				}
				for _, ev := range wr.Events {
					if ev.Type == mvccpb.DELETE {
						e.log.Warn("the election key of a held job was deleted", zap.String("job", t.Job))
						return
					}
				}
			}
		}
	}()
	work(wctx)
	returned = wctx.Err() == nil && t.held()
	t.ended.Store(true)
	cancel()
	<-watched
	e.mu.Lock()
	if e.terms[t.Job] == t {
		delete(e.terms, t.Job)
	}
	e.mu.Unlock()
	return returned
}

// resign deletes t's election key so that the next candidate need not wait for the lease.
// A resignation that fails gives the whole session up: its keepalives would otherwise keep
// the key, and the job, for as long as this process lives.
func (e *Etcd) resign(t *term) {
	if !t.s.valid() {
		return // lost: its lease is revoked or lapses
	}
	ctx, cancel := context.WithTimeout(context.Background(), resignTimeout)
	defer cancel()
	if err := t.el.Resign(ctx); err != nil {
		e.log.Warn("resigning a job failed; giving the lease up", zap.String("job", t.Job), zap.Error(err))
		t.s.lose("a resignation failed")
	}
}

// Holding reports whether this process holds job: a term is running and the lease's local
// deadline has not passed.
func (e *Etcd) Holding(job string) bool {
	e.mu.Lock()
	t := e.terms[job]
	e.mu.Unlock()
	return t != nil && t.held()
}

// Term returns job's current term when this process holds it.
func (e *Etcd) Term(job string) (Term, bool) {
	e.mu.Lock()
	t := e.terms[job]
	e.mu.Unlock()
	if t == nil || !t.held() {
		return Term{}, false
	}
	return t.Term, true
}

// Close ends every Run (resigning their jobs), revokes the lease and stops its keepalives.
func (e *Etcd) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.runs.Wait()
	e.mu.Lock()
	s := e.sess
	e.mu.Unlock()
	if s != nil {
		s.lose("the elector closed")
	}
	e.bg.Wait()
	return nil
}

// retryDelay is the pause after the attempt-th failure in a row: 100ms doubling up to
// maxRetry.
func retryDelay(attempt int) time.Duration {
	return min(maxRetry, 100*time.Millisecond<<min(attempt, 5))
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Owner is the id of this process's current lease, in hex (the session is made if needed).
func (e *Etcd) Owner(ctx context.Context) (string, error) {
	s, err := e.session(ctx)
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(int64(s.id), 16), nil
}

// Owns reports whether owner is the id of this process's lease and the lease is still
// valid (within its local deadline, not given up): no network call.
func (e *Etcd) Owns(owner string) bool {
	e.mu.Lock()
	s := e.sess
	e.mu.Unlock()
	return s != nil && owner != "" && strconv.FormatInt(int64(s.id), 16) == owner && s.valid()
}

// Alive asks etcd whether the lease owner names still exists: a gateway that died (or lost
// its lease) has none within the lease's TTL.
func (e *Etcd) Alive(ctx context.Context, owner string) (bool, error) {
	id, err := strconv.ParseInt(owner, 16, 64)
	if err != nil || id <= 0 {
		return false, fmt.Errorf("fleet: %q is not an owner (a lease id)", owner)
	}
	resp, err := e.cli.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		return false, err
	}
	return resp.TTL > 0, nil
}
