package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/store"
	"github.com/scimgate/scimgate/demoapp"
	"github.com/scimgate/scimgate/internal/testnet"
)

// The fleet rig: a three-member etcd cluster in this process (etcdtest), the demo app in
// this process behind a counter of its creates, and gateways in child processes (the test
// binary re-executed as serveChild: Caddy holds one config per process), each running a
// Caddyfile with the same `store etcd` block in front of the same app.

const (
	fleetDemoKey = "fleet-demo-key-0123456789abcdef"
	fleetPrefix  = "/fleet/"
	// fleetRequestTimeout is the store's request_timeout: a write without quorum answers 503
	// after it.
	fleetRequestTimeout = 2 * time.Second
)

// fleetApp is the demo app served on loopback, counting the creates (POST /api/v1/accounts)
// it receives per login, answered or refused: a non-idempotent call made twice for one
// user shows as a count of 2.
type fleetApp struct {
	url string
	mu  sync.Mutex
	// creates counts POST /api/v1/accounts per lower-cased login.
	creates map[string]int
	// created holds when each create arrived, in order.
	created []time.Time
	// onCreated, when set, runs after the app created an account and before its answer
	// leaves (a test kills the calling gateway there); it is cleared once it returns true.
	onCreated func(login string) bool
}

// setOnCreated sets the hook run after each account is created, before the answer.
func (a *fleetApp) setOnCreated(fn func(login string) bool) {
	a.mu.Lock()
	a.onCreated = fn
	a.mu.Unlock()
}

// fleetApps numbers the apps started, for their state's name.
var fleetApps atomic.Int64

func startFleetApp(t testing.TB) *fleetApp {
	t.Helper()
	// Demo apps of one name share their state: each rig gets its own.
	name := fmt.Sprintf("%s-%d", strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()), fleetApps.Add(1))
	demo := &demoapp.App{APIKey: fleetDemoKey, Name: name}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := demo.Provision(ctx); err != nil {
		cancel()
		t.Fatalf("demo app: %v", err)
	}
	a := &fleetApp{creates: map[string]int{}}
	notFound := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		http.NotFound(w, r)
		return nil
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/accounts" && r.URL.Path != "/api/v1/accounts:batch" {
			_ = demo.ServeHTTP(w, r, notFound)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// A create, or the bulk create (mappings/demoapp.json's create_batch): each login
		// counts once per create the app receives.
		var one struct{ Login string }
		var bulk struct{ Accounts []struct{ Login string } }
		_ = json.Unmarshal(body, &one)
		_ = json.Unmarshal(body, &bulk)
		var logins []string
		for _, acc := range append(bulk.Accounts, one) {
			if l := strings.ToLower(strings.TrimSpace(acc.Login)); l != "" {
				logins = append(logins, l)
			}
		}
		a.mu.Lock()
		for _, login := range logins {
			a.creates[login]++
			a.created = append(a.created, time.Now())
		}
		a.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		// The answer is buffered until this handler returns, so the hook runs before the
		// gateway can read it.
		_ = demo.ServeHTTP(w, r, notFound)
		a.mu.Lock()
		hook := a.onCreated
		a.mu.Unlock()
		for _, login := range logins {
			if hook != nil && hook(login) {
				a.setOnCreated(nil)
				break
			}
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = demo.Cleanup()
		cancel()
	})
	a.url = "http://" + l.Addr().String()
	return a
}

