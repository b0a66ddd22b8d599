package legacy

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// sleepClock drives a tokenBucket: its sleep hands the requested duration to the test,
// which moves the clock (by that much, or more to play a stalled process) and wakes the
// sleeper.
type sleepClock struct {
	fakeClock
	sleeps chan time.Duration
	wake   chan struct{}
}

func newSleepClock() *sleepClock {
	return &sleepClock{fakeClock: fakeClock{t: time.Now()}, sleeps: make(chan time.Duration), wake: make(chan struct{})}
}

func (c *sleepClock) sleep(ctx context.Context, d time.Duration) error {
	select {
	case c.sleeps <- d:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-c.wake
	return nil
}

// TestTokenBucketAfterStall: callers queued for tokens while the process was held up do not
// all go at once when it resumes. At most the burst goes together; the rest keep the
// spacing of the rate, counted from the moment they actually go. (A bucket that promised
// each waiter its time in advance sent them all together after the stall, and an app
// counting calls with a bucket of the same size refused the excess: issue 14's drain saw
// 30-44 refused calls per run on a host that froze the process now and then.)
func TestTokenBucketAfterStall(t *testing.T) {
	for _, tc := range []struct {
		burst, callers int
	}{{1, 6}, {3, 8}} {
		const rate = 5.0
		clock := newSleepClock()
		tb := newTokenBucket(rate, tc.burst)
		tb.now, tb.sleep = clock.now, clock.sleep
		tb.tokens, tb.last = 0, clock.now() // the bucket is empty: everyone waits
		// Each grant's time, taken when the token is: a time read after wait returns may
		// already hold the next caller's sleep (the race detector's pace made two grants
		// look simultaneous).
		var granted []time.Time // under tb.mu
		tb.granted = func(at time.Time) { granted = append(granted, at) }

		var wg sync.WaitGroup
		for range tc.callers {
			wg.Go(func() {
				if e := tb.wait(context.Background()); e != nil {
					t.Error(e)
				}
			})
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()

		// The first sleeper is held up for 3 s beyond its wait (the process stalled);
		// every later sleep lasts what was asked.
		stall := 3 * time.Second
		for finished := false; !finished; {
			select {
			case d := <-clock.sleeps:
				clock.advance(d + stall)
				stall = 0
				clock.wake <- struct{}{}
			case <-done:
				finished = true
			case <-time.After(10 * time.Second):
				tb.mu.Lock()
				n := len(granted)
				tb.mu.Unlock()
				t.Fatalf("burst %d: the callers did not finish (granted %d of %d)", tc.burst, n, tc.callers)
			}
		}

		slices.SortFunc(granted, func(a, b time.Time) int { return a.Compare(b) })
		if len(granted) != tc.callers {
			t.Fatalf("burst %d: granted %d, want %d", tc.burst, len(granted), tc.callers)
		}
		// What a bucket of the same rate and size lets through: in any stretch of time w,
		// at most burst + rate*w calls. Every pair of grants i < j must fit.
		for i := range granted {
			for j := i + 1; j < len(granted); j++ {
				w := granted[j].Sub(granted[i]).Seconds()
				if calls := float64(j - i + 1); calls > float64(tc.burst)+rate*w+1e-9 {
					t.Errorf("burst %d: %v calls within %.3f s, a bucket of %d at %v/s allows %.1f (grants: %v)",
						tc.burst, calls, w, tc.burst, rate, float64(tc.burst)+rate*w, offsets(granted))
				}
			}
		}
	}
}

func offsets(ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(ts[0])
	}
	return out
}

// TestTokenBucketDeadline: a caller whose deadline comes before its turn (counting the
// callers ahead of it) fails at once with a Retry-After, and takes no token.
func TestTokenBucketDeadline(t *testing.T) {
	clock := newSleepClock()
	tb := newTokenBucket(2, 1)
	tb.now, tb.sleep = clock.now, clock.sleep
	if e := tb.wait(context.Background()); e != nil {
		t.Fatal(e)
	}
	tight, tcancel := context.WithDeadline(context.Background(), clock.now().Add(100*time.Millisecond))
	defer tcancel()
	e := tb.wait(tight) // the next token is 500 ms away, the deadline 100 ms
	if e == nil || e.Kind != KindRateLimited || e.RetryAfter != 500*time.Millisecond {
		t.Fatalf("wait = %+v, want rate_limited with RetryAfter 500ms", e)
	}
	tb.mu.Lock()
	tokens, waiting := tb.tokens, tb.waiting
	tb.mu.Unlock()
	if tokens != 0 || waiting != 0 {
		t.Errorf("after a refused wait: tokens %v waiting %d, want 0 and 0", tokens, waiting)
	}
}
