package main

// Entra's initial cycle through the gateway into the demo app in the target's delivery
// modes: how many native calls batched queued delivery saves against immediate delivery,
// and fallback delivery through a real outage of the app (a loopback proxy in front of it
// that stops listening). The scale (1,000 users, 50 groups of 40 members, a 60 s
// outage) runs with SCIMGATE_INITIAL_CYCLE_FULL=1; CI runs a smaller cycle.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/demoapp"
	"github.com/scimgate/scimgate/internal/testnet"
)

// cycleScale is the size of the initial cycle the tests play.
type cycleScale struct {
	users, groups, members int
	batch, outage          time.Duration
}

func scaleOf() cycleScale {
	if os.Getenv("SCIMGATE_INITIAL_CYCLE_FULL") != "" {
		return cycleScale{users: 1000, groups: 50, members: 40, batch: 90 * time.Second, outage: 60 * time.Second}
	}
	return cycleScale{users: 240, groups: 12, members: 40, batch: 20 * time.Second, outage: 5 * time.Second}
}

// initialDataset is generate's tenant with every group holding exactly members users and
// no nested group (the "groups of 40 members").
func initialDataset(t *testing.T, sc cycleScale) (*Dataset, string) {
	t.Helper()
	ds := generate(7, sc.users, sc.groups)
	r := newRand(7, 9)
	for j := range ds.Groups {
		ds.Groups[j].Members = pickUsers(r, ds.Users, sc.members)
		ds.Groups[j].MemberGroups = nil
	}
	data, err := json.Marshal(ds)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tenant.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return ds, path
}

