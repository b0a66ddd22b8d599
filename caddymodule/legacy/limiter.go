package legacy

import (
	"context"
	"errors"
	"sync"
	"time"
)

// tokenBucket is a small token-bucket rate limiter. Callers take their turn in arrival
// order, and the caller whose turn it is takes a token only once one is there, by the
// clock at that moment: a token is never promised ahead of time. So when the process is
// held up (a garbage collection, a stalled host) the callers queued behind it do not all
// go at once when it resumes; at most the bucket's burst does, and the rest keep their
// spacing, which is what an app counting calls with a bucket of the same size accepts.
type tokenBucket struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	turn chan struct{} // held by the one caller waiting for a token

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	waiting int // callers queued for a turn or holding it

	granted func(time.Time) // tests: called with mu held at each token taken, with its time
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	if rate <= 0 {
		return nil
	}
	burst = max(burst, 1)
	return &tokenBucket{
		rate: rate, burst: float64(burst), now: time.Now, sleep: sleep,
		turn: make(chan struct{}, 1), tokens: float64(burst), last: time.Now(),
	}
}

// refill adds the tokens earned since the last refill, up to the burst. Called with mu held.
func (t *tokenBucket) refill(now time.Time) {
	if now.After(t.last) {
		t.tokens = min(t.burst, t.tokens+now.Sub(t.last).Seconds()*t.rate)
		t.last = now
	}
}

// take takes a token. Called with mu held, right after refill.
func (t *tokenBucket) take() {
	t.tokens--
	if t.granted != nil {
		t.granted(t.last)
	}
}

// untilToken is how long until a whole token is there. Called with mu held.
func (t *tokenBucket) untilToken() time.Duration {
	if t.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - t.tokens) / t.rate * float64(time.Second))
}

// wait blocks until the caller may send. When the caller's deadline comes before its
// expected turn, it fails at once with KindRateLimited, rather than holding a place it
// cannot use.
func (t *tokenBucket) wait(ctx context.Context) *Error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	t.refill(t.now())
	if t.waiting == 0 && t.tokens >= 1 {
		t.take()
		t.mu.Unlock()
		return nil
	}
	// Expected wait: the callers ahead each take a token, then ours.
	expect := time.Duration((float64(t.waiting) + 1 - t.tokens) / t.rate * float64(time.Second))
	if e := t.beyondDeadline(ctx, expect); e != nil {
		t.mu.Unlock()
		return e
	}
	t.waiting++
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.waiting--
		t.mu.Unlock()
	}()

	select {
	case t.turn <- struct{}{}:
	case <-ctx.Done():
		return contextError(ctx.Err())
	}
	defer func() { <-t.turn }()
	for {
		t.mu.Lock()
		t.refill(t.now())
		d := t.untilToken()
		if d <= 0 {
			t.take()
			t.mu.Unlock()
			return nil
		}
		e := t.beyondDeadline(ctx, d)
		t.mu.Unlock()
		if e != nil {
			return e
		}
		if err := t.sleep(ctx, d); err != nil {
			return contextError(err)
		}
	}
}

// beyondDeadline answers KindRateLimited when the caller's deadline comes within d.
func (t *tokenBucket) beyondDeadline(ctx context.Context, d time.Duration) *Error {
	if deadline, ok := ctx.Deadline(); ok && deadline.Sub(t.now()) < d {
		return &Error{Kind: KindRateLimited, RetryAfter: d}
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
