package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// The targets of issue 18 ("Write path: measured against a realistic app"). Which apply
// depends on the app: with a latency (an app that takes its time, as legacy apps do) the
// gateway's writes are judged on throughput and added latency; in memory (an app that
// answers in microseconds) on the CPU a write costs against a proxied request.
const (
	readRatioTarget     = 1.0 // read throughput, gateway/proxy, every level, every app
	writeRatioTarget    = 0.9 // write throughput, gateway/proxy, at writeTargetLevels, app with latency
	addedP50TargetMs    = 3.0 // gateway p50 minus proxy p50, writes at latencyTargetLevel, app with latency
	addedP99TargetMs    = 5.0 // gateway p99 minus proxy p99, writes at latencyTargetLevel, app with latency
	latencyTargetLevel  = 8
	cpuRatioTarget      = 2.0 // gateway CPU per write / proxy CPU per request, every level, in memory
	memberRatioTarget   = 0.8 // gateway member_add / update throughput at memberTargetLevel
	memberTargetLevel   = 32
	memberKind, updKind = "member_add", "update"
	// unchangedRatioTarget: gateway throughput of a PATCH that changes nothing / of a GET by
	// id, at unchangedTargetLevel, every app (the no-op sends the app nothing).
	unchangedRatioTarget   = 0.8
	unchangedTargetLevel   = 8
	unchangedKind, getKind = "unchanged", "get"
)

// writeTargetLevels are the levels the write throughput target applies to.
var writeTargetLevels = []int{8, 32}

// Verdict is a target applied to one row.
type Verdict struct {
	Target string `json:"target"`
	Met    bool   `json:"met"`
}

// Row compares the two sides on one kind at one level.
type Row struct {
	Concurrency int       `json:"concurrency"`
	Kind        string    `json:"kind"`
	Read        bool      `json:"read"`
	Gateway     CellStats `json:"gateway"`
	Proxy       CellStats `json:"proxy"`
	VsProxy               // the gateway's cell against the proxy's
	// Floor is the same native write through the floor (floor.go), on writes when the run
	// measures it: the targets the gateway's write is judged on, judged on the floor too.
	Floor *FloorStats `json:"floor,omitempty"`
}

// VsProxy is a cell (the gateway's or the floor's) against the proxy's cell of its row,
// and the verdicts of the targets that apply to it.
type VsProxy struct {
	ThroughputRatio float64   `json:"throughput_ratio"`
	AddedP50Ms      float64   `json:"added_p50_ms"`
	AddedP99Ms      float64   `json:"added_p99_ms"`
	CPURatio        float64   `json:"cpu_ratio,omitempty"` // CPU per request over the proxy's
	Verdicts        []Verdict `json:"verdicts,omitempty"`
}

// vsProxy compares c with the proxy's cell px (which has requests).
func vsProxy(c, px CellStats) VsProxy {
	v := VsProxy{ThroughputRatio: round(c.RequestsPerSecond/px.RequestsPerSecond, 2),
		AddedP50Ms: round(c.P50Ms-px.P50Ms, 3), AddedP99Ms: round(c.P99Ms-px.P99Ms, 3)}
	if px.CPUPerRequestUs > 0 {
		v.CPURatio = round(c.CPUPerRequestUs/px.CPUPerRequestUs, 2)
	}
	return v
}

// FloorStats is the floor's cell of a row, compared with the proxy's as the gateway's is.
type FloorStats struct {
	CellStats
	VsProxy
	// GatewayRatio is the gateway's throughput over the floor's: how much of what the floor
	// allows the gateway gets.
	GatewayRatio float64 `json:"gateway_ratio"`
}

// TargetResult is the verdict on one of the targets over every row it applies to.
type TargetResult struct {
	Target string `json:"target"`
	Rows   int    `json:"rows"` // rows it applied to; 0: the run did not measure it
	Met    bool   `json:"met"`
	// FloorRows and FloorMet: the same target judged on the floor's cells (write targets,
	// when the run measures the floor). A target the floor misses is beyond this machine
	// for any gateway that journals before and after each call.
	FloorRows int  `json:"floor_rows,omitempty"`
	FloorMet  bool `json:"floor_met,omitempty"`
}

// Report is what a run prints; -json prints it as is.
type Report struct {
	Users             int            `json:"users"`
	Groups            int            `json:"groups"`
	CellDuration      string         `json:"cell_duration"`
	CellRequests      int            `json:"cell_requests"`
	AppLatency        string         `json:"app_latency"`
	InMemory          bool           `json:"in_memory"` // the apps answer at once
	Journal           string         `json:"journal"`
	Rows              []Row          `json:"rows"`
	Targets           []TargetResult `json:"targets"`
	Seconds           float64        `json:"seconds"`
	Unexpected        int            `json:"unexpected"`
	UnexpectedSamples []string       `json:"unexpected_samples,omitempty"`
}

// writeTargets are the targets on a write's cell against the proxy's, by app.
type writeTargets struct {
	write, p50, p99, cpu *TargetResult
}

