package legacy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/fleet"
)

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"minimal", Options{BaseURL: "http://127.0.0.1:1"}, ""},
		{"prefix with slash", Options{BaseURL: "https://app.example/api/v1/"}, ""},
		{"no scheme", Options{BaseURL: "app.example/api"}, "http:// or https://"},
		{"ftp", Options{BaseURL: "ftp://app.example"}, "http:// or https://"},
		{"no host", Options{BaseURL: "http:///api"}, "no host"},
		{"credentials", Options{BaseURL: "https://u:secret@app.example"}, "credentials"},
		{"query", Options{BaseURL: "https://app.example/?key=1"}, "query"},
		{"negative timeout", Options{BaseURL: "http://a", Timeout: -1}, "timeout"},
		{"negative concurrency", Options{BaseURL: "http://a", MaxConcurrent: -1}, "concurrent"},
		{"negative rate", Options{BaseURL: "http://a", RateLimit: -1}, "rate limit"},
		{"bad size", Options{BaseURL: "http://a", MaxResponseBytes: -1}, "response bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if strings.HasSuffix(c.baseStr, "/") {
					t.Errorf("base URL %q keeps a trailing slash", c.baseStr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := New(Options{BaseURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	o := c.opts
	if o.Timeout != DefaultTimeout || o.MaxConcurrent != DefaultMaxConcurrent || o.MaxRetries != DefaultMaxRetries ||
		o.RetryBackoff != DefaultRetryBackoff || o.MaxRetryAfter != DefaultMaxRetryAfter ||
		o.MaxResponseBytes != DefaultMaxResponseBytes || o.CircuitFailures != DefaultCircuitFailures ||
		o.CircuitCooldown != DefaultCircuitCooldown {
		t.Errorf("defaults not applied: %+v", o)
	}
	if c.own == nil || c.own.MaxIdleConnsPerHost != DefaultMaxConcurrent {
		t.Errorf("default transport pool not sized to MaxConcurrent: %+v", c.own)
	}
}

func TestDoRequestShape(t *testing.T) {
	type seen struct{ method, uri, accept, ctype, auth, body string }
	got := make(chan seen, 1)
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Header.Get("Accept"), r.Header.Get("Content-Type"), r.Header.Get("Authorization"), string(b)}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":42}`)
	})
	c := newTestClient(t, srv.URL+"/api/", Options{})
	tests := []struct {
		name string
		req  Request
		want seen
	}{
		{"post with body", Request{Method: "POST", Path: "/accounts", Body: []byte(`{"a":1}`), Header: http.Header{"Authorization": {"Bearer k"}}},
			seen{"POST", "/api/accounts", "application/json", "application/json", "Bearer k", `{"a":1}`}},
		{"get without body", Request{Method: "GET", Path: "accounts/7?expand=team"},
			seen{"GET", "/api/accounts/7?expand=team", "application/json", "", "", ""}},
		{"empty method is GET", Request{Path: "/x"},
			seen{"GET", "/api/x", "application/json", "", "", ""}},
		{"caller content type kept", Request{Method: "PUT", Path: "/x", Body: []byte("a=1"), Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}},
			seen{"PUT", "/api/x", "application/json", "application/x-www-form-urlencoded", "", "a=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Do(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if s := <-got; s != tt.want {
				t.Errorf("server saw %+v, want %+v", s, tt.want)
			}
			if resp.Status != 200 || string(resp.Body) != `{"id":42}` || resp.Attempts != 1 || resp.Duration <= 0 {
				t.Errorf("response %+v", resp)
			}
		})
	}
}

func TestDoRejectsBadRequests(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1/api", Options{})
	for _, r := range []Request{
		{Path: "http://evil.example/x"},
		{Path: "//evil.example/x"},
		{Path: "/a b"},
		{Path: "/a\nb"},
		{Path: "/a#frag"},
		{Path: `/a\b`},
		{Method: "GE T", Path: "/x"},
		{Method: "GET\r\nX-Injected: 1", Path: "/x"},
	} {
		if _, err := c.Do(context.Background(), r); err == nil {
			t.Errorf("Do(%+v) succeeded", r)
		} else if errors.As(err, new(*Error)) {
			t.Errorf("Do(%+v) = %v, want a plain request error, not a backend error", r, err)
		}
	}
}

