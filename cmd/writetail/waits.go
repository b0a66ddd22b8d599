package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"

	"github.com/scimgate/scimgate/caddymodule"
)

// Where a request's time goes, in an execution trace of the gateway (issue 17: "find where
// writes wait"). Each goroutine's time is split by its state: running, runnable (waiting
// for a core: the process's Ps, or the operating system's CPU behind them), in a system
// call, or blocked, and a block is named by what the goroutine waits on, read from its
// stack when it blocks.
const (
	partRunning  = "running"
	partCPU      = "cpu-queue" // runnable: ready, waiting for a core
	partCommit   = "commit"    // the store's group commit: its queue, its transaction, its fsyncs
	partAppCall  = "app-call"  // an outbound HTTP call: the legacy app's answer
	partLock     = "lock"      // the engine's resource and member locks
	partPolicy   = "policy"    // a free evaluation slot of the policy engine
	partSyscall  = "syscall"
	partGCAssist = "gc-assist"
	partOther    = "other"
)

// printWaits analyzes the execution trace in file and prints its report.
func printWaits(file string, w io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := analyzeWaits(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	rep.print(w)
	return nil
}

// waitParts is the order a report's columns are printed in.
var waitParts = []string{partRunning, partCPU, partCommit, partAppCall, partLock, partPolicy, partSyscall, partGCAssist, partOther}

// blockPart names what a goroutine that blocks with stack st waits on.
func blockPart(st trace.StateTransition) string {
	if strings.Contains(st.Reason, "GC") {
		return partGCAssist
	}
	for f := range st.Stack.Frames() {
		switch fn := f.Func; {
		case strings.Contains(fn, "store.(*committer).update"):
			return partCommit
		case strings.Contains(fn, "net/http.(*persistConn).roundTrip"):
			return partAppCall
		case strings.Contains(fn, "provision.(*keyedMutex)"):
			return partLock
		case strings.Contains(fn, "policy.(*Engine).decide"):
			return partPolicy
		}
	}
	return partOther
}

// waitBand is the mean time per request of a band of requests, by part.
type waitBand struct {
	name  string
	n     int
	total time.Duration
	parts map[string]time.Duration
}

// waitReport is what a trace says about the gateway's writes.
type waitReport struct {
	span     time.Duration // of the trace
	requests int           // requests that waited on a commit (writes)
	bands    []waitBand

	// The group commit: its goroutines' time by state, and its system calls.
	commitParts map[string]time.Duration
	fdatasyncs  int
	pwrites     int
}

// requestRegion is the trace region the gateway serves each SCIM request in, while a
// trace runs.
const requestRegion = caddymodule.RequestTraceRegion

// tracedRequest is one request the gateway served: its region, on the goroutine that
// served it.
type tracedRequest struct {
	start, end trace.Time
	parts      map[string]time.Duration
}

type tracedGoroutine struct {
	state     trace.GoState
	since     trace.Time
	block     string // what it waits on, while blocked
	committer bool   // a group commit's goroutine
	req       *tracedRequest
}

// account adds the goroutine's time since its last event, up to now, to its request and,
// for a group commit's goroutine, to the commit's use.
func (g *tracedGoroutine) account(rep *waitReport, now trace.Time) {
	part, spent := g.part(), time.Duration(now-g.since)
	if g.req != nil {
		g.req.parts[part] += spent
	}
	if g.committer {
		rep.commitParts[part] += spent
	}
	g.since = now
}

// analyzeWaits reads an execution trace (runtime/trace's format, as /debug/pprof/trace
// writes it) and reports where the requests that wrote (those that waited on a commit)
// spent their time: the slowest 1%, the next 4%, the middle fifth and all of them.
func analyzeWaits(r io.Reader) (*waitReport, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading the trace: %w", err)
	}
	rep := &waitReport{commitParts: map[string]time.Duration{}}
	gs := map[trace.GoID]*tracedGoroutine{}
	goroutine := func(id trace.GoID, state trace.GoState, now trace.Time) *tracedGoroutine {
		g := gs[id]
		if g == nil {
			g = &tracedGoroutine{state: state, since: now}
			gs[id] = g
		}
		return g
	}
	var done []*tracedRequest
	var first, last trace.Time
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the trace: %w", err)
		}
		now := ev.Time()
		if first == 0 {
			first = now
		}
		last = now
		switch ev.Kind() {
		case trace.EventRegionBegin, trace.EventRegionEnd:
			if ev.Region().Type != requestRegion || ev.Goroutine() == trace.NoGoroutine {
				continue
			}
			g := goroutine(ev.Goroutine(), trace.GoRunning, now)
			g.account(rep, now)
			if ev.Kind() == trace.EventRegionBegin {
				g.req = &tracedRequest{start: now, parts: map[string]time.Duration{}}
			} else if g.req != nil {
				g.req.end = now
				done = append(done, g.req)
				g.req = nil
			}
			continue
		case trace.EventStateTransition:
		default:
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		from, to := st.Goroutine()
		g := goroutine(st.Resource.Goroutine(), from, now)
		if !g.committer && stackHas(st.Stack, "store.(*committer).drain") {
			g.committer = true
		}
		g.account(rep, now)
		if g.committer && to == trace.GoSyscall {
			switch {
			case stackHas(st.Stack, "syscall.Fdatasync"):
				rep.fdatasyncs++
			case stackHas(st.Stack, "syscall.Pwrite"):
				rep.pwrites++
			}
		}
		switch to {
		case trace.GoWaiting:
			g.block = blockPart(st)
		case trace.GoNotExist:
			g.req = nil
		}
		g.state = to
	}
	rep.span = time.Duration(last - first)
	var writes []*tracedRequest
	for _, q := range done {
		if q.parts[partCommit] > 0 {
			writes = append(writes, q)
		}
	}
	rep.requests = len(writes)
	if len(writes) == 0 {
		return rep, nil
	}
	slices.SortFunc(writes, func(a, b *tracedRequest) int { return int((b.end - b.start) - (a.end - a.start)) })
	n := len(writes)
	cut := func(f float64) int { return min(n, max(1, int(f*float64(n)))) }
	band := func(name string, set []*tracedRequest) {
		if len(set) == 0 {
			return
		}
		b := waitBand{name: name, n: len(set), parts: map[string]time.Duration{}}
		for _, q := range set {
			b.total += time.Duration(q.end - q.start)
			for k, v := range q.parts {
				b.parts[k] += v
			}
		}
		b.total /= time.Duration(len(set))
		for k := range b.parts {
			b.parts[k] /= time.Duration(len(set))
		}
		rep.bands = append(rep.bands, b)
	}
	band("slowest 1%", writes[:cut(0.01)])
	band("next 4%", writes[cut(0.01):cut(0.05)])
	band("middle 40-60%", writes[cut(0.40):cut(0.60)])
	band("all", writes)
	return rep, nil
}

