package legacy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for breaker tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestBreaker(threshold int, cooldown time.Duration) (*breaker, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	b := newBreaker(threshold, cooldown)
	b.now = clk.now
	return b, clk
}

func TestBreakerStates(t *testing.T) {
	b, clk := newTestBreaker(3, time.Minute)
	fail := func() {
		trial, _, ok := b.allow()
		if !ok {
			t.Fatal("refused while closed")
		}
		b.record(outcomeFailure, trial)
	}
	fail()
	fail()
	b.record(outcomeHealthy, false) // a success resets the count
	fail()
	fail()
	if _, _, ok := b.allow(); !ok {
		t.Fatal("opened before the threshold of consecutive failures")
	}
	b.record(outcomeNeutral, false)
	fail()
	_, wait, ok := b.allow()
	if ok || wait != time.Minute {
		t.Fatalf("allow = %v, wait %v; want open for the cooldown", ok, wait)
	}
	clk.advance(59 * time.Second)
	if _, wait, ok := b.allow(); ok || wait != time.Second {
		t.Fatalf("allow = %v, wait %v; want open for 1s more", ok, wait)
	}
	clk.advance(time.Second)
	trial, _, ok := b.allow()
	if !ok || !trial {
		t.Fatal("no trial after the cooldown")
	}
	if _, _, ok := b.allow(); ok {
		t.Fatal("a second request passed while the trial is in flight")
	}
	b.record(outcomeNeutral, trial) // the trial's caller gave up: another may try
	trial, _, ok = b.allow()
	if !ok || !trial {
		t.Fatal("no new trial after a neutral one")
	}
	b.record(outcomeFailure, trial)
	if _, _, ok := b.allow(); ok {
		t.Fatal("a failed trial must reopen the circuit")
	}
	clk.advance(time.Minute)
	trial, _, _ = b.allow()
	b.record(outcomeHealthy, trial)
	for range 5 {
		if trial, _, ok := b.allow(); !ok || trial {
			t.Fatal("a successful trial must close the circuit")
		}
	}
}

func TestBreakerOneTrialUnderConcurrency(t *testing.T) {
	b, clk := newTestBreaker(1, time.Second)
	b.record(outcomeFailure, false)
	clk.advance(time.Second)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if _, _, ok := b.allow(); ok {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != 1 {
		t.Errorf("%d requests admitted while half-open, want exactly 1", n)
	}
}

func TestBreakerDisabled(t *testing.T) {
	var b *breaker = newBreaker(-1, time.Second)
	for range 100 {
		b.record(outcomeFailure, false)
	}
	if _, _, ok := b.allow(); !ok {
		t.Error("a disabled breaker refused a request")
	}
}

func TestClassifyOutcome(t *testing.T) {
	tests := []struct {
		e    *Error
		want outcome
	}{
		{nil, outcomeHealthy},
		{&Error{Kind: KindStatus, Status: 404}, outcomeHealthy},
		{&Error{Kind: KindStatus, Status: 409}, outcomeHealthy},
		{&Error{Kind: KindStatus, Status: 500}, outcomeFailure},
		{&Error{Kind: KindStatus, Status: 408}, outcomeFailure},
		{&Error{Kind: KindRefused}, outcomeFailure},
		{&Error{Kind: KindTimeout}, outcomeFailure},
		{&Error{Kind: KindTimeout, byCaller: true}, outcomeNeutral},
		{&Error{Kind: KindTooLarge}, outcomeFailure},
		{&Error{Kind: KindInvalidResponse}, outcomeFailure},
		{&Error{Kind: KindBadRedirect}, outcomeFailure},
		{&Error{Kind: KindRateLimited, Status: 429}, outcomeNeutral},
		{&Error{Kind: KindCanceled, byCaller: true}, outcomeNeutral},
	}
	for _, tt := range tests {
		if got := classifyOutcome(tt.e); got != tt.want {
			t.Errorf("classifyOutcome(%+v) = %v, want %v", tt.e, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := &Client{opts: Options{RetryBackoff: 100 * time.Millisecond}, jitterFn: func(d time.Duration) time.Duration { return d }}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 20: maxBackoff} {
		if got := c.backoff(attempt); got != want {
			t.Errorf("backoff(%d) = %v, want %v", attempt, got, want)
		}
	}
	for range 1000 {
		if d := jitter(time.Second); d < time.Second/2 || d > time.Second {
			t.Fatalf("jitter(1s) = %v, want within [0.5s, 1s]", d)
		}
	}
}

// TestMaxCallDuration: the bound counts every attempt at its timeout plus the app's
// rate-limit wait, and the longest wait between attempts (backoff capped, or Retry-After).
func TestMaxCallDuration(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want time.Duration
	}{
		{"defaults", Options{}, 3*(DefaultTimeout+DefaultMaxRetryAfter) + 2*DefaultMaxRetryAfter},
		{"no retries", Options{Timeout: time.Second, MaxRetries: -1, MaxRetryAfter: 2 * time.Second}, 3 * time.Second},
		{"backoff beyond retry-after", Options{Timeout: time.Second, MaxRetries: 3, RetryBackoff: 4 * time.Second, MaxRetryAfter: time.Second},
			4*2*time.Second + 4*time.Second + 8*time.Second + maxBackoff},
	} {
		c, err := New(Options{BaseURL: "http://127.0.0.1:1", Timeout: tc.opts.Timeout, MaxRetries: tc.opts.MaxRetries,
			RetryBackoff: tc.opts.RetryBackoff, MaxRetryAfter: tc.opts.MaxRetryAfter})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.MaxCallDuration(); got != tc.want {
			t.Errorf("%s: MaxCallDuration = %v, want %v", tc.name, got, tc.want)
		}
	}
}
