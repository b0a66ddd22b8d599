package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// The targets (issue 4, "Benchmark harness").
const (
	readRatioTarget    = 1.0 // read throughput, gateway/proxy, at every level
	writeRatioTarget   = 0.5 // write throughput, gateway/proxy, at writeTargetLevel
	writeTargetLevel   = 32
	addedP99TargetMs   = 5.0 // gateway p99 minus proxy p99, at latencyTargetLevel
	latencyTargetLevel = 8
)

// Verdict is a target applied to one row: nil when the target does not apply to the row.
type Verdict struct {
	Target string `json:"target"`
	Met    bool   `json:"met"`
}

// Row compares the two sides on one kind at one level.
type Row struct {
	Concurrency     int       `json:"concurrency"`
	Kind            string    `json:"kind"`
	Read            bool      `json:"read"`
	Gateway         CellStats `json:"gateway"`
	Proxy           CellStats `json:"proxy"`
	ThroughputRatio float64   `json:"throughput_ratio"`
	AddedP99Ms      float64   `json:"added_p99_ms"`
	Throughput      *Verdict  `json:"throughput_target,omitempty"`
	Latency         *Verdict  `json:"latency_target,omitempty"`
}

// TargetResult is the verdict on one of the targets over every row it applies to.
type TargetResult struct {
	Target string `json:"target"`
	Rows   int    `json:"rows"` // rows it applied to; 0: the run did not measure it
	Met    bool   `json:"met"`
}

// Report is what a run prints; -json prints it as is.
type Report struct {
	Users             int            `json:"users"`
	Groups            int            `json:"groups"`
	CellDuration      string         `json:"cell_duration"`
	CellRequests      int            `json:"cell_requests"`
	Journal           string         `json:"journal"`
	Rows              []Row          `json:"rows"`
	Targets           []TargetResult `json:"targets"`
	Seconds           float64        `json:"seconds"`
	Unexpected        int            `json:"unexpected"`
	UnexpectedSamples []string       `json:"unexpected_samples,omitempty"`
}

// evaluate fills the ratios and verdicts. A row with an empty cell on either side gets no
// verdict: there is nothing to compare.
func (rep *Report) evaluate() {
	read := TargetResult{Target: fmt.Sprintf("read throughput >= %.1fx the proxy's (every level)", readRatioTarget), Met: true}
	write := TargetResult{Target: fmt.Sprintf("write throughput >= %.1fx the proxy's at concurrency %d", writeRatioTarget, writeTargetLevel), Met: true}
	lat := TargetResult{Target: fmt.Sprintf("p99 added latency <= %.0f ms at concurrency %d", addedP99TargetMs, latencyTargetLevel), Met: true}
	for i := range rep.Rows {
		r := &rep.Rows[i]
		if r.Gateway.Requests == 0 || r.Proxy.Requests == 0 || r.Proxy.RequestsPerSecond == 0 {
			continue
		}
		r.ThroughputRatio = round(r.Gateway.RequestsPerSecond/r.Proxy.RequestsPerSecond, 2)
		r.AddedP99Ms = round(r.Gateway.P99Ms-r.Proxy.P99Ms, 3)
		switch {
		case r.Read:
			r.Throughput = apply(&read, fmt.Sprintf(">=%.1fx", readRatioTarget), r.ThroughputRatio >= readRatioTarget)
		case r.Concurrency == writeTargetLevel:
			r.Throughput = apply(&write, fmt.Sprintf(">=%.1fx", writeRatioTarget), r.ThroughputRatio >= writeRatioTarget)
		}
		if r.Concurrency == latencyTargetLevel {
			r.Latency = apply(&lat, fmt.Sprintf("<=%.0fms", addedP99TargetMs), r.AddedP99Ms <= addedP99TargetMs)
		}
	}
	rep.Targets = []TargetResult{read, write, lat}
	for i := range rep.Targets {
		rep.Targets[i].Met = rep.Targets[i].Met && rep.Targets[i].Rows > 0
	}
}

func apply(t *TargetResult, label string, met bool) *Verdict {
	t.Rows++
	t.Met = t.Met && met
	return &Verdict{Target: label, Met: met}
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
	fmt.Fprintf(w, "gatewaybench: %d users and %d groups per level and side; cells capped at %s / %s requests; journal %s\n",
		rep.Users, rep.Groups, rep.CellDuration, reqCap, rep.Journal)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conc\tkind\tgw req/s\tproxy req/s\tratio\ttarget\tgw p50\tgw p99\tproxy p50\tproxy p99\t+p99 ms\ttarget\tgw cpu/req\tproxy cpu/req\tgw cores\tproxy cores\t")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.0f\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t\n",
			r.Concurrency, r.Kind, r.Gateway.RequestsPerSecond, r.Proxy.RequestsPerSecond, ratio(r), verdict(r.Throughput),
			r.Gateway.P50Ms, r.Gateway.P99Ms, r.Proxy.P50Ms, r.Proxy.P99Ms, added(r), verdict(r.Latency),
			r.Gateway.CPUPerRequestUs, r.Proxy.CPUPerRequestUs, r.Gateway.CPUCores, r.Proxy.CPUCores)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range rep.Targets {
		state := "not measured"
		if t.Rows > 0 {
			state = "MET"
			if !t.Met {
				state = "NOT MET"
			}
		}
		fmt.Fprintf(w, "target: %s: %s (%d rows)\n", t.Target, state, t.Rows)
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

func ratio(r Row) string {
	if r.Gateway.Requests == 0 || r.Proxy.Requests == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r.ThroughputRatio)
}

func added(r Row) string {
	if r.Gateway.Requests == 0 || r.Proxy.Requests == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.2f", r.AddedP99Ms)
}

func verdict(v *Verdict) string {
	switch {
	case v == nil:
		return ""
	case v.Met:
		return v.Target + " met"
	}
	return v.Target + " MISSED"
}