// part is what the goroutine's time in its current state counts as.
func (g *tracedGoroutine) part() string {
	switch g.state {
	case trace.GoRunning:
		return partRunning
	case trace.GoRunnable:
		return partCPU
	case trace.GoSyscall:
		return partSyscall
	case trace.GoWaiting:
		return g.block
	}
	return partOther
}

func stackHas(s trace.Stack, fn string) bool {
	for f := range s.Frames() {
		if strings.Contains(f.Func, fn) {
			return true
		}
	}
	return false
}

func msText(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// print writes the report as a table: one row per band, the mean milliseconds per request
// of each part, then what the group commit did.
func (rep *waitReport) print(w io.Writer) {
	fmt.Fprintf(w, "where the writes waited (a %s trace: %d requests that committed; mean ms per request):\n",
		rep.span.Round(time.Millisecond), rep.requests)
	if rep.requests == 0 {
		return
	}
	fmt.Fprintf(w, "  %-14s %5s %7s", "band", "n", "total")
	for _, p := range waitParts {
		fmt.Fprintf(w, " %9s", p)
	}
	fmt.Fprintln(w)
	for _, b := range rep.bands {
		fmt.Fprintf(w, "  %-14s %5d %7s", b.name, b.n, msText(b.total))
		for _, p := range waitParts {
			fmt.Fprintf(w, " %9s", msText(b.parts[p]))
		}
		fmt.Fprintln(w)
	}
	var busy time.Duration
	for p, d := range rep.commitParts {
		if p == partRunning || p == partCPU || p == partSyscall {
			busy += d
		}
	}
	share := func(d time.Duration) float64 { return 100 * float64(d) / float64(max(rep.span, 1)) }
	fmt.Fprintf(w, "  group commit: busy %.0f%% of the trace (running %.0f%%, waiting for a core %.0f%%, in system calls %.0f%%); %d fdatasyncs (bbolt makes two per commit), %.1f pwrites per fdatasync\n",
		share(busy), share(rep.commitParts[partRunning]), share(rep.commitParts[partCPU]), share(rep.commitParts[partSyscall]),
		rep.fdatasyncs, float64(rep.pwrites)/float64(max(rep.fdatasyncs, 1)))
}
