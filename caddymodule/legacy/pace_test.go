package legacy

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/apptest"
)

func TestRateLimitHeaders(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name   string
		header http.Header
		r      int
		reset  time.Duration
		ok     bool
	}{
		{"ietf fields", http.Header{"Ratelimit-Remaining": {"4"}, "Ratelimit-Reset": {"30"}}, 4, 30 * time.Second, true},
		{"x- delta", http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"12"}}, 0, 12 * time.Second, true},
		{"x- unix time", http.Header{"X-Ratelimit-Remaining": {"1"}, "X-Ratelimit-Reset": {"1800000020"}}, 1, 20 * time.Second, true},
		{"structured draft 03", http.Header{"Ratelimit": {"limit=100, remaining=3, reset=9"}}, 3, 9 * time.Second, true},
		{"structured draft 07", http.Header{"Ratelimit": {`"default";r=2;t=5, "daily";r=900;t=3600`}}, 2, 5 * time.Second, true},
		{"remaining only", http.Header{"Ratelimit-Remaining": {"4"}}, 0, 0, false},
		{"garbage", http.Header{"Ratelimit-Remaining": {"x"}, "Ratelimit-Reset": {"-3"}}, 0, 0, false},
	}
	for _, c := range cases {
		r, reset, ok := rateLimitOf(c.header, now)
		if r != c.r || reset != c.reset || ok != c.ok {
			t.Errorf("%s: got %d, %v, %v; want %d, %v, %v", c.name, r, reset, ok, c.r, c.reset, c.ok)
		}
	}
}

// TestPacerSpreadsTheRest: with nothing left, no request before the reset; with little
// left, requests are spread over the rest of the window; with plenty, no wait.
func TestPacerSpreadsTheRest(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := newPacer(10)
	p.note(http.Header{"Ratelimit-Remaining": {"50"}, "Ratelimit-Reset": {"10"}}, now)
	if d := p.reserve(now); d != 0 {
		t.Fatalf("plenty left: wait %v, want 0", d)
	}
	p.note(http.Header{"Ratelimit-Remaining": {"4"}, "Ratelimit-Reset": {"10"}}, now)
	for i, want := range []time.Duration{0, 2 * time.Second, 4 * time.Second} {
		if d := p.reserve(now); d != want {
			t.Fatalf("request %d with 4 left in 10s: wait %v, want %v", i, d, want)
		}
	}
	p = newPacer(10)
	p.note(http.Header{"Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {"7"}}, now)
	if d := p.reserve(now.Add(time.Second)); d != 6*time.Second {
		t.Fatalf("none left: wait %v, want the 6s to the reset", d)
	}
	if d := p.reserve(now.Add(8 * time.Second)); d != 0 {
		t.Fatalf("after the reset: wait %v, want 0", d)
	}
}

// TestAppRateLimitHoldsCalls: an app that says its window is used up for a minute gets
// no further call; the caller fails at once with the wait as Retry-After (Entra: 503).
func TestAppRateLimitHoldsCalls(t *testing.T) {
	app := apptest.Start(t, apptest.Options{Auth: apptest.AuthAPIKey, Key: testAPIKey, RateLimit: &apptest.RateLimit{Remaining: 0, Reset: 60}})
	ak, _ := NewAPIKey("X-Api-Key", "", testAPIKey)
	c := newTestClient(t, app.URL, Options{Auth: ak})
	if _, err := c.Do(context.Background(), Request{Path: "/api/users"}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(context.Background(), Request{Path: "/api/users"})
	e := asError(t, err)
	if e.Kind != KindRateLimited || e.RetryAfter < 59*time.Second || e.RetryAfter > 60*time.Second {
		t.Fatalf("second call: %v (retry after %v), want rate_limited with about 60s", err, e.RetryAfter)
	}
	if se, ra := ToSCIM(change.Update, resp, err); se.Status != http.StatusServiceUnavailable || ra != 60*time.Second {
		t.Fatalf("Entra gets %d with Retry-After %v, want 503 and 60s", se.Status, ra)
	}
	if n := app.APIRequests.Load(); n != 1 {
		t.Fatalf("the app got %d calls, want 1", n)
	}
}
