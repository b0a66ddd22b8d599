// Package outboxadmin serves the outboxes of scimgate's queued delivery on Caddy's admin
// endpoint (the admin.api.scimgate_outbox module): list targets and their tasks, show one
// task with its attempts, send a dead letter again, drop a task, pause and resume a
// target. Every change names who made it (the `by` parameter, required: Caddy's admin
// endpoint authenticates nobody, so the operator says who they are) and is journaled.
//
//	GET  /scimgate/outbox                          targets: pending, held, dead, oldest, paused
//	GET  /scimgate/outbox/{target}                 tasks; ?state=pending|dead&scim_id=<id>&limit=<n>
//	GET  /scimgate/outbox/{target}/{seq}           one task with its attempts
//	POST /scimgate/outbox/{target}/{seq}/retry     ?by=<who>: a dead letter is sent again
//	POST /scimgate/outbox/{target}/{seq}/drop      ?by=<who>: the app never gets the change
//	POST /scimgate/outbox/{target}/pause           ?by=<who>: no deliveries until resume
//	POST /scimgate/outbox/{target}/resume          ?by=<who>
package outboxadmin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/caddymodule/outbox"
)

func init() {
	caddy.RegisterModule(OutboxAdmin{})
}

// Prefix is where the outbox routes live on Caddy's admin endpoint.
const Prefix = "/scimgate/outbox"

// maxBy bounds the operator's name.
const maxBy = 128

// OutboxAdmin is the admin.api.scimgate_outbox module.
type OutboxAdmin struct{}

// CaddyModule returns the Caddy module information.
func (OutboxAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.scimgate_outbox",
		New: func() caddy.Module { return new(OutboxAdmin) },
	}
}

// Routes returns the outbox routes.
func (OutboxAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: Prefix, Handler: caddy.AdminHandlerFunc(serveTargets)},
		{Pattern: Prefix + "/", Handler: caddy.AdminHandlerFunc(serveTarget)},
	}
}

// TargetItem is one target in the list.
type TargetItem struct {
	Target   string     `json:"target"`
	Store    string     `json:"store"`
	Pending  int        `json:"pending"`
	Held     int        `json:"held"`
	InFlight int        `json:"in_flight"`
	Dead     int        `json:"dead"`
	Oldest   *time.Time `json:"oldest,omitempty"`
	Paused   bool       `json:"paused"`
}

func serveTargets(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path != Prefix {
		return apiError(http.StatusNotFound, fmt.Errorf("no such route: %s", r.URL.Path))
	}
	if err := allow(w, r, http.MethodGet); err != nil {
		return err
	}
	items := []TargetItem{}
	for _, wk := range outbox.Running() {
		s := wk.Stats()
		it := TargetItem{Target: wk.Target(), Store: wk.StorePath(), Pending: s.Pending, Held: s.Held, InFlight: s.InFlight, Dead: s.Dead, Paused: s.Paused}
		if !s.Oldest.IsZero() {
			it.Oldest = &s.Oldest
		}
		items = append(items, it)
	}
	return writeJSON(w, http.StatusOK, items)
}

