// Package gwmetrics holds the gateway's Prometheus metrics, in Caddy's registry (served by
// Caddy's metrics handler and admin endpoint). Labels never carry ids or user names.
package gwmetrics

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/policy"
)

// Metrics are the gateway's metrics. The collectors are shared by every handler of the
// registry (see RegisterOrReuse).
type Metrics struct {
	Requests   *prometheus.CounterVec
	Duration   *prometheus.HistogramVec
	Decisions  *prometheus.CounterVec
	Deliveries *prometheus.CounterVec
}

// New registers the metrics in reg (nil: unregistered) with the other collectors, or
// reuses those an earlier handler registered.
func New(reg *prometheus.Registry, others ...prometheus.Collector) (*Metrics, error) {
	labels := []string{"endpoint", "method", "code"}
	requests, err := RegisterOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scimgate",
		Name:      "requests_total",
		Help:      "SCIM requests answered, by endpoint (Users, Groups, discovery, other), method and status code.",
	}, labels))
	if err != nil {
		return nil, err
	}
	duration, err := RegisterOrReuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "scimgate",
		Name:      "request_duration_seconds",
		Help:      "Time to answer SCIM requests, by endpoint and method.",
		Buckets:   []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, labels[:2]))
	if err != nil {
		return nil, err
	}
	decisions, err := RegisterOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scimgate",
		Name:      "policy_decisions_total",
		Help:      "Policy decisions on write requests, by result: allow, skip, deny, or error (a policy that could not decide, which denies).",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	deliveries, err := RegisterOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scimgate",
		Name:      "outbox_deliveries_total",
		Help:      "Attempts to deliver a queued change, by target and outcome: delivered, failed (retried), dead (a dead letter), dry_run.",
	}, []string{"target", "outcome"}))
	if err != nil {
		return nil, err
	}
	for _, c := range others {
		if _, err := RegisterOrReuse(reg, c); err != nil {
			return nil, err
		}
	}
	return &Metrics{Requests: requests, Duration: duration, Decisions: decisions, Deliveries: deliveries}, nil
}

// Delivery counts one attempt to deliver a queued change.
func (m *Metrics) Delivery(target string, outcome change.Outcome) {
	m.Deliveries.WithLabelValues(target, string(outcome)).Inc()
}

// PolicyDecision counts one decision.
func (m *Metrics) PolicyDecision(d policy.Decision, err error) {
	result := "allow"
	switch {
	case err != nil:
		result = "error"
	case !d.Allow:
		result = "deny"
	case d.Skip:
		result = "skip"
	}
	m.Decisions.WithLabelValues(result).Inc()
}

// RegisterOrReuse registers c, or returns the collector an earlier handler of the same
// config registered under the same name (several scim_gateway handlers share them).
func RegisterOrReuse[C prometheus.Collector](reg *prometheus.Registry, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Endpoint is the low-cardinality endpoint label of a relative SCIM path.
func Endpoint(rel string) string {
	seg := strings.ToLower(strings.SplitN(strings.TrimPrefix(rel, "/"), "/", 2)[0])
	switch seg {
	case "users":
		return "Users"
	case "groups":
		return "Groups"
	case "serviceproviderconfig", "serviceconfiguration", "resourcetypes", "schemas":
		return "discovery"
	}
	return "other"
}

// Method is the bounded method label: a client may send any token as its method,
// before it authenticates, and each new label value is a new series kept for the life of
// the process.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// StatusWriter remembers the status code written through it.
type StatusWriter struct {
	http.ResponseWriter
	Status int
}

func (w *StatusWriter) WriteHeader(code int) {
	if w.Status == 0 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Observe records one answered request.
func (m *Metrics) Observe(endpoint, method string, status int, start time.Time) {
	if m == nil {
		return
	}
	method = Method(method)
	m.Requests.WithLabelValues(endpoint, method, strconv.Itoa(status)).Inc()
	m.Duration.WithLabelValues(endpoint, method).Observe(time.Since(start).Seconds())
}