// TestKinds produces every Kind from a real exchange.
func TestKinds(t *testing.T) {
	ok := status(200, `{}`, "Content-Type", "application/json")
	other, otherHits := newServer(t, ok)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		base    string // overrides the server URL
		opts    Options
		req     Request
		ctx     func() (context.Context, context.CancelFunc)
		want    Kind
		status  int
		message string
	}{
		{name: "refused", base: refusedURL(t), req: Request{Method: "POST", Path: "/a"}, want: KindRefused},
		{name: "timeout", handler: blockUntilDone, opts: Options{Timeout: 50 * time.Millisecond}, req: Request{Method: "POST", Path: "/a"}, want: KindTimeout},
		{name: "status", handler: status(422, `{"error":{"message":"email is invalid"}}`), req: Request{Method: "POST", Path: "/a"}, want: KindStatus, status: 422, message: "email is invalid"},
		{name: "too large", handler: status(200, strings.Repeat("x", 65)), opts: Options{MaxResponseBytes: 64}, req: Request{Path: "/a"}, want: KindTooLarge, status: 200},
		{name: "bad redirect", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
		}, req: Request{Path: "/a"}, want: KindBadRedirect},
		{name: "rate limited", handler: status(429, `{"message":"slow down"}`, "Retry-After", "60"), req: Request{Path: "/a"}, want: KindRateLimited, status: 429, message: "slow down"},
		{name: "canceled", handler: blockUntilDone, req: Request{Path: "/a"}, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, want: KindCanceled},
		{name: "invalid json", handler: status(200, `{"id":`, "Content-Type", "application/json"), req: Request{Path: "/a"}, want: KindUnproven, status: 200},
		{name: "garbage http", handler: func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			buf.WriteString("SSH-2.0-OpenSSH_9.6\r\n\r\n")
			buf.Flush()
			conn.Close()
		}, req: Request{Method: "POST", Path: "/a"}, want: KindInvalidResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := tt.base
			if base == "" {
				srv, _ := newServer(t, tt.handler)
				base = srv.URL
			}
			c := newTestClient(t, base, tt.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			_, err := c.Do(ctx, tt.req)
			e := asError(t, err)
			if e.Kind != tt.want || e.Status != tt.status || e.Message != tt.message {
				t.Errorf("error = %+v, want kind %s status %d message %q", e, tt.want, tt.status, tt.message)
			}
		})
	}
	if n := otherHits.hits.Load(); n != 0 {
		t.Errorf("the other host received %d requests through a redirect", n)
	}
}

func TestCircuitOpenKind(t *testing.T) {
	srv, hits := newServer(t, status(500, "boom"))
	c := newTestClient(t, srv.URL, Options{CircuitFailures: 2, CircuitCooldown: time.Hour, MaxRetries: -1})
	for range 2 {
		if _, err := c.Do(context.Background(), Request{Path: "/"}); asError(t, err).Kind != KindStatus {
			t.Fatalf("want a status error, got %v", err)
		}
	}
	_, err := c.Do(context.Background(), Request{Path: "/"})
	e := asError(t, err)
	if e.Kind != KindCircuitOpen || e.RetryAfter <= 59*time.Minute {
		t.Errorf("error = %+v, want circuit_open with the remaining cooldown", e)
	}
	if n := hits.hits.Load(); n != 2 {
		t.Errorf("server hits = %d, want 2 (an open circuit sends nothing)", n)
	}
}

