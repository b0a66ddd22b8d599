// Package legacy is the HTTP client scimgate uses to call a legacy application's native
// REST API. It is deliberately defensive: a legacy app is often fragile, slow or
// misconfigured, and every way it can fail must end up as an error Entra handles safely
// (see ToSCIM) rather than as a quarantined provisioning job.
//
// The client bounds everything it does for one backend: in-flight requests, request rate,
// per-attempt time, retries (only where repeating a request cannot duplicate its effect),
// how long it honours the backend's Retry-After, response size and redirects. A circuit
// breaker stops hammering a backend that is down. The app's rate limit headers
// (RateLimit-*, X-RateLimit-*) pace the calls before it answers 429.
//
// Auth puts the gateway's credentials on every call: BasicAuth, APIKey (a header or a
// query parameter) or OAuth (client credentials, through golang.org/x/oauth2: the token is
// cached, renewed before it expires, fetched again once after a 401, by one caller at a
// time). A credential that cannot be obtained is KindAuth, an outage for Entra (503),
// never a 401. Pages follows a list call's pages (cursor, page, offset or Link).
//
// The package does not import Caddy: the module's glue builds the *http.Transport from
// Caddy's reverse-proxy transport options (TLS, timeouts, pool) and passes it in Options.
package legacy

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Defaults applied by New to zero-valued Options fields.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxConcurrent    = 16
	DefaultMaxRetries       = 2
	DefaultRetryBackoff     = 200 * time.Millisecond
	DefaultMaxRetryAfter    = 5 * time.Second
	DefaultMaxResponseBytes = 4 << 20
	DefaultCircuitFailures  = 5
	DefaultCircuitCooldown  = 30 * time.Second

	// DefaultOutageRetryAfter is the Retry-After ToSCIM gives Entra for an outage when the
	// backend did not say how long to wait.
	DefaultOutageRetryAfter = 30 * time.Second

	// maxRedirects is how many same-origin redirects one attempt follows.
	maxRedirects = 3
	// maxBackoff caps the exponential backoff between retries, so a large MaxRetries
	// cannot make one Entra request wait for minutes.
	maxBackoff = 10 * time.Second
)

// Options configure a Client for one legacy backend. Zero values mean the documented
// default; where "off" is a meaningful choice, a negative value selects it.
type Options struct {
	// BaseURL is scheme://host[:port][/prefix]; request paths are relative to it. It must
	// not carry credentials, a query or a fragment: secrets belong in headers.
	BaseURL string
	// Transport sends the requests. Nil means a default *http.Transport tuned for one
	// backend, with a keep-alive pool sized to MaxConcurrent.
	Transport http.RoundTripper
	// Auth puts the gateway's credentials on every request (nil: none beyond the
	// request's own headers): BasicAuth, APIKey or OAuth.
	Auth Auth
	// Timeout bounds each attempt (connect, send, response headers and body). Default 10s.
	Timeout time.Duration
	// MaxConcurrent bounds in-flight requests to this backend; callers beyond it wait,
	// respecting their context. Default 16.
	MaxConcurrent int
	// RateLimit is requests per second to this backend (every attempt counts); 0 means
	// unlimited. A fragile app can ask for 5.
	RateLimit float64
	// RateBurst is how many requests may go at once before RateLimit applies. Default 1.
	RateBurst int
	// MaxRetries is how many times a failed request is repeated where that is safe.
	// Default 2; negative disables retries.
	MaxRetries int
	// RetryBackoff is the base of the exponential backoff with jitter between retries.
	// Default 200ms.
	RetryBackoff time.Duration
	// MaxRetryAfter caps how long a 429/503 Retry-After is honoured by waiting. A longer
	// Retry-After is not waited for: the request fails with it. Default 5s.
	MaxRetryAfter time.Duration
	// MaxResponseBytes bounds a response body; a larger one is an error. Default 4 MiB.
	MaxResponseBytes int64
	// CircuitFailures is how many consecutive outage-type failures open the circuit.
	// Default 5; negative disables the circuit breaker.
	CircuitFailures int
	// CircuitCooldown is how long an open circuit fails fast before it lets one trial
	// request through (half-open). Default 30s.
	CircuitCooldown time.Duration
}

// withDefaults validates the options and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	if err := o.checkRanges(); err != nil {
		return o, err
	}
	o.Timeout = orDefault(o.Timeout, DefaultTimeout)
	o.RetryBackoff = orDefault(o.RetryBackoff, DefaultRetryBackoff)
	o.MaxRetryAfter = orDefault(o.MaxRetryAfter, DefaultMaxRetryAfter)
	o.CircuitCooldown = orDefault(o.CircuitCooldown, DefaultCircuitCooldown)
	o.MaxConcurrent = orDefault(o.MaxConcurrent, DefaultMaxConcurrent)
	o.MaxResponseBytes = orDefault(o.MaxResponseBytes, DefaultMaxResponseBytes)
	o.RateBurst = orDefault(o.RateBurst, 1)
	o.MaxRetries = orDefault(o.MaxRetries, DefaultMaxRetries)
	o.CircuitFailures = orDefault(o.CircuitFailures, DefaultCircuitFailures)
	return o, nil
}

// checkRanges rejects values that have no meaning, rather than silently clamping them.
func (o Options) checkRanges() error {
	switch {
	case o.Timeout < 0:
		return errors.New("legacy: timeout must not be negative")
	case o.MaxConcurrent < 0:
		return errors.New("legacy: max concurrent must not be negative")
	case o.RateLimit < 0 || math.IsNaN(o.RateLimit) || math.IsInf(o.RateLimit, 0):
		return errors.New("legacy: rate limit must be a finite number of requests per second, 0 for unlimited")
	case o.RateBurst < 0:
		return errors.New("legacy: rate burst must not be negative")
	case o.RetryBackoff < 0:
		return errors.New("legacy: retry backoff must not be negative")
	case o.MaxRetryAfter < 0:
		return errors.New("legacy: max retry-after must not be negative")
	case o.MaxResponseBytes < 0:
		return errors.New("legacy: max response bytes must not be negative")
	case o.CircuitCooldown < 0:
		return errors.New("legacy: circuit cooldown must not be negative")
	}
	return nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// parseBaseURL accepts only an absolute http(s) URL without credentials, query or
// fragment, and returns it without a trailing slash so paths can be appended.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("legacy: parsing base URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("legacy: base URL %q must start with http:// or https://", raw)
	case u.Host == "":
		return nil, fmt.Errorf("legacy: base URL %q has no host", raw)
	case u.User != nil:
		return nil, errors.New("legacy: base URL must not carry credentials; send them in a header from {env.*}")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("legacy: base URL %q must not have a query or fragment", raw)
	}
	u.Path = trimTrailingSlash(u.Path)
	u.RawPath = trimTrailingSlash(u.RawPath)
	return u, nil
}

func trimTrailingSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// newTransport is the default transport for one backend: the idle pool holds as many
// connections as may be in flight, so steady traffic at MaxConcurrent reuses connections
// instead of opening and closing them.
func newTransport(o Options) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          o.MaxConcurrent,
		MaxIdleConnsPerHost:   o.MaxConcurrent,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   o.Timeout,
		ExpectContinueTimeout: time.Second,
	}
}
