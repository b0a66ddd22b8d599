// Command gatewaybench measures what the scimgate gateway costs compared with a bare Caddy
// reverse proxy in front of the same kind of legacy app (issue 4's benchmark harness):
//
//	go run ./cmd/gatewaybench                # levels 1, 8, 32: about 70 s on 2 cores
//	go run ./cmd/gatewaybench -users 2000 -concurrency 1,8,32 -duration 3s -json
//	go run ./cmd/gatewaybench -policy DIR  # every gateway write decided by the policies in DIR
//	go run ./cmd/gatewaybench -app-latency 20ms  # both demo apps answer after 20 ms (or 10ms..100ms)
//
// In one run it starts one in-process Caddy (admin off, loopback ports, a temporary data
// directory) with three sites and their demo apps: (a) the scim_gateway in front of demo
// app instance A, through the repository's mappings/demoapp.json, with its journal durable
// (bbolt fsyncs every commit); (b) a bare reverse_proxy in front of instance B; (c) the
// floor: the same proxy in front of instance C with two durable commits around each write,
// the least a gateway that journals before and after each call does (floor.go). For each
// concurrency level it drives the same workload through the gateway and the proxy (and its
// writes through the floor, unless -no-floor), kind by kind, the gateway as Entra would
// (SCIM) and the proxy with the native calls the mapping makes for the same change:
//
//	kind        gateway (SCIM)                           proxy (native, via the mapping)
//	create      POST /Users                              POST /api/v1/accounts
//	lookup      GET /Users?filter=userName eq "..."      GET /api/v1/accounts?login=...
//	get         GET /Users/{id}                          GET /api/v1/accounts/{id}
//	update      PATCH /Users/{id} (replace title)        PATCH /api/v1/accounts/{id}
//	unchanged   PATCH /Users/{id} (active "True" to an   GET /api/v1/accounts/{id} (the gateway
//	            active user: Entra's periodic re-send)   sends the app nothing for it)
//	member_add  PATCH /Groups/{id} (add one member)      POST /api/v1/teams/{id}/members:batch
//	disable     PATCH /Users/{id} (active "False")       POST /api/v1/accounts/{id}/lock
//
// Reads are answered by the gateway from its store; writes go through the store, the
// journal and the native call. Every cell (level, kind, side) stops after -duration or
// -requests requests, whichever comes first; create, member_add and disable also stop when
// each of the level's -users users was used once (every request is a real change).
//
// # Reading the table
//
// One row per concurrency level and kind: requests per second and p50/p99 latency (ms, as
// the client saw them) for the gateway and for the proxy; "ratio" is gateway/proxy
// throughput; "+p50"/"+p99" are the gateway's latency minus the proxy's. The targets column
// marks issue 18's targets where they apply (README.md lists them: with an app latency,
// write throughput and added latency; in memory, CPU per write; with any app, the
// unchanged PATCH against the gateway's own GET by id). A missed target is
// reported, not a failure: the command exits 1 only when a request got an unexpected status
// or failed, 2 on a usage error.
//
// Both sides share the machine's cores with the load generator, so absolute numbers depend
// on the host; the ratios are the point.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds that keep a run finite whatever the flags say.
const (
	maxUsers       = 100_000
	maxGroups      = 1_000
	maxLevels      = 8
	maxConcurrency = 256
	maxCellTime    = time.Minute
	maxCellReqs    = 1_000_000
	maxAppLatency  = 10 * time.Second
)

// config is the parsed command line.
type config struct {
	Users       int
	Groups      int
	Concurrency []int
	Kinds       []kind        // the workload's kinds to measure, in its order
	Duration    time.Duration // per cell
	Requests    int           // per cell; 0 means only Duration bounds a cell
	Mapping     string
	Policy      string // policy directory for the gateway, "" for none
	JSON        bool
	Timeout     time.Duration // the whole run
	CPUProfile  string        // file for a CPU profile of the run, "" for none
	Trace       string        // file for an execution trace of the run, "" for none
	AppLatency  latency       // how long both demo apps take to answer
	NoFloor     bool          // skip the floor's cells (floor.go)
}

// latency is the demo apps' delay: fixed (Max 0) or uniform in [Min, Max].
type latency struct{ Min, Max time.Duration }

func (l latency) String() string {
	switch {
	case l.Min == 0 && l.Max == 0:
		return "none (in memory)"
	case l.Max == 0:
		return l.Min.String()
	}
	return l.Min.String() + ".." + l.Max.String()
}

// caddyfile is the demo app option, "" for none.
func (l latency) caddyfile() string {
	switch {
	case l.Min == 0 && l.Max == 0:
		return ""
	case l.Max == 0:
		return "latency " + l.Min.String()
	}
	return "latency " + l.Min.String() + " " + l.Max.String()
}

