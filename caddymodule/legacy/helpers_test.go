package legacy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// counter is a handler wrapper that counts requests and in-flight requests.
type counter struct {
	hits        atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
}

func (c *counter) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		n := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		for {
			m := c.maxInFlight.Load()
			if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		h(w, r)
	}
}

// newServer starts an httptest server on 127.0.0.1 and counts its requests.
func newServer(t testing.TB, h http.HandlerFunc) (*httptest.Server, *counter) {
	t.Helper()
	c := &counter{}
	srv := httptest.NewServer(c.wrap(h))
	t.Cleanup(srv.Close)
	return srv, c
}

// newTestClient builds a client with fast backoff, so retry tests do not sleep for long.
func newTestClient(t testing.TB, base string, o Options) *Client {
	t.Helper()
	o.BaseURL = base
	if o.RetryBackoff == 0 {
		o.RetryBackoff = time.Millisecond
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// refusedURL returns the URL of a 127.0.0.1 port nobody listens on.
func refusedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// blockUntilDone is a handler that never answers before the client gives up (bounded).
func blockUntilDone(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
	}
}

func status(code int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		w.Write([]byte(body))
	}
}

func asError(t testing.TB, err error) *Error {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %v (%T) is not *legacy.Error", err, err)
	}
	return e
}
