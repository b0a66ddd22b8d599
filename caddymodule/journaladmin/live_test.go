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
	go func() { done <- s.follow(context.Background(), &journal.Subscription{C: c}) }()
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
