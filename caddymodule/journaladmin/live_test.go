package journaladmin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

// TestLiveDropped checks that a stream whose subscription the journal dropped tells the
// client to reconnect and ends.
func TestLiveDropped(t *testing.T) {
	c := make(chan journal.Entry, 1)
	c <- journal.Entry{Record: journal.Record{Seq: 7, Action: "create", Outcome: "applied"}}
	close(c)
	rec := httptest.NewRecorder()
	s := &liveStream{w: rec, rc: http.NewResponseController(rec)}
	done := make(chan error, 1)
	go func() { done <- s.follow(context.Background(), &journal.Subscription{C: c}, nil) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end when the subscription closed")
	}
	want := "id: 7\nevent: record\ndata: "
	if got := rec.Body.String(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "event: dropped\ndata: {\"reconnect\":true}\n\n") {
		t.Errorf("stream = %q", got)
	}
}

// TestServerStopping: the channel of a request's server closes when the server begins to
// shut down, once however often Shutdown is called; a request through no server gets none.
func TestServerStopping(t *testing.T) {
	srv := &http.Server{}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r = r.WithContext(context.WithValue(r.Context(), http.ServerContextKey, srv))
	c := serverStopping(r)
	if again := serverStopping(r); again != c {
		t.Fatal("a second stream of the server got another channel")
	}
	select {
	case <-c:
		t.Fatal("closed before the shutdown")
	default:
	}
	for range 2 {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("not closed after the shutdown")
	}
	if _, ok := serverStops.Load(srv); ok {
		t.Error("the stopped server is still held")
	}
	if c := serverStopping(httptest.NewRequest(http.MethodGet, "/", nil)); c != nil {
		t.Error("a request through no server got a channel")
	}
}
