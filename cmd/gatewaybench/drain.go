package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/tidwall/sjson"

	"github.com/scimgate/scimgate/caddymodule/outbox"
)

// The drain benchmark (issue 14): "Against an app limited to 5 calls/s, a burst of 5,000
// queued changes drains at that rate (±10%), with no 429 left unanswered and no call
// refused for exceeding it."
const (
	defaultDrainRate    = 5.0
	defaultDrainChanges = 5000
	drainTolerance      = 0.10 // ±10% of the rate
	drainWindow         = 10   // seconds per window of the per-window rates
	drainTarget         = "drain"
	maxDrainChanges     = 100_000
	maxDrainRate        = 1000.0
	drainPoll           = 100 * time.Millisecond
)

// Environment variables that set the defaults of -rate and -changes (and the quick test's).
const (
	envDrainRate    = "SCIMGATE_DRAIN_RATE"
	envDrainChanges = "SCIMGATE_DRAIN_CHANGES"
)

// drainConfig is the command line of `gatewaybench drain`.
type drainConfig struct {
	Rate        float64 // the app's limit, calls per second
	TargetRate  float64 // the target's rate_limit (default Rate)
	AppBurst    int     // tokens the app's bucket holds
	Changes     int     // creates in the burst
	Concurrency int     // Entra's connections during the burst
	Mapping     string
	Bulk        bool // keep the mapping's create_batch calls (one call per batch of creates)
	JSON        bool
	Timeout     time.Duration
	CPUProfile  string // a CPU profile of the drain (after the burst), "" for none
}

// envFloat and envInt read a default from the environment (def when unset or not a number).
func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func parseDrainFlags(args []string, stderr io.Writer) (drainConfig, error) {
	cfg := drainConfig{}
	fs := flag.NewFlagSet("gatewaybench drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Float64Var(&cfg.Rate, "rate", envFloat(envDrainRate, defaultDrainRate), "calls per second the app allows, and the target's rate_limit (env "+envDrainRate+")")
	fs.Float64Var(&cfg.TargetRate, "target-rate", 0, "the target's rate_limit (default: -rate, the app's limit)")
	fs.IntVar(&cfg.AppBurst, "app-burst", 0, "calls the app's token bucket lets through at once (default: a second's worth, the rate rounded up)")
	fs.IntVar(&cfg.Changes, "changes", envInt(envDrainChanges, defaultDrainChanges), "creates sent in the burst (env "+envDrainChanges+")")
	fs.IntVar(&cfg.Concurrency, "concurrency", 32, "connections the burst is sent on")
	fs.StringVar(&cfg.Mapping, "mapping", "", "the demo app mapping file (default: mappings/demoapp.json in this or a parent directory)")
	fs.BoolVar(&cfg.Bulk, "bulk", false, "deliver with the mapping's bulk create calls (create_batch); by default they are left out, so each change is one call")
	fs.BoolVar(&cfg.JSON, "json", false, "print the report as JSON")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "stop after this long (default: three times the expected drain, plus 2 minutes)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the drain (after the burst) to this file")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return cfg, cfg.validate()
}

func (cfg *drainConfig) validate() error {
	switch {
	case !(cfg.Rate > 0 && cfg.Rate <= maxDrainRate):
		return fmt.Errorf("-rate must be in (0, %v]", maxDrainRate)
	case cfg.TargetRate < 0 || cfg.TargetRate > maxDrainRate || math.IsNaN(cfg.TargetRate):
		return fmt.Errorf("-target-rate must be in (0, %v]", maxDrainRate)
	case cfg.AppBurst < 0 || cfg.AppBurst > 1000:
		return errors.New("-app-burst must be 1..1000")
	case cfg.Changes < 1 || cfg.Changes > maxDrainChanges:
		return fmt.Errorf("-changes must be 1..%d", maxDrainChanges)
	case cfg.Concurrency < 1 || cfg.Concurrency > maxConcurrency:
		return fmt.Errorf("-concurrency must be 1..%d", maxConcurrency)
	case cfg.Timeout < 0:
		return errors.New("-timeout cannot be negative")
	}
	if cfg.TargetRate == 0 {
		cfg.TargetRate = cfg.Rate
	}
	if cfg.AppBurst == 0 {
		cfg.AppBurst = int(math.Ceil(cfg.Rate))
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3*time.Duration(float64(cfg.Changes)/min(cfg.Rate, cfg.TargetRate)*float64(time.Second)) + 2*time.Minute
	}
	return nil
}

