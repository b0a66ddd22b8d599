package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/exp/trace"

	"github.com/scimgate/scimgate/caddymodule"
	"github.com/scimgate/scimgate/demoapp"
)

// smallConfig is a run of a few seconds: every cell stops after 5 requests.
func smallConfig() config {
	return config{Users: 20, Groups: 3, Concurrency: []int{1, 2}, Kinds: kinds, Duration: 5 * time.Second, Requests: 5, Timeout: time.Minute}
}

// TestRunSmall runs the command end to end and checks that every cell measured what it
// was asked to on both sides, with no unexpected response, in both output formats.
func TestRunSmall(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		cfg := smallConfig()
		cfg.JSON = asJSON
		var out bytes.Buffer
		rep, err := run(context.Background(), cfg, &out)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		if want := len(cfg.Concurrency) * len(kinds); len(rep.Rows) != want {
			t.Fatalf("%d rows, want %d", len(rep.Rows), want)
		}
		cpu := 0.0
		for _, r := range rep.Rows {
			if r.Gateway.Requests != cfg.Requests || r.Proxy.Requests != cfg.Requests {
				t.Errorf("c%d %s: gateway %d, proxy %d requests, want %d each", r.Concurrency, r.Kind, r.Gateway.Requests, r.Proxy.Requests, cfg.Requests)
			}
			if r.ThroughputRatio <= 0 || r.Gateway.P99Ms < r.Gateway.P50Ms {
				t.Errorf("c%d %s: ratio %v, gateway p50 %v p99 %v", r.Concurrency, r.Kind, r.ThroughputRatio, r.Gateway.P50Ms, r.Gateway.P99Ms)
			}
			if r.Gateway.CPUPerRequestUs < 0 || r.Proxy.CPUPerRequestUs < 0 || r.Gateway.CPUCores < 0 || r.Proxy.CPUCores < 0 {
				t.Errorf("c%d %s: CPU per request gateway %v proxy %v, cores %v %v", r.Concurrency, r.Kind, r.Gateway.CPUPerRequestUs, r.Proxy.CPUPerRequestUs, r.Gateway.CPUCores, r.Proxy.CPUCores)
			}
			cpu += r.Gateway.CPUPerRequestUs + r.Proxy.CPUPerRequestUs
			k := kinds[slices.IndexFunc(kinds, func(k kind) bool { return k.name == r.Kind })]
			switch {
			case !k.write() && r.Floor != nil:
				t.Errorf("c%d %s: the floor measured a kind that is not a write", r.Concurrency, r.Kind)
			case k.write() && (r.Floor == nil || r.Floor.Requests != cfg.Requests || r.Floor.ThroughputRatio <= 0 || r.Floor.GatewayRatio <= 0):
				t.Errorf("c%d %s: the floor's cell %+v, want %d requests and its ratios", r.Concurrency, r.Kind, r.Floor, cfg.Requests)
			}
		}
		if _, ok := processCPU(); ok && cpu == 0 {
			t.Error("no cell measured any CPU time")
		}
		if asJSON {
			var back Report
			if err := json.Unmarshal(out.Bytes(), &back); err != nil || len(back.Rows) != len(rep.Rows) {
				t.Fatalf("-json output does not decode to the report (%v):\n%s", err, out.String())
			}
			continue
		}
		for _, want := range []string{"gw req/s", "gw cpu/req", "lookup", "member_add", "target: read throughput", "0 unexpected responses",
			"floor req/s", "gw/floor", "; the floor: "} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
	}
}

