package journaladmin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// TestStalledStreamsReleaseTheJournal: a client that asks for an export (or a live stream
// with a backlog) and then reads nothing must not hold the journal. Before, the stream
// waited in its write for as long as the client kept the connection open, holding its
// share of the retention lock: retention skipped every run, and the journal grew without
// bound, for as long as one auditor's (or a stuck SIEM's) connection stayed open. The
// stream now cuts such a client off after the stall deadline, and retention runs.
func TestStalledStreamsReleaseTheJournal(t *testing.T) {
	t.Cleanup(journaladmin.SetStreamStall(200 * time.Millisecond))
	e := journaltest.StartJournal(t, "max_records 10000000")
	j := journaladmin.RegisteredJournal(journaltest.JournalName)
	if j == nil {
		t.Fatal("no open journal named " + journaltest.JournalName)
	}
	// ~24 MB of records (20 MB in a live backlog of 5,000): more than the loopback
	// socket buffers hold, so the stream's writes block while the client reads nothing.
	detail := strings.Repeat("x", 4000)
	for batch := 0; batch < 6; batch++ {
		err := j.DB().Update(func(tx kv.Tx) error {
			for i := 0; i < 1000; i++ {
				r := &journal.Record{RequestID: fmt.Sprintf("bulk-%d-%d", batch, i), Client: "entra", Action: change.ActionCreate,
					ResourceType: "User", Outcome: change.Failed, Status: 503, Error: detail}
				if err := j.Append(tx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	for route, first := range map[string]string{"export?format=jsonl": `{"seq":`, "live?backlog=5000": "id: "} {
		t.Run(route, func(t *testing.T) {
			conn, err := net.Dial("tcp", e.Admin)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A fixed receive buffer: the kernel would otherwise grow it to tens of MB for
			// a client that reads nothing. Larger than a segment, so that the stream drains
			// at once when the client reads at the end.
			if err := conn.(*net.TCPConn).SetReadBuffer(256 << 10); err != nil {
				t.Fatal(err)
			}
			path := journaladmin.JournalPath(journaltest.JournalName, route)
			if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, e.Admin); err != nil {
				t.Fatal(err)
			}
			// The bounds only keep a failing test from hanging.
			if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
				t.Fatal(err)
			}
			// The client reads the stream's first record (so the stream runs and holds
			// what it holds), then nothing. Retention must get its turn.
			rd := bufio.NewReaderSize(conn, 4096)
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					t.Fatalf("reading the stream's first record: %v", err)
				}
				if strings.HasPrefix(line, first) {
					break
				}
			}
			done := make(chan error, 1)
			go func() {
				_, err := j.Prune(context.Background(), time.Now())
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("retention: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("retention still waits for a stream whose client reads nothing")
			}
			// The stream was cut off: the client gets what was buffered, then the end of
			// the connection (never an export's end line).
			for {
				line, err := rd.ReadString('\n')
				if strings.HasPrefix(line, `{"end":`) {
					t.Fatal("the stalled export ran to its end")
				}
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatalf("the connection of the stalled stream is still open: %v", err)
				}
			}
		})
	}
}

// TestLiveResumeBeyondTheBacklog: a client that resumes further back than MaxBacklog
// (`journal tail` after a network outage under load, a page after a laptop's sleep) is
// sent the newest MaxBacklog records only. Before, the records in between were left out
// without a word: ids jumped, and a follower lost them unawares. The stream now says which
// records it leaves out, first.
func TestLiveResumeBeyondTheBacklog(t *testing.T) {
	e := journaltest.Start(t)
	e.CreateUser(t, "alice@example.com")
	j := journaladmin.RegisteredJournal(journaltest.JournalName)
	if j == nil {
		t.Fatal("no open journal named " + journaltest.JournalName)
	}
	err := j.DB().Update(func(tx kv.Tx) error {
		for i := 0; i < journaladmin.MaxBacklog+100; i++ {
			r := &journal.Record{RequestID: fmt.Sprintf("bulk-%d", i), Client: "entra", Action: change.ActionCreate,
				ResourceType: "User", Outcome: change.Failed, Status: 503}
			if err := j.Append(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	head := e.Head(t)
	s := e.Live(t, "", "Last-Event-ID", "1")
	var gap struct {
		From uint64 `json:"from_seq"`
		To   uint64 `json:"to_seq"`
	}
	if err := json.Unmarshal(s.Next(t, "gap", 10*time.Second), &gap); err != nil {
		t.Fatal(err)
	}
	if gap.From != 2 || gap.To != head-journaladmin.MaxBacklog {
		t.Errorf("gap %+v, want records 2 to %d", gap, head-journaladmin.MaxBacklog)
	}
	if ev := s.NextRecord(t); ev.Seq != gap.To+1 {
		t.Errorf("the first record after the gap is %d, want %d", ev.Seq, gap.To+1)
	}

}
