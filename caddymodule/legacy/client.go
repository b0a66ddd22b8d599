package legacy

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/scimgate/scimgate/caddymodule/fleet"
)

// Request is one native call. Path is relative to the base URL and may carry a query;
// the caller has already escaped ids in it.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	// Idempotent marks a call that may be repeated after it was sent (GET, HEAD, PUT,
	// DELETE and OPTIONS are idempotent anyway). Mark a POST or PATCH only when the backend
	// guarantees repeating it has no further effect.
	Idempotent bool
	// Expect is what the answer must look like to count (nil: the defaults of Expect).
	Expect *Expect
}

// Response is a 2xx answer (or, alongside an *Error of KindStatus or KindRateLimited,
// the non-2xx answer).
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Attempts is how many times the request was tried.
	Attempts int
	// Duration is the time Do took, including waits for limits and retries.
	Duration time.Duration
	// Redirected: the answer came from another URL than the call's, after a redirect
	// (within the base URL's origin, method kept; see checkRedirect).
	Redirected bool
}

// Client calls one legacy backend. It is safe for concurrent use.
type Client struct {
	opts     Options
	base     *url.URL
	baseStr  string
	http     *http.Client
	own      *http.Transport // the default transport, when New built it
	retired  atomic.Bool     // CloseIdleConnections was called: calls still running close theirs
	sem      semaphore
	limiter  *tokenBucket
	pace     *pacer
	breaker  *breaker
	now      func() time.Time
	jitterFn func(time.Duration) time.Duration
}

// New validates opts, applies the defaults and builds a Client.
func New(opts Options) (*Client, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	base, err := parseBaseURL(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		opts:     opts,
		base:     base,
		baseStr:  base.String(),
		sem:      make(semaphore, opts.MaxConcurrent),
		limiter:  newTokenBucket(opts.RateLimit, opts.RateBurst),
		pace:     newPacer(2 * opts.MaxConcurrent),
		breaker:  newBreaker(opts.CircuitFailures, opts.CircuitCooldown),
		now:      time.Now,
		jitterFn: jitter,
	}
	rt := opts.Transport
	if rt == nil {
		c.own = newTransport(opts)
		rt = c.own
	}
	c.http = &http.Client{Transport: rt, CheckRedirect: c.checkRedirect}
	return c, nil
}

// CloseIdleConnections releases pooled connections, for a Caddy Cleanup: those idle now,
// and each that a call still running (a request of the old config, a delivery in flight)
// returns to the pool when it ends, so that a client a reload left behind holds none. It
// closes only the transport New built; a transport passed in Options belongs to the caller.
func (c *Client) CloseIdleConnections() {
	if c.own != nil {
		c.retired.Store(true)
		c.own.CloseIdleConnections()
	}
}

// Do sends r, retrying where that is safe, and returns the 2xx response. Any other outcome
// is an *Error; for a non-2xx answer the *Response is returned too, so the caller can
// inspect the native body. An invalid Request (a bad method or a path that leaves the
// base URL) is a plain error: it is a configuration bug, not a backend failure.
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	start := c.now()
	target, err := c.resolve(r.Path)
	if err != nil {
		return nil, err
	}
	if r.Method == "" {
		r.Method = http.MethodGet
	}
	if !validMethod(r.Method) {
		return nil, fmt.Errorf("legacy: invalid HTTP method %q", r.Method)
	}
	idempotent := r.Idempotent || idempotentMethod(r.Method)
	defer func() {
		if c.retired.Load() {
			c.own.CloseIdleConnections() // the answer was read: its connection is idle
		}
	}()
	for attempt := 1; ; attempt++ {
		resp, e := c.attempt(ctx, r, target)
		if resp != nil {
			resp.Attempts, resp.Duration = attempt, c.now().Sub(start)
		}
		if e == nil {
			return resp, nil
		}
		e.Attempts = attempt
		wait, retry := c.retryWait(e, idempotent, attempt)
		if !retry || !fitsDeadline(ctx, wait) || sleep(ctx, wait) != nil {
			return resp, e
		}
	}
}