// state is the app's accounts, teams and memberships.
func (a *fleetApp) state(t testing.TB) demoapp.Snapshot {
	t.Helper()
	s, err := demoapp.FetchState(&http.Client{Timeout: 10 * time.Second}, a.url, fleetDemoKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// firstCreateAfter is when the first create after t arrived (zero: none yet).
func (a *fleetApp) firstCreateAfter(t time.Time) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.created {
		if c.After(t) {
			return c
		}
	}
	return time.Time{}
}

// createCount is how many creates the app received for login.
func (a *fleetApp) createCount(login string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creates[strings.ToLower(login)]
}

// gwFleet is an etcd cluster, the app, and the gateways' config.
type gwFleet struct {
	t         testing.TB
	etcd      *etcdtest.Cluster
	app       *fleetApp
	policyDir string // "" for no policy
	// delivery is the target's delivery mode ("" for immediate), set before the gateways
	// start.
	delivery string
	// deliveries, when set, is each gateway's delivery mode in place of delivery ("" for
	// immediate): a fleet in the middle of a rolling config change.
	deliveries []string
	// endpointsOf, when set, picks gateway i's etcd endpoints from the members' (or their
	// proxies') URLs, in order: a gateway configured with one member only.
	endpointsOf func(i int, all []string) []string
	// gatewayExtra is added to every gateway's scim_gateway block (a journal block).
	gatewayExtra string
	// readStaleness is the store's read_staleness (0: not set), set before the gateways
	// start.
	readStaleness time.Duration
	// together starts every gateway at once on the empty store (set before they start).
	together bool
	// proxied puts a proxy (etcdtest.Proxy) between the gateways and each etcd member (set
	// before they start); proxies holds them, one per member.
	proxied bool
	proxies []*etcdtest.Proxy
	// leaseTTL is the store's lease_ttl (0: 3s), set before the gateways start.
	leaseTTL time.Duration
	// requestTimeout is the store's request_timeout (0: fleetRequestTimeout), set before the
	// gateways start.
	requestTimeout time.Duration
	// logs keeps each gateway's log (JSON lines, level INFO) in its logFile instead of
	// discarding it (set before the gateways start).
	logs   bool
	gws    []*fleetGateway
	client *http.Client
}

// fleetGateway is one gateway child process. Its address stays the same across restarts.
type fleetGateway struct {
	addr      string
	index     int
	caddyfile string
	// logFile is where the gateway logs (with gwFleet.logs).
	logFile string
	mu      sync.Mutex
	cmd     *exec.Cmd
	stdin   io.WriteCloser
}

// startFleet starts a three-member etcd cluster, the app, and n gateways on it, with the
// policy in policyDir ("" for none).
func startFleet(t testing.TB, n int, policyDir string) *gwFleet {
	t.Helper()
	return startFleetWith(t, n, policyDir, false)
}

// startFleetWith is startFleet, or with bolt one gateway on its own bbolt store (data_dir)
// and no etcd, the single-node baseline of the benchmark.
func startFleetWith(t testing.TB, n int, policyDir string, bolt bool) *gwFleet {
	t.Helper()
	return startFleetOf(t, n, &gwFleet{policyDir: policyDir}, bolt)
}

// startFleetOf starts the fleet f describes (policyDir, delivery) with n gateways.
func startFleetOf(t testing.TB, n int, f *gwFleet, bolt bool) *gwFleet {
	t.Helper()
	*f = gwFleet{
		t: t, app: startFleetApp(t), policyDir: f.policyDir, delivery: f.delivery, deliveries: f.deliveries, endpointsOf: f.endpointsOf, gatewayExtra: f.gatewayExtra, readStaleness: f.readStaleness, together: f.together,
		proxied: f.proxied, leaseTTL: f.leaseTTL, logs: f.logs, requestTimeout: f.requestTimeout,
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	if bolt && n != 1 {
		t.Fatal("a bbolt store serves one gateway")
	}
	if !bolt {
		f.etcd = etcdtest.Start(t, 3)
		if f.proxied {
			for _, ep := range f.etcd.Endpoints() {
				f.proxies = append(f.proxies, etcdtest.NewProxy(t, ep))
			}
		}
	}
	mapping, err := filepath.Abs(filepath.Join("..", "mappings", "demoapp.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, addr := range testnet.FreeAddrs(t, n) {
		g := &fleetGateway{addr: addr, index: i}
		g.caddyfile = filepath.Join(t.TempDir(), "Caddyfile")
		if f.logs {
			g.logFile = filepath.Join(t.TempDir(), "gateway.log")
		}
		if err := os.WriteFile(g.caddyfile, []byte(f.caddyfile(g, mapping, t.TempDir(), t.TempDir())), 0o600); err != nil {
			t.Fatal(err)
		}
		f.gws = append(f.gws, g)
	}
	// The first gateway creates the store's layout alone (unless together); the others then
	// start together.
	first := 1
	if f.together {
		first = 0
	} else {
		f.start(0)
	}
	var wg sync.WaitGroup
	for i := first; i < n; i++ {
		wg.Go(func() { f.start(i) })
	}
	wg.Wait()
	t.Cleanup(f.stopAll)
	return f
}

// caddyfile is a gateway's config: the same store block and target on every gateway (on
// etcd), or the data directory dataDir (without etcd).
func (f *gwFleet) caddyfile(g *fleetGateway, mapping, storage, dataDir string) string {
	addr := g.addr
	policy := ""
	if f.policyDir != "" {
		policy = fmt.Sprintf("\t\tpolicy %s {\n\t\t\ttimeout 10s\n\t\t}\n", f.policyDir)
	}
	store := fmt.Sprintf("\t\tdata_dir %s\n", dataDir)
	if f.etcd != nil {
		stale := ""
		if f.readStaleness > 0 {
			stale = fmt.Sprintf("\t\t\tread_staleness %s\n", f.readStaleness)
		}
		endpoints := f.etcd.Endpoints()
		if f.proxied {
			endpoints = nil
			for _, p := range f.proxies {
				endpoints = append(endpoints, p.URL())
			}
		}
		if f.endpointsOf != nil {
			endpoints = f.endpointsOf(g.index, endpoints)
		}
		ttl := f.leaseTTL
		if ttl == 0 {
			ttl = 3 * time.Second
		}
		timeout := f.requestTimeout
		if timeout == 0 {
			timeout = fleetRequestTimeout
		}
		store = fmt.Sprintf("\t\tstore etcd {\n\t\t\tendpoints %s\n\t\t\tprefix %s\n\t\t\trequest_timeout %s\n\t\t\tlease_ttl %s\n%s\t\t}\n",
			strings.Join(endpoints, " "), fleetPrefix, timeout, ttl, stale)
	}
	logOutput := "output discard"
	if g.logFile != "" {
		logOutput = fmt.Sprintf("output file %s\n\t\tformat json\n\t\tlevel INFO", g.logFile)
	}
	delivery, mode := "", f.delivery
	if f.deliveries != nil {
		mode = f.deliveries[g.index]
	}
	if mode != "" {
		delivery = fmt.Sprintf("\t\t\tdelivery %s\n\t\t\tqueue {\n\t\t\t\tretry_backoff 10ms 200ms\n\t\t\t}\n", mode)
	}
	return fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %s
	log {
		%s
	}
}

http://%s {
	bind 127.0.0.1
	scim_gateway {
		token entra {env.SCIMGATE_FLEET_TOKEN}
%s%s%s		target demo {
			url %s
			mapping %s
			header X-Api-Key {env.SCIMGATE_FLEET_DEMO_KEY}
%s		}
	}
}
`, storage, logOutput, addr, store, policy, f.gatewayExtra, f.app.url, mapping, delivery)
}

// start starts gateway i's process and waits until it serves.
func (f *gwFleet) start(i int) {
	f.t.Helper()
	g := f.gws[i]
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SCIMGATE_SERVE_CHILD=1", "SCIMGATE_SERVE_CADDYFILE="+g.caddyfile,
		"SCIMGATE_FLEET_TOKEN="+testToken, "SCIMGATE_FLEET_DEMO_KEY="+fleetDemoKey)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "serving" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.t.Fatalf("gateway %d did not start: %q %v", i, line, err)
	}
	g.mu.Lock()
	g.cmd, g.stdin = cmd, stdin
	g.mu.Unlock()
}

// pid is gateway i's process id (0 when it is not running).
func (f *gwFleet) pid(i int) int {
	g := f.gws[i]
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return 0
	}
	return g.cmd.Process.Pid
}

// kill kills gateway i with SIGKILL.
func (f *gwFleet) kill(i int) {
	g := f.gws[i]
	g.mu.Lock()
	cmd := g.cmd
	g.cmd = nil
	g.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// stopAll stops every running gateway: gracefully (stdin closed), SIGKILL after a bound.
func (f *gwFleet) stopAll() {
	for _, g := range f.gws {
		g.mu.Lock()
		cmd, stdin := g.cmd, g.stdin
		g.cmd = nil
		g.mu.Unlock()
		if cmd == nil {
			continue
		}
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// base is gateway i's Tenant URL.
func (f *gwFleet) base(i int) string { return "http://" + f.gws[i].addr + "/scim/v2" }

// fleetResp is an answer: status, Retry-After and body (status 0: no answer).
type fleetResp struct {
	status     int
	retryAfter string
	body       []byte
	err        error
}

// do sends one SCIM request with Entra's token to gateway i.
func (f *gwFleet) do(i int, method, path, body string) fleetResp {
	return fleetDo(f.client, f.base(i), method, path, body)
}

func fleetDo(client *http.Client, base, method, path, body string) fleetResp {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return fleetResp{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fleetResp{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return fleetResp{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: data, err: err}
}

// id is the "id" of a SCIM resource in the answer.
func (r fleetResp) id() string {
	var v struct{ ID string }
	_ = json.Unmarshal(r.body, &v)
	return v.ID
}

// fleetUser is Entra's create of a user.
func fleetUser(userName, title string) string {
	return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],`+
		`"userName":%q,"active":true,"name":{"givenName":"Fleet","familyName":"User"},"title":%q}`, userName, title)
}