// TestRetries checks how many attempts each failure gets, per the retry rules.
func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		handler  func(n int64) http.HandlerFunc // n is the 1-based hit number
		refused  bool
		opts     Options
		req      Request
		attempts int
		wantErr  Kind // "" for success
	}{
		{name: "POST timing out after send is attempted once", handler: func(int64) http.HandlerFunc { return blockUntilDone },
			opts: Options{Timeout: 50 * time.Millisecond}, req: Request{Method: "POST"}, attempts: 1, wantErr: KindTimeout},
		{name: "GET timing out is retried", handler: func(int64) http.HandlerFunc { return blockUntilDone },
			opts: Options{Timeout: 50 * time.Millisecond}, req: Request{Method: "GET"}, attempts: 3, wantErr: KindTimeout},
		{name: "refused POST is retried", refused: true, req: Request{Method: "POST"}, attempts: 3, wantErr: KindRefused},
		{name: "refused with retries off", refused: true, opts: Options{MaxRetries: -1}, req: Request{Method: "POST"}, attempts: 1, wantErr: KindRefused},
		{name: "GET 503 retried until it gives up", handler: func(int64) http.HandlerFunc { return status(503, "") },
			req: Request{Method: "GET"}, attempts: 3, wantErr: KindStatus},
		{name: "GET 503 then 200", handler: func(n int64) http.HandlerFunc {
			if n == 1 {
				return status(503, "")
			}
			return status(200, "{}")
		}, req: Request{Method: "GET"}, attempts: 2},
		{name: "PUT 502 retried", handler: func(int64) http.HandlerFunc { return status(502, "") },
			req: Request{Method: "PUT"}, attempts: 3, wantErr: KindStatus},
		{name: "DELETE 504 retried", handler: func(int64) http.HandlerFunc { return status(504, "") },
			req: Request{Method: "DELETE"}, attempts: 3, wantErr: KindStatus},
		{name: "POST 503 not retried", handler: func(int64) http.HandlerFunc { return status(503, "") },
			req: Request{Method: "POST"}, attempts: 1, wantErr: KindStatus},
		{name: "PATCH 503 not retried", handler: func(int64) http.HandlerFunc { return status(503, "") },
			req: Request{Method: "PATCH"}, attempts: 1, wantErr: KindStatus},
		{name: "POST marked idempotent 503 retried", handler: func(int64) http.HandlerFunc { return status(503, "") },
			req: Request{Method: "POST", Idempotent: true}, attempts: 3, wantErr: KindStatus},
		{name: "GET 500 not retried", handler: func(int64) http.HandlerFunc { return status(500, "") },
			req: Request{Method: "GET"}, attempts: 1, wantErr: KindStatus},
		{name: "GET 409 not retried", handler: func(int64) http.HandlerFunc { return status(409, "") },
			req: Request{Method: "GET"}, attempts: 1, wantErr: KindStatus},
		{name: "GET 503 with long Retry-After not retried", handler: func(int64) http.HandlerFunc { return status(503, "", "Retry-After", "60") },
			req: Request{Method: "GET"}, attempts: 1, wantErr: KindStatus},
		{name: "GET 429 without Retry-After retried", handler: func(int64) http.HandlerFunc { return status(429, "") },
			req: Request{Method: "GET"}, attempts: 3, wantErr: KindRateLimited},
		{name: "POST 429 not retried", handler: func(int64) http.HandlerFunc { return status(429, "") },
			req: Request{Method: "POST"}, attempts: 1, wantErr: KindRateLimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := ""
			var hits *counter
			if tt.refused {
				base = refusedURL(t)
			} else {
				var n atomic.Int64
				srv, h := newServer(t, func(w http.ResponseWriter, r *http.Request) { tt.handler(n.Add(1))(w, r) })
				base, hits = srv.URL, h
			}
			c := newTestClient(t, base, tt.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := c.Do(ctx, tt.req)
			attempts := 0
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				attempts = resp.Attempts
			} else {
				e := asError(t, err)
				if e.Kind != tt.wantErr {
					t.Fatalf("kind = %s, want %s (%v)", e.Kind, tt.wantErr, e)
				}
				attempts = e.Attempts
			}
			if attempts != tt.attempts {
				t.Errorf("attempts = %d, want %d", attempts, tt.attempts)
			}
			if hits != nil && hits.hits.Load() != int64(tt.attempts) {
				t.Errorf("server saw %d requests, want %d", hits.hits.Load(), tt.attempts)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	var n atomic.Int64
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			status(429, "", "Retry-After", "1")(w, r)
			return
		}
		status(200, "{}")(w, r)
	})
	c := newTestClient(t, srv.URL, Options{})
	start := time.Now()
	resp, err := c.Do(context.Background(), Request{Path: "/"})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("retried after %v, want the backend's Retry-After of 1s", el)
	}
	if resp.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", resp.Attempts)
	}
}

func TestRetryAfterBeyondCapNotWaited(t *testing.T) {
	srv, hits := newServer(t, status(429, "", "Retry-After", "60"))
	c := newTestClient(t, srv.URL, Options{})
	start := time.Now()
	_, err := c.Do(context.Background(), Request{Path: "/"})
	e := asError(t, err)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Do took %v; a 60s Retry-After must not be waited for", el)
	}
	if e.Kind != KindRateLimited || e.RetryAfter != 60*time.Second || e.Attempts != 1 || hits.hits.Load() != 1 {
		t.Errorf("error = %+v, want rate_limited, RetryAfter 60s, 1 attempt", e)
	}
}

