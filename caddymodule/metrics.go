package caddymodule

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

// gatewayMetrics are the gateway's Prometheus metrics, in Caddy's registry (served by
// Caddy's metrics handler and admin endpoint). Labels never carry ids or user names.
type gatewayMetrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	decisions  *prometheus.CounterVec
	deliveries *prometheus.CounterVec
}

func newGatewayMetrics(reg *prometheus.Registry) (*gatewayMetrics, error) {
	labels := []string{"endpoint", "method", "code"}
	requests, err := registerOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scimgate",
		Name:      "requests_total",
		Help:      "SCIM requests answered, by endpoint (Users, Groups, discovery, other), method and status code.",
	}, labels))
	if err != nil {
		return nil, err
	}
	duration, err := registerOrReuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "scimgate",
		Name:      "request_duration_seconds",
		Help:      "Time to answer SCIM requests, by endpoint and method.",
		Buckets:   []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, labels[:2]))
	if err != nil {
		return nil, err
	}
	decisions, err := registerOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scimgate",
		Name:      "policy_decisions_total",
		Help:      "Policy decisions on write requests, by result: allow, skip, deny, or error (a policy that could not decide, which denies).",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	deliveries, err := registerOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scimgate",
		Name:      "outbox_deliveries_total",
		Help:      "Attempts to deliver a queued change, by target and outcome: delivered, failed (retried), dead (a dead letter), dry_run.",
	}, []string{"target", "outcome"}))
	if err != nil {
		return nil, err
	}
	if _, err := registerOrReuse(reg, prometheus.Collector(outboxCollector{})); err != nil {
		return nil, err
	}
	if _, err := registerOrReuse(reg, prometheus.Collector(etcdCollector{})); err != nil {
		return nil, err
	}
	return &gatewayMetrics{requests: requests, duration: duration, decisions: decisions, deliveries: deliveries}, nil
}

// delivery counts one attempt to deliver a queued change.
func (m *gatewayMetrics) delivery(target string, outcome change.Outcome) {
	m.deliveries.WithLabelValues(target, string(outcome)).Inc()
}

// policyDecision counts one decision.
func (m *gatewayMetrics) policyDecision(d policy.Decision, err error) {
	result := "allow"
	switch {
	case err != nil:
		result = "error"
	case !d.Allow:
		result = "deny"
	case d.Skip:
		result = "skip"
	}
	m.decisions.WithLabelValues(result).Inc()
}

// registerOrReuse registers c, or returns the collector an earlier handler of the same
// config registered under the same name (several scim_gateway handlers share them).
func registerOrReuse[C prometheus.Collector](reg *prometheus.Registry, c C) (C, error) {
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

// metricsEndpoint is the low-cardinality endpoint label of a relative SCIM path.
func metricsEndpoint(rel string) string {
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

// metricsMethod is the bounded method label: a client may send any token as its method,
// before it authenticates, and each new label value is a new series kept for the life of
// the process.
func metricsMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe records one answered request.
func (m *gatewayMetrics) observe(endpoint, method string, status int, start time.Time) {
	if m == nil {
		return
	}
	method = metricsMethod(method)
	m.requests.WithLabelValues(endpoint, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(endpoint, method).Observe(time.Since(start).Seconds())
}
