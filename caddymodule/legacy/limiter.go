package legacy

import (
	"context"
	"errors"
	"sync"
	"time"
)

// tokenBucket is a small token-bucket rate limiter. Each request reserves a token at once
// and learns how long to wait for it, so waiters are served in arrival order without a
// goroutine per waiter.
type tokenBucket struct {
	rate  float64 // tokens per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	if rate <= 0 {
		return nil
	}
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// reserve takes a token, possibly one not yet refilled, and returns how long until it is.
func (t *tokenBucket) reserve(now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.After(t.last) {
		t.tokens = min(t.burst, t.tokens+now.Sub(t.last).Seconds()*t.rate)
		t.last = now
	}
	t.tokens--
	if t.tokens >= 0 {
		return 0
	}
	return time.Duration(-t.tokens / t.rate * float64(time.Second))
}

// unreserve gives back a token a caller reserved but will not use. Later reservations
// were computed with it taken, so they may wait slightly longer than needed, never less.
func (t *tokenBucket) unreserve() {
	t.mu.Lock()
	t.tokens = min(t.burst, t.tokens+1)
	t.mu.Unlock()
}

// wait blocks until the caller may send. When the caller's deadline comes before its turn,
// it fails at once with KindRateLimited, rather than holding a place it cannot use.
func (t *tokenBucket) wait(ctx context.Context) *Error {
	if t == nil {
		return nil
	}
	d := t.reserve(time.Now())
	if d <= 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		t.unreserve()
		return &Error{Kind: KindRateLimited, RetryAfter: d}
	}
	if err := sleep(ctx, d); err != nil {
		t.unreserve()
		return contextError(err)
	}
	return nil
}

// semaphore bounds in-flight requests to the backend.
type semaphore chan struct{}

func (s semaphore) acquire(ctx context.Context) *Error {
	select {
	case s <- struct{}{}:
		return nil
	default:
	}
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return contextError(ctx.Err())
	}
}

func (s semaphore) release() { <-s }

// sleep waits for d or until ctx is done, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// contextError turns the caller's context error into an Error; nothing was sent.
func contextError(err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Kind: KindTimeout, Err: err, byCaller: true}
	}
	return &Error{Kind: KindCanceled, Err: err, byCaller: true}
}
