package legacy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/tidwall/gjson"
)

// Kind says how a call to the backend failed.
type Kind string

// The kinds of failure. ToSCIM maps every kind except KindStatus to an outage (503).
const (
	// KindRefused: the connection could not be made or was dropped before a response.
	KindRefused Kind = "refused"
	// KindTimeout: an attempt or the caller's deadline ran out.
	KindTimeout Kind = "timeout"
	// KindStatus: the backend answered with a non-2xx status (other than 429).
	KindStatus Kind = "status"
	// KindTooLarge: the response body exceeded MaxResponseBytes.
	KindTooLarge Kind = "too_large"
	// KindBadRedirect: a redirect to another origin, or more than three redirects.
	KindBadRedirect Kind = "bad_redirect"
	// KindCircuitOpen: the circuit breaker is open; nothing was sent.
	KindCircuitOpen Kind = "circuit_open"
	// KindRateLimited: the backend answered 429, or the client's own rate limit could not
	// admit the request before the caller's deadline.
	KindRateLimited Kind = "rate_limited"
	// KindCanceled: the caller's context was canceled.
	KindCanceled Kind = "canceled"
	// KindInvalidResponse: the backend's answer was not usable HTTP.
	KindInvalidResponse Kind = "invalid_response"
	// KindUnproven: an answer that does not prove what it seems to: a success that does not
	// look like the call's expected answer (an HTML sign-in page with 200, a proxy's {}),
	// or an error that is not the application's own (a proxy's 404 page, a WAF's 400).
	KindUnproven Kind = "unproven"
	// KindAuth: the gateway could not obtain its credential for the app (the OAuth token
	// endpoint failed); nothing was sent to the app.
	KindAuth Kind = "auth"
)