// resolve appends a relative path (with an optional query) to the base URL. A path that
// would leave the base URL's origin is rejected, so a native id cannot redirect a call.
func (c *Client) resolve(p string) (string, error) {
	if strings.Contains(p, "://") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "#\\") {
		return "", fmt.Errorf("legacy: request path must be relative to the base URL")
	}
	for _, r := range p {
		if r < 0x21 || r == 0x7f {
			return "", fmt.Errorf("legacy: request path contains a space or control character")
		}
	}
	s := c.baseStr + "/" + strings.TrimPrefix(p, "/")
	u, err := url.Parse(s)
	if err != nil || u.Scheme != c.base.Scheme || u.Host != c.base.Host {
		return "", fmt.Errorf("legacy: request path does not form a URL under the base URL")
	}
	return s, nil
}

// attempt sends the request once, within the breaker, the rate limit, the concurrency
// limit and the per-attempt timeout.
func (c *Client) attempt(ctx context.Context, r Request, target string) (*Response, *Error) {
	isTrial, wait, ok := c.breaker.allow()
	if !ok {
		e := &Error{Kind: KindCircuitOpen, RetryAfter: wait}
		if cause := c.breaker.lastCause(); cause != "" {
			e.Err = fmt.Errorf("the last failure before the pause: %s", cause)
		}
		return nil, e
	}
	resp, e := c.admitted(ctx, r, target)
	o := classifyOutcome(e)
	if o == outcomeFailure {
		c.breaker.noteCause(e.Cause())
	}
	c.breaker.record(o, isTrial)
	return resp, e
}

// admitted waits for a concurrency slot, then for the rate limit (the client's own, and
// the app's as its headers announce it), then sends. The slot comes first so that a call
// given its turn by the rate limit goes at once, not after waiting for a slot with others
// given theirs meanwhile (they would reach the app together).
func (c *Client) admitted(ctx context.Context, r Request, target string) (*Response, *Error) {
	if e := c.sem.acquire(ctx); e != nil {
		return nil, e
	}
	defer c.sem.release()
	if e := c.limiter.wait(ctx); e != nil {
		return nil, e
	}
	if e := c.pace.wait(ctx, c.now(), c.opts.MaxRetryAfter); e != nil {
		return nil, e
	}
	return c.send(ctx, r, target)
}

// send performs one HTTP exchange and reads the bounded body. When the app answers 401 to
// a credential that can be renewed (an OAuth token it no longer accepts), the exchange is
// made once more with a fresh one: a 401 says the app did not act on the request.
func (c *Client) send(ctx context.Context, r Request, target string) (*Response, *Error) {
	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{WroteHeaders: func() { sent.Store(true) }}
	tctx := httptrace.WithClientTrace(actx, trace)
	for renewed := false; ; renewed = true {
		req, err := http.NewRequestWithContext(tctx, r.Method, target, bodyReader(r.Body))
		if err != nil {
			return nil, &Error{Kind: KindInvalidResponse, Err: err}
		}
		req.Header = requestHeader(r)
		renew, e := c.authorize(actx, req)
		if e != nil {
			return nil, e
		}
		// A call made for a fleet job (a queued delivery, a scheduled reconcile) goes only
		// while this gateway still holds the job: once it is lost another gateway may be
		// making the same calls.
		if err := fleet.Check(ctx); err != nil {
			return nil, &Error{Kind: KindCanceled, Err: err, byCaller: true}
		}
		hresp, err := c.http.Do(req)
		if err != nil {
			return nil, transportError(ctx, actx, err, sent.Load())
		}
		if hresp.StatusCode == http.StatusUnauthorized && renew != nil && !renewed && renew() {
			_, _ = io.Copy(io.Discard, io.LimitReader(hresp.Body, 64<<10)) // reuse the connection
			hresp.Body.Close()
			continue
		}
		resp, e := c.receive(ctx, actx, hresp)
		if e != nil {
			return nil, e
		}
		c.pace.note(resp.Header, c.now())
		e = checkAnswer(r.Expect, resp, c.now())
		if e != nil && e.Message != "" {
			// An app that echoes the request in its error (a debug page, a JSON error with
			// the headers) would hand the gateway's credentials to Entra and the journal:
			// they are replaced in the whole body, before the message is cut from it.
			if secrets := secretsOf(req); len(secrets) > 0 {
				e.Message = extractMessage(scrubValues(resp.Body, secrets))
			}
		}
		return resp, e
	}
}

