package caddymodule

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
)

func init() {
	caddy.RegisterModule(JournalAdmin{})
}

// admPrefix is where the journal routes live on Caddy's admin endpoint.
const admPrefix = "/scimgate/journals"

// admMaxParamBytes bounds every query parameter value: filters are names and ids, never
// documents, and a bound keeps a hostile query from costing more than its parse.
const admMaxParamBytes = 1024

// JournalAdmin is the admin.api.scimgate_journal module: it adds the journal's routes to
// Caddy's admin endpoint, so they are protected exactly like the rest of the admin API
// (loopback by default, plus whatever origins, enforce_origin and remote-admin rules the
// user configured). The journals are found through the package-level store pool, so the
// routes follow config reloads without holding references of their own.
//
//	GET  /scimgate/journals                     list: name, head seq, store path
//	GET  /scimgate/journals/{name}/export       ?format=jsonl|csv|ocsf and the query filters
//	GET  /scimgate/journals/{name}/verify       200 with the report, 409 when it does not verify
//	POST /scimgate/journals/{name}/checkpoint   a checkpoint now (signed when a key is set)
//	GET  /scimgate/journals/{name}/backup       a consistent snapshot of the store file
//	GET  /scimgate/journals/{name}/live         server-sent events as records commit
//	GET  /scimgate/journals/{name}/watch        a web page that shows the live stream
type JournalAdmin struct{}

// CaddyModule returns the Caddy module information.
func (JournalAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.scimgate_journal",
		New: func() caddy.Module { return new(JournalAdmin) },
	}
}

// Routes returns the journal routes.
func (JournalAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: admPrefix, Handler: caddy.AdminHandlerFunc(admServeList)},
		{Pattern: admPrefix + "/", Handler: caddy.AdminHandlerFunc(admServeJournal)},
	}
}

// admJournal is an open journal as the admin routes see it.
type admJournal struct {
	j     *journal.Journal
	pub   ed25519.PublicKey
	store string
}

// admJournals returns the journals of the open stores, sorted by name.
func admJournals() []admJournal {
	var out []admJournal
	stores.Range(func(key, value any) bool {
		h, ok := value.(*storeHandle)
		if !ok || h.journal == nil {
			return true
		}
		path, _ := key.(string)
		out = append(out, admJournal{j: h.journal, pub: h.journalPub, store: path})
		return true
	})
	slices.SortFunc(out, func(a, b admJournal) int { return strings.Compare(a.j.Name(), b.j.Name()) })
	return out
}

