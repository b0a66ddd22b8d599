package journaladmin

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

// ReadOnlyRoutes are the routes ServeReadOnly serves: everything an auditor reads, nothing
// that writes (a checkpoint stays on the admin endpoint).
var ReadOnlyRoutes = []string{"export", "verify", "backup", "live", "changes", "watch"}

// ServeReadOnly serves one journal's read-only routes outside Caddy's admin endpoint (the
// gateway serves them on its own site, behind an auditor's credentials): route is "" for
// the journal's description, else one of ReadOnlyRoutes, with the same parameters,
// answers and errors as on the admin endpoint. The caller authenticates.
func ServeReadOnly(w http.ResponseWriter, r *http.Request, j *journal.Journal, keys []ed25519.PublicKey, route string) {
	if err := serveReadOnly(w, r, openJournal{j: j, keys: keys, store: j.DB().String()}, route); err != nil {
		writeAPIError(w, err)
	}
}

func serveReadOnly(w http.ResponseWriter, r *http.Request, a openJournal, route string) error {
	serve := map[string]func(http.ResponseWriter, *http.Request, openJournal) error{
		"":        serveDescription,
		"export":  serveExport,
		"verify":  serveVerify,
		"backup":  serveBackup,
		"live":    serveLive,
		"changes": serveChanges,
		"watch":   servePage,
	}[route]
	if serve == nil {
		return apiError(http.StatusNotFound, fmt.Errorf("no such route: %s (audit routes: export, verify, backup, live, changes, watch)", r.URL.Path))
	}
	// GET only, as on the admin endpoint: a HEAD of /backup or /export would build what
	// it then throws away.
	if err := allowMethods(w, r, http.MethodGet); err != nil {
		return err
	}
	return serve(w, r, a)
}

// serveDescription names the journal and its routes.
func serveDescription(w http.ResponseWriter, r *http.Request, a openJournal) error {
	if err := CheckParams(r.URL.Query()); err != nil {
		return badRequest(err)
	}
	head, err := headSeq(a.j)
	if err != nil {
		return apiError(http.StatusInternalServerError, fmt.Errorf("reading the head of journal %s: %w", a.j.Name(), err))
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"name": a.j.Name(), "head_seq": head, "signed": len(a.keys) > 0, "routes": ReadOnlyRoutes,
	})
}

// writeAPIError writes a route's error as Caddy's admin endpoint does: {"error": "..."}
// with the status (500 for an error that carries none).
func writeAPIError(w http.ResponseWriter, err error) {
	status, msg := http.StatusInternalServerError, err.Error()
	var ae caddy.APIError
	if errors.As(err, &ae) {
		if ae.HTTPStatus != 0 {
			status = ae.HTTPStatus
		}
		if ae.Message != "" {
			msg = ae.Message
		}
	}
	_ = writeJSON(w, status, map[string]string{"error": msg})
}
