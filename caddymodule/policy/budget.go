package policy

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// errOverBudget ends an evaluation that used its timeout. It wraps
// context.DeadlineExceeded, which is what it is, as far as callers are concerned.
var errOverBudget = fmt.Errorf("the evaluation used up its time: %w", context.DeadlineExceeded)

// wallFactor bounds an evaluation in wall-clock time too, at this many times its
// timeout: one that stays off the CPU that long (a print hook blocked on its output, a
// process starved for seconds) is stopped as well.
const wallFactor = 10

// budget stops an evaluation once it has used timeout of CPU time on its thread (the
// caller is locked to it): time the thread waits for a core, at the operating system's or
// Go's scheduler, does not count. Where the thread's CPU time cannot be read it counts
// wall-clock time, as context.WithTimeout would. It checks only when the timeout could
// have run out (a timer, re-armed for what is left), so a decision that finishes in time
// pays one clock read.
type budget struct {
	clock   threadClock
	cpu     bool // clock works; otherwise wall-clock time counts
	start   time.Time
	used0   time.Duration
	timeout time.Duration
	expire  func()
	stopped atomic.Bool
	timer   atomic.Pointer[time.Timer]
}

// startBudget starts counting for the calling thread; expire is called (from another
// goroutine) once the evaluation is over its budget, unless stop came first.
func startBudget(timeout time.Duration, expire func()) *budget {
	b := &budget{start: time.Now(), timeout: timeout, expire: expire}
	if b.clock, b.cpu = threadCPUClock(); b.cpu {
		b.used0, b.cpu = b.clock.read()
	}
	b.arm(timeout)
	return b
}

func (b *budget) arm(d time.Duration) {
	if !b.stopped.Load() {
		b.timer.Store(time.AfterFunc(d, b.check))
	}
}

// check runs when the budget could be spent: it is when the thread has used timeout of
// CPU, or wallFactor times timeout has passed; otherwise it looks again when what is left
// could be.
func (b *budget) check() {
	if b.stopped.Load() {
		return
	}
	wallLeft := wallFactor*b.timeout - time.Since(b.start)
	left := b.timeout - time.Since(b.start)
	if b.cpu {
		used, ok := b.clock.read()
		left = min(b.timeout-(used-b.used0), wallLeft)
		if !ok {
			left = 0
		}
	}
	if left <= 0 {
		b.expire()
		return
	}
	b.arm(left)
}

// stop ends the count; expire is not called after it returns unless a check had begun.
func (b *budget) stop() {
	b.stopped.Store(true)
	if t := b.timer.Load(); t != nil {
		t.Stop()
	}
}
