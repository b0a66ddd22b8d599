package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// contentType is sent on every response, whatever the request's Accept says: Entra's Test
// Connection probe does not negotiate, and rejecting on Accept quarantines jobs.
const contentType = "application/scim+json; charset=utf-8"

// relativePath strips BasePath; ok is false for paths outside it.
func (g *Handler) relativePath(p string) (string, bool) {
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
	// trail names a journaled request (every write; reads when configured): errors are
	// journaled as they are answered.
	trail *provision.Trail
	// bodyDeadline is when the body must have arrived (zero without a body; see
	// armBodyDeadline).
	bodyDeadline time.Time
	// release frees what the request holds until it is answered (a large-body slot).
	release []func()
	// largeBodyBytes is the size from which a body takes a large-body slot.
	largeBodyBytes int64
}

// engineRequest says who asks, for the engine's journal records and logs.
func (req *request) engineRequest() provision.Request {
	return provision.Request{Ctx: req.r.Context(), ID: req.id, Client: req.client}
}

func (g *Handler) serveSCIM(w http.ResponseWriter, r *http.Request, rel string) {
	req := &request{w: w, r: r, base: g.publicBase}
	defer func() {
		for _, release := range req.release {
			release()
		}
	}()
	if req.base == "" {
		req.base = baseURL(r, g.BasePath)
	}
	g.armBodyDeadline(req)
	client, failure := g.tokens.authenticate(r)
	if client == "" {
		g.logAuthFailure(r, failure)
		w.Header().Set("WWW-Authenticate", `Bearer realm="scimgate"`)
		g.writeError(req, scim.Errorf(http.StatusUnauthorized, "", "missing or invalid bearer token: send Authorization: Bearer <token> with a token configured in the gateway"))
		return
	}
	req.client = client
	req.id = requestID(req)
	if r.URL.RawQuery != "" {
		query, err := scim.NormalizeQuery(r.URL.RawQuery)
		if err != nil {
			g.writeError(req, err)
			return
		}
		req.r = withQuery(r, query)
	}

	segs := splitPath(rel)
	if len(segs) == 0 {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			g.methodNotAllowed(req, "GET, HEAD")
			return
		}
		g.list(req, "") // every resource type (RFC 7644 §3.4.2)
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
		if !g.onlyGet(req, len(segs) == 1) || g.refuseDiscoveryFilter(req) {
			return
		}
		g.writeJSON(req, http.StatusOK, scim.ServiceProviderConfig(req.base, scim.ServiceConfig{MaxResults: g.MaxResults}))
	case "resourcetypes":
		if !g.onlyGet(req, len(segs) <= 2) || g.refuseDiscoveryFilter(req) {
			return
		}
		g.serveResourceTypes(req, segs[1:])
	case "schemas":
		if !g.onlyGet(req, len(segs) <= 2) || g.refuseDiscoveryFilter(req) {
			return
		}
		g.serveSchemas(req, segs[1:])
	case ".search":
		if len(segs) != 1 {
			g.writeError(req, scim.NotFound("no SCIM endpoint at %s", r.URL.Path))
			return
		}
		if r.Method != http.MethodPost {
			g.methodNotAllowed(req, "POST")
			return
		}
		g.search(req, "") // every resource type (RFC 7644 §3.4.3)
	case "bulk":
		g.writeError(req, scim.Errorf(http.StatusNotImplemented, "", "bulk operations are not supported (see /ServiceProviderConfig)"))
	case "me":
		g.writeError(req, scim.Errorf(http.StatusNotImplemented, "", "the /Me endpoint is not supported"))
	default:
		g.writeError(req, scim.NotFound("no SCIM endpoint %q: use /Users, /Groups, /Schemas, /ResourceTypes or /ServiceProviderConfig", segs[0]))
	}
}

// withQuery is r with its query string replaced (see scim.NormalizeQuery), leaving the
// request Caddy holds as it came.
func withQuery(r *http.Request, query string) *http.Request {
	r = r.WithContext(r.Context())
	u := *r.URL
	u.RawQuery = query
	r.URL = &u
	return r
}

