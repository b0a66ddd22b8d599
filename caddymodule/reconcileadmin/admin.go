// Package reconcileadmin serves scimgate's reconciles on Caddy's admin endpoint: the
// admin.api.scimgate_reconcile module runs a reconcile of a target with its app (see
// ../reconcile), lists and reads the stored reports, and repairs what a report found.
// The reconcilers are those registered with Register (caddymodule registers each
// target's while its configuration is in force), so the routes follow config reloads.
package reconcileadmin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/caddymodule/reconcile"
	"github.com/scimgate/scimgate/caddymodule/store"
)

func init() {
	caddy.RegisterModule(ReconcileAdmin{})
}

// Prefix is where the reconcile routes live on Caddy's admin endpoint.
const Prefix = "/scimgate/reconcile"

// ReconcileAdmin is the admin.api.scimgate_reconcile module, protected like the rest of
// the admin API:
//
//	GET  /scimgate/reconcile                              the targets and their recent reports
//	POST /scimgate/reconcile/{target}/run[?fix=true]      reconcile now; the report
//	                                                      (?by=cli: the command asked)
//	GET  /scimgate/reconcile/{target}/reports             the stored reports' summaries
//	GET  /scimgate/reconcile/{target}/reports/{id}        one report
//	POST /scimgate/reconcile/{target}/reports/{id}/fix    make the repairs of a report
//
// Reports are JSON, or with ?format=csv or ?format=table the CSV and the table.
type ReconcileAdmin struct{}

// CaddyModule returns the Caddy module information.
func (ReconcileAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.scimgate_reconcile",
		New: func() caddy.Module { return new(ReconcileAdmin) },
	}
}

// Routes returns the reconcile routes.
func (ReconcileAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: Prefix, Handler: caddy.AdminHandlerFunc(serveList)},
		{Pattern: Prefix + "/", Handler: caddy.AdminHandlerFunc(serveTarget)},
	}
}

// registry holds the reconcilers of the configurations in force, in registration order:
// during a reload the new configuration's is registered before the old one's goes, and
// the newest of a target's wins.
var registry struct {
	sync.Mutex
	list []*reconcile.Reconciler
}

// Register makes rc available to the routes until unregister is called (which may be
// called more than once).
func Register(rc *reconcile.Reconciler) (unregister func()) {
	registry.Lock()
	defer registry.Unlock()
	registry.list = append(registry.list, rc)
	return func() {
		registry.Lock()
		defer registry.Unlock()
		registry.list = slices.DeleteFunc(registry.list, func(x *reconcile.Reconciler) bool { return x == rc })
	}
}

// find returns the newest reconciler of target.
func find(target string) (*reconcile.Reconciler, error) {
	registry.Lock()
	defer registry.Unlock()
	for i := len(registry.list) - 1; i >= 0; i-- {
		if registry.list[i].Target() == target {
			return registry.list[i], nil
		}
	}
	return nil, apiError(http.StatusNotFound, fmt.Errorf("no target %q can be reconciled (GET %s lists those that can: a target whose mapping has a list call)", target, Prefix))
}

// targets returns the newest reconciler of each target, sorted by name.
func targets() []*reconcile.Reconciler {
	registry.Lock()
	defer registry.Unlock()
	byName := map[string]*reconcile.Reconciler{}
	for _, rc := range registry.list {
		byName[rc.Target()] = rc
	}
	out := make([]*reconcile.Reconciler, 0, len(byName))
	for _, rc := range byName {
		out = append(out, rc)
	}
	slices.SortFunc(out, func(a, b *reconcile.Reconciler) int { return strings.Compare(a.Target(), b.Target()) })
	return out
}

// TargetItem is one target in the list response.
type TargetItem struct {
	Target  string              `json:"target"`
	Reports []reconcile.Summary `json:"reports"`
}

