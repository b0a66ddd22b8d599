package fleet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// testTTL is the lease TTL of the tests: etcd's minimum with the test member's timing.
const testTTL = 2 * time.Second

func newTestElector(t *testing.T, cli *clientv3.Client, id string) *Etcd {
	t.Helper()
	e, err := NewEtcd(cli, "/scimgate/test/e/", EtcdOptions{TTL: testTTL, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// waitFor polls cond every 10ms for at most d.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func TestCheckJob(t *testing.T) {
	for _, ok := range []string{"outbox/t1", "journal/audit/checkpoint", "reconcile/a.b_c-d"} {
		if err := CheckJob(ok); err != nil {
			t.Errorf("CheckJob(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/outbox", "outbox/", "outbox//t", "out box", "outbox/\x00", string(make([]byte, 513))} {
		if err := CheckJob(bad); err == nil {
			t.Errorf("CheckJob(%q) accepted", bad)
		}
	}
	if err := NewSolo().Run(context.Background(), "a//b", func(context.Context) { t.Error("work ran") }); err == nil {
		t.Error("Solo ran an invalid job")
	}
}

func TestNewEtcdRejectsBadOptions(t *testing.T) {
	cli := &clientv3.Client{}
	for _, o := range []EtcdOptions{{TTL: 500 * time.Millisecond}, {TTL: 3 * time.Second, Margin: 2 * time.Second}, {Margin: -1}} {
		if _, err := NewEtcd(cli, "/p/e/", o); err == nil {
			t.Errorf("NewEtcd accepted %+v", o)
		}
	}
	if _, err := NewEtcd(nil, "/p/e/", EtcdOptions{}); err == nil {
		t.Error("NewEtcd accepted a nil client")
	}
}

// Two gateways run one job in turns: never both at once, and each run is a term of its own.
func TestEtcdOneHolderAtATime(t *testing.T) {
	te := etcdtest.Start(t, 1)
	a, b := newTestElector(t, te.Client(), "a"), newTestElector(t, te.Client(), "b")
	const job, rounds = "outbox/t1", 8
	var running, overlaps, runs atomic.Int32
	var revs sync.Map
	work := func(e *Etcd) func(ctx context.Context) {
		return func(ctx context.Context) {
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			runs.Add(1)
			term, ok := e.Term(job)
			if !ok || !e.Holding(job) || Check(ctx) != nil {
				t.Errorf("work runs without holding the job (term %+v, %v)", term, ok)
			}
			if _, dup := revs.LoadOrStore(term.Rev, true); dup {
				t.Errorf("two terms share revision %d", term.Rev)
			}
			for range 5 { // hold the job a little, checking the guard as a deliverer would
				if Check(ctx) != nil {
					t.Error("the guard failed while the term runs")
				}
				time.Sleep(10 * time.Millisecond)
			}
			running.Add(-1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, e := range []*Etcd{a, b} {
		wg.Go(func() {
			for range rounds {
				if err := e.Run(ctx, job, work(e)); err != nil {
					t.Errorf("Run: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Errorf("the two gateways ran the job at once %d times", n)
	}
	if n := runs.Load(); n != 2*rounds {
		t.Errorf("work ran %d times, want %d", n, 2*rounds)
	}
	if a.Holding(job) || b.Holding(job) {
		t.Error("a gateway still holds the job after its Runs returned")
	}
}

// A gateway killed while it holds a job (its client closed without resigning, as kill -9
// leaves it) hands the job over when its lease expires.
func TestEtcdFailoverWhenHolderDies(t *testing.T) {
	te := etcdtest.Start(t, 1)
	cliA := te.Client()
	a, b := newTestElector(t, cliA, "a"), newTestElector(t, te.Client(), "b")
	const job = "outbox/t1"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	aWork := make(chan context.Context, 1)
	go a.Run(ctx, job, func(ctx context.Context) { aWork <- ctx; <-ctx.Done() })
	var actx context.Context
	select {
	case actx = <-aWork:
	case <-ctx.Done():
		t.Fatal("a never got the job")
	}
	bStarted := make(chan time.Time, 1)
	go b.Run(ctx, job, func(ctx context.Context) { bStarted <- time.Now(); <-ctx.Done() })
	time.Sleep(300 * time.Millisecond) // b campaigns and waits behind a
	if b.Holding(job) || !a.Holding(job) {
		t.Fatal("b holds the job while a is alive")
	}
	killed := time.Now()
	cliA.Close()
	select {
	case at := <-bStarted:
		took := at.Sub(killed)
		t.Logf("failover after the holder died: %s (lease TTL %s)", took.Round(time.Millisecond), testTTL)
		// The bound is generous for a loaded machine; the number is what the test reports.
		if took > testTTL+10*time.Second {
			t.Errorf("failover took %s, more than the TTL %s + 10s", took, testTTL)
		}
	case <-ctx.Done():
		t.Fatal("b never took the job over")
	}
	if a.Holding(job) {
		t.Error("a still believes it holds the job after b was elected")
	}
	if Check(actx) == nil || actx.Err() == nil {
		t.Error("a's work was not told that the job was lost")
	}
}

// A holder cut off from etcd stops believing it holds its job before its lease could have
// expired on the server: within TTL of sending the last keepalive etcd acknowledged.
func TestEtcdHoldingEndsBeforeLeaseExpiry(t *testing.T) {
	te := etcdtest.Start(t, 1)
	a := newTestElector(t, te.Client(), "a")
	const job = "journal/audit/checkpoint"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	workCtx := make(chan context.Context, 1)
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx, job, func(ctx context.Context) { workCtx <- ctx; <-ctx.Done() }) }()
	var wctx context.Context
	select {
	case wctx = <-workCtx:
	case <-ctx.Done():
		t.Fatal("a never got the job")
	}
	time.Sleep(testTTL / 2) // a keepalive or two
	a.mu.Lock()
	s := a.sess
	a.mu.Unlock()
	// Watch Holding from before etcd stops: stopping the member takes a while.
	lostAt := make(chan int64, 1)
	go func() {
		for deadline := time.Now().Add(3 * testTTL); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if !a.Holding(job) {
				lostAt <- a.mono()
				return
			}
		}
		lostAt <- 0
	}()
	stopped := a.mono()
	te.Stop(0)
	lost := <-lostAt
	if lost == 0 {
		t.Fatal("a still holds the job long after etcd went away")
	}
	// The server renews a lease from when it receives a keepalive, after it was sent.
	expiry := s.acked.Load() + int64(s.ttl)
	t.Logf("etcd stopped; Holding turned false after %s, %s before the lease could expire",
		time.Duration(lost-stopped).Round(time.Millisecond), time.Duration(expiry-lost).Round(time.Millisecond))
	if lost >= expiry {
		t.Errorf("Holding turned false %s after the lease could have expired", time.Duration(lost-expiry))
	}
	if !waitFor(time.Second, func() bool { return wctx.Err() != nil }) || Check(wctx) == nil {
		t.Error("the work's context was not cancelled when the lease lapsed")
	}
	cancel()
	select {
	case err := <-ran:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return after its context ended, with etcd down")
	}
}

// Two Runs of one job in one process (an old and a new configuration during a reload)
// share the process's election key: they take turns instead of both holding the job.
func TestEtcdRunsOfOneProcessTakeTurns(t *testing.T) {
	te := etcdtest.Start(t, 1)
	e := newTestElector(t, te.Client(), "a")
	const job = "reconcile/app"
	var running, overlaps, runs atomic.Int32
	work := func(ctx context.Context) {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		runs.Add(1)
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for range 4 {
				if err := e.Run(ctx, job, work); err != nil {
					t.Errorf("Run: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if overlaps.Load() != 0 || runs.Load() != 12 {
		t.Errorf("%d runs, %d of them overlapping; want 12, none", runs.Load(), overlaps.Load())
	}
}

// Close ends the Runs in progress and resigns their jobs, so that another process takes
// them over at once rather than after the lease TTL.
func TestEtcdCloseHandsJobsOver(t *testing.T) {
	te := etcdtest.Start(t, 1)
	a, b := newTestElector(t, te.Client(), "a"), newTestElector(t, te.Client(), "b")
	const job = "journal/audit/retention"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(ctx, job, func(ctx context.Context) { <-ctx.Done() }) }()
	if !waitFor(10*time.Second, func() bool { return a.Holding(job) }) {
		t.Fatal("a never got the job")
	}
	bStarted := make(chan struct{})
	go b.Run(ctx, job, func(ctx context.Context) { close(bStarted); <-ctx.Done() })
	a.Close()
	if err := <-aDone; !errors.Is(err, ErrClosed) {
		t.Errorf("a's Run returned %v, want ErrClosed", err)
	}
	closed := time.Now()
	select {
	case <-bStarted:
		t.Logf("b took the job %s after a closed", time.Since(closed).Round(time.Millisecond))
	case <-ctx.Done():
		t.Fatal("b never got the job")
	}
}

// etcdBolt stands for an etcd store: shared, with a client and a prefix.
type etcdBolt struct {
	*kv.Bolt
	cli *clientv3.Client
}

func (etcdBolt) Shared() bool               { return true }
func (s etcdBolt) Client() *clientv3.Client { return s.cli }
func (etcdBolt) Prefix() string             { return "/scimgate/prod/" }

func TestForPicksTheElectorOfTheStore(t *testing.T) {
	bolt, err := kv.OpenBolt(filepath.Join(t.TempDir(), "s.db"), kv.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	el, err := For(bolt, EtcdOptions{})
	if _, solo := el.(*Solo); err != nil || !solo {
		t.Errorf("For(bbolt) = %T, %v; want Solo", el, err)
	}
	if n := Name(el); n != "" {
		t.Errorf("a gateway alone is named %q, want none", n)
	}
	te := etcdtest.Start(t, 1)
	el, err = For(etcdBolt{bolt, te.Client()}, EtcdOptions{TTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	if e, ok := el.(*Etcd); !ok || e.prefix != "/scimgate/prod/e/" {
		t.Fatalf("For(etcd store) = %T; want Etcd under /scimgate/prod/e/", el)
	}
	host, _ := os.Hostname()
	if n, want := Name(el), host+":"+strconv.Itoa(os.Getpid()); n != want {
		t.Errorf("a gateway of a fleet is named %q, want %q (host name and process id)", n, want)
	}
}