// logAuthFailure logs a failed authentication at info level, rate-limited (see
// authFailureLog): who (the client's address as Caddy determined it, trusted proxies
// considered), what (method and path) and why, never the token presented.
func (g *Handler) logAuthFailure(r *http.Request, failure string) {
	log, suppressed := g.tokens.failures.note(time.Now())
	if !log {
		return
	}
	fields := []zap.Field{
		zap.String("remote_ip", clientIP(r)),
		zap.String("method", r.Method),
		zap.String("path", logPath(r.URL.Path)),
		zap.String("reason", failure),
	}
	if suppressed > 0 {
		fields = append(fields, zap.Int("not_logged_since_last", suppressed))
	}
	g.logger.Info("authentication failed", fields...)
}

// clientIP is the client's address: Caddy's client_ip (which honours trusted_proxies)
// when set, else the connection's remote address.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
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

func (g *Handler) onlyGet(req *request, pathOK bool) bool {
	if !pathOK {
		g.writeError(req, scim.NotFound("no SCIM endpoint at %s", req.r.URL.Path))
		return false
	}
	if req.r.Method != http.MethodGet && req.r.Method != http.MethodHead {
		req.w.Header().Set("Allow", "GET, HEAD")
		g.writeError(req, scim.Errorf(http.StatusMethodNotAllowed, "", "%s is not allowed on %s; only GET and HEAD", req.r.Method, req.r.URL.Path))
		return false
	}
	return true
}

// refuseDiscoveryFilter answers 403 to a request for /ServiceProviderConfig, /ResourceTypes
// or /Schemas that carries a filter and reports whether it did: RFC 7644 §4 says such a
// filter SHOULD be refused, so that a client never takes the whole, unfiltered answer for
// the filtered one.
func (g *Handler) refuseDiscoveryFilter(req *request) bool {
	if strings.TrimSpace(req.r.URL.Query().Get("filter")) == "" {
		return false
	}
	g.writeError(req, scim.Errorf(http.StatusForbidden, "", "%s does not support filter (RFC 7644 §4); request it without one and select what you need from the answer", logPath(req.r.URL.Path)))
	return true
}

