package caddymodule

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scimgate/scimgate/caddymodule/outbox"
)

// outboxCollector reports the outboxes of this process's delivery workers when scraped:
// the changes still to deliver, those held behind a dead letter, the dead letters, the age
// of the oldest change still to deliver, and whether an operator paused the target.
type outboxCollector struct{}

var (
	outboxPendingDesc = prometheus.NewDesc("scimgate_outbox_pending", "Queued changes still to deliver, by target.", []string{"target"}, nil)
	outboxHeldDesc    = prometheus.NewDesc("scimgate_outbox_held", "Queued changes that wait behind a dead letter of their resource, by target.", []string{"target"}, nil)
	outboxDeadDesc    = prometheus.NewDesc("scimgate_outbox_dead_letters", "Dead letters (changes the app refused, or that expired) waiting for an operator, by target.", []string{"target"}, nil)
	outboxOldestDesc  = prometheus.NewDesc("scimgate_outbox_oldest_age_seconds", "Age of the oldest queued change still to deliver (0 when none), by target.", []string{"target"}, nil)
	outboxPausedDesc  = prometheus.NewDesc("scimgate_outbox_paused", "1 when an operator paused the target's deliveries.", []string{"target"}, nil)
)

func (outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{outboxPendingDesc, outboxHeldDesc, outboxDeadDesc, outboxOldestDesc, outboxPausedDesc} {
		ch <- d
	}
}

func (outboxCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{} // a target of two stores (two gateways) is reported once
	for _, w := range outbox.Running() {
		if seen[w.Target()] {
			continue
		}
		seen[w.Target()] = true
		s := w.Stats()
		age, paused := 0.0, 0.0
		if !s.Oldest.IsZero() {
			age = time.Since(s.Oldest).Seconds()
		}
		if s.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(outboxPendingDesc, prometheus.GaugeValue, float64(s.Pending), w.Target())
		ch <- prometheus.MustNewConstMetric(outboxHeldDesc, prometheus.GaugeValue, float64(s.Held), w.Target())
		ch <- prometheus.MustNewConstMetric(outboxDeadDesc, prometheus.GaugeValue, float64(s.Dead), w.Target())
		ch <- prometheus.MustNewConstMetric(outboxOldestDesc, prometheus.GaugeValue, age, w.Target())
		ch <- prometheus.MustNewConstMetric(outboxPausedDesc, prometheus.GaugeValue, paused, w.Target())
	}
}
