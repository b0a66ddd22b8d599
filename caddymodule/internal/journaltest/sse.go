package journaltest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

// SSE is an open live stream read by a test.
type SSE struct {
	events chan sseEvent
	Cancel context.CancelFunc // closes the stream
	Done   chan error         // receives the reader's result when the stream ends
}

type sseEvent struct {
	event string
	data  []byte
}

// Live opens the admin endpoint's .../live?query with extra headers and reads its events
// in the background.
func (e *Env) Live(t *testing.T, query string, headers ...string) *SSE {
	t.Helper()
	return Stream(t, e.Client, "http://"+e.Admin+journaladmin.JournalPath(JournalName, "live")+"?"+query, headers...)
}

// Stream opens a live stream at u with client and headers and reads its events in the
// background. The stream is closed when the test ends.
func Stream(t *testing.T, client *http.Client, u string, headers ...string) *SSE {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		t.Fatalf("live: status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	s := &SSE{events: make(chan sseEvent, 1000), Cancel: cancel, Done: make(chan error, 1)}
	go func() {
		defer resp.Body.Close()
		s.Done <- journaladmin.ReadEvents(resp.Body, func(event string, data []byte) error {
			s.events <- sseEvent{event, bytes.Clone(data)}
			return nil
		})
		close(s.events)
	}()
	return s
}

// Next returns the data of the next event named event, skipping others, or fails after
// timeout.
func (s *SSE) Next(t *testing.T, event string, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("the stream ended while waiting for a %s event", event)
			}
			if ev.event == event {
				return ev.data
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", event, timeout)
		}
	}
}

// NextRecord returns the next record event, decoded.
func (s *SSE) NextRecord(t *testing.T) journaladmin.Event {
	t.Helper()
	var ev journaladmin.Event
	if err := json.Unmarshal(s.Next(t, "record", 10*time.Second), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}
