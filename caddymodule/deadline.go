package caddymodule

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The default body_timeout is DefaultBodyTimeoutBase plus DefaultBodyTimeoutPerMiB for each
// started MiB of max_body_bytes (25s for the default 4 MiB): at least 200 KiB/s for the
// largest body allowed, far below what Entra's provisioning service sends from Azure, far
// above what a client trickling a byte at a time reaches.
const (
	DefaultBodyTimeoutBase   = 5 * time.Second
	DefaultBodyTimeoutPerMiB = 5 * time.Second
)

// defaultBodyTimeout is the body deadline for a max_body_bytes of maxBody.
func defaultBodyTimeout(maxBody int64) time.Duration {
	mib := (maxBody + 1<<20 - 1) >> 20
	return DefaultBodyTimeoutBase + time.Duration(mib)*DefaultBodyTimeoutPerMiB
}

// errBodyTimeout says that a request body did not arrive before its deadline.
var errBodyTimeout = errors.New("the request body did not arrive before its deadline")

// armBodyDeadline starts the deadline of a request that has a body: all of it must arrive
// within BodyTimeout of the request reaching the handler, however slowly it trickles.
// Caddy's own read timeouts bound a stall (read_idle_timeout, 1 minute by default) and,
// when set, the whole read (read_timeout); neither stops a client that sends a byte every
// 20 seconds. The deadline is set on the connection (HTTP/1) or stream (HTTP/2 and 3), so
// a read in flight fails when it passes, and it also bounds the drain of a body the
// handler did not read (after a 401, 405 or 415), which net/http does after the handler
// returns. Behind Caddy's idle read timeout (its default) the deadline reaches Caddy's
// body reader, which keeps it as a ceiling for its own. A request without a body gets no
// deadline: on HTTP/1 the connection's background read, already started, would cancel
// the request's context when it passed.
func (g *Handler) armBodyDeadline(req *request) {
	r := req.r
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	now := time.Now()
	req.bodyDeadline = now.Add(time.Duration(g.BodyTimeout))
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil && srv.ReadTimeout > 0 {
		// Setting a deadline replaces the server's: never extend its read_timeout.
		req.bodyDeadline = minTime(req.bodyDeadline, now.Add(time.Duration(srv.ReadTimeout)))
	}
	// Where the writer cannot set a read deadline (a test recorder), bodyReader checks the
	// deadline between reads. Once the body has ended, the deadline needs no clearing: on
	// HTTP/1 net/http clears it when it starts reading the connection in the background
	// (and Caddy's idle read timeout, in front by default, clears its own), and on HTTP/2
	// and 3 a stream deadline passing after the body's end changes nothing.
	_ = http.NewResponseController(req.w).SetReadDeadline(req.bodyDeadline)
}

// bodyReader reads a request body against its deadline: a read that fails because the
// connection's deadline passed, or that starts after the deadline, fails with
// errBodyTimeout. The check between reads is what remains where the writer cannot set a
// read deadline; there, a read already blocked is bounded only by Caddy's server timeouts.
type bodyReader struct {
	body     io.ReadCloser
	deadline time.Time
}

func (b *bodyReader) Close() error { return b.body.Close() }

func (b *bodyReader) Read(p []byte) (int, error) {
	if !b.deadline.IsZero() && !time.Now().Before(b.deadline) {
		return 0, errBodyTimeout
	}
	n, err := b.body.Read(p)
	if err != nil && err != io.EOF && isTimeout(err) { // every body ends with io.EOF: no timeout
		err = errBodyTimeout
	}
	return n, err
}

// isTimeout reports whether err is a read deadline passing (the connection's, the
// stream's, or one of Caddy's read timeouts).
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
