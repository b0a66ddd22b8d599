package query

import (
	"context"
	"net/http"
	"time"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Full scans: a query that NeedsScan reads and decodes every resource of its type (at
// 20,000 users some 270 ms of CPU and 120 MB allocated, BenchmarkQueryCost), so a few
// clients searching at once could take every core. A ScanLimit lets at most its size run at
// once; a scan that finds every slot taken waits a short time for one, then is refused with
// ErrScansBusy (503). Indexed lookups, reads by id and unfiltered lists never take a slot.
type ScanLimit struct {
	slots chan struct{}
	wait  time.Duration
}

// ErrScansBusy is the answer to a scan that found no slot in time.
var ErrScansBusy = scim.Errorf(http.StatusServiceUnavailable, "",
	"other unindexed searches are running; filter on an indexed attribute (userName, externalId, id, emails.value, displayName) or retry")

// NewScanLimit lets n scans run at once, a scan waiting at most wait for a slot. n < 1 is
// no limit (nil).
func NewScanLimit(n int, wait time.Duration) *ScanLimit {
	if n < 1 {
		return nil
	}
	return &ScanLimit{slots: make(chan struct{}, n), wait: wait}
}

// Acquire takes a slot for a scan, waiting at most the limit's wait; it returns the
// release, to call once the scan's transaction is over. It fails with ErrScansBusy, or
// ctx's error when the request ends first. A nil limit always admits.
func (l *ScanLimit) Acquire(ctx context.Context) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	case <-t.C:
		return nil, ErrScansBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Admit takes a slot for q when it scans (Scans), as Acquire; a query that does not scan
// is admitted at once, with a release that does nothing.
func (l *ScanLimit) Admit(ctx context.Context, q *Query) (release func(), err error) {
	if !q.Scans() {
		return func() {}, nil
	}
	return l.Acquire(ctx)
}

// Slots is how many scans may run at once (0: no limit).
func (l *ScanLimit) Slots() int {
	if l == nil {
		return 0
	}
	return cap(l.slots)
}
