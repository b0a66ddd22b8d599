package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Defaults of the quick drain run: a few seconds of draining (the 5 calls/s and
// 5,000 changes take 1,000 s; set SCIMGATE_DRAIN_RATE and SCIMGATE_DRAIN_CHANGES to run them).
const (
	quickDrainRate    = 50
	quickDrainChanges = 1000
	// quickStrictChanges is the run against a bucket of one call, whose 429s slow the drain
	// down to a few calls per second.
	quickStrictChanges = 50
)

// TestDrainQuick runs the drain benchmark end to end against a real Caddy and the demo app
// behind its rate limit, and checks what must hold whatever the timing: every create was
// answered at once, every change reached the app exactly once, the outbox is empty with no
// dead letter, and any 429 the app sent was retried only after its Retry-After. The rates
// it reports are not checked: they are the benchmark's measurement.
//
// With a bucket of one call the app refuses any call that comes sooner than 1/rate after
// the one before, which a gateway pacing itself at exactly the rate cannot always avoid
// (scheduling jitter): that run is there for its 429s, each of which must be answered.
func TestDrainQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("drains a real outbox for about a minute")
	}
	for _, tc := range []struct {
		name     string
		appBurst int
		changes  int
	}{
		{"bucket of a second", 0, envInt(envDrainChanges, quickDrainChanges)},
		{"bucket of one call", 1, quickStrictChanges},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := drainConfig{Rate: envFloat(envDrainRate, quickDrainRate), AppBurst: tc.appBurst, Changes: tc.changes, Concurrency: 32}
			var out bytes.Buffer
			rep, err := runDrain(context.Background(), cfg, &out)
			if err != nil {
				t.Fatalf("drain: %v\n%s", err, out.String())
			}
			t.Log("\n" + out.String())
			switch {
			case rep.Unexpected > 0:
				t.Errorf("%d creates not answered 201/202: %v", rep.Unexpected, rep.Samples)
			case !rep.Drained || rep.Pending > 0:
				t.Errorf("the outbox did not drain: %d pending", rep.Pending)
			case rep.DeadLetters > 0:
				t.Errorf("%d dead letters", rep.DeadLetters)
			case rep.RetriedEarly > 0:
				t.Errorf("%d calls for a refused create came before its Retry-After", rep.RetriedEarly)
			case rep.Accounts != cfg.Changes || rep.CreatedTwice > 0:
				t.Errorf("the app created %d accounts (%d twice), want %d once each", rep.Accounts, rep.CreatedTwice, cfg.Changes)
			case rep.AppFailures > 0:
				t.Errorf("%d calls the app let through failed", rep.AppFailures)
			case !rep.OnceMet || !rep.AnsweredMet:
				t.Errorf("verdicts: exactly once %v, 429s answered %v", rep.OnceMet, rep.AnsweredMet)
			}
		})
	}
}

// TestLimitedApp: the benchmark's app refuses a call beyond its bucket with 429 and a
// Retry-After in whole seconds, lets the call through once a token is back, counts both,
// and notices a refused create tried again before its Retry-After.
func TestLimitedApp(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	}))
	defer upstream.Close()
	app, err := newLimitedApp(upstream.URL, 2, 1) // one call every 500 ms
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := app.serve(l)
	defer srv.Close()
	post := func(login string) *http.Response {
		t.Helper()
		resp, err := http.Post("http://"+l.Addr().String()+accountsPath, "application/json", strings.NewReader(`{"login":"`+login+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	if resp := post("a@x.example"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("first call: %d", resp.StatusCode)
	}
	resp := post("b@x.example")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("second call at once: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := post("b@x.example"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("its retry at once: %d", resp.StatusCode)
	}
	time.Sleep(1100 * time.Millisecond) // past the Retry-After: this test is about counting, not timing
	if resp := post("b@x.example"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("after the Retry-After: %d", resp.StatusCode)
	}
	c := app.counts()
	if c.Passed != 2 || c.Refused != 2 || c.Early != 1 || c.Accounts != 2 || c.CreatedTwice != 0 || c.Failed != 0 || c.ByMethod[http.MethodPost] != 2 {
		t.Fatalf("counts %+v", c)
	}
}

// TestDrainFlags: the defaults are the numbers unless the environment says
// otherwise, the app's bucket holds a second's worth by default, and bad values are refused.
func TestDrainFlags(t *testing.T) {
	t.Setenv(envDrainRate, "")
	t.Setenv(envDrainChanges, "")
	cfg, err := parseDrainFlags(nil, io.Discard)
	if err != nil || cfg.Rate != defaultDrainRate || cfg.TargetRate != cfg.Rate || cfg.Changes != defaultDrainChanges || cfg.AppBurst != 5 || cfg.Timeout < 1000*time.Second {
		t.Fatalf("defaults %+v, %v", cfg, err)
	}
	t.Setenv(envDrainRate, "12.5")
	t.Setenv(envDrainChanges, "40")
	cfg, err = parseDrainFlags([]string{"-app-burst", "1"}, io.Discard)
	if err != nil || cfg.Rate != 12.5 || cfg.Changes != 40 || cfg.AppBurst != 1 {
		t.Fatalf("from the environment %+v, %v", cfg, err)
	}
	for _, args := range [][]string{{"-target-rate", "-1"}, {"-rate", "0"}, {"-rate", "-3"}, {"-changes", "0"}, {"-concurrency", "0"}, {"-app-burst", "-1"}, {"-timeout", "-1s"}, {"extra"}} {
		if _, err := parseDrainFlags(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