// fleetPatch is Entra's PATCH replacing one attribute with a value (a JSON literal).
func fleetPatch(path, value string) string {
	return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":%q,"value":%s}]}`, path, value)
}

// fleetUserView is what the checks read of a user.
type fleetUserView struct {
	ID       string `json:"id"`
	UserName string `json:"userName"`
	Active   bool   `json:"active"`
	Title    string `json:"title"`
}

// listUsers reads every user through gateway i, a page at a time (bounded).
func (f *gwFleet) listUsers(i int) (map[string]fleetUserView, error) {
	out := map[string]fleetUserView{}
	start := 1
	for range 1000 {
		r := f.do(i, http.MethodGet, fmt.Sprintf("/Users?startIndex=%d&count=100", start), "")
		if r.err != nil || r.status != http.StatusOK {
			return nil, fmt.Errorf("listing users through gateway %d: %d %v %s", i, r.status, r.err, r.body)
		}
		var page struct {
			TotalResults int
			Resources    []json.RawMessage
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			return nil, err
		}
		for _, raw := range page.Resources {
			var u fleetUserView
			if err := json.Unmarshal(raw, &u); err != nil {
				return nil, err
			}
			out[u.ID] = u
		}
		start += len(page.Resources)
		if len(page.Resources) == 0 || start > page.TotalResults {
			return out, nil
		}
	}
	return nil, fmt.Errorf("listing users through gateway %d: too many pages", i)
}