// judge applies the write targets that apply to a cell of a row at level (v: the cell
// against the proxy's), adding to the targets' counts (or, for the floor, their floor
// counts).
func (wt writeTargets) judge(inMemory, floor bool, level int, v VsProxy) []Verdict {
	var out []Verdict
	add := func(t *TargetResult, label string, met bool) {
		if floor {
			t.FloorRows++
			t.FloorMet = t.FloorMet && met
		} else {
			t.Rows++
			t.Met = t.Met && met
		}
		out = append(out, Verdict{Target: label, Met: met})
	}
	if inMemory {
		if v.CPURatio > 0 {
			add(wt.cpu, fmt.Sprintf("cpu<=%.1fx", cpuRatioTarget), v.CPURatio <= cpuRatioTarget)
		}
		return out
	}
	if slices.Contains(writeTargetLevels, level) {
		add(wt.write, fmt.Sprintf(">=%.1fx", writeRatioTarget), v.ThroughputRatio >= writeRatioTarget)
	}
	if level == latencyTargetLevel {
		add(wt.p50, fmt.Sprintf("+p50<=%.0fms", addedP50TargetMs), v.AddedP50Ms <= addedP50TargetMs)
		add(wt.p99, fmt.Sprintf("+p99<=%.0fms", addedP99TargetMs), v.AddedP99Ms <= addedP99TargetMs)
	}
	return out
}

// evaluate fills the ratios and verdicts. A row with an empty cell on either side gets no
// verdict: there is nothing to compare.
func (rep *Report) evaluate() {
	read := TargetResult{Target: fmt.Sprintf("read throughput >= %.1fx the proxy's (every level)", readRatioTarget), Met: true}
	write := TargetResult{Target: fmt.Sprintf("write throughput >= %.1fx the proxy's at concurrency %v (app with latency)", writeRatioTarget, writeTargetLevels), Met: true, FloorMet: true}
	p50 := TargetResult{Target: fmt.Sprintf("write p50 added latency <= %.0f ms at concurrency %d (app with latency)", addedP50TargetMs, latencyTargetLevel), Met: true, FloorMet: true}
	p99 := TargetResult{Target: fmt.Sprintf("write p99 added latency <= %.0f ms at concurrency %d (app with latency)", addedP99TargetMs, latencyTargetLevel), Met: true, FloorMet: true}
	cpu := TargetResult{Target: fmt.Sprintf("gateway CPU per write <= %.1fx a proxied request's (in memory)", cpuRatioTarget), Met: true, FloorMet: true}
	wt := writeTargets{write: &write, p50: &p50, p99: &p99, cpu: &cpu}
	for i := range rep.Rows {
		r := &rep.Rows[i]
		if r.Proxy.Requests == 0 || r.Proxy.RequestsPerSecond == 0 {
			continue
		}
		if f := r.Floor; f != nil && f.Requests > 0 {
			f.VsProxy = vsProxy(f.CellStats, r.Proxy)
			if f.RequestsPerSecond > 0 {
				f.GatewayRatio = round(r.Gateway.RequestsPerSecond/f.RequestsPerSecond, 2)
			}
			f.Verdicts = wt.judge(rep.InMemory, true, r.Concurrency, f.VsProxy)
		}
		if r.Gateway.Requests == 0 {
			continue
		}
		r.VsProxy = vsProxy(r.Gateway, r.Proxy)
		switch {
		case r.Read:
			r.add(&read, fmt.Sprintf(">=%.1fx", readRatioTarget), r.ThroughputRatio >= readRatioTarget)
		case r.Kind == unchangedKind:
			// not a write: judged against the gateway's own GET, below
		default:
			r.Verdicts = wt.judge(rep.InMemory, false, r.Concurrency, r.VsProxy)
		}
	}
	member := kindRatio{kind: memberKind, base: updKind, level: memberTargetLevel, min: memberRatioTarget}.judge(rep.Rows)
	unchanged := kindRatio{kind: unchangedKind, base: getKind, level: unchangedTargetLevel, min: unchangedRatioTarget}.judge(rep.Rows)
	rep.Targets = []TargetResult{read, write, p50, p99, cpu, member, unchanged}
	for i := range rep.Targets {
		t := &rep.Targets[i]
		t.Met = t.Met && t.Rows > 0
		t.FloorMet = t.FloorMet && t.FloorRows > 0
	}
}

// kindRatio is a target on two of the gateway's own kinds at one level: kind's throughput
// at least min times base's.
type kindRatio struct {
	kind, base string
	level      int
	min        float64
}

