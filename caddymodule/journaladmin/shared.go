package journaladmin

import "net/http"

// What scimgate's other admin modules (../outboxadmin, ../reconcileadmin) answer with, as
// these routes do, so that every scimgate route answers errors alike.

// APIError is an error Caddy's admin endpoint writes as {"error": "..."} with status.
func APIError(status int, err error) error { return apiError(status, err) }

// WriteJSON writes v as the JSON answer with status, not to be cached.
func WriteJSON(w http.ResponseWriter, status int, v any) error { return writeJSON(w, status, v) }

// AllowMethods answers 405 with Allow unless the request's method is one of methods.
func AllowMethods(w http.ResponseWriter, r *http.Request, methods ...string) error {
	return allowMethods(w, r, methods...)
}
