// Package slots is a counting semaphore whose Acquire waits a bounded time: the gateway's
// limits on work that costs far more than a request's share (large bodies, full scans)
// admit so many at once, and refuse the rest after a short wait rather than queue them.
package slots

import (
	"context"
	"errors"
	"time"
)

// ErrBusy is Acquire's error when no slot freed up in time.
var ErrBusy = errors.New("every slot stayed taken")

// Limit lets its size of holders in at once (nil: no limit).
type Limit struct {
	ch   chan struct{}
	wait time.Duration
}

// New lets n in at once, each waiting at most wait for a slot; n < 1 is no limit (nil).
func New(n int, wait time.Duration) *Limit {
	if n < 1 {
		return nil
	}
	return &Limit{ch: make(chan struct{}, n), wait: wait}
}

// Acquire takes a slot, waiting at most the limit's wait, and returns its release. It
// fails with ErrBusy, or ctx's error when ctx ends first. A nil limit always admits.
func (l *Limit) Acquire(ctx context.Context) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l.ch <- struct{}{}:
		return l.release, nil
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.ch <- struct{}{}:
		return l.release, nil
	case <-t.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Limit) release() { <-l.ch }

// Size is how many may hold a slot at once (0: no limit).
func (l *Limit) Size() int {
	if l == nil {
		return 0
	}
	return cap(l.ch)
}
