package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/outboxadmin"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// TestQueuedGateway: a gateway whose target delivers through the outbox answers Entra's
// create with 201 while the app fails with 500, journals it as queued, and delivers it once
// the app is back.
func TestQueuedGateway(t *testing.T) {
	app, appURL := startFaultApp(t, "500")
	g := newTargetGateway(t, appURL, func(tc *TargetConfig) {
		tc.Delivery = "queued"
		tc.Queue = &QueueConfig{RetryMin: caddy.Duration(5 * time.Millisecond), RetryMax: caddy.Duration(20 * time.Millisecond)}
	})
	w := serve(t, g, http.MethodPost, "/scim/v2/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada@contoso.example"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("create while the app fails: %d %s", w.Code, w.Body)
	}
	id := decodeJSON(t, w)["id"].(string)
	for i := 0; app.calls.Load() < 2; i++ {
		if i == 2000 {
			t.Fatal("the worker never tried the app")
		}
		time.Sleep(5 * time.Millisecond)
	}
	app.mode.Store("ok")
	native := ""
	for i := 0; native == ""; i++ {
		if i == 2000 {
			t.Fatalf("not delivered: %+v", g.engine.Worker().Stats())
		}
		time.Sleep(5 * time.Millisecond)
		_ = g.store.View(func(tx *store.Tx) error { native, _ = tx.NativeID("app/User", id); return nil })
	}
	recs := journalRecords(t, g.store.journal)
	if recs[0].Outcome != change.Queued || recs[0].Status != http.StatusCreated || recs[len(recs)-1].Outcome != change.Delivered {
		t.Fatalf("records: first %+v, last %+v", recs[0], recs[len(recs)-1])
	}
}

// TestQueueCaddyfile: the delivery and queue options of a target, and what is refused.
func TestQueueCaddyfile(t *testing.T) {
	const head = "scim_gateway {\n target app {\n url http://127.0.0.1:1\n mapping m.json\n"
	g := new(Handler)
	err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(head + " delivery queued\n queue {\n deprovision queued\n max_age 24h\n retry_backoff 2s 10m\n max_concurrent 3\n }\n }\n}"))
	if err != nil {
		t.Fatal(err)
	}
	q := g.Target.Queue
	if g.Target.Delivery != "queued" || q == nil || q.Deprovision != "queued" || time.Duration(q.MaxAge) != 24*time.Hour ||
		time.Duration(q.RetryMin) != 2*time.Second || time.Duration(q.RetryMax) != 10*time.Minute || q.MaxConcurrent != 3 {
		t.Fatalf("target %+v, queue %+v", g.Target, q)
	}
	s, err := g.Target.DeliverySettings()
	if err != nil || s.Mode != outbox.Queued || !s.DeprovisionQueued || s.MaxAge != 24*time.Hour || s.MinBackoff != 2*time.Second || s.MaxConcurrent != 3 {
		t.Fatalf("settings %+v, %v", s, err)
	}
	g = new(Handler)
	err = g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(head + " delivery queued\n queue {\n schedule every 15m\n window mon-fri 22:00-06:00\n window sat,sun 10:00-12:00\n time_zone Europe/Berlin\n }\n }\n}"))
	if err != nil {
		t.Fatal(err)
	}
	s, err = g.Target.DeliverySettings()
	if err != nil || s.Schedule.Every != 15*time.Minute || len(s.Schedule.Windows) != 2 || s.Schedule.Zone.String() != "Europe/Berlin" {
		t.Fatalf("schedule %+v, %v", s.Schedule, err)
	}
	for input, want := range map[string]string{
		" queue {\n schedule hourly\n }\n }\n}":            "schedule takes continuous, or every <duration>",
		" queue {\n schedule every 10ms\n }\n }\n}":        "at least 1s",
		" queue {\n window mon-fri\n }\n }\n}":             "window takes days and hours",
		" queue {\n window someday 01:00-02:00\n }\n }\n}": "want daily, or day names",
		" queue {\n time_zone Mars/Olympus\n }\n }\n}":     "time_zone",
		" delivery later\n }\n}":                           `want immediate, queued or fallback, got "later"`,
		" queue {\n deprovision never\n }\n }\n}":          "deprovision takes immediate or queued",
		" queue {\n max_age 0s\n }\n }\n}":                 "max_age: want a positive duration",
		" queue {\n retry_backoff 10s 1s\n }\n }\n}":       "shorter than the minimum",
		" queue {\n retry_backoff\n }\n }\n}":              "retry_backoff takes a minimum",
		" queue {\n max_concurrent 0\n }\n }\n}":           "max_concurrent: want a positive integer",
		" queue {\n colour red\n }\n }\n}":                 `unrecognized queue option "colour"`,
		" queue {\n max_age 1h\n max_age 2h\n }\n }\n}":    "max_age is set twice",
		" queue extra {\n }\n }\n}":                        "wrong argument count",
		" delivery queued\n delivery immediate\n }\n}":     "delivery is set twice",
	} {
		err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(head + input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", input, err, want)
		}
	}
	// JSON configs are checked at provision.
	for _, tc := range []TargetConfig{{Delivery: "later"}, {Queue: &QueueConfig{Deprovision: "never"}}, {Queue: &QueueConfig{RetryMin: 10, RetryMax: 1}},
		{Queue: &QueueConfig{Windows: []WindowConfig{{Days: "mon", Hours: "9-5"}}}}, {Queue: &QueueConfig{TimeZone: "Nowhere/Else"}}} {
		if _, err := tc.DeliverySettings(); err == nil {
			t.Errorf("%+v: no error", tc)
		}
	}
}