func (g *Handler) serveResourceTypes(req *request, rest []string) {
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

func (g *Handler) serveSchemas(req *request, rest []string) {
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
func (g *Handler) readBody(req *request) (map[string]any, error) {
	return g.readBodyWith(req, scim.DecodeBody)
}

// readBodyWith is readBody with decode (scim.DecodeBody or scim.DecodePatchBody) checking
// and decoding the bytes, which are dropped once decoded.
func (g *Handler) readBodyWith(req *request, decode func([]byte, int) (map[string]any, error)) (map[string]any, error) {
	if err := scim.CheckContentType(req.r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	if req.r.ContentLength > g.MaxBodyBytes {
		return nil, g.bodyTooLarge(req) // announced: refused before a byte of it is read
	}
	var src io.Reader = &bodyReader{body: req.r.Body, deadline: req.bodyDeadline}
	if g.largeBodies != nil {
		req.largeBodyBytes = g.LargeBodyBytes
		ar := &admitReader{r: src, threshold: g.LargeBodyBytes, admit: g.admitLarge(req)}
		if req.r.ContentLength > g.LargeBodyBytes && req.r.ContentLength <= g.MaxBodyBytes {
			ar.admitted = true // known large: wait for a slot before reading any of it
			if err := ar.admit(); err != nil {
				return nil, g.bodyAdmission(req, err)
			}
		}
		src = ar
	}
	body := http.MaxBytesReader(req.w, io.NopCloser(src), g.MaxBodyBytes)
	// A client that announces more than it sends costs the size it announced: at most
	// MaxBodyBytes, and above LargeBodyBytes only with a large-body slot (taken above).
	data, err := readAll(body, req.r.ContentLength)
	if err != nil {
		if errors.Is(err, errLargeBodiesBusy) || errors.Is(err, context.Canceled) {
			return nil, g.bodyAdmission(req, err)
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, g.bodyTooLarge(req)
		}
		if errors.Is(err, errBodyTimeout) {
			return nil, g.bodyTimedOut(req)
		}
		return nil, scim.BadRequest(scim.TypeInvalidSyntax, "reading the request body: %v", err)
	}
	return decode(data, g.MaxJSONDepth)
}

// readAll is io.ReadAll for a body announced to hold size bytes (-1: unknown): read into
// one buffer of that size, instead of one grown by doubling (up to twice the body, and as
// much again in the buffers it outgrew). A body longer than announced grows as io.ReadAll's.
func readAll(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, size+1) // the one more byte: the read that finds the end needs no growth
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// bodyTooLarge is the answer to a body over MaxBodyBytes, announced or read. The HTTP/1
// connection is closed: the rest of the body is not read.
func (g *Handler) bodyTooLarge(req *request) error {
	if req.r.ProtoMajor == 1 {
		req.w.Header().Set("Connection", "close")
	}
	return scim.Errorf(http.StatusRequestEntityTooLarge, "", "the request body is larger than %d bytes (max_body_size); send a smaller request, e.g. split a PATCH of many members in several", g.MaxBodyBytes)
}

// bodyAdmission is the answer to a large body that found no slot: 503 while others are
// processed, or nothing useful when the client left.
func (g *Handler) bodyAdmission(req *request, err error) error {
	if errors.Is(err, errLargeBodiesBusy) {
		return largeBodiesBusy(req)
	}
	return scim.BadRequest(scim.TypeInvalidSyntax, "reading the request body: %v", err)
}

// bodyTimedOut is the answer to a body that did not arrive in time: 408 Request Timeout,
// which RFC 9110 §15.5.9 defines for exactly this (SCIM, RFC 7644 §3.12, lists the
// statuses it gives a meaning to and leaves the others to HTTP), with the HTTP/1
// connection closed, since the rest of the body may still be on its way. On HTTP/2 and 3
// only the stream ends; "Connection: close" there would shut down every other stream of
// the connection.
func (g *Handler) bodyTimedOut(req *request) error {
	if req.r.ProtoMajor == 1 {
		req.w.Header().Set("Connection", "close")
	}
	return scim.Errorf(http.StatusRequestTimeout, "", "the request body did not arrive within %s; send it faster or in a smaller request", time.Duration(g.BodyTimeout))
}

// writeJSON answers with a SCIM JSON body.
func (g *Handler) writeJSON(req *request, status int, v any) {
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
	return scim.MarshalJSON(v, false)
}

// writeError answers a request that failed before or outside the engine with the SCIM
// error err means, journaled when the request is (see provision.Engine.Fail).
func (g *Handler) writeError(req *request, err error) {
	g.answerError(req, g.engine.Fail(req.engineRequest(), req.trail, err))
}

// answerError answers a failed request's SCIM error, with Retry-After when the engine gives
// one (whole seconds, rounded up), and logs it: server errors as warnings (never with the
// request's body), rejections at debug level.
func (g *Handler) answerError(req *request, res *provision.Result) {
	req.trail = nil
	se := res.Err
	if res.RetryAfter > 0 {
		req.w.Header().Set("Retry-After", strconv.FormatInt(int64((res.RetryAfter+time.Second-1)/time.Second), 10))
	}
	if se.Status >= 500 && se.Status != http.StatusNotImplemented {
		g.logger.Warn("scim request answered with a server error", zap.Int("status", se.Status), zap.String("detail", se.Detail))
	} else {
		g.logger.Debug("scim request rejected",
			zap.String("method", req.r.Method),
			zap.String("path", logPath(req.r.URL.Path)),
			zap.String("client", req.client),
			zap.Int("status", se.Status),
			zap.String("scim_type", se.ScimType))
	}
	g.writeJSON(req, se.Status, se.Body())
}

// logPath is a request path cut for a log line: a client chooses it, and a 15,000-byte id
// should not become a 15,000-byte line.
func logPath(p string) string {
	const limit = 256
	if len(p) <= limit {
		return p
	}
	return p[:limit] + "…"
}

// baseURL is the absolute URL of the SCIM root as the client reached it: without
// public_url, its host is the request's Host header.
func baseURL(r *http.Request, basePath string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + basePath
}

// requestID is Caddy's request UUID when the request came through Caddy, else a new one.
func requestID(req *request) string {
	if repl, ok := req.r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if id, ok := repl.GetString("http.request.uuid"); ok && id != "" {
			return id
		}
	}
	return uuid.NewString()
}