// DrainReport is what a drain run prints; -json prints it as is.
type DrainReport struct {
	Rate       float64 `json:"rate"`        // the app's limit
	TargetRate float64 `json:"target_rate"` // the target's rate_limit
	AppBurst   int     `json:"app_burst"`
	Changes    int     `json:"changes"`

	// The burst: Entra's creates, answered once queued.
	BurstSeconds      float64  `json:"burst_seconds"`
	BurstPerSec       float64  `json:"burst_per_second"`
	BurstP50Ms        float64  `json:"burst_p50_ms"`
	BurstP99Ms        float64  `json:"burst_p99_ms"`
	Unexpected        int      `json:"unexpected"` // creates not answered 201/202
	Samples           []string `json:"unexpected_samples,omitempty"`
	PendingAfterBurst int      `json:"pending_after_burst"`

	// The drain, as the app saw it: from the first call it let through to the last.
	DrainSeconds  float64        `json:"drain_seconds"`    // first create sent to the outbox empty
	CallsPerSec   float64        `json:"calls_per_second"` // calls let through, first to last
	Calls         int            `json:"calls"`            // let through
	CallsByMethod map[string]int `json:"calls_by_method"`
	Refused429    int            `json:"refused_429"`
	RetriedEarly  int            `json:"retried_before_retry_after"` // calls for a refused create before its Retry-After
	AppFailures   int            `json:"app_failures"`               // calls let through and not answered 2xx
	WindowMin     float64        `json:"window_min_per_second"`      // over the full 10 s windows
	WindowMax     float64        `json:"window_max_per_second"`
	Windows       int            `json:"windows"`
	WindowsInBand int            `json:"windows_in_band"` // within ±10% of the rate
	WindowRates   []float64      `json:"window_rates"`

	// The end state.
	Accounts     int  `json:"accounts"`      // logins the app created
	CreatedTwice int  `json:"created_twice"` // logins created more than once
	Pending      int  `json:"pending"`       // left in the outbox
	DeadLetters  int  `json:"dead_letters"`
	Drained      bool `json:"drained"` // the outbox emptied before the timeout

	// CPU time of the whole process (gateway, worker, app, load generator), in seconds, and
	// cores busy on average.
	BurstCPUSeconds float64 `json:"burst_cpu_seconds"`
	DrainCPUSeconds float64 `json:"drain_cpu_seconds"`
	DrainCPUCores   float64 `json:"drain_cpu_cores"`

	// Stalls of the whole process (the gateway and the app share it): the longest a 10 ms
	// ticker was late, and how often it was late by more than stallThreshold. Calls delayed
	// by a stall reach the app together: a 429 during one says more about the host than
	// about the gateway's pacing.
	MaxStallMs float64 `json:"max_stall_ms"`
	Stalls     int     `json:"stalls"`

	// The targets.
	RateMet     bool `json:"rate_met"`     // calls/s within ±10% of the rate
	No429Met    bool `json:"no_429_met"`   // the app refused nothing
	AnsweredMet bool `json:"answered_met"` // every 429 retried after its Retry-After, no dead letter
	OnceMet     bool `json:"exactly_once"` // every change created once, none twice, outbox empty
}

// drainRig is the drain benchmark's in-process Caddy (the gateway, delivering queued to
// the limited app, and the demo app behind it) and the limited app's own server.
type drainRig struct {
	gateway string
	appURL  string // the demo app, unlimited, for reading its state
	token   string
	apiKey  string
	tmp     string
	app     *limitedApp
	appSrv  *http.Server
	client  *http.Client
}