// adminCall sends one request to the outbox admin routes and decodes the JSON answer.
func adminCall(t *testing.T, method, path string) (int, any) {
	t.Helper()
	var h caddy.AdminHandler
	for _, r := range (outboxadmin.OutboxAdmin{}).Routes() {
		if path == r.Pattern || strings.HasPrefix(path, r.Pattern) && strings.HasSuffix(r.Pattern, "/") {
			h = r.Handler
		}
	}
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	if err != nil {
		var ae caddy.APIError
		if !errors.As(err, &ae) {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return ae.HTTPStatus, ae.Message
	}
	var v any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("%s %s: %s", method, path, rec.Body)
	}
	return rec.Code, v
}

// TestOutboxAdminRoutes: the admin routes list targets and tasks, show a dead letter with
// its attempts, retry it with who did it, pause and resume, and refuse what they cannot do
// with the status that says why.
func TestOutboxAdminRoutes(t *testing.T) {
	app, appURL := startFaultApp(t, "400")
	g := newTargetGateway(t, appURL, func(tc *TargetConfig) {
		tc.Name = "admin-routes"
		tc.Delivery = "queued"
		tc.Queue = &QueueConfig{RetryMin: caddy.Duration(5 * time.Millisecond)}
	})
	if w := serve(t, g, http.MethodPost, "/scim/v2/Users", `{"userName":"ada@contoso.example"}`); w.Code != http.StatusCreated {
		t.Fatalf("create: %d", w.Code)
	}
	for i := 0; g.engine.Worker().Stats().Dead == 0; i++ {
		if i == 2000 {
			t.Fatalf("no dead letter: %+v", g.engine.Worker().Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := testutil.ToFloat64(g.metrics.Deliveries.WithLabelValues("admin-routes", "dead")); got != 1 {
		t.Fatalf("scimgate_outbox_deliveries_total{dead} = %v", got)
	}
	if got := outboxGauge(t, "scimgate_outbox_dead_letters", "admin-routes"); got != 1 {
		t.Fatalf("scimgate_outbox_dead_letters = %v", got)
	}
	code, v := adminCall(t, http.MethodGet, "/scimgate/outbox")
	if code != http.StatusOK || !strings.Contains(fmt.Sprint(v), "target:admin-routes") || !strings.Contains(fmt.Sprint(v), "dead:1") {
		t.Fatalf("targets: %d %v", code, v)
	}
	code, v = adminCall(t, http.MethodGet, "/scimgate/outbox/admin-routes?state=dead")
	list, _ := v.([]any)
	if code != http.StatusOK || len(list) != 1 {
		t.Fatalf("dead letters: %d %v", code, v)
	}
	seq := fmt.Sprint(list[0].(map[string]any)["seq"])
	code, v = adminCall(t, http.MethodGet, "/scimgate/outbox/admin-routes/"+seq)
	if code != http.StatusOK || !strings.Contains(fmt.Sprint(v), "outcome:dead") || !strings.Contains(fmt.Sprint(v), "login must not contain spaces") {
		t.Fatalf("show: %d %v", code, v)
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, "/scimgate/outbox/admin-routes/" + seq + "/retry", http.StatusBadRequest}, // no by
		{http.MethodGet, "/scimgate/outbox/admin-routes/" + seq + "/retry?by=x", http.StatusMethodNotAllowed},
		{http.MethodPost, "/scimgate/outbox/admin-routes/" + seq + "/explode?by=x", http.StatusNotFound},
		{http.MethodPost, "/scimgate/outbox/admin-routes/999/drop?by=x", http.StatusNotFound},
		{http.MethodGet, "/scimgate/outbox/admin-routes/abc", http.StatusNotFound},
		{http.MethodGet, "/scimgate/outbox/nosuch", http.StatusNotFound},
		{http.MethodGet, "/scimgate/outbox/admin-routes?state=stuck", http.StatusBadRequest},
		{http.MethodGet, "/scimgate/outbox/admin-routes?colour=red", http.StatusBadRequest},
	} {
		if code, v := adminCall(t, c.method, c.path); code != c.status {
			t.Errorf("%s %s: %d %v, want %d", c.method, c.path, code, v, c.status)
		}
	}
	if code, v := adminCall(t, http.MethodPost, "/scimgate/outbox/admin-routes/pause?by=ops-alice"); code != http.StatusOK {
		t.Fatalf("pause: %d %v", code, v)
	}
	app.mode.Store("ok")
	if code, v := adminCall(t, http.MethodPost, "/scimgate/outbox/admin-routes/"+seq+"/retry?by=ops-alice"); code != http.StatusOK {
		t.Fatalf("retry: %d %v", code, v)
	}
	if code, v := adminCall(t, http.MethodPost, "/scimgate/outbox/admin-routes/resume?by=ops-alice"); code != http.StatusOK {
		t.Fatalf("resume: %d %v", code, v)
	}
	for i := 0; g.engine.Worker().Stats().Pending+g.engine.Worker().Stats().Dead > 0; i++ {
		if i == 2000 {
			t.Fatalf("not delivered after the retry: %+v", g.engine.Worker().Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := outboxGauge(t, "scimgate_outbox_dead_letters", "admin-routes") + outboxGauge(t, "scimgate_outbox_pending", "admin-routes"); got != 0 {
		t.Fatalf("outbox gauges after delivery: %v", got)
	}
	if got := testutil.ToFloat64(g.metrics.Deliveries.WithLabelValues("admin-routes", "delivered")); got != 1 {
		t.Fatalf("scimgate_outbox_deliveries_total{delivered} = %v", got)
	}
	var by []string
	for _, rec := range journalRecords(t, g.store.journal) {
		if rec.Action == change.ActionPause || rec.Action == change.ActionRetry || rec.Action == change.ActionResume {
			by = append(by, string(rec.Action)+":"+rec.Client)
		}
	}
	if strings.Join(by, " ") != "pause:ops-alice retry:ops-alice resume:ops-alice" {
		t.Fatalf("journaled operator actions: %v", by)
	}
}

// gather is what collector c reports when scraped.
func gather(t *testing.T, c prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// outboxGauge reads one of the outbox collector's gauges for target.
func outboxGauge(t *testing.T, name, target string) float64 {
	t.Helper()
	for _, f := range gather(t, outboxCollector{}) {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == target {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s for %s", name, target)
	return 0
}

// TestQueuedAcrossReload: a config reload on the open store hands the outbox's worker to
// the new config, whose target delivers what the old one queued, even in immediate mode.
func TestQueuedAcrossReload(t *testing.T) {
	app, appURL := startFaultApp(t, "500")
	old := newTargetGateway(t, appURL, func(tc *TargetConfig) {
		tc.Delivery = "queued"
		tc.Queue = &QueueConfig{RetryMin: caddy.Duration(5 * time.Millisecond), RetryMax: caddy.Duration(20 * time.Millisecond)}
	})
	w := serve(t, old, http.MethodPost, "/scim/v2/Users", `{"userName":"ada@contoso.example"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("create: %d", w.Code)
	}
	id := decodeJSON(t, w)["id"].(string)
	mapFile := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(faultMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	// The new config on the same store (Caddy provisions it before cleaning up the old).
	next := newTestGateway(t, func(g *Handler) {
		g.DataDir = old.DataDir
		g.Target = &TargetConfig{Name: "app", URL: appURL, Mapping: mapFile, Timeout: caddy.Duration(time.Second), MaxRetries: -1}
	})
	if next.engine.Worker() != old.engine.Worker() {
		t.Fatal("the reload started a second worker for the same target")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// A change of the resource in immediate mode queues behind its waiting create.
	w = serve(t, next, http.MethodPatch, "/scim/v2/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"title","value":"Later"}]}`)
	if w.Code != http.StatusOK {
		t.Fatalf("patch behind the queued create: %d %s", w.Code, w.Body)
	}
	app.mode.Store("ok")
	for i := 0; next.engine.Worker().Stats().Pending > 0; i++ {
		if i == 2000 {
			t.Fatalf("not delivered after the reload: %+v", next.engine.Worker().Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	var native string
	_ = next.store.View(func(tx *store.Tx) error { native, _ = tx.NativeID("app/User", id); return nil })
	if native == "" {
		t.Fatal("no account after the delivery")
	}
}

// TestRolesAreDeliveredImmediately: a role list is computed from the directory as the
// change leaves it, so groups as roles refuse queued and fallback delivery at load.
func TestRolesAreDeliveredImmediately(t *testing.T) {
	for _, mode := range []string{"queued", "fallback"} {
		g := &Handler{
			Tokens:  []Token{{Name: "entra", Value: testToken}},
			DataDir: t.TempDir(),
			Target:  &TargetConfig{Name: "roles", URL: "http://127.0.0.1:9", Mapping: filepath.Join("..", "mappings", "roles-example.json"), Delivery: mode},
		}
		err := provisionHandler(t, g)
		if err == nil || !strings.Contains(err.Error(), "groups as roles") || !strings.Contains(err.Error(), "delivered immediately only") {
			t.Errorf("delivery %s with groups as roles: %v", mode, err)
		}
	}
}
