package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// TestQueuedGateway: a gateway whose target delivers through the outbox answers Entra's
// create with 201 while the app fails with 500, journals it as queued, and delivers it once
// the app is back.
func TestQueuedGateway(t *testing.T) {
	app := &faultApp{}
	app.mode.Store("500")
	srv := httptest.NewServer(app)
	defer srv.Close()
	g := newTargetGateway(t, srv.URL, func(tc *TargetConfig) {
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
	s, err := g.Target.deliverySettings()
	if err != nil || s.Mode != outbox.Queued || !s.DeprovisionQueued || s.MaxAge != 24*time.Hour || s.MinBackoff != 2*time.Second || s.MaxConcurrent != 3 {
		t.Fatalf("settings %+v, %v", s, err)
	}
	for input, want := range map[string]string{
		" delivery later\n }\n}":                        `want immediate, queued or fallback, got "later"`,
		" queue {\n deprovision never\n }\n }\n}":       "deprovision takes immediate or queued",
		" queue {\n max_age 0s\n }\n }\n}":              "max_age: want a positive duration",
		" queue {\n retry_backoff 10s 1s\n }\n }\n}":    "shorter than the minimum",
		" queue {\n retry_backoff\n }\n }\n}":           "retry_backoff takes a minimum",
		" queue {\n max_concurrent 0\n }\n }\n}":        "max_concurrent: want a positive integer",
		" queue {\n colour red\n }\n }\n}":              `unrecognized queue option "colour"`,
		" queue {\n max_age 1h\n max_age 2h\n }\n }\n}": "max_age is set twice",
		" queue extra {\n }\n }\n}":                     "wrong argument count",
		" delivery queued\n delivery immediate\n }\n}":  "delivery is set twice",
	} {
		err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(head + input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", input, err, want)
		}
	}
	// JSON configs are checked at provision.
	for _, tc := range []TargetConfig{{Delivery: "later"}, {Queue: &QueueConfig{Deprovision: "never"}}, {Queue: &QueueConfig{RetryMin: 10, RetryMax: 1}}} {
		if _, err := tc.deliverySettings(); err == nil {
			t.Errorf("%+v: no error", tc)
		}
	}
}
