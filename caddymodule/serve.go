package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// contentType is sent on every response, whatever the request's Accept says: Entra's Test
// Connection probe does not negotiate, and rejecting on Accept quarantines jobs.
const contentType = "application/scim+json; charset=utf-8"

// relativePath strips BasePath; ok is false for paths outside it.
func (g *Gateway) relativePath(p string) (string, bool) {
	if g.BasePath == "" {
		return p, true
	}
	if len(p) < len(g.BasePath) || !strings.EqualFold(p[:len(g.BasePath)], g.BasePath) {
		return "", false
	}
	rest := p[len(g.BasePath):]
	if rest != "" && rest[0] != '/' {
		return "", false
	}
	return rest, true
}

// request carries what one SCIM request needs through the handler.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	client string // token name
	base   string // absolute URL of the SCIM root, for meta.location and $ref
	id     string // request id (Caddy's http.request.uuid), in logs and the journal
	audit  *audit // set for journaled requests: errors are journaled as they are answered
}

func (g *Gateway) serveSCIM(w http.ResponseWriter, r *http.Request, rel string) {
	req := &request{w: w, r: r, base: baseURL(r, g.BasePath)}
	client := g.tokens.authenticate(r)
	if client == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="scimgate"`)
		g.writeError(req, scim.Errorf(http.StatusUnauthorized, "", "missing or invalid bearer token: send Authorization: Bearer <token> with a token configured in the gateway"))
		return
	}
	req.client = client
	req.id = requestID(req)

	segs := splitPath(rel)
	if len(segs) == 0 {
		g.writeError(req, scim.NotFound("no SCIM endpoint at %s: use %s/Users, /Groups, /Schemas, /ResourceTypes or /ServiceProviderConfig", r.URL.Path, g.BasePath))
		return
	}
	endpoint := strings.ToLower(segs[0])
	switch endpoint {
	case "users", "groups":
		typ := scim.UserType
		if endpoint == "groups" {
			typ = scim.GroupType
		}
		g.serveResources(req, typ, segs[1:])
	case "serviceproviderconfig", "serviceconfiguration":
		if !g.onlyGet(req, len(segs) == 1) {
			return
		}
		g.writeJSON(req, http.StatusOK, scim.ServiceProviderConfig(req.base, scim.ServiceConfig{MaxResults: g.MaxResults}))
	case "resourcetypes":
		if !g.onlyGet(req, len(segs) <= 2) {
			return
		}
		g.serveResourceTypes(req, segs[1:])
	case "schemas":
		if !g.onlyGet(req, len(segs) <= 2) {
			return
		}
		g.serveSchemas(req, segs[1:])
	case "bulk":
		g.writeError(req, scim.Errorf(http.StatusNotImplemented, "", "bulk operations are not supported (see /ServiceProviderConfig)"))
	case "me":
		g.writeError(req, scim.Errorf(http.StatusNotImplemented, "", "the /Me endpoint is not supported"))
	default:
		g.writeError(req, scim.NotFound("no SCIM endpoint %q: use /Users, /Groups, /Schemas, /ResourceTypes or /ServiceProviderConfig", segs[0]))
	}
}

// splitPath splits a relative path into non-empty segments, tolerating trailing slashes
// (/Users/ works as /Users).
func splitPath(rel string) []string {
	var out []string
	for _, s := range strings.Split(rel, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (g *Gateway) onlyGet(req *request, pathOK bool) bool {
	if !pathOK {
		g.writeError(req, scim.NotFound("no SCIM endpoint at %s", req.r.URL.Path))
		return false
	}
	if req.r.Method != http.MethodGet && req.r.Method != http.MethodHead {
		req.w.Header().Set("Allow", "GET")
		g.writeError(req, scim.Errorf(http.StatusMethodNotAllowed, "", "%s is not allowed on %s; only GET", req.r.Method, req.r.URL.Path))
		return false
	}
	return true
}

func (g *Gateway) serveResourceTypes(req *request, rest []string) {
	if len(rest) == 1 {
		rt := scim.ResourceTypeByName(rest[0])
		if rt == nil {
			g.writeError(req, scim.NotFound("resource type %q not found; this gateway serves User and Group", rest[0]))
			return
		}
		g.writeJSON(req, http.StatusOK, scim.ResourceTypeDoc(req.base, rt))
		return
	}
	var list []any
	for _, rt := range scim.ResourceTypes() {
		list = append(list, scim.ResourceTypeDoc(req.base, rt))
	}
	g.writeJSON(req, http.StatusOK, scim.ListResponse(list, len(list), 1))
}

func (g *Gateway) serveSchemas(req *request, rest []string) {
	if len(rest) == 1 {
		s := scim.SchemaByID(rest[0])
		if s == nil {
			g.writeError(req, scim.NotFound("schema %q not found; see /Schemas for the list", rest[0]))
			return
		}
		g.writeJSON(req, http.StatusOK, scim.SchemaDoc(req.base, s))
		return
	}
	var list []any
	for _, s := range scim.Schemas() {
		list = append(list, scim.SchemaDoc(req.base, s))
	}
	g.writeJSON(req, http.StatusOK, scim.ListResponse(list, len(list), 1))
}

// readBody reads a bounded request body and checks its media type, size, encoding, depth
// and keys before decoding it into a JSON object.
func (g *Gateway) readBody(req *request) (map[string]any, error) {
	if ct := req.r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/scim+json" && mt != "application/json") {
			return nil, scim.Errorf(http.StatusUnsupportedMediaType, "", "Content-Type %q is not supported; send application/scim+json or application/json", ct)
		}
	}
	body := http.MaxBytesReader(req.w, req.r.Body, g.MaxBodyBytes)
	data, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, scim.Errorf(http.StatusRequestEntityTooLarge, "", "the request body is larger than %d bytes", g.MaxBodyBytes)
		}
		return nil, scim.BadRequest(scim.TypeInvalidSyntax, "reading the request body: %v", err)
	}
	return scim.DecodeBody(data, g.MaxJSONDepth)
}

// writeJSON answers with a SCIM JSON body.
func (g *Gateway) writeJSON(req *request, status int, v any) {
	data, err := marshalJSON(v)
	if err != nil {
		g.logger.Error("encoding response", zap.Error(err))
		status = http.StatusInternalServerError
		data, _ = json.Marshal((&scim.Error{Status: status, Detail: "the gateway could not encode its response"}).Body())
	}
	h := req.w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	req.w.WriteHeader(status)
	if req.r.Method != http.MethodHead {
		_, _ = req.w.Write(data)
	}
}

// marshalJSON encodes without HTML escaping: SCIM bodies are not HTML, and "<" stays "<".
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// writeError answers with a SCIM Error object. Store errors become the SCIM error they
// mean; anything unexpected is a 500 (logged with the request, never with its body).
func (g *Gateway) writeError(req *request, err error) {
	se := g.toSCIMError(req, err)
	if req.audit != nil {
		se = g.journalFailure(req, se)
	}
	if se.Status >= 500 && se.Status != http.StatusNotImplemented {
		g.logger.Warn("scim request answered with a server error", zap.Int("status", se.Status), zap.String("detail", se.Detail))
	} else {
		g.logger.Debug("scim request rejected",
			zap.String("method", req.r.Method),
			zap.String("path", req.r.URL.Path),
			zap.String("client", req.client),
			zap.Int("status", se.Status),
			zap.String("scim_type", se.ScimType))
	}
	g.writeJSON(req, se.Status, se.Body())
}

// toSCIMError maps an error to the SCIM error it means. Store errors become the SCIM error
// they mean; anything unexpected is a 503 with Retry-After (logged with the request, never
// with its body): Entra retries those, where a 500 would count toward quarantine.
func (g *Gateway) toSCIMError(req *request, err error) *scim.Error {
	var se *scim.Error
	var ue *store.UniqueError
	var pd *policyDenied
	switch {
	case errors.As(err, &pd):
		return pd.scimError()
	case errors.As(err, &se):
		return se
	case errors.As(err, &ue):
		return scim.Conflict("%s %q is already used by %s %s; %s values must be unique (case-insensitively)", ue.Attr, ue.Value, ue.Type, ue.OwnerID, ue.Attr)
	case errors.Is(err, store.ErrNotFound):
		return scim.NotFound("resource not found")
	}
	g.logger.Error("scim request failed",
		zap.String("method", req.r.Method),
		zap.String("path", req.r.URL.Path),
		zap.String("client", req.client),
		zap.String("request_id", req.id),
		zap.Error(err))
	req.w.Header().Set("Retry-After", "30")
	return scim.Errorf(http.StatusServiceUnavailable, "", "the gateway could not complete the request (storage error); retry later")
}

// journalFailure records a rejected (4xx) or failed (5xx) request in its own transaction:
// the request's own transaction, if any, was rolled back. A rejection that cannot be
// recorded is answered 503 instead, so that no outcome goes unrecorded.
func (g *Gateway) journalFailure(req *request, se *scim.Error) *scim.Error {
	a := req.audit
	req.audit = nil
	outcome := journal.OutcomeRejected
	switch {
	case se.Status >= 500:
		outcome = journal.OutcomeFailed
	case se.Status == http.StatusForbidden && a.decision != nil && !a.decision.Allow:
		outcome = journal.OutcomeDenied
	}
	rec, err := g.prepareRecord(req, a, outcome, se.Status, se.Detail)
	if err == nil {
		err = g.store.Update(func(tx *store.Tx) error { return g.appendPrepared(tx, rec) })
	}
	if err == nil {
		return se
	}
	g.logger.Error("journaling a rejected request failed", zap.String("request_id", req.id), zap.Error(err))
	if se.Status >= 500 {
		return se
	}
	req.w.Header().Set("Retry-After", "30")
	return scim.Errorf(http.StatusServiceUnavailable, "", "the gateway could not record the request in its audit journal; retry later")
}

// baseURL is the absolute URL of the SCIM root as the client reached it.
func baseURL(r *http.Request, basePath string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + basePath
}
