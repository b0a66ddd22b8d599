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
	lw := &lazyWriter{w: w, header: func(h http.Header) {
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
	if err != nil {
		return apiError(http.StatusInternalServerError, fmt.Errorf("writing a checkpoint of journal %s: %w", a.j.Name(), err))
	}
	return writeJSON(w, http.StatusOK, cp)
}

func serveBackup(w http.ResponseWriter, r *http.Request, a openJournal) error {
	if err := CheckParams(r.URL.Query()); err != nil {
		return badRequest(err)
	}
	lw := &lazyWriter{w: w, header: func(h http.Header) {
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
// any output can still answer with a status.
type lazyWriter struct {
	w       http.ResponseWriter
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
	return l.w.Write(p)
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
