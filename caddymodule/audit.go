package caddymodule

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

// DefaultAuditPath is where the journal's read routes are served on the gateway's site.
const DefaultAuditPath = "/scimgate/audit"

// AuditConfig serves the gateway's journal to auditors on the gateway's own site, behind
// credentials of their own, so that production can keep Caddy's admin endpoint on a unix
// socket (or off): the admin endpoint trusts every local process, and the journal holds
// personal data. The routes are read-only (no checkpoint, nothing that writes):
//
//	GET <path>           the journal's name, head and whether checkpoints are signed
//	GET <path>/export    ?format=jsonl|csv|ocsf and the filters, as on the admin endpoint
//	GET <path>/verify    200 with the report, 409 when the chain does not verify
//	GET <path>/backup    a consistent snapshot of the store file
//	GET <path>/live      server-sent events as records commit
//	GET <path>/watch     the live page (a browser asks for the credentials: Basic auth)
type AuditConfig struct {
	// Path is where the routes are served. Default: /scimgate/audit. It must not be the
	// SCIM base path or lie under it.
	Path string `json:"path,omitempty"`

	// Tokens are the auditors' credentials, each with a name for the log: sent as
	// Authorization: Bearer <token>, or as Basic auth with the token as the password (so
	// that a browser can open the watch page). At least one, each at least 32 bytes and
	// unlike every token Entra uses: an Entra token never reads the journal and an
	// auditor's never changes the directory.
	Tokens []Token `json:"tokens,omitempty"`
}

// audit is a provisioned AuditConfig.
type audit struct {
	path   string
	tokens *tokenSet
}

func (c *AuditConfig) provision(repl *caddy.Replacer, basePath string, entra *tokenSet) (*audit, error) {
	path := c.Path
	if path == "" {
		path = DefaultAuditPath
	}
	path = "/" + strings.Trim(path, "/")
	if path == "/" || (basePath != "" && (strings.EqualFold(path, basePath) || hasPathPrefix(path, basePath) || hasPathPrefix(basePath, path))) {
		return nil, fmt.Errorf("audit: path %q must be a path of its own, apart from the SCIM base path %q", path, basePath)
	}
	if len(c.Tokens) == 0 {
		return nil, fmt.Errorf("audit: at least one token is needed (token <name> {env.SCIMGATE_AUDIT_TOKEN})")
	}
	tokens, err := newTokenSet(c.Tokens, repl)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for _, a := range tokens.tokens {
		for _, e := range entra.tokens {
			if subtle.ConstantTimeCompare(a.digest[:], e.digest[:]) == 1 {
				return nil, fmt.Errorf("audit: token %q has the value of the SCIM token %q; an auditor's token must be its own", a.name, e.name)
			}
		}
	}
	return &audit{path: path, tokens: tokens}, nil
}

// hasPathPrefix reports whether p is prefix or lies under it (case-insensitively, as the
// SCIM base path is matched).
func hasPathPrefix(p, prefix string) bool {
	return len(p) > len(prefix) && strings.EqualFold(p[:len(prefix)], prefix) && p[len(prefix)] == '/'
}

// route returns the audit route a path asks for: "" for the description, else the last
// segment; ok is false for paths outside the audit path.
func (a *audit) route(p string) (route string, ok bool) {
	if strings.EqualFold(p, a.path) || strings.EqualFold(p, a.path+"/") {
		return "", true
	}
	if !hasPathPrefix(p, a.path) {
		return "", false
	}
	return strings.TrimSuffix(p[len(a.path)+1:], "/"), true
}

// serveAudit answers an audit route: the auditor's credentials, then the journal's
// read-only route.
func (g *Handler) serveAudit(w http.ResponseWriter, r *http.Request, route string) {
	name, failure := g.audit.tokens.authenticateAuditor(r)
	if name == "" {
		g.logAuthFailure(r, failure)
		w.Header().Add("WWW-Authenticate", `Basic realm="scimgate audit", charset="UTF-8"`)
		w.Header().Add("WWW-Authenticate", `Bearer realm="scimgate audit"`)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "the audit routes need an auditor's token: Authorization: Bearer <token>, or Basic auth with the token as the password"})
		return
	}
	g.logger.Info("audit route served",
		zap.String("auditor", name), zap.String("route", route), zap.String("remote_ip", clientIP(r)))
	journaladmin.ServeReadOnly(w, r, g.store.journal, g.store.journalKeys, route)
}

// authenticateAuditor is authenticate for the audit routes: a bearer token, or Basic auth
// whose password is the token (a browser's EventSource cannot send a bearer token, and
// sends the Basic credentials it was given for the page).
func (s *tokenSet) authenticateAuditor(r *http.Request) (name, failure string) {
	if _, failure := authorizationHeader(r); failure != "" {
		return "", failure
	}
	if _, password, ok := r.BasicAuth(); ok {
		return s.match(password)
	}
	return s.authenticate(r)
}