// admFindJournal returns the journal called name: a 404 APIError when there is none, a 409
// when two stores' journals share the name (two gateways left at the default name), since
// exporting or verifying the wrong one must not happen silently.
func admFindJournal(name string) (admJournal, error) {
	var found []admJournal
	for _, a := range admJournals() {
		if a.j.Name() == name {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 0:
		return admJournal{}, admError(http.StatusNotFound, "", fmt.Errorf("no journal named %q (GET %s lists them)", name, admPrefix))
	case 1:
		return found[0], nil
	}
	paths := make([]string, len(found))
	for i, a := range found {
		paths[i] = a.store
	}
	return admJournal{}, admError(http.StatusConflict, "", fmt.Errorf("several journals are named %q (stores %s); give each gateway's journal its own name", name, strings.Join(paths, ", ")))
}

// admListItem is one journal in the list response.
type admListItem struct {
	Name    string `json:"name"`
	HeadSeq uint64 `json:"head_seq"`
	Store   string `json:"store"`
	Signed  bool   `json:"signed"`
}

func admServeList(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path != admPrefix {
		return admError(http.StatusNotFound, "", fmt.Errorf("no such route: %s", r.URL.Path))
	}
	if err := admAllowMethods(w, r, http.MethodGet); err != nil {
		return err
	}
	if err := admCheckParams(r.URL.Query()); err != nil {
		return err
	}
	items := []admListItem{}
	for _, a := range admJournals() {
		head, err := admHead(a.j)
		if err != nil {
			return admError(http.StatusInternalServerError, "", fmt.Errorf("reading the head of journal %s: %w", a.j.Name(), err))
		}
		items = append(items, admListItem{Name: a.j.Name(), HeadSeq: head, Store: a.store, Signed: a.pub != nil})
	}
	return admWriteJSON(w, http.StatusOK, items)
}

// admHead is the sequence number of the journal's newest record (0 when empty).
func admHead(j *journal.Journal) (uint64, error) {
	var head uint64
	err := j.DB().View(func(tx *bbolt.Tx) error {
		var err error
		head, _, err = j.Head(tx)
		return err
	})
	return head, err
}

// admServeJournal dispatches /scimgate/journals/{name}/{action}.
func admServeJournal(w http.ResponseWriter, r *http.Request) error {
	name, action, err := admSplitPath(r.URL)
	if err != nil {
		return err
	}
	type route struct {
		method string
		serve  func(http.ResponseWriter, *http.Request, admJournal) error
	}
	routes := map[string]route{
		"export":     {http.MethodGet, admServeExport},
		"verify":     {http.MethodGet, admServeVerify},
		"checkpoint": {http.MethodPost, admServeCheckpoint},
		"backup":     {http.MethodGet, admServeBackup},
		"live":       {http.MethodGet, liveServeSSE},
		"watch":      {http.MethodGet, liveServePage},
	}
	rt, ok := routes[action]
	if !ok {
		return admError(http.StatusNotFound, "", fmt.Errorf("no such route: %s (journal routes: export, verify, checkpoint, backup, live, watch)", r.URL.Path))
	}
	if err := admAllowMethods(w, r, rt.method); err != nil {
		return err
	}
	a, err := admFindJournal(name)
	if err != nil {
		return err
	}
	return rt.serve(w, r, a)
}

// admSplitPath splits /scimgate/journals/{name}/{action} into its (unescaped) parts.
func admSplitPath(u *url.URL) (name, action string, err error) {
	rest := strings.TrimPrefix(u.EscapedPath(), admPrefix+"/")
	parts := strings.Split(rest, "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", admError(http.StatusNotFound, "", fmt.Errorf("no such route: %s (want %s/{name}/{action})", u.Path, admPrefix))
	}
	name, err = url.PathUnescape(parts[0])
	if err != nil {
		return "", "", admError(http.StatusBadRequest, "", fmt.Errorf("journal name in the path: %w", err))
	}
	return name, parts[1], nil
}

// admAllowMethods answers 405 with an Allow header unless r uses one of methods. HEAD is
// never allowed: every route either streams or changes state.
func admAllowMethods(w http.ResponseWriter, r *http.Request, methods ...string) error {
	if slices.Contains(methods, r.Method) {
		return nil
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	return admError(http.StatusMethodNotAllowed, "", fmt.Errorf("method %s not allowed; use %s", r.Method, strings.Join(methods, " or ")))
}

// admError is the error every route returns: Caddy's admin endpoint writes it as
// {"error": "..."} with the status, like its own errors. A bad parameter is named both in
// the message and in the APIError's text so a script can tell which one to fix.
func admError(status int, param string, err error) error {
	msg := err.Error()
	if param != "" {
		msg = fmt.Sprintf("parameter %s: %s", param, msg)
	}
	return caddy.APIError{HTTPStatus: status, Err: errors.New(msg), Message: msg}
}

func admWriteJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return admError(http.StatusInternalServerError, "", fmt.Errorf("encoding the response: %w", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

// admCheckParams rejects any parameter not in known, given twice, or too long: a misspelt
// filter must fail, not export everything.
func admCheckParams(q url.Values, known ...string) error {
	for k, vs := range q {
		if !slices.Contains(known, k) {
			if len(known) == 0 {
				return admError(http.StatusBadRequest, k, errors.New("unknown parameter; this route takes none"))
			}
			return admError(http.StatusBadRequest, k, fmt.Errorf("unknown parameter; known: %s", strings.Join(known, ", ")))
		}
		if len(vs) > 1 {
			return admError(http.StatusBadRequest, k, errors.New("given more than once"))
		}
		if len(vs[0]) > admMaxParamBytes {
			return admError(http.StatusBadRequest, k, fmt.Errorf("longer than %d bytes", admMaxParamBytes))
		}
	}
	return nil
}

// admQueryParams are the export filters, shared by export, live and the CLI.
var admQueryParams = []string{"from", "to", "from_seq", "to_seq", "scim_id", "user_name", "outcome"}

// admOutcomeRE accepts outcome names (applied, denied, failed, ...) without fixing the set,
// which belongs to the journal and grows with it.
var admOutcomeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// admParseQuery builds a journal.Query from the export filters in q.
func admParseQuery(q url.Values) (journal.Query, error) {
	var jq journal.Query
	var err error
	if jq.FromTime, err = admParseTime(q, "from"); err != nil {
		return jq, err
	}
	if jq.ToTime, err = admParseTime(q, "to"); err != nil {
		return jq, err
	}
	if !jq.FromTime.IsZero() && !jq.ToTime.IsZero() && jq.ToTime.Before(jq.FromTime) {
		return jq, admError(http.StatusBadRequest, "to", errors.New("is before from"))
	}
	if jq.FromSeq, err = admParseSeq(q, "from_seq"); err != nil {
		return jq, err
	}
	if jq.ToSeq, err = admParseSeq(q, "to_seq"); err != nil {
		return jq, err
	}
	if jq.ToSeq != 0 && jq.ToSeq < jq.FromSeq {
		return jq, admError(http.StatusBadRequest, "to_seq", errors.New("is below from_seq"))
	}
	jq.SCIMID = q.Get("scim_id")
	jq.Subject = q.Get("user_name")
	outcome, err := admParseOutcome(q, "outcome")
	if err != nil {
		return jq, err
	}
	jq.Outcome = change.Outcome(outcome)
	return jq, nil
}

// admParseTime reads an RFC 3339 time; absent means unbounded.
func admParseTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, admError(http.StatusBadRequest, name, fmt.Errorf("want an RFC 3339 time such as 2025-01-31T08:00:00Z, got %q", v))
	}
	return t, nil
}

// admParseSeq reads a sequence number; absent means unbounded.
func admParseSeq(q url.Values, name string) (uint64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, admError(http.StatusBadRequest, name, fmt.Errorf("want a sequence number from 1, got %q", v))
	}
	return n, nil
}

func admParseOutcome(q url.Values, name string) (string, error) {
	v := q.Get(name)
	if v != "" && !admOutcomeRE.MatchString(v) {
		return "", admError(http.StatusBadRequest, name, fmt.Errorf("want an outcome such as applied, denied or failed, got %q", v))
	}
	return v, nil
}

// admFormatExt is the file extension of each export format's download.
var admFormatExt = map[journal.Format]string{
	journal.FormatJSONL: "jsonl",
	journal.FormatCSV:   "csv",
	journal.FormatOCSF:  "ocsf.jsonl",
}

func admParseFormat(q url.Values) (journal.Format, error) {
	v := q.Get("format")
	if v == "" {
		return journal.FormatJSONL, nil
	}
	f, err := journal.ParseFormat(v)
	if err != nil {
		return "", admError(http.StatusBadRequest, "format", fmt.Errorf("want jsonl, csv or ocsf, got %q", v))
	}
	return f, nil
}

// admExportTrailer carries the record count after a streamed export, so a client can tell
// a complete export from one cut short.
const admExportTrailer = "Scimgate-Records"

func admServeExport(w http.ResponseWriter, r *http.Request, a admJournal) error {
	q := r.URL.Query()
	if err := admCheckParams(q, append([]string{"format"}, admQueryParams...)...); err != nil {
		return err
	}
	f, err := admParseFormat(q)
	if err != nil {
		return err
	}
	jq, err := admParseQuery(q)
	if err != nil {
		return err
	}
	w.Header().Set("Trailer", admExportTrailer)
	lw := &admLazyWriter{w: w, header: func(h http.Header) {
		h.Set("Content-Type", f.ContentType())
		h.Set("Content-Disposition", admAttachment(a.j.Name(), admFormatExt[f]))
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
	}}
	n, err := a.j.Export(r.Context(), lw, jq, f)
	return admFinishStream(r, lw, err, func() { w.Header().Set(admExportTrailer, strconv.FormatUint(n, 10)) })
}

func admServeVerify(w http.ResponseWriter, r *http.Request, a admJournal) error {
	if err := admCheckParams(r.URL.Query()); err != nil {
		return err
	}
	rep, err := a.j.Verify(r.Context(), a.pub)
	if err != nil {
		return admError(http.StatusInternalServerError, "", fmt.Errorf("verifying journal %s: %w", a.j.Name(), err))
	}
	status := http.StatusOK
	if !rep.OK {
		status = http.StatusConflict
	}
	return admWriteJSON(w, status, rep)
}

func admServeCheckpoint(w http.ResponseWriter, r *http.Request, a admJournal) error {
	if err := admCheckParams(r.URL.Query()); err != nil {
		return err
	}
	cp, err := a.j.Checkpoint()
	if errors.Is(err, journal.ErrEmpty) {
		return admError(http.StatusConflict, "", fmt.Errorf("journal %s has no records yet, so there is nothing to checkpoint", a.j.Name()))
	}
	if err != nil {
		return admError(http.StatusInternalServerError, "", fmt.Errorf("writing a checkpoint of journal %s: %w", a.j.Name(), err))
	}
	return admWriteJSON(w, http.StatusOK, cp)
}

func admServeBackup(w http.ResponseWriter, r *http.Request, a admJournal) error {
	if err := admCheckParams(r.URL.Query()); err != nil {
		return err
	}
	lw := &admLazyWriter{w: w, header: func(h http.Header) {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", admAttachment(a.j.Name(), "db"))
		h.Set("Cache-Control", "no-store")
	}}
	_, err := a.j.Backup(lw)
	return admFinishStream(r, lw, err, nil)
}

// admFinishStream ends a streamed response. An error before the first byte is an ordinary
// JSON error; after it, the status is gone, so the connection is aborted: the client sees a
// truncated body (and no trailer), never a short file that looks complete.
func admFinishStream(r *http.Request, lw *admLazyWriter, err error, onSuccess func()) error {
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
		return admError(http.StatusInternalServerError, "", err)
	}
	caddy.Log().Named("admin.api.scimgate_journal").Error("aborting a streamed response",
		zap.String("uri", r.RequestURI), zap.Error(err))
	panic(http.ErrAbortHandler) // net/http closes the connection without logging a panic
}

// admLazyWriter commits the response headers on the first write, so an error found before
// any output can still answer with a status.
type admLazyWriter struct {
	w       http.ResponseWriter
	header  func(http.Header)
	started bool
}

func (l *admLazyWriter) start() {
	l.started = true
	l.header(l.w.Header())
	l.w.WriteHeader(http.StatusOK)
}

func (l *admLazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.start()
	}
	return l.w.Write(p)
}

// admAttachment is a Content-Disposition naming the download after the journal and time.
func admAttachment(name, ext string) string {
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
var _ caddy.AdminRouter = (*JournalAdmin)(nil)

var _ io.Writer = (*admLazyWriter)(nil)