// serveTarget dispatches /scimgate/outbox/{target}[/{seq}[/{action}]] and
// /scimgate/outbox/{target}/{pause|resume}.
func serveTarget(w http.ResponseWriter, r *http.Request) error {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, Prefix+"/"), "/")
	if len(parts) > 3 || parts[0] == "" {
		return apiError(http.StatusNotFound, fmt.Errorf("no such route: %s", r.URL.Path))
	}
	name, err := url.PathUnescape(parts[0])
	if err != nil {
		return apiError(http.StatusNotFound, fmt.Errorf("no such route: %s", r.URL.Path))
	}
	wk, err := find(name)
	if err != nil {
		return err
	}
	switch {
	case len(parts) == 1:
		if err := allow(w, r, http.MethodGet); err != nil {
			return err
		}
		return serveList(w, r, wk)
	case len(parts) == 2 && (parts[1] == "pause" || parts[1] == "resume"):
		if err := allow(w, r, http.MethodPost); err != nil {
			return err
		}
		by, err := operator(r)
		if err != nil {
			return err
		}
		op := wk.Pause
		if parts[1] == "resume" {
			op = wk.Resume
		}
		if err := op(by); err != nil {
			return apiError(http.StatusInternalServerError, err)
		}
		return writeJSON(w, http.StatusOK, map[string]any{"target": name, "paused": parts[1] == "pause"})
	}
	seq, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil || seq == 0 {
		return apiError(http.StatusNotFound, fmt.Errorf("%q is not a task number (GET %s/%s lists them)", parts[1], Prefix, url.PathEscape(name)))
	}
	if len(parts) == 2 {
		if err := allow(w, r, http.MethodGet); err != nil {
			return err
		}
		v, err := wk.Show(r.Context(), seq)
		if err != nil {
			return taskError(err)
		}
		return writeJSON(w, http.StatusOK, v)
	}
	if err := allow(w, r, http.MethodPost); err != nil {
		return err
	}
	by, err := operator(r)
	if err != nil {
		return err
	}
	switch parts[2] {
	case "retry":
		err = wk.Retry(seq, by)
	case "drop":
		err = wk.Drop(seq, by)
	default:
		return apiError(http.StatusNotFound, fmt.Errorf("no such action %q: want retry or drop", parts[2]))
	}
	if err != nil {
		return taskError(err)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"target": name, "seq": seq, parts[2]: true})
}

func serveList(w http.ResponseWriter, r *http.Request, wk *outbox.Worker) error {
	q := r.URL.Query()
	for k := range q {
		if k != "state" && k != "scim_id" && k != "limit" {
			return apiError(http.StatusBadRequest, fmt.Errorf("unknown parameter %q: want state, scim_id or limit", k))
		}
	}
	f := outbox.Filter{State: q.Get("state"), Resource: q.Get("scim_id")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > outbox.MaxList {
			return apiError(http.StatusBadRequest, fmt.Errorf("limit %q: want 1 to %d", v, outbox.MaxList))
		}
		f.Limit = n
	}
	views, err := wk.List(f)
	if err != nil {
		return apiError(http.StatusBadRequest, err)
	}
	if views == nil {
		views = []outbox.View{}
	}
	return writeJSON(w, http.StatusOK, views)
}

// operator is who acts: the by parameter, required.
func operator(r *http.Request) (string, error) {
	by := r.URL.Query().Get("by")
	if by == "" || len(by) > maxBy || strings.ContainsFunc(by, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return "", apiError(http.StatusBadRequest, fmt.Errorf("by: say who you are (a name of 1 to %d printable characters); it is journaled with the action", maxBy))
	}
	return by, nil
}

// find returns the worker of target name: 404 when none, 409 when two stores have one.
func find(name string) (*outbox.Worker, error) {
	var found []*outbox.Worker
	for _, w := range outbox.Running() {
		if w.Target() == name {
			found = append(found, w)
		}
	}
	switch len(found) {
	case 0:
		return nil, apiError(http.StatusNotFound, fmt.Errorf("no target named %q (GET %s lists them)", name, Prefix))
	case 1:
		return found[0], nil
	}
	return nil, apiError(http.StatusConflict, fmt.Errorf("several stores have a target named %q; give each gateway's target its own name", name))
}

func taskError(err error) error {
	switch {
	case errors.Is(err, outbox.ErrNotFound):
		return apiError(http.StatusNotFound, err)
	case errors.Is(err, outbox.ErrConflict):
		return apiError(http.StatusConflict, err)
	}
	return apiError(http.StatusInternalServerError, err)
}

func allow(w http.ResponseWriter, r *http.Request, method string) error {
	if r.Method == method {
		return nil
	}
	w.Header().Set("Allow", method)
	return apiError(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed; use %s", r.Method, method))
}

// The journal's routes answer errors and JSON the same way.
var (
	apiError  = journaladmin.APIError
	writeJSON = journaladmin.WriteJSON
)

// Interface guards
var _ caddy.AdminRouter = (*OutboxAdmin)(nil)
