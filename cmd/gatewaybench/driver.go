package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	maxResponseBytes = 4 << 20
	maxSamples       = 5   // unexpected responses kept with details; the rest are counted
	maxDetailLen     = 200 // bytes of a response body quoted in a sample
	warmupPerWorker  = 2   // unmeasured requests per worker that open the level's connections
)

// Side names, as the report shows them.
const (
	sideGateway = "gateway"
	sideProxy   = "proxy"
	sideFloor   = "floor"
)

// side is one path under test: where its requests go, how they are spelled, and what it
// created at the current level.
type side struct {
	name   string
	base   string
	api    api
	users  []ref
	groups []ref
}

// kind is one row of the workload. once kinds use each of the level's users at most once
// (every request must be a real change); the others cycle over them until the cell's cap.
type kind struct {
	name  string
	read  bool
	once  bool
	build func(s *side, level, i int) request
}

// write reports whether k is a write the gateway journals and sends to the app: the kinds
// its write targets judge, and the floor measures.
func (k kind) write() bool { return !k.read && k.name != unchangedKind }

// kinds is the workload, in the order a level runs it: create first (it makes the users
// the others use), disable last (a disabled user stays readable, but nothing follows it).
var kinds = []kind{
	{name: "create", once: true},
	{name: "lookup", read: true, build: func(s *side, _, i int) request { return s.api.lookup(s.users[i%len(s.users)]) }},
	{name: "get", read: true, build: func(s *side, _, i int) request { return s.api.get(s.users[i%len(s.users)]) }},
	{name: "update", build: func(s *side, level, i int) request {
		return s.api.update(s.users[i%len(s.users)], fmt.Sprintf("Title %d-%d", level, i))
	}},
	{name: unchangedKind, build: func(s *side, _, i int) request { return s.api.unchanged(s.users[i%len(s.users)]) }},
	{name: "member_add", once: true, build: func(s *side, _, i int) request {
		return s.api.addMember(s.groups[i%len(s.groups)], s.users[i])
	}},
	{name: "disable", once: true, build: func(s *side, _, i int) request { return s.api.disable(s.users[i]) }},
}

// bench runs the workload and collects unexpected responses. Safe for concurrent use.
type bench struct {
	cfg    config
	client *http.Client

	mu      sync.Mutex
	unexp   int
	samples []string
}

// measure runs every level through both sides and returns the report.
func measure(ctx context.Context, r *rig, cfg config) *Report {
	b := &bench{cfg: cfg, client: r.client}
	gw := &side{name: sideGateway, base: r.gateway, api: scimAPI{token: r.token}}
	px := &side{name: sideProxy, base: r.proxy, api: nativeAPI{apiKey: r.apiKey}}
	sides := []*side{gw, px}
	var fl *side
	if !cfg.NoFloor {
		fl = &side{name: sideFloor, base: r.floor, api: nativeAPI{apiKey: r.apiKey}}
		sides = append(sides, fl)
	}
	start := time.Now()
	rep := &Report{Users: cfg.Users, Groups: cfg.Groups, CellDuration: cfg.Duration.String(), CellRequests: cfg.Requests,
		AppLatency: cfg.AppLatency.String(), InMemory: cfg.AppLatency == latency{},
		Journal: "durable (bbolt, fsync per commit) in " + r.dataDir}
	for _, level := range cfg.Concurrency {
		for _, s := range sides {
			b.setUp(ctx, s, level)
		}
		for _, k := range cfg.Kinds {
			row := Row{Concurrency: level, Kind: k.name, Read: k.read}
			row.Gateway = b.runKind(ctx, gw, k, level)
			row.Proxy = b.runKind(ctx, px, k, level)
			if fl != nil && k.write() {
				row.Floor = &FloorStats{CellStats: b.runKind(ctx, fl, k, level)}
			}
			rep.Rows = append(rep.Rows, row)
		}
		if ctx.Err() != nil {
			break
		}
	}
	rep.Seconds = round(time.Since(start).Seconds(), 2)
	b.mu.Lock()
	rep.Unexpected, rep.UnexpectedSamples = b.unexp, slices.Clone(b.samples)
	b.mu.Unlock()
	rep.evaluate()
	return rep
}

// setUp prepares a level on one side: warm connections for its concurrency (lookups of a
// user that does not exist, unmeasured) and its groups. Its users are made by the
// measured create cell.
func (b *bench) setUp(ctx context.Context, s *side, level int) {
	s.users, s.groups = nil, nil
	b.drive(ctx, level, level*warmupPerWorker, func(ctx context.Context, i int) bool {
		req := s.api.lookup(ref{name: fmt.Sprintf("warmup-%d-%d@bench.example", level, i)})
		req.check = nil // an empty answer is the expected one
		b.send(ctx, s, "warmup", req)
		return true
	})
	for i := range b.cfg.Groups {
		req := s.api.createGroup(groupName(level, i))
		body, _, ok := b.send(ctx, s, "create_group", req)
		if !ok {
			continue
		}
		if id, err := idOf(body); err != nil {
			b.unexpected(s, "create_group", req, http.StatusCreated, err.Error())
		} else {
			s.groups = append(s.groups, ref{name: groupName(level, i), id: id})
		}
	}
}

// runKind measures one cell: kind k on side s at a level.
func (b *bench) runKind(ctx context.Context, s *side, k kind, level int) CellStats {
	if k.name == "create" {
		return b.runCreate(ctx, s, level)
	}
	items := -1
	if k.once {
		items = len(s.users)
	}
	if len(s.users) == 0 || (k.name == "member_add" && len(s.groups) == 0) {
		return CellStats{} // nothing to act on: the failures that caused it were counted
	}
	return b.cell(ctx, level, items, func(ctx context.Context, i int) (time.Duration, bool) {
		_, d, ok := b.send(ctx, s, k.name, k.build(s, level, i))
		return d, ok
	})
}

