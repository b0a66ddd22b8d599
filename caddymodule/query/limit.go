package query

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/slots"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Full scans: a query that NeedsScan reads and decodes every resource of its type (at
// 20,000 users some 270 ms of CPU and 120 MB allocated, BenchmarkQueryCost), so a few
// clients searching at once could take every core. A ScanLimit lets at most its size run at
// once; a scan that finds every slot taken waits a short time for one, then is refused with
// ErrScansBusy (503). Indexed lookups, reads by id and unfiltered lists never take a slot.
type ScanLimit struct{ l *slots.Limit }

// ErrScansBusy is the answer to a scan that found no slot in time.
var ErrScansBusy = scim.Errorf(http.StatusServiceUnavailable, "",
	"other unindexed searches are running; filter on an indexed attribute (userName, externalId, id, emails.value, displayName) or retry")

// NewScanLimit lets n scans run at once, a scan waiting at most wait for a slot. n < 1 is
// no limit (nil).
func NewScanLimit(n int, wait time.Duration) *ScanLimit {
	l := slots.New(n, wait)
	if l == nil {
		return nil
	}
	return &ScanLimit{l}
}

// Acquire takes a slot for a scan, waiting at most the limit's wait; it returns the
// release, to call once the scan's transaction is over. It fails with ErrScansBusy, or
// ctx's error when the request ends first. A nil limit always admits.
func (l *ScanLimit) Acquire(ctx context.Context) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	release, err = l.l.Acquire(ctx)
	if errors.Is(err, slots.ErrBusy) {
		return nil, ErrScansBusy
	}
	return release, err
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
	return l.l.Size()
}