// parseLatency reads "20ms" or "10ms..100ms".
func parseLatency(s string) (latency, error) {
	lo, hi, ranged := strings.Cut(strings.TrimSpace(s), "..")
	var l latency
	var err error
	if l.Min, err = time.ParseDuration(lo); err != nil || l.Min < 0 {
		return l, fmt.Errorf("-app-latency: %q is not a duration or a range like 10ms..100ms", s)
	}
	if ranged {
		if l.Max, err = time.ParseDuration(hi); err != nil || l.Max < l.Min {
			return l, fmt.Errorf("-app-latency: %q is not a range like 10ms..100ms (low..high)", s)
		}
	}
	if l.Min > maxAppLatency || l.Max > maxAppLatency {
		return l, fmt.Errorf("-app-latency: at most %s", maxAppLatency)
	}
	return l, nil
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("gatewaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	levels := fs.String("concurrency", "1,8,32", "comma-separated concurrency levels")
	fs.IntVar(&cfg.Users, "users", 2000, "users created per level and side (the items create, member_add and disable use once each)")
	fs.IntVar(&cfg.Groups, "groups", 10, "groups per level and side that member_add spreads users over")
	fs.DurationVar(&cfg.Duration, "duration", 2*time.Second, "time cap of one cell (level, kind, side)")
	fs.IntVar(&cfg.Requests, "requests", 0, "request cap of one cell (0: only -duration)")
	fs.StringVar(&cfg.Mapping, "mapping", "", "the demo app mapping file (default: mappings/demoapp.json in this or a parent directory)")
	fs.StringVar(&cfg.Policy, "policy", "", "decide every gateway write with the Rego policies in this directory (e.g. policies; raise its mass_deprovision brake above the disable cells' count)")
	kindList := fs.String("kinds", "", "comma-separated kinds to measure (default: all; create always runs, the others need its users)")
	fs.BoolVar(&cfg.JSON, "json", false, "print the results as JSON")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "stop the whole run after this long")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	fs.StringVar(&cfg.Trace, "trace", "", "write an execution trace of the whole run to this file (go run ./cmd/writetail -waits FILE splits the gateway requests' time by what they waited on)")
	fs.BoolVar(&cfg.NoFloor, "no-floor", false, "skip the floor: the proxy with two durable commits per write (measured by default, on writes)")
	appLatency := fs.String("app-latency", "0", "how long both demo apps take to answer: a duration (20ms) or a uniform range (10ms..100ms); 0 answers at once")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var err error
	if cfg.Concurrency, err = parseLevels(*levels); err != nil {
		return cfg, err
	}
	if cfg.Kinds, err = parseKinds(*kindList); err != nil {
		return cfg, err
	}
	if cfg.AppLatency, err = parseLatency(*appLatency); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

// parseLevels reads "1,8,32".
func parseLevels(s string) ([]int, error) {
	parts := strings.Split(s, ",")
	if len(parts) > maxLevels {
		return nil, fmt.Errorf("-concurrency: at most %d levels", maxLevels)
	}
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > maxConcurrency {
			return nil, fmt.Errorf("-concurrency: %q is not a level in 1..%d", p, maxConcurrency)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseKinds reads "update,disable" into the workload's kinds, in the workload's order,
// with create first. An empty list is the whole workload.
func parseKinds(s string) ([]kind, error) {
	if strings.TrimSpace(s) == "" {
		return kinds, nil
	}
	want := map[string]bool{kinds[0].name: true}
	for p := range strings.SplitSeq(s, ",") {
		name := strings.TrimSpace(p)
		if !slices.ContainsFunc(kinds, func(k kind) bool { return k.name == name }) {
			names := make([]string, len(kinds))
			for i, k := range kinds {
				names[i] = k.name
			}
			return nil, fmt.Errorf("-kinds: %q is not one of %s", name, strings.Join(names, ", "))
		}
		want[name] = true
	}
	return slices.DeleteFunc(slices.Clone(kinds), func(k kind) bool { return !want[k.name] }), nil
}

func (cfg *config) validate() error {
	switch {
	case cfg.Users < 1 || cfg.Users > maxUsers:
		return fmt.Errorf("-users must be 1..%d", maxUsers)
	case cfg.Groups < 1 || cfg.Groups > maxGroups:
		return fmt.Errorf("-groups must be 1..%d", maxGroups)
	case len(cfg.Concurrency) == 0:
		return errors.New("-concurrency: no level")
	case len(cfg.Kinds) == 0:
		return errors.New("-kinds: no kind")
	case cfg.Duration <= 0 || cfg.Duration > maxCellTime:
		return fmt.Errorf("-duration must be in (0, %s]", maxCellTime)
	case cfg.Requests < 0 || cfg.Requests > maxCellReqs:
		return fmt.Errorf("-requests must be 0..%d", maxCellReqs)
	case cfg.Timeout <= 0:
		return errors.New("-timeout must be positive")
	}
	return nil
}

// errUnexpected marks a run in which some request failed or got an unexpected status.
var errUnexpected = errors.New("unexpected responses")

// run starts the rig, measures, prints the report and stops the rig. The report is
// returned whenever the measurement ran, even when some requests failed.
func run(ctx context.Context, cfg config, stdout io.Writer) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r, err := startRig(cfg.Mapping, cfg.Policy, cfg.AppLatency)
	if err != nil {
		return nil, err
	}
	defer r.stop()
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
	if cfg.Trace != "" {
		f, err := os.Create(cfg.Trace)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return nil, err
		}
		defer trace.Stop()
	}
	rep := measure(ctx, r, cfg)
	if err := rep.write(stdout, cfg.JSON); err != nil {
		return rep, fmt.Errorf("printing the report: %w", err)
	}
	switch {
	case ctx.Err() != nil:
		return rep, fmt.Errorf("stopped before the end: %w", context.Cause(ctx))
	case rep.Unexpected > 0:
		return rep, fmt.Errorf("%d %w, first: %s", rep.Unexpected, errUnexpected, rep.UnexpectedSamples[0])
	}
	return rep, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "drain" {
		mainDrain(os.Args[2:])
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		stop()
		os.Exit(1)
	}
}

// mainDrain runs `gatewaybench drain` (drain.go).
func mainDrain(args []string) {
	cfg, err := parseDrainFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench drain:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := runDrain(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench drain:", err)
		stop()
		os.Exit(1)
	}
}
