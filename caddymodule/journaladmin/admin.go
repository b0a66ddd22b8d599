// Package journaladmin serves scimgate's audit journals on Caddy's admin endpoint: the
// admin.api.scimgate_journal module with its list, export, verify, checkpoint and backup
// routes, and the live stream with its web page. It serves the journals registered with
// Register (caddymodule registers each store's journal while the store is open). Filter is
// the selection of records that the routes and the journal command (../journalcmd) share.
package journaladmin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

func init() {
	caddy.RegisterModule(JournalAdmin{})
}

// Prefix is where the journal routes live on Caddy's admin endpoint.
const Prefix = "/scimgate/journals"

// maxParamBytes bounds every query parameter value: filters are names and ids, never
// documents, and a bound keeps a hostile query from costing more than its parse.
const maxParamBytes = 1024

// JournalAdmin is the admin.api.scimgate_journal module: it adds the journal's routes to
// Caddy's admin endpoint, so they are protected exactly like the rest of the admin API
// (loopback by default, plus whatever origins, enforce_origin and remote-admin rules the
// user configured). The journals are the registered ones (Register), so the routes follow
// config reloads without holding references of their own.
//
//	GET  /scimgate/journals                     list: name, head seq, store path
//	GET  /scimgate/journals/{name}/export       ?format=jsonl|csv|ocsf and the query filters
//	GET  /scimgate/journals/{name}/verify       200 with the report, 409 when it does not verify
//	POST /scimgate/journals/{name}/checkpoint   a checkpoint now (signed when a key is set)
//	GET  /scimgate/journals/{name}/backup       a consistent snapshot of the store file
//	GET  /scimgate/journals/{name}/live         server-sent events as records commit
//	GET  /scimgate/journals/{name}/changes      one row per change, filtered over the journal
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
		{Pattern: Prefix, Handler: caddy.AdminHandlerFunc(serveList)},
		{Pattern: Prefix + "/", Handler: caddy.AdminHandlerFunc(serveJournal)},
	}
}

// JournalPath is the admin path of one of a journal's routes (export, live, watch, ...).
func JournalPath(name, route string) string {
	return Prefix + "/" + url.PathEscape(name) + "/" + route
}

// ListItem is one journal in the list response.
type ListItem struct {
	Name    string `json:"name"`
	HeadSeq uint64 `json:"head_seq"`
	Store   string `json:"store"`
	Signed  bool   `json:"signed"`
}

func serveList(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path != Prefix {
		return apiError(http.StatusNotFound, fmt.Errorf("no such route: %s", r.URL.Path))
	}
	if err := allowMethods(w, r, http.MethodGet); err != nil {
		return err
	}
	if err := CheckParams(r.URL.Query()); err != nil {
		return badRequest(err)
	}
	items := []ListItem{}
	for _, a := range journals() {
		head, err := headSeq(a.j)
		if err != nil {
			return apiError(http.StatusInternalServerError, fmt.Errorf("reading the head of journal %s: %w", a.j.Name(), err))
		}
		items = append(items, ListItem{Name: a.j.Name(), HeadSeq: head, Store: a.store, Signed: len(a.keys) > 0})
	}
	return writeJSON(w, http.StatusOK, items)
}

// headSeq is the sequence number of the journal's newest record (0 when empty).
func headSeq(j *journal.Journal) (uint64, error) {
	var head uint64
	err := j.DB().View(func(tx kv.Tx) error {
		var err error
		head, _, err = j.Head(tx)
		return err
	})
	return head, err
}

// serveJournal dispatches /scimgate/journals/{name}/{action}.
func serveJournal(w http.ResponseWriter, r *http.Request) error {
	name, action, err := SplitPath(r.URL)
	if err != nil {
		return err
	}
	type route struct {
		method string
		serve  func(http.ResponseWriter, *http.Request, openJournal) error
	}
	routes := map[string]route{
		"export":     {http.MethodGet, serveExport},
		"verify":     {http.MethodGet, serveVerify},
		"checkpoint": {http.MethodPost, serveCheckpoint},
		"backup":     {http.MethodGet, serveBackup},
		"live":       {http.MethodGet, serveLive},
		"changes":    {http.MethodGet, serveChanges},
		"watch":      {http.MethodGet, servePage},
	}
	rt, ok := routes[action]
	if !ok {
		return apiError(http.StatusNotFound, fmt.Errorf("no such route: %s (journal routes: export, verify, checkpoint, backup, live, changes, watch)", r.URL.Path))
	}
	if err := allowMethods(w, r, rt.method); err != nil {
		return err
	}
	a, err := findJournal(name)
	if err != nil {
		return err
	}
	return rt.serve(w, r, a)
}

// SplitPath splits /scimgate/journals/{name}/{action} into its (unescaped) parts. Its
// error is the admin endpoint's answer to any other path (a caddy.APIError).
func SplitPath(u *url.URL) (name, action string, err error) {
	rest := strings.TrimPrefix(u.EscapedPath(), Prefix+"/")
	parts := strings.Split(rest, "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", apiError(http.StatusNotFound, fmt.Errorf("no such route: %s (want %s/{name}/{action})", u.Path, Prefix))
	}
	name, err = url.PathUnescape(parts[0])
	if err != nil {
		return "", "", apiError(http.StatusBadRequest, fmt.Errorf("journal name in the path: %w", err))
	}
	return name, parts[1], nil
}

// allowMethods answers 405 with an Allow header unless r uses one of methods. HEAD is
// never allowed: every route either streams or changes state.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) error {
	if slices.Contains(methods, r.Method) {
		return nil
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	return apiError(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed; use %s", r.Method, strings.Join(methods, " or ")))
}

// apiError is the error every route returns: Caddy's admin endpoint writes it as
// {"error": "..."} with the status, like its own errors.
func apiError(status int, err error) error {
	msg := err.Error()
	return caddy.APIError{HTTPStatus: status, Err: errors.New(msg), Message: msg}
}

// badRequest is the 400 of a bad parameter. The parameter (a ParamError's) is named both
// in the message and in the APIError's text so a script can tell which one to fix.
func badRequest(err error) error {
	return apiError(http.StatusBadRequest, err)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return apiError(http.StatusInternalServerError, fmt.Errorf("encoding the response: %w", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

// Interface guards
var _ caddy.AdminRouter = (*JournalAdmin)(nil)
