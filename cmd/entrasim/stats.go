package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"
)

// maxSamples is how many unexpected statuses are kept with their details; the rest are
// only counted.
const maxSamples = 5

// recorder collects every attempt's status and latency by request kind. It is safe for
// concurrent use.
type recorder struct {
	mu         sync.Mutex
	kinds      map[string]*kindRecord
	unexp      int
	samples    []string
	retries    int
	unresolved int
}

type kindRecord struct {
	statuses  map[int]int
	latencies []time.Duration
}

func newRecorder() *recorder { return &recorder{kinds: map[string]*kindRecord{}} }

// observe records one attempt; status 0 is a transport failure.
func (r *recorder) observe(kind string, status int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[kind]
	if k == nil {
		k = &kindRecord{statuses: map[int]int{}}
		r.kinds[kind] = k
	}
	k.statuses[status]++
	k.latencies = append(k.latencies, d)
}

// unexpected counts an unexpected outcome and keeps the first few for the summary.
func (r *recorder) unexpected(kind, method, path string, status int, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unexp++
	if len(r.samples) < maxSamples {
		st := "no response"
		if status != 0 {
			st = strconv.Itoa(status)
		}
		r.samples = append(r.samples, fmt.Sprintf("%s: %s %s -> %s: %s", kind, method, path, st, detail))
	}
}

func (r *recorder) retry() {
	r.mu.Lock()
	r.retries++
	r.mu.Unlock()
}

// unresolvedRef counts a reference (manager, member) whose target has no id, because its
// own create or lookup failed.
func (r *recorder) unresolvedRef() {
	r.mu.Lock()
	r.unresolved++
	r.mu.Unlock()
}

// KindStats summarises one request kind. Latencies are in milliseconds.
type KindStats struct {
	Requests int            `json:"requests"`
	Statuses map[string]int `json:"statuses"`
	P50Ms    float64        `json:"p50_ms"`
	P99Ms    float64        `json:"p99_ms"`
	MaxMs    float64        `json:"max_ms"`
}

// Summary is what a run prints; with -json it is the machine-readable output benchmarks
// consume.
type Summary struct {
	URL                  string                `json:"url"`
	Dialect              string                `json:"dialect"`
	Phase                string                `json:"phase"`
	Concurrency          int                   `json:"concurrency"`
	Users                int                   `json:"users"`
	Groups               int                   `json:"groups"`
	Changes              int                   `json:"changes"`
	Unchanged            int                   `json:"unchanged"`
	Requests             int                   `json:"requests"`
	Retries              int                   `json:"retries"`
	Unexpected           int                   `json:"unexpected"`
	UnexpectedSamples    []string              `json:"unexpected_samples,omitempty"`
	UnresolvedReferences int                   `json:"unresolved_references"`
	Seconds              float64               `json:"seconds"`
	RequestsPerSecond    float64               `json:"requests_per_second"`
	Kinds                map[string]*KindStats `json:"kinds"`
}

// fill copies the recorded counts into s.
func (r *recorder) fill(s *Summary, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Kinds = make(map[string]*KindStats, len(r.kinds))
	s.Requests = 0
	for name, k := range r.kinds {
		ks := &KindStats{Requests: len(k.latencies), Statuses: map[string]int{}}
		for st, n := range k.statuses {
			key := strconv.Itoa(st)
			if st == 0 {
				key = "error"
			}
			ks.Statuses[key] = n
		}
		lat := slices.Clone(k.latencies)
		slices.Sort(lat)
		ks.P50Ms, ks.P99Ms, ks.MaxMs = ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100))
		s.Kinds[name] = ks
		s.Requests += ks.Requests
	}
	s.Unexpected = r.unexp
	s.UnexpectedSamples = slices.Clone(r.samples)
	s.Retries = r.retries
	s.UnresolvedReferences = r.unresolved
	s.Seconds = elapsed.Seconds()
	if elapsed > 0 {
		s.RequestsPerSecond = math.Round(float64(s.Requests)/elapsed.Seconds()*10) / 10
	}
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(p) / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// kindOrder lists kinds in the order a cycle sends them; unknown kinds sort after.
var kindOrder = []string{"probe", "lookup", "create", "patch_attrs", "patch_manager", "lookup_group", "create_group", "patch_group", "patch_members", "update", "disable", "enable", "remove_members", "delete"}

// writeText prints the summary as a table.
func (s *Summary) writeText(w io.Writer) error {
	names := make([]string, 0, len(s.Kinds))
	for n := range s.Kinds {
		names = append(names, n)
	}
	rank := func(n string) int {
		if i := slices.Index(kindOrder, n); i >= 0 {
			return i
		}
		return len(kindOrder)
	}
	sort.Slice(names, func(i, j int) bool {
		if ri, rj := rank(names[i]), rank(names[j]); ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	fmt.Fprintf(w, "entrasim: %s dialect, phase %s, %d users, %d groups, %d changes, concurrency %d, %s\n",
		s.Dialect, s.Phase, s.Users, s.Groups, s.Changes, s.Concurrency, s.URL)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "kind\trequests\tstatuses\tp50 ms\tp99 ms\tmax ms")
	for _, n := range names {
		k := s.Kinds[n]
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.2f\t%.2f\t%.2f\n", n, k.Requests, statusList(k.Statuses), k.P50Ms, k.P99Ms, k.MaxMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "total: %d requests in %.2fs (%.1f requests/s); %d unchanged objects skipped; %d retries; %d unresolved references; %d unexpected\n",
		s.Requests, s.Seconds, s.RequestsPerSecond, s.Unchanged, s.Retries, s.UnresolvedReferences, s.Unexpected)
	for _, smp := range s.UnexpectedSamples {
		fmt.Fprintf(w, "unexpected: %s\n", smp)
	}
	if extra := s.Unexpected - len(s.UnexpectedSamples); extra > 0 {
		fmt.Fprintf(w, "unexpected: ... and %d more\n", extra)
	}
	return nil
}

func statusList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprintf("%s:%d", k, m[k])
	}
	return out
}
