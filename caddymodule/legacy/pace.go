package legacy

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// pacer slows the client down on the app's rate limit headers, before the app answers 429:
// RateLimit-Remaining and RateLimit-Reset (seconds until the window resets), the
// structured RateLimit header of the IETF drafts ("limit=100, remaining=5, reset=30" or
// "default";r=5;t=30), and the common X-RateLimit-Remaining and X-RateLimit-Reset (seconds,
// or a Unix time). With nothing left in the window, no request is sent until it resets;
// with little left (fewer than low: twice MaxConcurrent), requests are spread evenly over
// the rest of it.
type pacer struct {
	low int // pace from this many remaining requests down

	mu      sync.Mutex
	until   time.Time     // no request before this
	spacing time.Duration // between requests while the window is nearly used up
	ends    time.Time     // when the window the spacing is for resets
}

func newPacer(low int) *pacer { return &pacer{low: low} }

// note reads the rate limit headers of an answer.
func (p *pacer) note(h http.Header, now time.Time) {
	remaining, reset, ok := rateLimitOf(h, now)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case remaining <= 0:
		p.until = laterOf(p.until, now.Add(reset))
		p.spacing = 0
	case remaining < p.low:
		p.spacing, p.ends = reset/time.Duration(remaining+1), now.Add(reset)
	default:
		p.spacing = 0
	}
}

// reserve returns how long the caller must wait before sending, and takes its place.
func (p *pacer) reserve(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.spacing > 0 && !now.Before(p.ends) {
		p.spacing = 0 // the window the spacing was for is over
	}
	at := laterOf(p.until, now)
	if p.spacing > 0 {
		p.until = at.Add(p.spacing)
	}
	return at.Sub(now)
}

// wait blocks for the caller's turn. A wait longer than maxWait, or than the caller's
// deadline allows, fails at once with KindRateLimited and the wait as Retry-After.
func (p *pacer) wait(ctx context.Context, now time.Time, maxWait time.Duration) *Error {
	d := p.reserve(now)
	if d <= 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); d > maxWait || (ok && deadline.Sub(now) < d) {
		return &Error{Kind: KindRateLimited, RetryAfter: d, Err: errRateLimitHeaders}
	}
	if err := sleep(ctx, d); err != nil {
		return contextError(err)
	}
	return nil
}

// maxResetHeader bounds a reset read from a header.
const maxResetHeader = 24 * time.Hour

// rateLimitOf reads the remaining requests of the window and the time until it resets.
func rateLimitOf(h http.Header, now time.Time) (remaining int, reset time.Duration, ok bool) {
	if v := h.Get("RateLimit"); v != "" {
		if r, t, ok := parseStructuredRateLimit(v); ok {
			return r, t, true
		}
	}
	for _, prefix := range []string{"RateLimit-", "X-RateLimit-"} {
		rv, tv := h.Get(prefix+"Remaining"), h.Get(prefix+"Reset")
		if rv == "" || tv == "" {
			continue
		}
		r, err1 := strconv.Atoi(strings.TrimSpace(rv))
		t, err2 := strconv.ParseInt(strings.TrimSpace(tv), 10, 64)
		if err1 != nil || err2 != nil || r < 0 || t < 0 {
			continue
		}
		d := time.Duration(min(t, int64(maxResetHeader/time.Second))) * time.Second
		if t > 1_000_000_000 { // a Unix time (GitHub's X-RateLimit-Reset), not seconds
			d = min(max(time.Unix(t, 0).Sub(now), 0), maxResetHeader)
		}
		return r, d, true
	}
	return 0, 0, false
}

// parseStructuredRateLimit reads "limit=100, remaining=5, reset=30" (draft 03-06) or
// `"policy";r=5;t=30` (draft 07 and later; the first item).
func parseStructuredRateLimit(v string) (int, time.Duration, bool) {
	if i := strings.IndexByte(v, ','); i >= 0 && strings.Contains(v[:i], ";") {
		v = v[:i] // several policies: the first
	}
	r, t := -1, int64(-1)
	for _, part := range strings.FieldsFunc(v, func(c rune) bool { return c == ',' || c == ';' }) {
		k, val, found := strings.Cut(strings.TrimSpace(part), "=")
		if !found {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil || n < 0 {
			continue
		}
		switch strings.ToLower(k) {
		case "remaining", "r":
			r = int(min(n, 1<<30))
		case "reset", "t":
			t = min(n, int64(maxResetHeader/time.Second))
		}
	}
	if r < 0 || t < 0 {
		return 0, 0, false
	}
	return r, time.Duration(t) * time.Second, true
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