func startDrainRig(cfg drainConfig) (*drainRig, error) {
	mp, err := findMapping(cfg.Mapping)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "gatewaybench-drain-")
	if err != nil {
		return nil, fmt.Errorf("creating the temporary directory: %w", err)
	}
	r := &drainRig{tmp: tmp, token: randomHex(32), apiKey: randomHex(16)}
	if !cfg.Bulk {
		// The drain is 5,000 calls: each create its own, without the bulk calls
		// that would carry 100 creates each.
		if mp, err = withoutBulkCreates(mp, tmp); err != nil {
			r.cleanup()
			return nil, err
		}
	}
	addrs, err := freeAddrs(2)
	if err != nil {
		r.cleanup()
		return nil, err
	}
	gw, demo := addrs[0], addrs[1]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.cleanup()
		return nil, fmt.Errorf("listening for the limited app: %w", err)
	}
	r.gateway, r.appURL = "http://"+gw+"/scim/v2", "http://"+demo
	if r.app, err = newLimitedApp(r.appURL, cfg.Rate, cfg.AppBurst); err != nil {
		l.Close()
		r.cleanup()
		return nil, err
	}
	r.appSrv = r.app.serve(l)
	// The target paces itself at the app's rate (rate_limit, burst 1) and delivers queued;
	// the worker's other defaults are the target's (max_concurrent 16, retries from 1 s).
	src := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %[1]q
	log {
		output discard
	}
}

http://%[2]s {
	bind 127.0.0.1
	scim_gateway {
		token bench %[3]s
		data_dir %[4]q
		target %[9]s {
			url http://%[5]s
			mapping %[6]q
			header X-Api-Key %[7]s
			delivery queued
			rate_limit %[8]s
		}
		journal {
			name gatewaybench-drain
		}
	}
}

http://%[10]s {
	bind 127.0.0.1
	scimgate_demo_app {
		api_key %[7]s
		name gatewaybench-drain
		max_accounts %[11]d
	}
}
`, filepath.Join(tmp, "caddy"), gw, r.token, filepath.Join(tmp, "data"), l.Addr().String(), mp, r.apiKey,
		strconv.FormatFloat(cfg.TargetRate, 'f', -1, 64), drainTarget, demo, max(cfg.Changes, 1))
	if err := loadCaddyfile(src); err != nil {
		r.stopApp()
		r.cleanup()
		return nil, err
	}
	r.client = newHTTPClient()
	return r, nil
}

func (r *drainRig) stopApp() { _ = r.appSrv.Close() }

func (r *drainRig) stop() {
	_ = caddy.Stop()
	r.stopApp()
	r.client.CloseIdleConnections()
	r.cleanup()
}

func (r *drainRig) cleanup() { _ = os.RemoveAll(r.tmp) }

// worker is the outbox worker of the rig's target.
func (r *drainRig) worker() (*outbox.Worker, error) {
	for _, w := range outbox.Running() {
		if w.Target() == drainTarget && strings.HasPrefix(w.StorePath(), r.tmp) {
			return w, nil
		}
	}
	return nil, errors.New("the gateway runs no outbox worker for the drain target")
}

// appAccounts counts the demo app's accounts (read directly, not through the limit).
func (r *drainRig) appAccounts(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.appURL+"/api/v1/_state", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Api-Key", r.apiKey)
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Accounts []struct {
			Login string `json:"login"`
		} `json:"accounts"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("the demo app's state: %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<30)).Decode(&st); err != nil {
		return 0, fmt.Errorf("the demo app's state: %w", err)
	}
	logins := map[string]bool{}
	for _, a := range st.Accounts {
		logins[strings.ToLower(a.Login)] = true
	}
	return len(logins), nil
}

