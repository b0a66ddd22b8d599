package journaladmin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

// The live stream and its web page. Both are admin routes (admin.go), so they are protected
// like the rest of Caddy's admin API.
//
// Caddy's admin endpoint refuses browser requests that carry Sec-Fetch-Mode without a
// same-origin Origin or Referer, and every no-cors sub-resource request (script and style
// tags, images) outright. The page is therefore one self-contained document: its style and
// script are inlined at start-up and allowed by hash in a strict Content-Security-Policy,
// and the only request it makes is the same-origin EventSource, which carries a Referer
// (the page asks for one with Referrer-Policy: same-origin).

// Live stream settings; variables so tests need not wait 15 s for a heartbeat.
var (
	// liveHeartbeat is how often an idle stream sends a heartbeat event, so proxies keep
	// the connection and the page can tell a quiet journal from a dead connection.
	liveHeartbeat = 15 * time.Second

	// liveBuffer is the subscription's channel size. A client that falls further behind
	// is dropped by the journal and reconnects with Last-Event-ID, catching up from the
	// store: slow clients never slow down writers.
	liveBuffer = 256
)

const (
	// MaxBacklog bounds how many past records a (re)connecting client is sent; the page
	// keeps fewer rows than this anyway.
	MaxBacklog = 5000

	// liveRetryMillis is the reconnection delay the stream asks EventSource to use.
	liveRetryMillis = 2000
)

// liveRequest is a parsed live request.
type liveRequest struct {
	filter  Filter
	backlog uint64 // past records to send when not resuming
	after   uint64 // resume after this sequence number (0: not resuming)
}

// parseLiveRequest reads the live route's parameters (liveParams): the page's filters (a
// Filter's resource_type, user_name, outcome and scim_id), how many past records to send
// first, and where a reconnecting client left off (EventSource sends Last-Event-ID as a
// header on its own reconnects; a page that opens a new EventSource passes it as a
// parameter). A bad one is a *ParamError.
func parseLiveRequest(r *http.Request) (liveRequest, error) {
	q := r.URL.Query()
	var lr liveRequest
	if err := CheckParams(q, liveParams...); err != nil {
		return lr, err
	}
	filter, err := ParseFilter(q)
	if err != nil {
		return lr, err
	}
	lr.filter = filter
	if v := q.Get("backlog"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > MaxBacklog {
			return lr, &ParamError{"backlog", fmt.Errorf("want a number of records from 0 to %d, got %q", MaxBacklog, v)}
		}
		lr.backlog = n
	}
	last, param := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if last == "" {
		last, param = q.Get("last_event_id"), "last_event_id"
	}
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			return lr, &ParamError{param, fmt.Errorf("want the sequence number of the last record received, got %q", last)}
		}
		lr.after = n
	}
	return lr, nil
}

// liveDropped ends a stream the client should open again (with Last-Event-ID).
const liveDropped = "event: dropped\ndata: {\"reconnect\":true}\n\n"

// Event is a record as the stream, the page and `journal tail --json` show it: the
// record's fields with the hash that chains it, hex-encoded.
type Event struct {
	journal.Record
	Hash string `json:"hash"`
}

// serveLive streams records as they commit, as server-sent events:
//
//	id: <seq>
//	event: record
//	data: {record fields..., "hash": "<hex>"}
//
// and `event: heartbeat` every liveHeartbeat. A client that resumes more than MaxBacklog
// records back first gets `event: gap` with data {"from_seq": a, "to_seq": b}: the records
// the stream leaves out (an export has them). It subscribes before reading the backlog, so
// no record falls between the two (duplicates are skipped by sequence number); a
// Last-Event-ID beyond the head is from another history and resumes from now. It ends when
// the client goes away, when the journal drops the subscription (a client too slow to keep
// up, or the store closing) or when its server begins to shut down (a reload, a stop), the
// last two after an `event: dropped` that tells the client to reconnect with Last-Event-ID.
func serveLive(w http.ResponseWriter, r *http.Request, a openJournal) error {
	lr, err := parseLiveRequest(r)
	if err != nil {
		return badRequest(err)
	}
	sub := a.j.Subscribe(liveBuffer)
	defer sub.Close()
	if lr.after != 0 {
		head, err := headSeq(a.j)
		if err != nil {
			return apiError(http.StatusInternalServerError, fmt.Errorf("reading the head of journal %s: %w", a.j.Name(), err))
		}
		if lr.after > head {
			// The client saw another history (the store was restored from an older
			// backup; EventSource resends its last id by itself): resuming after its id
			// would skip every record up to it. It gets the records from now on.
			lr.after = 0
		}
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	s := &liveStream{w: w, rc: http.NewResponseController(w), filter: lr.filter, sent: lr.after}
	defer func() {
		if !s.stalled {
			clearStallDeadline(s.rc) // else the end of the response would wait for the client again
		}
	}()
	if err := s.write(fmt.Appendf(nil, "retry: %d\n\n", liveRetryMillis)); err != nil {
		return nil
	}
	if err := s.replay(r.Context(), a.j, lr); err != nil {
		return nil // the client is gone, or the journal closed: either way the stream is over
	}
	return s.follow(r.Context(), sub, serverStopping(r))
}

// serverStops holds, for each server that served a live stream, a channel closed when the
// server begins to shut down (*http.Server -> chan struct{}).
var serverStops sync.Map

// serverStopping returns a channel closed when the server that received r begins to shut
// down (nil if r came through none). A live stream never ends by itself and Caddy's
// servers shut down with an eternal grace period by default: a stream that did not end
// with its server would keep a stopping gateway from exiting until the auditor closed the
// page, and a reloaded config's old server open for as long. (The server runs these
// functions once, as its shutdown begins: the first stream of a server whose request was
// read after that is not ended this way. The listener is closed by then, so it would take
// a request sent on a kept-alive connection in that instant.)
func serverStopping(r *http.Request) <-chan struct{} {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return nil
	}
	if c, ok := serverStops.Load(srv); ok {
		return c.(chan struct{})
	}
	c := make(chan struct{})
	if prev, loaded := serverStops.LoadOrStore(srv, c); loaded {
		return prev.(chan struct{})
	}
	// Shutdown may be called more than once, and runs every registered function each time.
	srv.RegisterOnShutdown(sync.OnceFunc(func() {
		serverStops.CompareAndDelete(srv, c)
		close(c)
	}))
	return c
}