func TestRetryNotWaitedPastDeadline(t *testing.T) {
	srv, hits := newServer(t, status(503, "", "Retry-After", "3"))
	c := newTestClient(t, srv.URL, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Do(ctx, Request{Path: "/"})
	if e := asError(t, err); e.Status != 503 || e.RetryAfter != 3*time.Second || hits.hits.Load() != 1 {
		t.Errorf("error = %+v (hits %d), want the 503 at once", e, hits.hits.Load())
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("Do waited %v for a retry its deadline could not fit", el)
	}
}

func TestRateLimit(t *testing.T) {
	srv, _ := newServer(t, status(200, "{}"))
	const n, burst, rate = 6, 2, 5.0
	c := newTestClient(t, srv.URL, Options{RateLimit: rate, RateBurst: burst})
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := c.Do(context.Background(), Request{Path: "/"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	min := time.Duration(float64(n-burst) / rate * float64(time.Second))
	if el := time.Since(start); el < min*9/10 || el > min+3*time.Second {
		t.Errorf("%d requests at %v/s with burst %d took %v, want about %v", n, rate, burst, el, min)
	}
}

func TestRateLimitRespectsDeadline(t *testing.T) {
	srv, hits := newServer(t, status(200, "{}"))
	c := newTestClient(t, srv.URL, Options{RateLimit: 1, RateBurst: 1})
	if _, err := c.Do(context.Background(), Request{Path: "/"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Do(ctx, Request{Path: "/"})
	if e := asError(t, err); e.Kind != KindRateLimited || e.RetryAfter <= 0 {
		t.Errorf("error = %+v, want rate_limited with a Retry-After", e)
	}
	if time.Since(start) > 50*time.Millisecond || hits.hits.Load() != 1 {
		t.Errorf("a request that cannot get a token before its deadline must fail at once")
	}
}

func TestConcurrencyLimit(t *testing.T) {
	srv, hits := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.Write([]byte("{}"))
	})
	const limit = 3
	c := newTestClient(t, srv.URL, Options{MaxConcurrent: limit})
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() {
			if _, err := c.Do(context.Background(), Request{Path: "/"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if m := hits.maxInFlight.Load(); m > limit || m < 2 {
		t.Errorf("server saw %d requests in flight, want between 2 and %d", m, limit)
	}
}

func TestConcurrencyWaitRespectsContext(t *testing.T) {
	release := make(chan struct{})
	srv, hits := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
	})
	defer close(release)
	c := newTestClient(t, srv.URL, Options{MaxConcurrent: 1})
	go c.Do(context.Background(), Request{Path: "/held"})
	for i := 0; i < 500 && hits.hits.Load() == 0; i++ {
		time.Sleep(2 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, Request{Path: "/queued"})
	if e := asError(t, err); e.Kind != KindTimeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %+v, want timeout from the caller's deadline", e)
	}
	if n := hits.hits.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

func TestResponseBound(t *testing.T) {
	const limit = 1024
	tests := []struct {
		name    string
		size    int
		chunked bool
		want    Kind
	}{
		{"at the limit", limit, false, ""},
		{"one over", limit + 1, false, KindTooLarge},
		{"chunked at the limit", limit, true, ""},
		{"chunked over", limit + 1, true, KindTooLarge},
		{"chunked far over", 10 * limit, true, KindTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				body := []byte(`"` + strings.Repeat("x", tt.size-2) + `"`)
				if tt.chunked {
					w.Write(body[:1])
					w.(http.Flusher).Flush()
					body = body[1:]
				} else {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				}
				w.Write(body)
			})
			c := newTestClient(t, srv.URL, Options{MaxResponseBytes: limit})
			resp, err := c.Do(context.Background(), Request{Path: "/"})
			if tt.want == "" {
				if err != nil || len(resp.Body) != tt.size {
					t.Fatalf("Do = %v, %v; want %d bytes", resp, err, tt.size)
				}
				return
			}
			if e := asError(t, err); e.Kind != tt.want {
				t.Errorf("kind = %s, want %s", e.Kind, tt.want)
			}
		})
	}
}

func TestRedirects(t *testing.T) {
	other, otherHits := newServer(t, status(200, "{}"))
	var srvURL string
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/api/here", http.StatusTemporaryRedirect)
		case "/moved-absolute":
			http.Redirect(w, r, srvURL+"/api/here", http.StatusMovedPermanently)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/three":
			http.Redirect(w, r, "/two", http.StatusFound)
		case "/two":
			http.Redirect(w, r, "/one", http.StatusFound)
		case "/one":
			http.Redirect(w, r, "/api/here", http.StatusFound)
		case "/away":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/away-by-name":
			http.Redirect(w, r, strings.Replace(srvURL, "127.0.0.1", "localhost", 1)+"/api/here", http.StatusFound)
		case "/api/here":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, `{"method":%q,"body":%q}`, r.Method, b)
		}
	})
	srvURL = srv.URL
	c := newTestClient(t, srv.URL, Options{})
	tests := []struct {
		path string
		want Kind
		body string
	}{
		{"/moved", "", `{"method":"PUT","body":"{}"}`}, // 307 keeps method and body
		{"/moved-absolute", "", `{"method":"GET","body":""}`},
		{"/three", "", `{"method":"GET","body":""}`},
		{"/loop", KindBadRedirect, ""},
		{"/away", KindBadRedirect, ""},
		{"/away-by-name", KindBadRedirect, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := Request{Method: "GET", Path: tt.path}
			if tt.path == "/moved" {
				r = Request{Method: "PUT", Path: tt.path, Body: []byte("{}")}
			}
			resp, err := c.Do(context.Background(), r)
			if tt.want == "" {
				if err != nil || string(resp.Body) != tt.body {
					t.Fatalf("Do = %v, %v; want body %s", resp, err, tt.body)
				}
				return
			}
			if e := asError(t, err); e.Kind != tt.want || e.Attempts != 1 {
				t.Errorf("error = %+v, want %s after 1 attempt", e, tt.want)
			}
		})
	}
	if n := otherHits.hits.Load(); n != 0 {
		t.Errorf("the other host received %d requests", n)
	}
}

