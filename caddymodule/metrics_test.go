package caddymodule

import (
	"context"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		t.Fatal("no metrics registry in the context")
	}
	mk := func() *Gateway {
		g := &Gateway{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir()}
		if err := g.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Cleanup() })
		return g
	}
	g, g2 := mk(), mk() // two handlers in one config share the collectors
	serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "m"})
	serve(t, g2, "POST", "/scim/v2/Users", map[string]any{"userName": "m"})
	serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "M"})
	serve(t, g, "GET", "/scim/v2/Schemas", nil)
	serve(t, g, "GET", "/scim/v2/Users", nil, "Authorization", "Bearer wrong")
	for _, c := range []struct {
		endpoint, method, code string
		want                   float64
	}{
		{"Users", "POST", "201", 2},
		{"Users", "POST", "409", 1},
		{"discovery", "GET", "200", 1},
		{"Users", "GET", "401", 1},
	} {
		if got := testutil.ToFloat64(g.metrics.requests.WithLabelValues(c.endpoint, c.method, c.code)); got != c.want {
			t.Errorf("scimgate_requests_total{%s,%s,%s} = %v, want %v", c.endpoint, c.method, c.code, got, c.want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "scimgate_request_duration_seconds"); err != nil || n == 0 {
		t.Fatalf("duration histogram: %d series, %v", n, err)
	}
}