func serveList(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path != Prefix {
		return apiError(http.StatusNotFound, fmt.Errorf("no such route: %s", r.URL.Path))
	}
	if err := allowMethods(w, r, http.MethodGet); err != nil {
		return err
	}
	items := []TargetItem{}
	for _, rc := range targets() {
		sums, err := rc.Summaries()
		if err != nil {
			return apiError(http.StatusInternalServerError, fmt.Errorf("reading the reports of %s: %w", rc.Target(), err))
		}
		items = append(items, TargetItem{Target: rc.Target(), Reports: sums})
	}
	return writeJSON(w, http.StatusOK, items)
}

// serveTarget dispatches /scimgate/reconcile/{target}/...
func serveTarget(w http.ResponseWriter, r *http.Request) error {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, Prefix+"/"), "/")
	rc, err := find(parts[0])
	if err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	if !slices.Contains([]string{"", reconcile.FormatJSON, reconcile.FormatCSV, reconcile.FormatTable}, format) {
		return apiError(http.StatusBadRequest, fmt.Errorf("format: %q is not json, csv or table", format))
	}
	switch {
	case len(parts) == 2 && parts[1] == "run":
		if err := allowMethods(w, r, http.MethodPost); err != nil {
			return err
		}
		fix, err := boolParam(r, "fix")
		if err != nil {
			return err
		}
		// The run goes on when the client goes away: its report is stored and listed.
		rep, err := rc.Run(context.WithoutCancel(r.Context()), fix, requester(r))
		if err != nil {
			return runError(err)
		}
		return writeReport(w, rep, format)
	case len(parts) == 2 && parts[1] == "reports":
		if err := allowMethods(w, r, http.MethodGet); err != nil {
			return err
		}
		sums, err := rc.Summaries()
		if err != nil {
			return apiError(http.StatusInternalServerError, err)
		}
		return writeJSON(w, http.StatusOK, sums)
	case len(parts) >= 3 && len(parts) <= 4 && parts[1] == "reports":
		id, err := strconv.ParseUint(parts[2], 10, 64)
		if err != nil {
			return apiError(http.StatusBadRequest, fmt.Errorf("report id %q is not a number", parts[2]))
		}
		if len(parts) == 4 {
			if parts[3] != "fix" {
				break
			}
			if err := allowMethods(w, r, http.MethodPost); err != nil {
				return err
			}
			rep, err := rc.FixReport(context.WithoutCancel(r.Context()), id, requester(r))
			if err != nil {
				return runError(err)
			}
			return writeReport(w, rep, format)
		}
		if err := allowMethods(w, r, http.MethodGet); err != nil {
			return err
		}
		rep, err := rc.Report(id)
		if err != nil {
			return runError(err)
		}
		return writeReport(w, rep, format)
	}
	return apiError(http.StatusNotFound, fmt.Errorf("no such route: %s (use %s/{target}/run, /reports or /reports/{id})", r.URL.Path, Prefix))
}

// requester names who asked, for the report and the journal: "cli" when the reconcile
// command says so (?by=cli), else "admin".
func requester(r *http.Request) string {
	if r.URL.Query().Get("by") == "cli" {
		return "cli"
	}
	return "admin"
}

// runError maps a reconcile's error to its status.
func runError(err error) error {
	switch {
	case errors.Is(err, reconcile.ErrBusy):
		return apiError(http.StatusConflict, err)
	case errors.Is(err, store.ErrNotFound):
		return apiError(http.StatusNotFound, errors.New("no such report (the store keeps the newest ones only)"))
	}
	return apiError(http.StatusInternalServerError, err)
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, apiError(http.StatusBadRequest, fmt.Errorf("%s: %q is not true or false", name, v))
	}
	return b, nil
}

func writeReport(w http.ResponseWriter, rep *reconcile.Report, format string) error {
	switch format {
	case reconcile.FormatCSV:
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	case reconcile.FormatTable:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	default:
		return writeJSON(w, http.StatusOK, rep)
	}
	w.Header().Set("Cache-Control", "no-store")
	return rep.Write(w, format)
}

var (
	apiError     = journaladmin.APIError
	writeJSON    = journaladmin.WriteJSON
	allowMethods = journaladmin.AllowMethods
)

// Interface guards
var _ caddy.AdminRouter = ReconcileAdmin{}