// TestRunWithAppLatency: -app-latency reaches both demo apps: no write on either side is
// answered sooner than the apps' latency (a lower bound: timers never fire early), while the
// gateway's reads, answered from its store, do not wait for the app, nor does its unchanged
// PATCH, which sends the app nothing (its proxy side is a read of the app). The run is traced
// (-trace): the trace holds a region for each gateway request (what writetail -waits reads).
func TestRunWithAppLatency(t *testing.T) {
	cfg := smallConfig()
	cfg.Concurrency = []int{2}
	cfg.AppLatency = latency{Min: 15 * time.Millisecond, Max: 20 * time.Millisecond}
	cfg.Trace = filepath.Join(t.TempDir(), "run.trace")
	var out bytes.Buffer
	rep, err := run(context.Background(), cfg, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if rep.InMemory || !strings.Contains(out.String(), "app latency 15ms..20ms") {
		t.Errorf("the report does not say the app latency:\n%s", out.String())
	}
	for _, r := range rep.Rows {
		if r.Proxy.P50Ms < 15 {
			t.Errorf("%s: the proxied app answered in %.2f ms, below its latency", r.Kind, r.Proxy.P50Ms)
		}
		switch {
		case r.Kind == unchangedKind:
			if r.Gateway.Requests == 0 || r.Gateway.P50Ms >= 15 {
				t.Errorf("%s: %d requests, p50 %.2f ms: the gateway waited for the app on a change that changes nothing", r.Kind, r.Gateway.Requests, r.Gateway.P50Ms)
			}
		case !r.Read && r.Gateway.P50Ms < 15:
			t.Errorf("%s: the gateway's write was answered in %.2f ms, below the app's latency", r.Kind, r.Gateway.P50Ms)
		}
	}
	gateway := 0
	for _, r := range rep.Rows {
		gateway += r.Gateway.Requests
	}
	if n := tracedRequests(t, cfg.Trace); n < gateway {
		t.Errorf("the trace holds %d gateway request regions; the run sent %d gateway requests", n, gateway)
	}
}

// tracedRequests counts the gateway's request regions that end in the trace at path.
func tracedRequests(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the trace: %v", err)
	}
	defer f.Close()
	tr, err := trace.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("reading the trace: %v", err)
	}
	n := 0
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("reading the trace: %v", err)
		}
		if ev.Kind() == trace.EventRegionEnd && ev.Region().Type == caddymodule.RequestTraceRegion {
			n++
		}
	}
}

// TestNativeCallsAreEquivalent checks the premise of the comparison: the native calls sent
// through the proxy leave demo app B in the state the gateway's mapped calls leave demo
// app A (same accounts field by field, same lock states, same memberships).
//
// The second run decides every gateway write with the shipped policies (-policy), whose
// guardrails let this ordinary traffic through unchanged.
func TestNativeCallsAreEquivalent(t *testing.T) {
	for _, policy := range []string{"", "../../policies"} {
		t.Run("policy="+policy, func(t *testing.T) { testNativeCallsAreEquivalent(t, policy) })
	}
}