// judge applies k to the gateway's cells of rows (one row when both kinds were measured).
func (k kindRatio) judge(rows []Row) TargetResult {
	t := TargetResult{Target: fmt.Sprintf("gateway %s throughput >= %.1fx its %s throughput at concurrency %d", k.kind, k.min, k.base, k.level)}
	var rps, baseRPS float64
	for _, r := range rows {
		if r.Concurrency != k.level || r.Gateway.Requests == 0 {
			continue
		}
		switch r.Kind {
		case k.kind:
			rps = r.Gateway.RequestsPerSecond
		case k.base:
			baseRPS = r.Gateway.RequestsPerSecond
		}
	}
	if rps > 0 && baseRPS > 0 {
		t.Rows = 1
		t.Met = rps/baseRPS >= k.min
		t.Target += fmt.Sprintf(" (measured %.2fx)", rps/baseRPS)
	}
	return t
}

// add judges the row against t.
func (r *Row) add(t *TargetResult, label string, met bool) {
	t.Rows++
	t.Met = t.Met && met
	r.Verdicts = append(r.Verdicts, Verdict{Target: label, Met: met})
}

func (rep *Report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	return rep.writeText(w)
}

// writeText prints the table, then the targets and any unexpected responses.
func (rep *Report) writeText(w io.Writer) error {
	reqCap := "-"
	if rep.CellRequests > 0 {
		reqCap = fmt.Sprint(rep.CellRequests)
	}
	fmt.Fprintf(w, "gatewaybench: %d users and %d groups per level and side; cells capped at %s / %s requests; app latency %s; journal %s\n",
		rep.Users, rep.Groups, rep.CellDuration, reqCap, rep.AppLatency, rep.Journal)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conc\tkind\tgw req/s\tproxy req/s\tratio\tgw p50\tgw p99\tproxy p50\tproxy p99\t+p50 ms\t+p99 ms\tgw cpu/req\tproxy cpu/req\tcpu ratio\tgw cores\tproxy cores\t targets")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.0f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%.0f\t%.0f\t%s\t%.2f\t%.2f\t %s\n",
			r.Concurrency, r.Kind, r.Gateway.RequestsPerSecond, r.Proxy.RequestsPerSecond, ratio(r),
			r.Gateway.P50Ms, r.Gateway.P99Ms, r.Proxy.P50Ms, r.Proxy.P99Ms, added(r, r.AddedP50Ms), added(r, r.AddedP99Ms),
			r.Gateway.CPUPerRequestUs, r.Proxy.CPUPerRequestUs, cpuRatio(r), r.Gateway.CPUCores, r.Proxy.CPUCores, verdicts(r.Verdicts))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if slices.ContainsFunc(rep.Rows, func(r Row) bool { return r.Floor != nil }) {
		fmt.Fprintln(w, "floor: the proxy with the two durable commits a journaled write needs (before the call, after it), same app; ratios against the proxy's cells above")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "conc\tkind\tfloor req/s\tratio\tfloor p50\tfloor p99\t+p50 ms\t+p99 ms\tfloor cpu/req\tcpu ratio\tfloor cores\tgw/floor\t targets")
		for _, r := range rep.Rows {
			f := r.Floor
			if f == nil || f.Requests == 0 {
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.2fx\t%.2f\t%.2f\t%+.2f\t%+.2f\t%.0f\t%.2fx\t%.2f\t%.2fx\t %s\n",
				r.Concurrency, r.Kind, f.RequestsPerSecond, f.ThroughputRatio, f.P50Ms, f.P99Ms, f.AddedP50Ms, f.AddedP99Ms,
				f.CPUPerRequestUs, f.CPURatio, f.CPUCores, f.GatewayRatio, verdicts(f.Verdicts))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, t := range rep.Targets {
		floor := ""
		if t.FloorRows > 0 {
			floor = fmt.Sprintf("; the floor: %s (%d rows)", state(t.FloorRows, t.FloorMet), t.FloorRows)
		}
		fmt.Fprintf(w, "target: %s: %s (%d rows)%s\n", t.Target, state(t.Rows, t.Met), t.Rows, floor)
	}
	fmt.Fprintf(w, "total: %.1fs; %d unexpected responses\n", rep.Seconds, rep.Unexpected)
	for _, s := range rep.UnexpectedSamples {
		fmt.Fprintf(w, "unexpected: %s\n", s)
	}
	if extra := rep.Unexpected - len(rep.UnexpectedSamples); extra > 0 {
		fmt.Fprintf(w, "unexpected: ... and %d more\n", extra)
	}
	return nil
}

// state is a target's verdict over rows.
func state(rows int, met bool) string {
	switch {
	case rows == 0:
		return "not measured"
	case met:
		return "MET"
	}
	return "NOT MET"
}

func ratio(r Row) string {
	if r.Gateway.Requests == 0 || r.Proxy.Requests == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r.ThroughputRatio)
}

func added(r Row, ms float64) string {
	if r.Gateway.Requests == 0 || r.Proxy.Requests == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.2f", ms)
}

func cpuRatio(r Row) string {
	if r.CPURatio == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r.CPURatio)
}

// verdicts prints a row's verdicts, e.g. ">=0.9x met, +p99<=5ms MISSED".
func verdicts(vs []Verdict) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Target + " met"
		if !v.Met {
			out[i] = v.Target + " MISSED"
		}
	}
	return strings.Join(out, ", ")
}
