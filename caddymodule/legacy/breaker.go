package legacy

import (
	"sync"
	"time"
)

// outcome is what one attempt tells the circuit breaker about the backend's health.
type outcome int

const (
	// outcomeNeutral says nothing about the backend: the caller gave up, or the backend
	// asked us to slow down (429), which is not an outage.
	outcomeNeutral outcome = iota
	// outcomeHealthy: the backend answered (2xx, 3xx or a 4xx about the request).
	outcomeHealthy
	// outcomeFailure: an outage-type failure (refused, timeout, 5xx, unusable response).
	outcomeFailure
)

type breakerState int

const (
	stateClosed breakerState = iota
	stateOpen
	stateHalfOpen
)

// breaker is a consecutive-failure circuit breaker. Closed, it counts outage-type failures
// and opens at the threshold. Open, it fails fast until the cooldown has passed; then it is
// half-open and lets exactly one trial request through, whose outcome closes or reopens it.
// The point is to stop piling requests (and Entra retries) onto a backend that is down.
type breaker struct {
	threshold int
	cooldown  time.Duration
	now       func() time.Time

	mu        sync.Mutex
	state     breakerState
	failures  int
	openUntil time.Time
	trial     bool   // a half-open trial request is in flight
	cause     string // what the last outage-type failure was, for the errors of an open circuit
}

func newBreaker(threshold int, cooldown time.Duration) *breaker {
	if threshold < 0 {
		return nil
	}
	return &breaker{threshold: threshold, cooldown: cooldown, now: time.Now}
}

// allow asks to send one attempt. It returns whether the attempt is the half-open trial
// (its outcome must be reported with isTrial set), or, when refused, how long until the
// breaker could admit a request.
func (b *breaker) allow() (isTrial bool, wait time.Duration, ok bool) {
	if b == nil {
		return false, 0, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateOpen:
		now := b.now()
		if now.Before(b.openUntil) {
			return false, b.openUntil.Sub(now), false
		}
		b.state = stateHalfOpen
		fallthrough
	case stateHalfOpen:
		if b.trial {
			return false, b.cooldown, false
		}
		b.trial = true
		return true, 0, true
	}
	return false, 0, true
}

// record reports the outcome of an admitted attempt.
func (b *breaker) record(o outcome, isTrial bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if isTrial {
		b.trial = false
	}
	switch o {
	case outcomeHealthy:
		b.state, b.failures = stateClosed, 0
	case outcomeFailure:
		switch {
		case b.state == stateHalfOpen && isTrial:
			b.open()
		case b.state == stateClosed:
			b.failures++
			if b.failures >= b.threshold {
				b.open()
			}
		}
	}
}

// noteCause remembers what an outage-type failure was (its kind and status), so that a
// request refused while the circuit is open can say why it is open.
func (b *breaker) noteCause(cause string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cause = cause
}

// lastCause is what the last outage-type failure was ("" when there was none).
func (b *breaker) lastCause() string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cause
}

func (b *breaker) open() {
	b.state = stateOpen
	b.failures = 0
	b.openUntil = b.now().Add(b.cooldown)
}
