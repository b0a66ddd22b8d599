package caddymodule

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/storeconfig"
)

// etcdCounter reads one of the etcd collector's counters for prefix (and how, for
// conflicts).
func etcdCounter(t *testing.T, name, prefix, how string) float64 {
	t.Helper()
	for _, f := range gather(t, etcdCollector{}) {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if (l.GetName() == "prefix" && l.GetValue() != prefix) || (l.GetName() == "how" && l.GetValue() != how) {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s for %s %s", name, prefix, how)
	return 0
}

// TestEtcdStoreMetrics: a gateway on etcd reports its commits, its conflicts and its
// quorum reads: every GET sends one without read_staleness, and one in all within the
// bound with it; a gateway on bbolt reports none of these.
func TestEtcdStoreMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts etcd")
	}
	c := etcdtest.Start(t, 1)
	onEtcd := func(prefix string, stale time.Duration) *Handler {
		return newTestGateway(t, func(g *Handler) {
			g.DataDir = ""
			g.Store = &storeconfig.Config{Backend: storeconfig.Etcd, Endpoints: c.Endpoints(), Prefix: prefix, ReadStaleness: caddy.Duration(stale)}
		})
	}
	const linear, stale = "/metrics-linear/", "/metrics-stale/"
	gateways := map[string]*Handler{linear: onEtcd(linear, 0), stale: onEtcd(stale, storeconfig.MaxReadStaleness)}
	newTestGateway(t, nil) // a bbolt store: not reported
	for prefix, g := range gateways {
		commits := etcdCounter(t, "scimgate_store_etcd_commits_total", prefix, "")
		id := itPostID(t, g, "/Users", map[string]any{"userName": "metrics@contoso.example"})
		if n := etcdCounter(t, "scimgate_store_etcd_commits_total", prefix, "") - commits; n < 1 {
			t.Errorf("%s: a create counted %v commits", prefix, n)
		}
		reads := etcdCounter(t, "scimgate_store_etcd_quorum_reads_total", prefix, "")
		for range 10 {
			if w := serve(t, g, http.MethodGet, itBase+"/Users/"+id, nil); w.Code != http.StatusOK {
				t.Fatalf("%s: GET %d %s", prefix, w.Code, w.Body)
			}
		}
		n := etcdCounter(t, "scimgate_store_etcd_quorum_reads_total", prefix, "") - reads
		switch {
		case prefix == linear && n < 10:
			t.Errorf("10 linearizable GETs counted %v quorum reads", n)
		case prefix == stale && n > 2:
			t.Errorf("10 GETs within read_staleness counted %v quorum reads, want at most one (and a background job's)", n)
		}
		for _, how := range []string{"sent", "seen"} {
			if v := etcdCounter(t, "scimgate_store_etcd_conflicts_total", prefix, how); v != 0 {
				t.Errorf("%s: %v conflicts %s with one gateway", prefix, v, how)
			}
		}
	}
	// A gateway whose store closed is no longer reported.
	t.Run("closed", func(t *testing.T) {
		newTestGateway(t, func(g *Handler) {
			g.DataDir = ""
			g.Store = &storeconfig.Config{Backend: storeconfig.Etcd, Endpoints: c.Endpoints(), Prefix: "/metrics-closed/"}
		})
		etcdCounter(t, "scimgate_store_etcd_commits_total", "/metrics-closed/", "")
	})
	for _, f := range gather(t, etcdCollector{}) {
		if n := len(f.GetMetric()); (f.GetName() == "scimgate_store_etcd_conflicts_total" && n != 4) || (f.GetName() != "scimgate_store_etcd_conflicts_total" && n != 2) {
			t.Errorf("%s: %d series, want one per etcd store (and how)", f.GetName(), n)
		}
	}
}