func testNativeCallsAreEquivalent(t *testing.T, policy string) {
	r, err := startRig("", policy, latency{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop()
	rep := measure(context.Background(), r, smallConfig())
	if rep.Unexpected != 0 {
		t.Fatalf("%d unexpected responses: %v", rep.Unexpected, rep.UnexpectedSamples)
	}
	a, b, c := snapshot(t, r, r.appA), snapshot(t, r, r.appB), snapshot(t, r, r.appC)
	if len(a.Accounts) == 0 || len(a.Memberships) == 0 {
		t.Fatalf("demo app A is nearly empty: %d accounts, %d memberships", len(a.Accounts), len(a.Memberships))
	}
	if ga, gb := comparable(a), comparable(b); !slices.Equal(ga, gb) {
		t.Errorf("the apps differ:\nvia the gateway: %v\nvia the proxy:   %v", ga, gb)
	}
	// The floor passes the same native writes (their bodies read before its first commit)
	// to demo app C.
	if gb, gc := comparable(b), comparable(c); !slices.Equal(gb, gc) {
		t.Errorf("the apps differ:\nvia the proxy: %v\nvia the floor: %v", gb, gc)
	}
}

// comparable renders a snapshot without ids and timestamps, which the two apps assign
// independently: accounts by login, then memberships as team name and login.
func comparable(s demoapp.Snapshot) []string {
	logins := map[int64]string{}
	var out []string
	for _, a := range s.Accounts {
		logins[a.ID] = a.Login
		a.ID, a.CreatedAt, a.UpdatedAt = 0, "", ""
		b, _ := json.Marshal(a)
		out = append(out, string(b))
	}
	teams := map[int64]string{}
	for _, tm := range s.Teams {
		teams[tm.ID] = tm.Name
		out = append(out, "team "+tm.Name+" "+tm.Description)
	}
	for _, m := range s.Memberships {
		out = append(out, "member "+teams[m.TeamID]+" "+logins[m.AccountID])
	}
	slices.Sort(out)
	return out
}

func snapshot(t *testing.T, r *rig, app string) demoapp.Snapshot {
	t.Helper()
	s, err := demoapp.FetchState(r.client, app, r.apiKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
		levels  []int
		kinds   []string // nil: the whole workload
	}{
		{args: nil, levels: []int{1, 8, 32}},
		{args: []string{"-concurrency", "2, 4"}, levels: []int{2, 4}},
		{args: []string{"-kinds", "disable, update"}, levels: []int{1, 8, 32}, kinds: []string{"create", "update", "disable"}},
		{args: []string{"-kinds", "create"}, levels: []int{1, 8, 32}, kinds: []string{"create"}},
		{args: []string{"-kinds", "update,delete"}, wantErr: `"delete" is not one of create, lookup`},
		{args: []string{"-kinds", ","}, wantErr: `"" is not one of`},
		{args: []string{"-concurrency", "0"}, wantErr: "not a level"},
		{args: []string{"-concurrency", "1,x"}, wantErr: "not a level"},
		{args: []string{"-concurrency", "1,2,3,4,5,6,7,8,9"}, wantErr: "at most"},
		{args: []string{"-users", "0"}, wantErr: "-users"},
		{args: []string{"-groups", "0"}, wantErr: "-groups"},
		{args: []string{"-duration", "0s"}, wantErr: "-duration"},
		{args: []string{"-duration", "2h"}, wantErr: "-duration"},
		{args: []string{"-requests", "-1"}, wantErr: "-requests"},
		{args: []string{"extra"}, wantErr: "unexpected arguments"},
		{args: []string{"-app-latency", "soon"}, wantErr: "-app-latency"},
		{args: []string{"-app-latency", "100ms..10ms"}, wantErr: "low..high"},
		{args: []string{"-app-latency", "-5ms"}, wantErr: "-app-latency"},
		{args: []string{"-app-latency", "1h"}, wantErr: "at most"},
	} {
		cfg, err := parseFlags(tc.args, io.Discard)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.wantErr == "" && !slices.Equal(cfg.Concurrency, tc.levels):
			t.Errorf("%v: levels %v, want %v", tc.args, cfg.Concurrency, tc.levels)
		case tc.wantErr == "":
			want := tc.kinds
			if want == nil {
				for _, k := range kinds {
					want = append(want, k.name)
				}
			}
			var got []string
			for _, k := range cfg.Kinds {
				got = append(got, k.name)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%v: kinds %v, want %v", tc.args, got, want)
			}
		}
	}
}

// TestParseLatency reads the -app-latency forms and prints them back for the demo apps.
func TestParseLatency(t *testing.T) {
	for _, tc := range []struct{ in, str, caddyfile string }{
		{"0", "none (in memory)", ""},
		{"20ms", "20ms", "latency 20ms"},
		{"10ms..100ms", "10ms..100ms", "latency 10ms 100ms"},
	} {
		l, err := parseLatency(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if l.String() != tc.str || l.caddyfile() != tc.caddyfile {
			t.Errorf("%s: %q / %q, want %q / %q", tc.in, l.String(), l.caddyfile(), tc.str, tc.caddyfile)
		}
	}
}

// TestEvaluate checks which targets apply to which rows and how they are judged, for an
// app with latency and in memory.
func TestEvaluate(t *testing.T) {
	cell := func(rps, p50, p99, cpu float64) CellStats {
		return CellStats{Requests: 100, RequestsPerSecond: rps, P50Ms: p50, P99Ms: p99, CPUPerRequestUs: cpu}
	}
	rows := func() []Row {
		return []Row{
			{Concurrency: 1, Kind: "lookup", Read: true, Gateway: cell(1000, 1, 1, 100), Proxy: cell(900, 1, 1, 100)},
			{Concurrency: 1, Kind: "create", Gateway: cell(10, 30, 40, 500), Proxy: cell(900, 21, 22, 150)},
			{Concurrency: 8, Kind: "get", Read: true, Gateway: cell(800, 1, 2, 100), Proxy: cell(900, 1, 1, 100)},
			{Concurrency: 8, Kind: "update", Gateway: cell(850, 22, 24, 280), Proxy: cell(900, 21, 22, 150)},
			{Concurrency: 8, Kind: "unchanged", Gateway: cell(600, 2, 3, 900), Proxy: cell(900, 1, 1, 100)},
			{Concurrency: 8, Kind: "disable", Gateway: cell(850, 26, 30, 320), Proxy: cell(900, 21, 22, 150)},
			{Concurrency: 32, Kind: "update", Gateway: cell(1000, 25, 50, 200), Proxy: cell(1000, 21, 40, 150)},
			{Concurrency: 32, Kind: "member_add", Gateway: cell(700, 25, 50, 200), Proxy: cell(1000, 21, 40, 150)},
			{Concurrency: 32, Kind: "disable", Gateway: cell(0, 0, 0, 0), Proxy: CellStats{}},
		}
	}
	type key = string
	check := func(t *testing.T, rep *Report, want map[key]string, wantTargets []TargetResult) {
		t.Helper()
		got := map[key]string{}
		for _, r := range rep.Rows {
			got[fmt.Sprintf("%s@%d", r.Kind, r.Concurrency)] = verdicts(r.Verdicts)
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: %q, want %q", k, got[k], w)
			}
		}
		for i, w := range wantTargets {
			if g := rep.Targets[i]; g.Rows != w.Rows || g.Met != w.Met {
				t.Errorf("target %q: %d rows, met %v; want %d, %v", g.Target, g.Rows, g.Met, w.Rows, w.Met)
			}
		}
	}
	t.Run("latency", func(t *testing.T) {
		rep := &Report{Rows: rows()}
		rep.evaluate()
		check(t, rep, map[key]string{
			"lookup@1":      ">=1.0x met",
			"create@1":      "",
			"get@8":         ">=1.0x MISSED",
			"update@8":      ">=0.9x met, +p50<=3ms met, +p99<=5ms met",
			"unchanged@8":   "", // not a write: judged against the gateway's GET (600 / 800: 0.75x)
			"disable@8":     ">=0.9x met, +p50<=3ms MISSED, +p99<=5ms MISSED",
			"update@32":     ">=0.9x met",
			"member_add@32": ">=0.9x MISSED",
			"disable@32":    "",
		}, []TargetResult{{Rows: 2, Met: false}, {Rows: 4, Met: false}, {Rows: 2, Met: false}, {Rows: 2, Met: false}, {Rows: 0, Met: false}, {Rows: 1, Met: false}, {Rows: 1, Met: false}})
	})
	t.Run("in memory", func(t *testing.T) {
		rep := &Report{Rows: rows(), InMemory: true}
		rep.Rows[7].Gateway.RequestsPerSecond = 900 // member_add 0.9x update: met
		rep.Rows[4].Gateway.RequestsPerSecond = 640 // unchanged 0.8x get: met
		rep.evaluate()
		check(t, rep, map[key]string{
			"lookup@1":      ">=1.0x met",
			"create@1":      "cpu<=2.0x MISSED",
			"update@8":      "cpu<=2.0x met",
			"unchanged@8":   "", // its CPU (9x the proxied read's) is not a write's
			"disable@8":     "cpu<=2.0x MISSED",
			"member_add@32": "cpu<=2.0x met",
		}, []TargetResult{{Rows: 2, Met: false}, {Rows: 0, Met: false}, {Rows: 0, Met: false}, {Rows: 0, Met: false}, {Rows: 5, Met: false}, {Rows: 1, Met: true}, {Rows: 1, Met: true}})
	})
	t.Run("floor", func(t *testing.T) {
		rep := &Report{Rows: rows()}
		rep.Rows[3].Floor = &FloorStats{CellStats: cell(880, 22, 30, 250)} // update@8: 0.98x, +1, +8
		rep.Rows[6].Floor = &FloorStats{CellStats: cell(850, 23, 41, 250)} // update@32: 0.85x
		rep.Rows[8].Floor = &FloorStats{CellStats: cell(850, 23, 41, 250)} // disable@32: no proxy cell
		rep.evaluate()
		f := rep.Rows[3].Floor
		if f.ThroughputRatio != 0.98 || f.AddedP50Ms != 1 || f.AddedP99Ms != 8 || f.CPURatio != 1.67 || f.GatewayRatio != 0.97 {
			t.Errorf("update@8's floor: %+v", f)
		}
		if got := verdicts(f.Verdicts); got != ">=0.9x met, +p50<=3ms met, +p99<=5ms MISSED" {
			t.Errorf("update@8's floor verdicts: %q", got)
		}
		if got := verdicts(rep.Rows[6].Floor.Verdicts); got != ">=0.9x MISSED" {
			t.Errorf("update@32's floor verdicts: %q", got)
		}
		if got := rep.Rows[8].Floor; got.ThroughputRatio != 0 || len(got.Verdicts) != 0 {
			t.Errorf("a floor cell without the proxy's was judged: %+v", got)
		}
		for i, w := range []struct {
			rows, floorRows int
			floorMet        bool
		}{{2, 0, false}, {4, 2, false}, {2, 1, true}, {2, 1, false}, {0, 0, false}} {
			if g := rep.Targets[i]; g.Rows != w.rows || g.FloorRows != w.floorRows || g.FloorMet != w.floorMet {
				t.Errorf("target %q: %d rows, %d floor rows (met %v); want %d, %d (met %v)", g.Target, g.Rows, g.FloorRows, g.FloorMet, w.rows, w.floorRows, w.floorMet)
			}
		}
		rep.Rows[6].Floor.RequestsPerSecond = 950
		rep.Rows[3].Floor.P99Ms = 26
		rep.evaluate()
		for i := 1; i <= 3; i++ {
			if g := rep.Targets[i]; !g.FloorMet {
				t.Errorf("target %q: the floor meets it in every row it applies to, reported %+v", g.Target, g)
			}
		}
	})
	none := &Report{}
	none.evaluate()
	for _, tg := range none.Targets {
		if tg.Met || tg.Rows != 0 {
			t.Errorf("empty report: target %q met %v with %d rows", tg.Target, tg.Met, tg.Rows)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %d) = %v, want %v", tc.sorted, tc.p, got, tc.want)
		}
	}
}

func TestIDOf(t *testing.T) {
	for _, tc := range []struct {
		body, want string
		ok         bool
	}{
		{`{"id":"0b6c-uuid"}`, "0b6c-uuid", true},
		{`{"id":17,"login":"x"}`, "17", true},
		{`{"id":""}`, "", false},
		{`{"login":"x"}`, "", false},
		{`not json`, "", false},
	} {
		got, err := idOf([]byte(tc.body))
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("idOf(%s) = %q, %v; want %q, ok %v", tc.body, got, err, tc.want, tc.ok)
		}
	}
}