// runDrain sends the burst, waits for the outbox to drain and reports what the app saw.
func runDrain(ctx context.Context, cfg drainConfig, stdout io.Writer) (*DrainReport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r, err := startDrainRig(cfg)
	if err != nil {
		return nil, err
	}
	defer r.stop()
	w, err := r.worker()
	if err != nil {
		return nil, err
	}
	rep := &DrainReport{Rate: cfg.Rate, TargetRate: cfg.TargetRate, AppBurst: cfg.AppBurst, Changes: cfg.Changes}

	// The burst: Entra's creates, each answered once committed with its task.
	b := &bench{client: r.client}
	gw := &side{name: sideGateway, base: r.gateway, api: scimAPI{token: r.token}}
	var mu sync.Mutex
	lat := make([]time.Duration, 0, cfg.Changes)
	stalls := watchStalls(ctx)
	cpu0, _ := processCPU()
	start := time.Now()
	b.drive(ctx, cfg.Concurrency, cfg.Changes, func(ctx context.Context, i int) bool {
		req := gw.api.createUser(userAt(0, i))
		req.want = []int{http.StatusCreated, http.StatusAccepted}
		if _, d, ok := b.send(ctx, gw, "create", req); ok {
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
		return true
	})
	burst := time.Since(start)
	cpu1, _ := processCPU()
	st := summarise(lat, burst)
	rep.BurstSeconds, rep.BurstPerSec, rep.BurstP50Ms, rep.BurstP99Ms = st.Seconds, st.RequestsPerSecond, st.P50Ms, st.P99Ms
	b.mu.Lock()
	rep.Unexpected, rep.Samples = b.unexp, slices.Clone(b.samples)
	b.mu.Unlock()
	rep.PendingAfterBurst = w.Stats().Pending
	rep.BurstCPUSeconds = round((cpu1 - cpu0).Seconds(), 2)

	// The drain: until the outbox is empty (or only dead letters are left).
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for ctx.Err() == nil {
		if s := w.Stats(); s.Pending == 0 {
			rep.Drained = true
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	rep.DrainSeconds = round(time.Since(start).Seconds(), 2)
	cpu2, _ := processCPU()
	if cfg.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	rep.DrainCPUSeconds = round((cpu2 - cpu1).Seconds(), 2)
	if d := time.Since(start) - burst; d > 0 {
		rep.DrainCPUCores = round((cpu2-cpu1).Seconds()/d.Seconds(), 4)
	}
	s := w.Stats()
	rep.Pending, rep.DeadLetters = s.Pending, s.Dead
	rep.fill(r.app.counts())
	rep.MaxStallMs, rep.Stalls = stalls()
	if rep.Drained {
		// The demo app's own state, read past the limit: one account per change.
		n, err := r.appAccounts(context.WithoutCancel(ctx))
		if err != nil {
			return rep, err
		}
		if n != rep.Accounts {
			rep.OnceMet = false
			rep.Samples = append(rep.Samples, fmt.Sprintf("the demo app holds %d accounts, the limited app saw %d created", n, rep.Accounts))
		}
	}
	if err := rep.write(stdout, cfg.JSON); err != nil {
		return rep, fmt.Errorf("printing the report: %w", err)
	}
	switch {
	case !rep.Drained:
		return rep, fmt.Errorf("the outbox did not drain (%d pending, %d dead): %w", rep.Pending, rep.DeadLetters, context.Cause(ctx))
	case rep.Unexpected > 0:
		return rep, fmt.Errorf("%d %w, first: %s", rep.Unexpected, errUnexpected, rep.Samples[0])
	}
	return rep, nil
}

// fill derives the drain's rates and the targets' verdicts from what the app saw.
func (rep *DrainReport) fill(c appCounts) {
	rep.Calls, rep.CallsByMethod, rep.Refused429, rep.RetriedEarly, rep.AppFailures = c.Passed, c.ByMethod, c.Refused, c.Early, c.Failed
	rep.Accounts, rep.CreatedTwice = c.Accounts, c.CreatedTwice
	if span := c.Last.Sub(c.First); c.Passed > 1 && span > 0 {
		rep.CallsPerSec = round(float64(c.Passed-1)/span.Seconds(), 3)
	}
	// Full windows only: the last, partial one says when the queue ran out, not the rate.
	lo, hi := rep.Rate*(1-drainTolerance), rep.Rate*(1+drainTolerance)
	for i := 0; i+drainWindow <= len(c.PerSecond)-1; i += drainWindow {
		n := 0
		for _, v := range c.PerSecond[i : i+drainWindow] {
			n += v
		}
		perSec := float64(n) / drainWindow
		rep.WindowRates = append(rep.WindowRates, round(perSec, 2))
		if rep.Windows == 0 || perSec < rep.WindowMin {
			rep.WindowMin = perSec
		}
		rep.WindowMax = max(rep.WindowMax, perSec)
		rep.Windows++
		if perSec >= lo && perSec <= hi {
			rep.WindowsInBand++
		}
	}
	rep.WindowMin, rep.WindowMax = round(rep.WindowMin, 2), round(rep.WindowMax, 2)
	rep.RateMet = rep.CallsPerSec >= lo && rep.CallsPerSec <= hi
	rep.No429Met = rep.Refused429 == 0
	rep.AnsweredMet = rep.RetriedEarly == 0 && rep.DeadLetters == 0 && rep.Drained
	rep.OnceMet = rep.Drained && rep.Pending == 0 && rep.Accounts == rep.Changes && rep.CreatedTwice == 0
}

func (rep *DrainReport) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	_, err := fmt.Fprintf(w, `gatewaybench drain: %d queued creates against an app limited to %v calls/s (bucket of %d), target rate_limit %v
burst     %d creates in %.2f s (%.0f/s), p50 %.2f ms, p99 %.2f ms, %d unexpected; %d pending after it; CPU %.2f s
drain     %.1f s from the first create to an empty outbox; CPU %.2f s (%.3f cores)
app       %d calls let through at %.3f calls/s (%v), %d refused with 429, %d retried before their Retry-After, %d failed
windows   %d full %d s windows: %.2f..%.2f calls/s, %d within ±%.0f%%: %v
end       %d accounts, %d created twice, %d pending, %d dead letters
host      the process stalled %d times for over %v, at most %.0f ms
target: drains at the app's rate ±%.0f%% (%.2f..%.2f calls/s): %s
target: no call refused for exceeding the rate: %s
target: no 429 left unanswered (each retried after its Retry-After, no dead letter): %s
target: every change delivered exactly once, outbox empty: %s
`, rep.Changes, rep.Rate, rep.AppBurst, rep.TargetRate,
		rep.Changes, rep.BurstSeconds, rep.BurstPerSec, rep.BurstP50Ms, rep.BurstP99Ms, rep.Unexpected, rep.PendingAfterBurst, rep.BurstCPUSeconds,
		rep.DrainSeconds, rep.DrainCPUSeconds, rep.DrainCPUCores,
		rep.Calls, rep.CallsPerSec, rep.CallsByMethod, rep.Refused429, rep.RetriedEarly, rep.AppFailures,
		rep.Windows, drainWindow, rep.WindowMin, rep.WindowMax, rep.WindowsInBand, drainTolerance*100, rep.WindowRates,
		rep.Accounts, rep.CreatedTwice, rep.Pending, rep.DeadLetters,
		rep.Stalls, stallThreshold, rep.MaxStallMs,
		drainTolerance*100, rep.Rate*(1-drainTolerance), rep.Rate*(1+drainTolerance), mark(rep.RateMet),
		mark(rep.No429Met), mark(rep.AnsweredMet), mark(rep.OnceMet))
	for _, s := range rep.Samples {
		if _, err := fmt.Fprintln(w, "  ", s); err != nil {
			return err
		}
	}
	return err
}

// stallTick and stallThreshold: how often watchStalls looks at the clock, and how late a
// tick must be to count as a stall (a fifth of a second: a call at 5 calls/s).
const (
	stallTick      = 10 * time.Millisecond
	stallThreshold = 200 * time.Millisecond
)

// watchStalls measures, until ctx ends or the returned function is called, how late a
// ticker fires: the time this process could not run (a loaded host, a long GC pause). The
// function returns the longest lateness in ms and the number of stalls.
func watchStalls(ctx context.Context) func() (maxMs float64, n int) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var worst time.Duration
	var count int
	go func() {
		defer close(done)
		t := time.NewTicker(stallTick)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				now := time.Now() // when it ran, not when the tick was due
				late := now.Sub(last) - stallTick
				last = now
				worst = max(worst, late)
				if late > stallThreshold {
					count++
				}
			}
		}
	}()
	return func() (float64, int) {
		cancel()
		<-done
		return round(float64(worst)/float64(time.Millisecond), 1), count
	}
}

// withoutBulkCreates writes a copy of the mapping file at path without its create_batch
// calls into dir and returns the copy's path.
func withoutBulkCreates(path, dir string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the mapping: %w", err)
	}
	for _, key := range []string{"users.create_batch", "groups.create_batch"} {
		if data, err = sjson.DeleteBytes(data, key); err != nil {
			return "", fmt.Errorf("removing %s from the mapping: %w", key, err)
		}
	}
	out := filepath.Join(dir, "mapping-single-creates.json")
	if err := os.WriteFile(out, data, 0o600); err != nil {
		return "", fmt.Errorf("writing the mapping: %w", err)
	}
	return out, nil
}