// TestRedirectOfAWrite: a write answered 301, 302 or 303 is not followed (net/http would
// turn it into a GET of another page: a sign-in page, or a route answering the app's own
// "no such object") and is an unproven answer, which may have acted: never a success and
// never "already gone". A 404 reached through a redirect of a read is not the app's own
// not-found either. A 307/308 keeps the method and is followed, as before.
func TestRedirectOfAWrite(t *testing.T) {
	var logins atomic.Int32
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			logins.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found"}}`))
		case "/users/1":
			http.Redirect(w, r, "/login?next=x", http.StatusFound)
		case "/users/2":
			http.Redirect(w, r, "/login", http.StatusSeeOther)
		case "/users/3":
			http.Redirect(w, r, "/users/1b", http.StatusPermanentRedirect)
		case "/users/1b":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"method":%q}`, r.Method)
		}
	})
	own := &Expect{NotFound: &Shape{Equals: map[string][]json.RawMessage{"error.code": {json.RawMessage(`"not_found"`)}}}}
	for _, method := range []string{http.MethodDelete, http.MethodPatch, http.MethodPut, http.MethodPost} {
		for _, path := range []string{"/users/1", "/users/2"} {
			c := newTestClient(t, srv.URL, Options{}) // its own circuit: failures pile up here
			_, err := c.Do(context.Background(), Request{Method: method, Path: path, Body: []byte("{}"), Expect: own})
			e := asError(t, err)
			if e.Kind != KindUnproven || e.NotFound || !e.MayHaveActed() || e.Status < 300 || e.Status > 399 {
				t.Errorf("%s %s: %+v (%v); want an unproven redirect that may have acted", method, path, e, e.Err)
			}
		}
	}
	if n := logins.Load(); n != 0 {
		t.Errorf("the sign-in page was fetched %d times for writes", n)
	}
	// A read may follow a redirect, but the not-found it meets there is not the app's own.
	c := newTestClient(t, srv.URL, Options{})
	_, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/users/1", Expect: own})
	if e := asError(t, err); e.Status != http.StatusNotFound || e.NotFound {
		t.Errorf("GET through a redirect: %+v; want a 404 that is not the app's own", e)
	}
	// A 308 keeps the method: followed.
	resp, err := c.Do(context.Background(), Request{Method: http.MethodDelete, Path: "/users/3", Expect: own})
	if err != nil || string(resp.Body) != `{"method":"DELETE"}` {
		t.Errorf("DELETE through a 308: %v, %v", resp, err)
	}
}

func TestCircuitBreaker(t *testing.T) {
	var healthy atomic.Bool
	srv, hits := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if healthy.Load() {
			w.Write([]byte("{}"))
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	const cooldown = 100 * time.Millisecond
	c := newTestClient(t, srv.URL, Options{CircuitFailures: 3, CircuitCooldown: cooldown, MaxRetries: -1})
	do := func() (Kind, error) {
		_, err := c.Do(context.Background(), Request{Path: "/"})
		if err == nil {
			return "", nil
		}
		return asError(t, err).Kind, err
	}
	for i := range 3 {
		if k, _ := do(); k != KindStatus {
			t.Fatalf("call %d: kind %q, want status", i, k)
		}
	}
	start := time.Now()
	for range 5 {
		if k, _ := do(); k != KindCircuitOpen {
			t.Fatalf("kind %q, want circuit_open while open", k)
		}
	}
	if time.Since(start) > 50*time.Millisecond || hits.hits.Load() != 3 {
		t.Fatalf("an open circuit must fail fast without sending (hits %d)", hits.hits.Load())
	}
	// Half-open with the backend still down: the trial fails and the circuit reopens.
	time.Sleep(cooldown + 20*time.Millisecond)
	if k, _ := do(); k != KindStatus {
		t.Fatalf("trial: kind %q, want the backend's status", k)
	}
	if k, _ := do(); k != KindCircuitOpen {
		t.Fatalf("after a failed trial: kind %q, want circuit_open", k)
	}
	// Half-open with the backend back: the trial succeeds and the circuit closes.
	time.Sleep(cooldown + 20*time.Millisecond)
	healthy.Store(true)
	for i := range 3 {
		if k, err := do(); err != nil {
			t.Fatalf("call %d after recovery: %s %v", i, k, err)
		}
	}
	if n := hits.hits.Load(); n != 7 {
		t.Errorf("server hits = %d, want 7", n)
	}
}

func TestCircuitIgnoresClientErrors(t *testing.T) {
	srv, hits := newServer(t, status(404, `{"message":"no such account"}`))
	c := newTestClient(t, srv.URL, Options{CircuitFailures: 2, CircuitCooldown: time.Hour})
	for range 6 {
		_, err := c.Do(context.Background(), Request{Path: "/"})
		if e := asError(t, err); e.Kind != KindStatus || e.Status != 404 {
			t.Fatalf("error = %+v, want 404 (4xx must not open the circuit)", e)
		}
	}
	if hits.hits.Load() != 6 {
		t.Errorf("hits = %d, want 6", hits.hits.Load())
	}
}

func TestContextCancellation(t *testing.T) {
	t.Run("during the exchange", func(t *testing.T) {
		srv, _ := newServer(t, blockUntilDone)
		c := newTestClient(t, srv.URL, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(30*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Do(ctx, Request{Method: "GET", Path: "/"})
		if e := asError(t, err); e.Kind != KindCanceled || e.Attempts != 1 || !errors.Is(err, context.Canceled) {
			t.Errorf("error = %+v, want canceled after 1 attempt", e)
		}
		if time.Since(start) > time.Second {
			t.Errorf("Do did not return promptly after cancellation")
		}
	})
	t.Run("during backoff", func(t *testing.T) {
		srv, hits := newServer(t, status(503, ""))
		c := newTestClient(t, srv.URL, Options{RetryBackoff: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Do(ctx, Request{Method: "GET", Path: "/"})
		if e := asError(t, err); e.Status != 503 || hits.hits.Load() != 1 {
			t.Errorf("error = %+v (hits %d), want the 503 without a retry", e, hits.hits.Load())
		}
		if time.Since(start) > 400*time.Millisecond {
			t.Errorf("backoff ignored cancellation")
		}
	})
	t.Run("already canceled", func(t *testing.T) {
		srv, hits := newServer(t, status(200, "{}"))
		c := newTestClient(t, srv.URL, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Do(ctx, Request{Method: "POST", Path: "/"})
		if e := asError(t, err); e.Kind != KindCanceled || hits.hits.Load() != 0 {
			t.Errorf("error = %+v (hits %d), want canceled and nothing sent", e, hits.hits.Load())
		}
	})
}

// TestErrorsCarryNoSecrets: header values and URLs never reach error text.
func TestErrorsCarryNoSecrets(t *testing.T) {
	const secret = "s3cr3t-token"
	hdr := http.Header{"Authorization": {"Bearer " + secret}, "X-Api-Key": {secret}}
	timeoutSrv, _ := newServer(t, blockUntilDone)
	for _, base := range []string{refusedURL(t), timeoutSrv.URL} {
		c := newTestClient(t, base, Options{Timeout: 50 * time.Millisecond, MaxRetries: -1})
		_, err := c.Do(context.Background(), Request{Method: "POST", Path: "/x?api_key=" + secret, Header: hdr, Body: []byte(`{"password":"` + secret + `"}`)})
		if err == nil || strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%+v", err), secret) {
			t.Errorf("error %q leaks a secret", err)
		}
	}
}

// TestConcurrentUse exercises every shared structure at once under -race.
func TestConcurrentUse(t *testing.T) {
	var n atomic.Int64
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			w.WriteHeader(503)
		case 1:
			w.WriteHeader(409)
		default:
			w.Write([]byte(`{"ok":true}`))
		}
	})
	c := newTestClient(t, srv.URL, Options{MaxConcurrent: 4, RateLimit: 2000, RateBurst: 50, CircuitFailures: 3, CircuitCooldown: 10 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for range 10 {
				_, err := c.Do(context.Background(), Request{Method: []string{"GET", "POST"}[i%2], Path: "/"})
				var e *Error
				if err != nil && !errors.As(err, &e) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// TestTransportErrorClassification covers causes that are hard to provoke on loopback.
func TestTransportErrorClassification(t *testing.T) {
	bg := context.Background()
	canceled, cancel := context.WithCancel(bg)
	cancel()
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	tests := []struct {
		name     string
		parent   context.Context
		err      error
		sent     bool
		want     Kind
		wantSent bool
	}{
		{"dial", bg, dial, false, KindRefused, false},
		{"dial reported after trace", bg, dial, true, KindRefused, false},
		{"read error after send", bg, &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true, KindRefused, true},
		{"malformed response", bg, errors.New(`malformed HTTP response "SSH-2.0"`), true, KindInvalidResponse, true},
		{"eof after send", bg, io.ErrUnexpectedEOF, true, KindRefused, true},
		{"eof before send", bg, io.EOF, false, KindRefused, false},
		{"caller canceled", canceled, context.Canceled, true, KindCanceled, true},
		{"redirect", bg, errCrossOriginRedirect, true, KindBadRedirect, true},
		{"timeout", bg, context.DeadlineExceeded, true, KindTimeout, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := transportError(tt.parent, bg, tt.err, tt.sent)
			if e.Kind != tt.want || e.sent != tt.wantSent {
				t.Errorf("got kind %s sent %v, want %s sent %v", e.Kind, e.sent, tt.want, tt.wantSent)
			}
		})
	}
}

// A call for a fleet job that this gateway no longer holds is not sent, and is neither
// retried nor counted against the app's breaker.
func TestDoStopsWhenTheFleetJobIsLost(t *testing.T) {
	srv, hits := newServer(t, status(http.StatusOK, `{}`))
	c := newTestClient(t, srv.URL, Options{})
	var held atomic.Bool
	held.Store(true)
	ctx := fleet.WithGuard(context.Background(), held.Load)
	if _, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/users", Body: []byte(`{}`)}); err != nil {
		t.Fatalf("held: %v", err)
	}
	held.Store(false)
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/users", Body: []byte(`{}`)})
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindCanceled || !errors.Is(err, fleet.ErrNotHolder) || e.MayHaveActed() {
		t.Fatalf("lost: err = %v, want a canceled call that was not sent", err)
	}
	if n := hits.hits.Load(); n != 1 {
		t.Errorf("the app got %d calls, want 1", n)
	}
}

// TestAnswerWithAByteOrderMark: a JSON answer that starts with a UTF-8 byte order mark
// (as .NET and PowerShell apps write it) is the JSON after it, for the answer's check and
// for whoever reads the body; an answer of a BOM alone is an empty one.
func TestAnswerWithAByteOrderMark(t *testing.T) {
	srv, _ := newServer(t, status(http.StatusCreated, "\xEF\xBB\xBF{\"id\": 5}", "Content-Type", "application/json; charset=utf-8"))
	c := newTestClient(t, srv.URL, Options{})
	resp, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/users", Expect: &Expect{Success: Shape{Body: BodyJSON, Has: []string{"id"}}}})
	if err != nil || string(resp.Body) != `{"id": 5}` {
		t.Fatalf("Do = %v, %v; want the JSON after the BOM", resp, err)
	}
	srv, _ = newServer(t, status(http.StatusOK, "\xEF\xBB\xBF", "Content-Type", "application/json"))
	c = newTestClient(t, srv.URL, Options{})
	if resp, err := c.Do(context.Background(), Request{Path: "/x", Expect: &Expect{Success: Shape{Body: BodyEmpty}}}); err != nil || len(resp.Body) != 0 {
		t.Fatalf("a BOM alone: %v, %v; want an empty answer", resp, err)
	}
}

// TestAnswerInADeclaredCharset: an answer whose Content-Type declares another charset than
// UTF-8 (an older PHP or Java app's ISO-8859-1, a UTF-16 one) is read as the text it
// declares: its JSON checks, its id and its error message are the app's. A body that is
// valid UTF-8 already stays as it is, whatever the label says (apps mislabel UTF-8 as
// ISO-8859-1), as does one in a charset the gateway does not know.
func TestAnswerInADeclaredCharset(t *testing.T) {
	utf16le := func(s string) string {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r), byte(r>>8))
		}
		return string(b)
	}
	cases := []struct {
		ct, body, want string
	}{
		{"application/json; charset=ISO-8859-1", "{\"id\": 5, \"name\": \"Ren\xe9e M\xfcller\"}", `{"id": 5, "name": "Renée Müller"}`},
		{"application/json;charset=windows-1252", "{\"id\": 5, \"note\": \"\x80 10\"}", `{"id": 5, "note": "€ 10"}`},
		{"application/json; charset=utf-16le", utf16le(`{"id": 5, "name": "Zoë"}`), `{"id": 5, "name": "Zoë"}`},
		{"application/json; charset=iso-8859-1", `{"id": 5, "name": "Müller"}`, `{"id": 5, "name": "Müller"}`}, // UTF-8, mislabelled
		{"application/json; charset=x-unknown", `{"id": 5}`, `{"id": 5}`},
		// A byte order mark before the text, in UTF-8 or in the labelled charset.
		{"application/json; charset=ISO-8859-1", "\xEF\xBB\xBF{\"id\": 5, \"name\": \"Zo\xc3\xab\"}", `{"id": 5, "name": "Zoë"}`},
		{"application/json; charset=ISO-8859-1", "\xEF\xBB\xBF{\"id\": 5, \"name\": \"Ren\xe9e\"}", `{"id": 5, "name": "Renée"}`},
		{"application/json", "\xFF\xFE" + utf16le(`{"id": 5, "name": "Zoë"}`), `{"id": 5, "name": "Zoë"}`},
	}
	for _, c := range cases {
		srv, _ := newServer(t, status(http.StatusCreated, c.body, "Content-Type", c.ct))
		cl := newTestClient(t, srv.URL, Options{})
		resp, err := cl.Do(context.Background(), Request{Method: http.MethodPost, Path: "/users", Expect: &Expect{Success: Shape{Body: BodyJSON, Has: []string{"id"}}}})
		if err != nil || string(resp.Body) != c.want {
			t.Errorf("%s: %v, %v; want %s", c.ct, resp, err, c.want)
		}
	}
	// The app's refusal in ISO-8859-1 is its refusal, with its message.
	srv, _ := newServer(t, status(http.StatusConflict, "{\"error\": {\"message\": \"le login est d\xe9j\xe0 pris\"}}", "Content-Type", "application/json; charset=ISO-8859-1"))
	cl := newTestClient(t, srv.URL, Options{})
	_, err := cl.Do(context.Background(), Request{Method: http.MethodPost, Path: "/users"})
	if e := asError(t, err); e.Kind != KindStatus || e.Status != http.StatusConflict || e.Message != "le login est déjà pris" {
		t.Errorf("a 409 in ISO-8859-1: %+v", e)
	}
}

// TestGzipAnswerWhenTheHeadersAskForIt: when the target's or the mapping's headers ask
// for gzip themselves (Accept-Encoding), Go's transport leaves the answer compressed; the
// client decompresses it, within the response bound (a small gzip of a large body is too
// large, as the body would be).
func TestGzipAnswerWhenTheHeadersAskForIt(t *testing.T) {
	gz := func(s string) string {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write([]byte(s))
		_ = zw.Close()
		return b.String()
	}
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		if r.URL.Path == "/bomb" {
			_, _ = w.Write([]byte(gz(`{"pad": "` + strings.Repeat("x", 64<<10) + `"}`)))
			return
		}
		_, _ = w.Write([]byte(gz(`{"id": 5}`)))
	})
	c := newTestClient(t, srv.URL, Options{MaxResponseBytes: 16 << 10})
	asked := http.Header{"Accept-Encoding": {"gzip"}}
	resp, err := c.Do(context.Background(), Request{Path: "/users", Header: asked, Expect: &Expect{Success: Shape{Body: BodyJSON, Has: []string{"id"}}}})
	if err != nil || string(resp.Body) != `{"id": 5}` {
		t.Fatalf("Do = %v, %v; want the decompressed JSON", resp, err)
	}
	if _, err := c.Do(context.Background(), Request{Path: "/bomb", Header: asked}); asError(t, err).Kind != KindTooLarge {
		t.Errorf("a gzip of 64 KiB against a 16 KiB bound: %v", err)
	}
}

// TestAnswerNestedTooDeep: the gateway's readers of an answer (gjson's validation, on a
// create's id or a lookup's list) recurse once per level of nesting: a 4 MiB answer of
// nested lists takes hundreds of MB of stack, and a larger max_response_size would
// overflow it, which kills the whole process. An answer nested deeper than
// MaxAnswerDepth proves nothing (an outage); brackets inside strings do not count.
func TestAnswerNestedTooDeep(t *testing.T) {
	deep := strings.Repeat("[", MaxAnswerDepth+1) + strings.Repeat("]", MaxAnswerDepth+1)
	ok := `{"id": 5, "note": "` + strings.Repeat("[", 5000) + `", "a": ` + strings.Repeat("[", MaxAnswerDepth-1) + strings.Repeat("]", MaxAnswerDepth-1) + `}`
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain") // no JSON rule applies to it
		if r.URL.Path == "/deep" {
			_, _ = w.Write([]byte(deep))
			return
		}
		_, _ = w.Write([]byte(ok))
	})
	c := newTestClient(t, srv.URL, Options{})
	_, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/deep"})
	if e := asError(t, err); e.Kind != KindUnproven || !strings.Contains(e.Error(), "nested deeper") {
		t.Errorf("a deep answer: %v", err)
	}
	if resp, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/ok"}); err != nil || len(resp.Body) != len(ok) {
		t.Errorf("an answer within the bound: %v", err)
	}
}