// listGroups reads every group through gateway i: sorted member ids by displayName.
func (f *gwFleet) listGroups(t testing.TB, i int) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	start := 1
	for range 1000 {
		r := f.do(i, http.MethodGet, fmt.Sprintf("/Groups?startIndex=%d&count=50", start), "")
		var page struct {
			TotalResults int
			Resources    []struct {
				DisplayName string
				Members     []struct{ Value string }
			}
		}
		if r.err != nil || r.status != http.StatusOK || json.Unmarshal(r.body, &page) != nil {
			t.Fatalf("listing groups through gateway %d: %d %v %s", i, r.status, r.err, r.body)
		}
		for _, g := range page.Resources {
			members := []string{}
			for _, m := range g.Members {
				members = append(members, m.Value)
			}
			slices.Sort(members)
			out[g.DisplayName] = members
		}
		start += len(page.Resources)
		if len(page.Resources) == 0 || start > page.TotalResults {
			return out
		}
	}
	t.Fatalf("listing groups through gateway %d: too many pages", i)
	return nil
}

// backup copies the fleet's store out of etcd into a bbolt file (a consistent snapshot,
// as `store copy`/backup would take) and opens it.
func (f *gwFleet) backup() *store.Store {
	f.t.Helper()
	db, err := etcdkv.Open(context.Background(), etcdkv.Config{Endpoints: f.etcd.Endpoints(), Prefix: fleetPrefix})
	if err != nil {
		f.t.Fatalf("opening the fleet's store: %v", err)
	}
	defer db.Close()
	path := filepath.Join(f.t.TempDir(), "backup.db")
	out, err := os.Create(path)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := db.Backup(out); err != nil {
		f.t.Fatalf("backing up the fleet's store: %v", err)
	}
	if err := out.Close(); err != nil {
		f.t.Fatal(err)
	}
	st, err := store.Open(path, store.Options{})
	if err != nil {
		f.t.Fatalf("opening the backup: %v", err)
	}
	f.t.Cleanup(func() { _ = st.Close() })
	return st
}

// fleetJournal is a verified journal: every record in order.
type fleetJournal struct {
	report  *journal.Report
	records []journal.Record
}

// verifyJournal verifies the journal of the store st as one chain and reads its records;
// it fails the test unless the chain verifies with no sequence number missing.
func verifyJournal(t testing.TB, st *store.Store) fleetJournal {
	t.Helper()
	j, err := journal.Open(st.DB(), journal.Options{Name: DefaultJournalName})
	if err != nil {
		t.Fatalf("opening the journal: %v", err)
	}
	defer j.Close()
	rep, err := j.Verify(context.Background(), nil)
	if err != nil || !rep.OK {
		t.Fatalf("the fleet's journal does not verify as one chain: %+v %v", rep, err)
	}
	var buf strings.Builder
	if _, err := j.Export(context.Background(), &buf, journal.Query{}, journal.FormatJSONL); err != nil {
		t.Fatal(err)
	}
	fj := fleetJournal{report: rep}
	for _, line := range strings.Split(buf.String(), "\n") {
		var l struct {
			Record *journal.Record `json:"record"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Record != nil {
			fj.records = append(fj.records, *l.Record)
		}
	}
	for i := 1; i < len(fj.records); i++ {
		if fj.records[i].Seq != fj.records[i-1].Seq+1 {
			t.Fatalf("the journal's sequence jumps from %d to %d", fj.records[i-1].Seq, fj.records[i].Seq)
		}
	}
	if uint64(len(fj.records)) != rep.Records {
		t.Fatalf("the export has %d records, verification counted %d", len(fj.records), rep.Records)
	}
	return fj
}

// applied counts the journal's applied records per action and SCIM id.
func (fj fleetJournal) applied() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, r := range fj.records {
		if r.Outcome != "applied" {
			continue
		}
		if out[string(r.Action)] == nil {
			out[string(r.Action)] = map[string]int{}
		}
		out[string(r.Action)][r.SCIMID]++
	}
	return out
}

// fleetQuery escapes a SCIM filter for a URL.
func fleetQuery(filter string) string { return url.QueryEscape(filter) }
