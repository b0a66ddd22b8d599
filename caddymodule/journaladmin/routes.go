package journaladmin

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

// The export, verify, checkpoint and backup routes.

// formatExt is the file extension of each export format's download.
var formatExt = map[journal.Format]string{
	journal.FormatJSONL: "jsonl",
	journal.FormatCSV:   "csv",
	journal.FormatOCSF:  "ocsf.jsonl",
}

// ExportTrailer carries the record count after a streamed export, so a client can tell
// a complete export from one cut short.
const ExportTrailer = "Scimgate-Records"

func serveExport(w http.ResponseWriter, r *http.Request, a openJournal) error {
	q := r.URL.Query()
	if err := CheckParams(q, exportParams...); err != nil {
		return badRequest(err)
	}
	f, err := ParseFormat(q)
	if err != nil {
		return badRequest(err)
	}
	filter, err := ParseFilter(q)
	if err != nil {
		return badRequest(err)
	}
	w.Header().Set("Trailer", ExportTrailer)
	lw := &lazyWriter{w: w, rc: http.NewResponseController(w), header: func(h http.Header) {
		h.Set("Content-Type", f.ContentType())
		h.Set("Content-Disposition", attachment(a.j.Name(), formatExt[f]))
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
	}}
	n, err := a.j.Export(r.Context(), lw, filter.Query(), f)
	return finishStream(r, lw, err, func() { w.Header().Set(ExportTrailer, strconv.FormatUint(n, 10)) })
}

func serveVerify(w http.ResponseWriter, r *http.Request, a openJournal) error {
	if err := CheckParams(r.URL.Query()); err != nil {
		return badRequest(err)
	}
	rep, err := a.j.Verify(r.Context(), a.keys...)
	if err != nil {
		return apiError(http.StatusInternalServerError, fmt.Errorf("verifying journal %s: %w", a.j.Name(), err))
	}
	status := http.StatusOK
	if !rep.OK {
		status = http.StatusConflict
	}
	return writeJSON(w, status, rep)
}

func serveCheckpoint(w http.ResponseWriter, r *http.Request, a openJournal) error {
	if err := CheckParams(r.URL.Query()); err != nil {
		return badRequest(err)
	}
	cp, err := a.j.Checkpoint()
	if errors.Is(err, journal.ErrEmpty) {
		return apiError(http.StatusConflict, fmt.Errorf("journal %s has no records yet, so there is nothing to checkpoint", a.j.Name()))
	}
	if errors.Is(err, journal.ErrTailUnverified) {
		// The records since the newest checkpoint do not verify: nothing was signed.
		return apiError(http.StatusConflict, err)
	}
	if err != nil {
		return apiError(http.StatusInternalServerError, fmt.Errorf("writing a checkpoint of journal %s: %w", a.j.Name(), err))
	}
	return writeJSON(w, http.StatusOK, cp)
}

func serveBackup(w http.ResponseWriter, r *http.Request, a openJournal) error {
	if err := CheckParams(r.URL.Query()); err != nil {
		return badRequest(err)
	}
	lw := &lazyWriter{w: w, rc: http.NewResponseController(w), header: func(h http.Header) {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", attachment(a.j.Name(), "db"))
		h.Set("Cache-Control", "no-store")
	}}
	_, err := a.j.Backup(lw)
	return finishStream(r, lw, err, nil)
}

// finishStream ends a streamed response. An error before the first byte is an ordinary
// JSON error; after it, the status is gone, so the connection is aborted: the client sees a
// truncated body (and no trailer), never a short file that looks complete.
func finishStream(r *http.Request, lw *lazyWriter, err error, onSuccess func()) error {
	switch {
	case err == nil:
		if !lw.started {
			lw.start()
		}
		clearStallDeadline(lw.rc)
		if onSuccess != nil {
			onSuccess()
		}
		return nil
	case r.Context().Err() != nil:
		return nil // the client left; there is no one to answer
	case !lw.started:
		return apiError(http.StatusInternalServerError, err)
	}
	caddy.Log().Named("admin.api.scimgate_journal").Error("aborting a streamed response",
		zap.String("uri", r.RequestURI), zap.Error(err))
	panic(http.ErrAbortHandler) // net/http closes the connection without logging a panic
}

// lazyWriter commits the response headers on the first write, so an error found before
// any output can still answer with a status. With rc set, it writes under the stall
// deadline (stallWrite).
type lazyWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	header  func(http.Header)
	started bool
}

func (l *lazyWriter) start() {
	l.started = true
	l.header(l.w.Header())
	l.w.WriteHeader(http.StatusOK)
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.start()
	}
	if l.rc == nil {
		return l.w.Write(p)
	}
	return stallWrite(l.w, l.rc, p)
}

// Streamed responses (an export, a backup, the live stream) are written under a deadline
// that each write of at most stallChunk bytes renews: a client that stops reading for
// streamStall is cut off. Without it, such a client would hold what the stream holds for
// as long as it keeps its connection open: an export's share of the retention lock (so
// retention never runs and the journal grows without bound), a backup's read transaction
// (so bbolt reuses no page and the file grows), a live stream's goroutine and buffer.
// A slow client that keeps reading is not cut off: the deadline is per chunk, not per
// response.
var streamStall = time.Minute

const stallChunk = 64 << 10

// stallWrite writes p to w in chunks of at most stallChunk bytes, each under a deadline of
// streamStall from its start. A writer without deadlines (a test recorder) is written to
// as it is.
func stallWrite(w io.Writer, rc *http.ResponseController, p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), stallChunk)]
		if err := rc.SetWriteDeadline(time.Now().Add(streamStall)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return written, err
		}
		n, err := w.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// clearStallDeadline lifts the stall deadline once a stream has ended well, so that the
// next request on the same connection is not held to it.
func clearStallDeadline(rc *http.ResponseController) {
	if rc != nil {
		_ = rc.SetWriteDeadline(time.Time{})
	}
}

// attachment is a Content-Disposition naming the download after the journal and time.
func attachment(name, ext string) string {
	safe := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
	return fmt.Sprintf(`attachment; filename="scimgate-%s-%s.%s"`, safe, time.Now().UTC().Format("20060102T150405Z"), ext)
}

// Interface guards
var _ io.Writer = (*lazyWriter)(nil)