// authorize applies the target's credentials.
func (c *Client) authorize(ctx context.Context, req *http.Request) (func() bool, *Error) {
	if c.opts.Auth == nil {
		return nil, nil
	}
	renew, err := c.opts.Auth.Apply(ctx, req)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Kind: KindAuth, Err: errors.New("the credential could not be applied")}
		}
		return nil, e
	}
	return renew, nil
}

// receive reads the answer's bounded body.
func (c *Client) receive(ctx, actx context.Context, hresp *http.Response) (*Response, *Error) {
	defer hresp.Body.Close()
	body, e := c.readBody(hresp)
	if e != nil {
		if e.Err != nil {
			e = transportError(ctx, actx, e.Err, true)
		}
		e.Status = hresp.StatusCode
		return nil, e
	}
	if jsonDeeperThan(body, MaxAnswerDepth) {
		return nil, unproven(hresp.StatusCode, "an answer nested deeper than %d levels (%s), which no application's API answers", MaxAnswerDepth, describe(mediaType(hresp.Header.Get("Content-Type")), len(body)))
	}
	redirected := hresp.Request != nil && hresp.Request.Response != nil // a redirect led here
	return &Response{Status: hresp.StatusCode, Header: hresp.Header, Body: body, Redirected: redirected}, nil
}

// readBody reads at most MaxResponseBytes; more is KindTooLarge (the rest is not read).
// A gzip answer that Go's transport left compressed (the target's or the mapping's headers
// asked for gzip themselves, so the transport did not) is decompressed, within the bound.
func (c *Client) readBody(hresp *http.Response) ([]byte, *Error) {
	limit := c.opts.MaxResponseBytes
	if hresp.ContentLength > limit {
		return nil, &Error{Kind: KindTooLarge, sent: true}
	}
	var r io.Reader = hresp.Body
	if !hresp.Uncompressed && strings.EqualFold(strings.TrimSpace(hresp.Header.Get("Content-Encoding")), "gzip") {
		zr, err := gzip.NewReader(hresp.Body)
		if err != nil {
			return nil, &Error{Err: fmt.Errorf("the answer's gzip body: %w", err), sent: true}
		}
		defer zr.Close()
		r = zr
		hresp.Header.Del("Content-Encoding")
		hresp.Header.Del("Content-Length")
	}
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, &Error{Err: err, sent: true}
	}
	if int64(len(body)) > limit {
		return nil, &Error{Kind: KindTooLarge, sent: true}
	}
	return asUTF8(hresp.Header.Get("Content-Type"), body), nil
}

// checkRedirect follows at most maxRedirects redirects, and only within the base URL's
// origin: a redirect elsewhere could leak the gateway's credentials or act on another
// system. A redirect that would change the call's method is not followed: net/http turns a
// POST, PUT, PATCH or DELETE answered 301, 302 or 303 into a GET of the new URL (a sign-in
// page, typically), whose answer says nothing about the write, so the 3xx itself is the
// answer (an outage, see checkAnswer). 307 and 308 repeat the method and body, and a GET
// follows any of them.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return errTooManyRedirects
	}
	if !sameOrigin(req.URL, c.base) {
		return errCrossOriginRedirect
	}
	if len(via) > 0 && req.Method != via[0].Method {
		return http.ErrUseLastResponse
	}
	return nil
}