// liveStream writes one client's events.
type liveStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	filter  Filter
	sent    uint64 // highest sequence number considered (sent or filtered out)
	buf     bytes.Buffer
	stalled bool // a write failed: the client stopped reading (or left)
}

// replay sends the records the client has not seen: those after its Last-Event-ID, or the
// last backlog records, at most MaxBacklog either way.
func (s *liveStream) replay(ctx context.Context, j *journal.Journal, lr liveRequest) error {
	if lr.after == 0 && lr.backlog == 0 {
		return nil
	}
	head, err := headSeq(j)
	if err != nil || head <= lr.after {
		return err
	}
	from := lr.after + 1
	if lr.after == 0 {
		from = liveFirst(head, lr.backlog)
	}
	if head-from >= MaxBacklog {
		skipped := from
		from = liveFirst(head, MaxBacklog)
		if lr.after != 0 {
			// A resume further back than MaxBacklog: say which records the stream leaves
			// out, so that a client following the journal never loses some unawares.
			if err := s.write(fmt.Appendf(nil, "event: gap\ndata: {\"from_seq\":%d,\"to_seq\":%d}\n\n", skipped, from-1)); err != nil {
				return err
			}
		}
	}
	return ReadEntries(ctx, func(ctx context.Context, w io.Writer) error {
		_, err := j.Export(ctx, w, journal.Query{FromSeq: from, ToSeq: head}, journal.FormatJSONL)
		return err
	}, s.send)
}

// liveFirst is the first of the last n records up to head.
func liveFirst(head, n uint64) uint64 {
	if n >= head {
		return 1
	}
	return head - n + 1
}

// follow sends committed records until the client leaves, the subscription is dropped or
// stopping is closed (the server shuts down); the last two tell the client to reconnect.
func (s *liveStream) follow(ctx context.Context, sub *journal.Subscription, stopping <-chan struct{}) error {
	tick := time.NewTicker(liveHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stopping:
			_ = s.write([]byte(liveDropped))
			return nil
		case e, ok := <-sub.C:
			if !ok {
				_ = s.write([]byte(liveDropped))
				return nil
			}
			if err := s.send(e); err != nil {
				return nil
			}
		case now := <-tick.C:
			if err := s.write(fmt.Appendf(nil, "event: heartbeat\ndata: {\"time\":%q,\"seq\":%d}\n\n", now.UTC().Format(time.RFC3339), s.sent)); err != nil {
				return nil
			}
		}
	}
}

// send writes e as a record event unless it was sent before or the filter excludes it.
func (s *liveStream) send(e journal.Entry) error {
	if e.Record.Seq <= s.sent {
		return nil
	}
	s.sent = e.Record.Seq
	if !s.filter.Match(&e.Record) {
		return nil
	}
	data, err := json.Marshal(Event{Record: e.Record, Hash: hex.EncodeToString(e.Hash[:])})
	if err != nil {
		return fmt.Errorf("encoding record %d: %w", e.Record.Seq, err)
	}
	// json.Marshal never emits a raw newline, so the record is one data line.
	s.buf.Reset()
	fmt.Fprintf(&s.buf, "id: %d\nevent: record\ndata: ", e.Record.Seq)
	s.buf.Write(data)
	s.buf.WriteString("\n\n")
	return s.write(s.buf.Bytes())
}

// write sends p under the stall deadline (stallWrite), the flush included: a client that
// stops reading is cut off instead of holding the stream (and a replay's share of the
// retention lock) for as long as it keeps its connection.
func (s *liveStream) write(p []byte) error {
	_, err := stallWrite(s.w, s.rc, p)
	if err == nil {
		err = s.rc.Flush()
	}
	s.stalled = s.stalled || err != nil
	return err
}

// The page: live/watch.html with live/watch.css and live/watch.js inlined.

//go:embed live
var liveAssets embed.FS

// livePage is the page served at .../watch, and livePageCSP its Content-Security-Policy.
var livePage, livePageCSP = liveBuildPage()

// liveBuildPage inlines the style and script into the page and allows exactly them by hash.
// The assets are compiled in, so a failure here is a build defect.
func liveBuildPage() ([]byte, string) {
	read := func(name string) string {
		b, err := liveAssets.ReadFile("live/" + name)
		if err != nil {
			panic(fmt.Sprintf("scimgate: embedded asset %s: %v", name, err))
		}
		return string(b)
	}
	css, js := read("watch.css"), read("watch.js")
	page := strings.NewReplacer("/*STYLE*/", css, "/*SCRIPT*/", js).Replace(read("watch.html"))
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	csp := "default-src 'none'; script-src " + hash(js) + "; style-src " + hash(css) +
		"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return []byte(page), csp
}

// servePage serves the watch page. The page finds its stream from its own URL
// (.../{name}/watch -> .../{name}/live), so one document serves every journal.
func servePage(w http.ResponseWriter, r *http.Request, _ openJournal) error {
	if err := CheckParams(r.URL.Query(), pageParams...); err != nil {
		return badRequest(err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", livePageCSP)
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(livePage)
	return err
}
