package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/slots"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// Large bodies: a request body above LargeBodyBytes costs the gateway many times its size
// while it is decoded, decided and committed (a PATCH of 100,000 members: a 5 MB body, some
// 150 MB of memory for the commit of 200,000 membership edges), so at most MaxLargeBodies
// such requests are processed at once. A request that finds every slot taken waits up to
// largeBodyWait for one, then answers 503 with Retry-After: memory stays bounded however
// many arrive together. Smaller requests never wait.
const (
	DefaultLargeBodyBytes = 1 << 20
	DefaultMaxLargeBodies = 2
	largeBodyWait         = 2 * time.Second
	largeBodyRetryAfter   = "5"
)

var errLargeBodiesBusy = errors.New("too many large requests at once")

// acquireLarge takes one of l's slots, waiting at most its wait; it returns the release.
func acquireLarge(ctx context.Context, l *slots.Limit) (func(), error) {
	release, err := l.Acquire(ctx)
	if errors.Is(err, slots.ErrBusy) {
		return nil, errLargeBodiesBusy
	}
	return release, err
}

// admitReader passes a body through, taking a large-body slot for the request once more
// than threshold bytes have come (at once when Content-Length says so).
type admitReader struct {
	r         io.Reader
	n         int64
	threshold int64
	admit     func() error // takes the slot; called at most once
	admitted  bool
}

func (a *admitReader) Read(p []byte) (int, error) {
	if !a.admitted && a.n > a.threshold {
		a.admitted = true
		if err := a.admit(); err != nil {
			return 0, err
		}
	}
	n, err := a.r.Read(p)
	a.n += int64(n)
	if !a.admitted && a.n > a.threshold && err == io.EOF {
		a.admitted = true
		if aerr := a.admit(); aerr != nil {
			return n, aerr
		}
	}
	return n, err
}

// admitLarge is the admit function of a request: it takes a slot of g's large bodies for
// req, released when the request is done.
func (g *Handler) admitLarge(req *request) func() error {
	return func() error {
		release, err := acquireLarge(req.r.Context(), g.largeBodies)
		if err != nil {
			return err
		}
		req.release = append(req.release, release)
		return nil
	}
}

// largeBodiesBusy is the answer when no large-body slot freed up in time.
func largeBodiesBusy(req *request) error {
	req.w.Header().Set("Retry-After", largeBodyRetryAfter)
	return scim.Errorf(http.StatusServiceUnavailable, "", "the gateway is processing other large requests (over %d bytes); retry later", req.largeBodyBytes)
}