// runCreate measures creates and keeps the users that were created, in index order, so
// both sides act on the same users in the same order afterwards.
func (b *bench) runCreate(ctx context.Context, s *side, level int) CellStats {
	made := make([]ref, b.cfg.Users)
	st := b.cell(ctx, level, b.cfg.Users, func(ctx context.Context, i int) (time.Duration, bool) {
		u := userAt(level, i)
		req := s.api.createUser(u)
		req.check = func(body []byte) error {
			id, err := idOf(body)
			made[i] = ref{name: u.userName, id: id}
			return err
		}
		_, d, ok := b.send(ctx, s, "create", req)
		return d, ok
	})
	s.users = slices.DeleteFunc(made, func(r ref) bool { return r.id == "" })
	return st
}

// cell runs do for items 0, 1, ... on conc workers until the item count (items < 0: no
// limit), the -requests cap or the -duration cap, and summarises the latencies of the
// requests that succeeded.
func (b *bench) cell(ctx context.Context, conc, items int, do func(ctx context.Context, i int) (time.Duration, bool)) CellStats {
	limit := maxCellReqs
	if b.cfg.Requests > 0 {
		limit = b.cfg.Requests
	}
	if items >= 0 {
		limit = min(limit, items)
	}
	deadline := time.Now().Add(b.cfg.Duration)
	var mu sync.Mutex
	lat := make([]time.Duration, 0, min(limit, 1<<16))
	cpu0, cpuOK := processCPU()
	start := time.Now()
	b.drive(ctx, conc, limit, func(ctx context.Context, i int) bool {
		if time.Now().After(deadline) {
			return false
		}
		if d, ok := do(ctx, i); ok {
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
		return true
	})
	elapsed := time.Since(start)
	st := summarise(lat, elapsed)
	if cpu1, ok := processCPU(); cpuOK && ok && len(lat) > 0 && elapsed > 0 {
		cpu := cpu1 - cpu0
		st.CPUPerRequestUs = round(float64(cpu)/float64(time.Microsecond)/float64(len(lat)), 1)
		st.CPUCores = round(cpu.Seconds()/elapsed.Seconds(), 2)
	}
	return st
}

// drive calls fn for 0..n-1 on at most conc goroutines, and stops handing out items when
// ctx is done or any call of fn returns false (its cell's time is up).
func (b *bench) drive(ctx context.Context, conc, n int, fn func(ctx context.Context, i int) bool) {
	var next atomic.Int64
	var stopped atomic.Bool
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for ctx.Err() == nil && !stopped.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if !fn(ctx, i) {
					stopped.Store(true)
				}
			}
		})
	}
	wg.Wait()
}

// send performs one request and reports its body, its latency and whether it got a wanted
// status with a body that passed the check. Anything else is recorded as unexpected.
func (b *bench) send(ctx context.Context, s *side, kindName string, r request) ([]byte, time.Duration, bool) {
	var rd io.Reader
	if r.body != nil {
		rd = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, s.base+r.path, rd)
	if err != nil {
		b.unexpected(s, kindName, r, 0, "building the request: "+err.Error())
		return nil, 0, false
	}
	s.api.headers(req.Header, r.body != nil)
	start := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			b.unexpected(s, kindName, r, 0, err.Error())
		}
		return nil, 0, false
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	_ = resp.Body.Close()
	d := time.Since(start)
	switch {
	case err != nil:
		b.unexpected(s, kindName, r, resp.StatusCode, "reading the response: "+err.Error())
		return nil, d, false
	case !slices.Contains(r.want, resp.StatusCode):
		b.unexpected(s, kindName, r, resp.StatusCode, truncate(string(body), maxDetailLen))
		return body, d, false
	case r.check != nil:
		if err := r.check(body); err != nil {
			b.unexpected(s, kindName, r, resp.StatusCode, err.Error())
			return body, d, false
		}
	}
	return body, d, true
}

func (b *bench) unexpected(s *side, kindName string, r request, status int, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unexp++
	if len(b.samples) < maxSamples {
		st := "no response"
		if status != 0 {
			st = strconv.Itoa(status)
		}
		b.samples = append(b.samples, fmt.Sprintf("%s %s: %s %s -> %s: %s", s.name, kindName, r.method, r.path, st, detail))
	}
}

// CellStats is one side's measurement of one kind at one level. Latencies are in ms.
type CellStats struct {
	Requests          int     `json:"requests"`
	Seconds           float64 `json:"seconds"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	P50Ms             float64 `json:"p50_ms"`
	P99Ms             float64 `json:"p99_ms"`
	// The whole process's CPU time during the cell (load generator, both sides' servers
	// and the demo apps), per request that succeeded and per second of the cell (cores
	// busy). Zero where the platform does not say.
	CPUPerRequestUs float64 `json:"cpu_per_request_us"`
	CPUCores        float64 `json:"cpu_cores"`
}

func summarise(lat []time.Duration, elapsed time.Duration) CellStats {
	slices.Sort(lat)
	st := CellStats{Requests: len(lat), Seconds: round(elapsed.Seconds(), 3),
		P50Ms: ms(percentile(lat, 50)), P99Ms: ms(percentile(lat, 99))}
	if elapsed > 0 {
		st.RequestsPerSecond = round(float64(len(lat))/elapsed.Seconds(), 1)
	}
	return st
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(p) / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