// Error is a failed call to the backend. It never holds header values or URLs (which can
// carry secrets): Message comes only from the response body, and Err is the underlying
// network error with any URL stripped.
type Error struct {
	Kind Kind
	// Status is the backend's HTTP status, 0 when there was no response.
	Status int
	// Message is the native error message extracted from the response body: bounded,
	// control characters stripped.
	Message string
	// RetryAfter is how long the backend (or the circuit breaker, or the rate limiter) asks
	// the caller to wait; 0 when unknown.
	RetryAfter time.Duration
	// Attempts is how many times the request was tried.
	Attempts int
	// Err is the underlying cause, if any.
	Err error
	// NotFound is set on a 404 or 410 that is the application's own "no such object"
	// answer (Expect.NotFound): what a delete wants gone is gone.
	NotFound bool

	// sent records whether the request was (possibly) transmitted, which decides whether
	// repeating a non-idempotent request could duplicate it.
	sent bool
	// byCaller records that the caller's context ended the call: it says nothing about the
	// backend's health and is never retried.
	byCaller bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("legacy backend: ")
	b.WriteString(string(e.Kind))
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	switch {
	case e.Message != "":
		b.WriteString(": ")
		b.WriteString(e.Message)
	case e.Err != nil:
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause, so errors.Is(err, context.Canceled) works on a Do error.
func (e *Error) Unwrap() error { return e.Err }

// Sentinel causes for redirect failures, returned from CheckRedirect.
var (
	errCrossOriginRedirect = errors.New("redirect to another scheme, host or port refused")
	errTooManyRedirects    = errors.New("more than 3 redirects")
	errRateLimitHeaders    = errors.New("the application's rate limit headers say its window is used up")
)

// transportError classifies an error from http.Client.Do or from reading the body. parent
// is the caller's context, attempt the per-attempt one derived from it; sent says whether
// the request headers were written.
func transportError(parent, attempt context.Context, err error, sent bool) *Error {
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err // url.Error's text holds the URL, which may carry secrets
	}
	e := &Error{Err: cause, sent: sent}
	switch {
	case errors.Is(cause, errCrossOriginRedirect) || errors.Is(cause, errTooManyRedirects):
		e.Kind = KindBadRedirect
	case parent.Err() != nil:
		e.Kind = KindCanceled
		if errors.Is(parent.Err(), context.DeadlineExceeded) {
			e.Kind = KindTimeout
		}
		e.Err, e.byCaller = parent.Err(), true
	case attempt.Err() != nil || isTimeout(cause):
		e.Kind = KindTimeout
	case isDial(cause):
		e.Kind, e.sent = KindRefused, false
	case !sent || isConnectionDrop(cause):
		e.Kind = KindRefused
	default:
		e.Kind = KindInvalidResponse
	}
	return e
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// isDial reports a failure to establish the connection: nothing was sent, so any request
// may be retried.
func isDial(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de) || errors.Is(err, syscall.ECONNREFUSED)
}

// isConnectionDrop reports a connection that died while the request or response was in
// flight: the backend may have acted on the request.
func isConnectionDrop(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// statusError builds the error for a non-2xx response.
func statusError(status int, header http.Header, body []byte, now time.Time) *Error {
	e := &Error{Kind: KindStatus, Status: status, sent: true, Message: extractMessage(body)}
	if status == http.StatusTooManyRequests {
		e.Kind = KindRateLimited
	}
	e.RetryAfter, _ = parseRetryAfter(header.Get("Retry-After"), now)
	return e
}

// maxRetryAfterHeader bounds a parsed Retry-After so arithmetic on it cannot overflow.
const maxRetryAfterHeader = 24 * time.Hour

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP-date (RFC 9110
// §10.2.3), at most maxRetryAfterHeader. A date in the past is 0; ok is false when the
// header is absent or unreadable.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	switch {
	case err == nil && n <= uint64(maxRetryAfterHeader/time.Second):
		return time.Duration(n) * time.Second, true
	case err == nil || errors.Is(err, strconv.ErrRange):
		// delay-seconds past the bound, even past what 64 bits hold: the app asks for
		// the longest wait there is.
		return maxRetryAfterHeader, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryAfterHeader), true
}

// maxMessageRunes bounds a native message: it ends up in a SCIM detail and in logs.
const maxMessageRunes = 300

// messagePaths are where common REST APIs put a human-readable error, most specific first.
var messagePaths = []string{
	"error.message",
	"message",
	"error_description",
	"detail",
	"errors.0.message",
	"errors.0.detail",
	"error",
	"errors.0",
	"title",
	"msg",
}

// Message is what an answer's body says, as errors keep it (Error.Message): the app's
// message at the usual paths, or the compact JSON, bounded, control characters stripped,
// credential-looking values redacted; "" for an HTML page.
func Message(body []byte) string { return extractMessage(body) }

// extractMessage finds the native error message in a response body: a string at one of
// messagePaths, else the compact JSON itself, else plain text. HTML (an error page from a
// proxy) yields nothing: its markup would be noise in a SCIM detail. What looks like a
// credential is redacted (the client has also replaced the credentials it sent, see
// Client.send): the message reaches Entra, the journal and the logs.
func extractMessage(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	// json.Valid is iterative and depth-bounded, so it is safe before gjson on any body.
	if json.Valid(body) {
		for _, p := range messagePaths {
			if v := gjson.GetBytes(body, p); v.Type == gjson.String && strings.TrimSpace(v.Str) != "" {
				return sanitizeMessage(redactCredentialText(v.Str))
			}
		}
		var compact bytes.Buffer
		if len(body) <= 4*maxMessageRunes && json.Compact(&compact, body) == nil {
			return sanitizeMessage(redactCredentialText(compact.String()))
		}
		return sanitizeMessage(redactCredentialText(string(body[:4*maxMessageRunes])))
	}
	if body[0] == '<' {
		return ""
	}
	return sanitizeMessage(redactCredentialText(string(body[:min(len(body), 4*maxMessageRunes)])))
}

// sanitizeMessage makes untrusted text safe to show and log: valid UTF-8, no control
// characters (a newline could forge a log line), runs of space collapsed, bounded length.
func sanitizeMessage(s string) string {
	var b strings.Builder
	runes, space := 0, false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		need := 1
		if space {
			need = 2
		}
		if runes+need > maxMessageRunes {
			b.WriteString("…")
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
		runes += need
	}
	return b.String()
}

// MayHaveActed reports whether the backend may have carried out the request although the
// call failed: it was (possibly) sent, and what came back, if anything, does not say that
// the backend refused it (a timeout, a dropped connection, a 5xx, an answer that proves
// nothing). A create that failed so may have made the account.
func (e *Error) MayHaveActed() bool {
	if !e.sent {
		return false
	}
	switch e.Kind {
	case KindTimeout, KindRefused, KindInvalidResponse, KindTooLarge, KindUnproven, KindCanceled:
		return true
	case KindStatus:
		return e.Status >= 500
	}
	return false
}

// Cause names the failure for the journal and the logs: its kind, the status, and for an
// answer that proved nothing or an open circuit, why (never a URL, a header or a body).
func (e *Error) Cause() string {
	var b strings.Builder
	b.WriteString(string(e.Kind))
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	switch {
	case e.Kind == KindUnproven || e.Kind == KindCircuitOpen || e.Kind == KindAuth:
		if e.Err != nil {
			b.WriteString(": " + e.Err.Error())
		}
	case e.Err != nil:
		if what := netCause(e.Err); what != "" {
			b.WriteString(": " + what)
		}
	}
	return b.String()
}

// netCause names a network failure without the addresses its text carries.
func netCause(err error) string {
	var de *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.As(err, &de):
		return "host name not resolved"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before the answer"
	case isTimeout(err):
		return "no answer in time"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return ""
}