// startDelivery runs the gateway with the delivery lines given, its target the demo app
// or (proxied) a proxy in front of it; it returns the Tenant URL, the app's URL and the
// proxy (nil when not proxied).
func startDelivery(t *testing.T, delivery string, proxied bool) (tenant, app string, p *appProxy) {
	t.Helper()
	a := testnet.FreeAddrs(t, 3)
	addr, demo := a[0], a[1]
	target := demo
	if proxied {
		p = &appProxy{addr: a[2], to: demo}
		p.start(t)
		t.Cleanup(p.stop)
		target = p.addr
	}
	t.Setenv("ENTRASIM_IT_ADDR", addr)
	t.Setenv("ENTRASIM_IT_DEMO_ADDR", demo)
	t.Setenv("ENTRASIM_IT_APP_ADDR", target)
	t.Setenv("ENTRASIM_IT_DEMO_NAME", strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	t.Setenv("ENTRASIM_IT_DEMO_KEY", demoKey)
	t.Setenv("ENTRASIM_IT_DELIVERY", delivery)
	runCaddyfile(t, "Caddyfile.delivery")
	return "http://" + addr + "/scim/v2", "http://" + demo, p
}

// playInitial plays the initial cycle of the tenant file and fails on any status Entra
// would not accept.
func playInitial(t *testing.T, tenant, input string) *Summary {
	t.Helper()
	cfg := config{URL: tenant, Token: itToken, Input: input, Dialect: dialectDefault, Concurrency: 8, Phase: phaseInitial, Timeout: 10 * time.Minute}
	var out bytes.Buffer
	sum, err := run(context.Background(), cfg, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return sum
}

// outboxWorker is the outbox worker of the gateway's store.
func outboxWorker(t *testing.T) *outbox.Worker {
	dir := os.Getenv("ENTRASIM_IT_DATA")
	for _, w := range outbox.Running() {
		if strings.HasPrefix(w.StorePath(), dir) {
			return w
		}
	}
	t.Error("no outbox worker runs on the gateway's store")
	return nil
}

// waitDrained waits until the outbox of the gateway's store is empty; a dead letter fails.
func waitDrained(t *testing.T, limit time.Duration) {
	t.Helper()
	w := outboxWorker(t)
	if w == nil {
		t.FailNow()
	}
	deadline := time.Now().Add(limit)
	for {
		s := w.Stats()
		if s.Dead > 0 {
			t.Fatalf("%d dead letters", s.Dead)
		}
		if s.Pending == 0 && s.InFlight == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the outbox still holds %d changes after %s", s.Pending, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAppEqualsDirectory compares the demo app with the directory after the initial cycle.
func checkAppEqualsDirectory(t *testing.T, tenant, app string, ds *Dataset) demoapp.Snapshot {
	t.Helper()
	v := &verifier{t: t, base: tenant}
	s := demoState(t, app)
	compareWithApp(t, v, ds, nil, s)
	return s
}

// TestQueuedInitialCycleCalls plays Entra's initial cycle in immediate mode and in batched
// queued mode (the cycle starting just after a batch, so that it waits for the next one)
// and counts the calls the demo app answered. Immediate delivery makes one call per
// account, per manager link, per team and per membership PATCH of Entra's; queued delivery
// coalesces a user's create with its manager link (the create waits for the manager's) and
// a group's create with its member adds (one batch call), and sends the ready creates of
// accounts and of teams in the demo app's bulk creates (create_batch in
// mappings/demoapp.json, 100 a call): one call per 100 accounts of each level of the
// manager hierarchy (an account's create waits for its manager's), per 100 teams, and one
// per team's members. A few links still go alone: a user whose create was queued before its
// manager's (Entra sends 8 at once) cannot wait for a later change. The target:
// queued makes at most half the calls of immediate. The app ends equal to the directory in
// both.
func TestQueuedInitialCycleCalls(t *testing.T) {
	sc := scaleOf()
	ds, input := initialDataset(t, sc)
	var immediate, queued int64
	t.Run("immediate", func(t *testing.T) {
		tenant, app, _ := startDelivery(t, "", false)
		playInitial(t, tenant, input)
		immediate = checkAppEqualsDirectory(t, tenant, app, ds).Calls
	})
	t.Run("queued", func(t *testing.T) {
		tenant, app, _ := startDelivery(t, "delivery queued\nqueue {\nschedule every "+sc.batch.String()+"\n}", false)
		time.Sleep(time.Until(time.Now().Truncate(sc.batch).Add(sc.batch)) + 100*time.Millisecond)
		playInitial(t, tenant, input)
		if s := demoState(t, app); s.Calls != 0 {
			t.Logf("the cycle outlasted the batch interval: %d calls before it ended", s.Calls)
		}
		waitDrained(t, 2*sc.batch+5*time.Minute)
		queued = checkAppEqualsDirectory(t, tenant, app, ds).Calls
	})
	if t.Failed() {
		return
	}
	managed := 0
	for _, u := range ds.Users {
		if u.Manager != "" {
			managed++
		}
	}
	levels := managerLevels(ds)
	const bulk = 100 // create_batch's batch_size in mappings/demoapp.json
	perBulk := func(n int) int64 { return int64((n + bulk - 1) / bulk) }
	best := perBulk(len(ds.Users)) + perBulk(len(ds.Groups)) + int64(len(ds.Groups)) // bulk creates, and a team's members each
	t.Logf("initial cycle of %d users (%d with a manager, %d levels), %d groups of %d: native calls immediate %d, queued (every %s, bulk creates of %d) %d, ratio %.3f; at best %d (ratio %.3f)",
		sc.users, managed, levels, sc.groups, sc.members, immediate, sc.batch, bulk, queued, float64(queued)/float64(immediate), best, float64(best)/float64(immediate))
	if limit := best + int64(levels) + int64(managed/10); queued > limit {
		t.Errorf("queued delivery made %d native calls, more than %d (%d at best, a bulk call more per level of managers, and a tenth of the manager links on their own)", queued, limit, best)
	}
	if 2*queued > immediate {
		t.Errorf("queued delivery made %d native calls, more than half of immediate delivery's %d", queued, immediate)
	}
}

// managerLevels is the depth of the tenant's manager hierarchy: 1 when nobody has a
// manager, 2 when managers have none, and so on.
func managerLevels(ds *Dataset) int {
	manager := map[string]string{}
	for _, u := range ds.Users {
		manager[strings.ToLower(u.UserName)] = strings.ToLower(u.Manager)
	}
	deepest := 0
	for name := range manager {
		depth := 1
		for m := manager[name]; m != "" && depth <= len(manager); m = manager[m] {
			depth++
		}
		deepest = max(deepest, depth)
	}
	return deepest
}

// appProxy forwards TCP connections on addr to the app at to; stop closes the listener and
// every connection (the app's port refuses from then on), start listens again.
type appProxy struct {
	addr, to string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (p *appProxy) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("the proxy cannot listen again on %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln, p.conns = ln, map[net.Conn]struct{}{}
	p.mu.Unlock()
	p.wg.Add(1)
	go p.accept(ln)
}

func (p *appProxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// track registers a connection pair, or closes it when the proxy stopped meanwhile.
func (p *appProxy) track(c ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, x := range c {
			x.Close()
		}
		return false
	}
	for _, x := range c {
		p.conns[x] = struct{}{}
	}
	return true
}

func (p *appProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

func (p *appProxy) stop() {
	p.mu.Lock()
	ln, conns := p.ln, p.conns
	p.ln, p.conns = nil, nil
	p.mu.Unlock()
	if ln == nil {
		return
	}
	ln.Close()
	for c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// TestFallbackThroughOutage plays the initial cycle in fallback mode while the app goes
// down in the middle of it (its port refuses connections for sc.outage): Entra gets no 5xx
// (the changes the app could not take are queued and answered), and once the app is back
// the outbox drains and the app equals the directory.
func TestFallbackThroughOutage(t *testing.T) {
	sc := scaleOf()
	ds, input := initialDataset(t, sc)
	tenant, app, proxy := startDelivery(t, "delivery fallback\nqueue {\nretry_backoff 100ms 1s\n}", true)
	var queuedInOutage int
	down := make(chan struct{})
	back := make(chan struct{})
	go func() {
		defer close(back)
		// Down once the app has taken about a third of the users, for sc.outage.
		for i := 0; i < 6000 && demoCalls(app) < int64(sc.users/3); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		proxy.stop()
		close(down)
		time.Sleep(sc.outage)
		if w := outboxWorker(t); w != nil {
			queuedInOutage = w.Stats().Pending
		}
	}()
	sum := playInitial(t, tenant, input)
	<-back
	proxy.start(t)
	select {
	case <-down:
	default:
		t.Fatal("the app never went down")
	}
	if queuedInOutage == 0 {
		t.Fatal("nothing was queued while the app was down")
	}
	for kind, k := range sum.Kinds {
		for st, n := range k.Statuses {
			if strings.HasPrefix(st, "5") || st == "error" {
				t.Errorf("%s: %d answers %s", kind, n, st)
			}
		}
	}
	waitDrained(t, time.Minute)
	checkAppEqualsDirectory(t, tenant, app, ds)
	t.Logf("fallback through a %s outage: %d requests, %d retried by Entra, statuses %s, %d changes queued when the app came back", sc.outage, sum.Requests, sum.Retries, statusesOf(sum), queuedInOutage)
}

// demoCalls is the app's call count, or 0 when it cannot be read.
func demoCalls(app string) int64 {
	s, err := demoapp.FetchState(http.DefaultClient, app, demoKey)
	if err != nil {
		return 0
	}
	return s.Calls
}

func statusesOf(s *Summary) string {
	all := map[string]int{}
	for _, k := range s.Kinds {
		for st, n := range k.Statuses {
			all[st] += n
		}
	}
	b, _ := json.Marshal(all) // a map of ints always marshals
	return string(b)
}
