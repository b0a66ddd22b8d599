package caddymodule

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	mk := func() *Handler {
		g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir()}
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
		if got := testutil.ToFloat64(g.metrics.Requests.WithLabelValues(c.endpoint, c.method, c.code)); got != c.want {
			t.Errorf("scimgate_requests_total{%s,%s,%s} = %v, want %v", c.endpoint, c.method, c.code, got, c.want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "scimgate_request_duration_seconds"); err != nil || n == 0 {
		t.Fatalf("duration histogram: %d series, %v", n, err)
	}
}

// TestMetricsMethodBounded: a client chooses the method token, unauthenticated too; the
// method label stays one of a few values however many tokens are sent, so that requests
// cannot grow the registry (each label value is a series kept until the next reload).
func TestMetricsMethodBounded(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	reg := ctx.GetMetricsRegistry()
	g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir()}
	if err := g.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Cleanup() })
	for i := range 20 {
		serve(t, g, fmt.Sprintf("ALICE%d", i), "/scim/v2/Users", nil, "Authorization", "")
	}
	serve(t, g, "GET", "/scim/v2/Users", nil)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "scimgate_request") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					methods[l.GetValue()] = true
				}
			}
		}
	}
	if len(methods) != 2 || !methods["GET"] || !methods["OTHER"] {
		t.Errorf("method labels %v, want GET and OTHER", methods)
	}
	if got := testutil.ToFloat64(g.metrics.Requests.WithLabelValues("Users", "OTHER", "401")); got != 20 {
		t.Errorf("scimgate_requests_total{Users,OTHER,401} = %v, want 20", got)
	}
}

// TestPolicyMetrics: every decision is counted by its result, a policy that cannot decide
// as "error" (and its request denied).
func TestPolicyMetrics(t *testing.T) {
	dir := t.TempDir()
	rego := `package scimgate

decision := {"allow": false, "reasons": ["no groups here"]} if input.resource_type == "Group"

decision := {"allow": true, "skip": true, "reasons": ["out of scope"]} if {
	input.resource_type == "User"
	endswith(input.resource.userName, "@elsewhere.example")
}

decision := {"allow": true} if {
	input.resource_type == "User"
	not endswith(input.resource.userName, "@elsewhere.example")
	input.action != "delete"
}
`
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(rego), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, func(g *Handler) { g.Policy = &PolicyConfig{Dir: dir} })
	before := map[string]float64{}
	for _, r := range []string{"allow", "skip", "deny", "error"} {
		before[r] = testutil.ToFloat64(g.metrics.Decisions.WithLabelValues(r))
	}
	w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "in@contoso.example"})
	id, _ := decodeJSON(t, w)["id"].(string)
	serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "out@elsewhere.example"})
	if w := serve(t, g, "POST", "/scim/v2/Groups", map[string]any{"displayName": "G"}); w.Code != 403 {
		t.Errorf("denied group: %d", w.Code)
	}
	if w := serve(t, g, "DELETE", "/scim/v2/Users/"+id, nil); w.Code != 403 { // no decision for deletes
		t.Errorf("undecided delete: %d %s", w.Code, w.Body)
	}
	for r, want := range map[string]float64{"allow": 1, "skip": 1, "deny": 1, "error": 1} {
		if got := testutil.ToFloat64(g.metrics.Decisions.WithLabelValues(r)) - before[r]; got != want {
			t.Errorf("scimgate_policy_decisions_total{result=%q} grew by %v, want %v", r, got, want)
		}
	}
}