// retryWait decides whether a failed attempt is repeated, and after how long.
func (c *Client) retryWait(e *Error, idempotent bool, attempt int) (time.Duration, bool) {
	if attempt > c.opts.MaxRetries {
		return 0, false
	}
	switch {
	case e.byCaller:
		return 0, false // the caller's context is done
	case !e.sent && (e.Kind == KindRefused || e.Kind == KindTimeout):
		// Nothing reached the backend: repeating cannot duplicate anything.
		return c.backoff(attempt), true
	case !idempotent:
		return 0, false
	case e.Kind == KindTimeout:
		return c.backoff(attempt), true
	case e.Kind == KindRateLimited && e.Status == http.StatusTooManyRequests,
		e.Kind == KindStatus && (e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout):
		if e.RetryAfter > c.opts.MaxRetryAfter {
			return 0, false // give up now and pass the backend's Retry-After on
		}
		if e.RetryAfter > 0 {
			return e.RetryAfter, true
		}
		return c.backoff(attempt), true
	}
	return 0, false
}

// backoff is exponential in the attempt number, capped, with jitter so that many callers
// that failed together do not retry together.
func (c *Client) backoff(attempt int) time.Duration {
	return c.jitterFn(c.backoffCap(attempt))
}

// jitter returns a duration uniformly distributed in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// fitsDeadline reports whether waiting d still leaves the caller's context alive: a retry
// that cannot complete is not worth waiting for.
func fitsDeadline(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

// classifyOutcome tells the breaker what an attempt says about the backend's health.
func classifyOutcome(e *Error) outcome {
	if e == nil {
		return outcomeHealthy
	}
	switch e.Kind {
	case KindStatus:
		if e.Status >= 500 || e.Status == http.StatusRequestTimeout {
			return outcomeFailure
		}
		return outcomeHealthy
	case KindRefused, KindTimeout, KindTooLarge, KindInvalidResponse, KindBadRedirect, KindUnproven:
		if e.byCaller {
			return outcomeNeutral
		}
		return outcomeFailure
	}
	return outcomeNeutral
}

func bodyReader(b []byte) io.Reader {
	if len(b) == 0 {
		return nil
	}
	return bytes.NewReader(b)
}

// requestHeader copies the caller's headers and adds the JSON defaults it did not set.
func requestHeader(r Request) http.Header {
	h := r.Header.Clone()
	if h == nil {
		h = make(http.Header, 2)
	}
	if h.Get("Accept") == "" {
		h.Set("Accept", "application/json")
	}
	if len(r.Body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	return h
}

func idempotentMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

// validMethod accepts an RFC 9110 token, as net/http does.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		ch := m[i]
		if ch <= ' ' || ch >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, ch) >= 0 {
			return false
		}
	}
	return true
}

// sameOrigin compares scheme, host and port, with default ports made explicit.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// MaxCallDuration is the longest Do takes for one request once it holds a connection slot
// (MaxConcurrent) and its turn under RateLimit: every attempt (1 + MaxRetries) waiting up to
// MaxRetryAfter for the app's rate-limit window and then running to its Timeout, with the
// longest wait between attempts (the capped backoff, or a Retry-After of up to
// MaxRetryAfter). The waits for a slot and for the rate limit, and an OAuth token request,
// have no bound of their own: a caller that needs Do to end by a time sets a deadline on
// its context, which every wait respects. A gateway of a fleet derives from it how long a
// change's calls may keep the change's intent open.
func (c *Client) MaxCallDuration() time.Duration {
	retries := max(c.opts.MaxRetries, 0)
	d := time.Duration(retries+1) * (c.opts.Timeout + c.opts.MaxRetryAfter)
	for attempt := 1; attempt <= retries; attempt++ {
		d += max(c.backoffCap(attempt), c.opts.MaxRetryAfter)
	}
	return d
}

// backoffCap is the longest backoff after attempt (backoff before its jitter).
func (c *Client) backoffCap(attempt int) time.Duration {
	d := c.opts.RetryBackoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}
