package legacy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestClosedClientReleasesCallsInFlight: CloseIdleConnections (a config's Cleanup after a
// reload) while a call is at the app, and another call after it (a delivery that began
// before the reload makes its next call): once answered, their connections are closed
// rather than kept idle in the pool of a client nobody will use again (Go's transport
// stops closing newly idle connections at the next call: each held a file descriptor and
// two goroutines per reload until the 90 s idle timeout).
func TestClosedClientReleasesCallsInFlight(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	states := map[net.Conn]http.ConnState{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/x" {
			close(arrived)
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		states[c] = s
		mu.Unlock()
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL, Options{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Do(context.Background(), Request{Method: http.MethodDelete, Path: "/x"})
		done <- err
	}()
	<-arrived
	c.CloseIdleConnections()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(context.Background(), Request{Method: http.MethodDelete, Path: "/y"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		mu.Lock()
		open := 0
		for _, s := range states {
			if s != http.StateClosed && s != http.StateHijacked {
				open++
			}
		}
		mu.Unlock()
		if open == 0 {
			return
		}
		if i == 500 {
			t.Fatalf("%d connection(s) still open 5 s after the call ended", open)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
