// Package apptest is a legacy application for tests, served on 127.0.0.1: it issues
// short-lived OAuth 2.0 client-credentials tokens (and counts the token requests), checks
// HTTP basic auth or an API key, takes form-encoded bodies, answers creates with only a
// Location header, lists its accounts a page at a time, and announces its rate limit in
// headers. The legacy client's, the engine's and the Caddy module's tests share it.
package apptest

import (
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Auth kinds the app checks on /api/.
const (
	AuthBearer = "bearer" // a token from /oauth/token, not expired
	AuthBasic  = "basic"
	AuthAPIKey = "api_key" // in the X-Api-Key header or the api_key query parameter
)

// Options configure the app. Zero values are the defaults noted.
type Options struct {
	Auth string // AuthBearer (default), AuthBasic or AuthAPIKey
	// ClientID and ClientSecret the token endpoint accepts (basic auth or body).
	ClientID, ClientSecret string
	// TokenTTL is the lifetime of the tokens issued (expires_in); default 1h.
	TokenTTL time.Duration
	// User and Password for basic auth; Key for the API key.
	User, Password, Key string
	// Form requires creates and updates to be application/x-www-form-urlencoded.
	Form bool
	// PageSize is the accounts per page of GET /api/users (default 2).
	PageSize int
	// TLS, when set, serves HTTPS with it (e.g. requiring client certificates); the
	// server's certificate is App.Certificate.
	TLS *tls.Config
	// RateLimit, when set, is announced in RateLimit-Remaining/-Reset on every answer.
	RateLimit *RateLimit
}

// RateLimit is the window the app announces: remaining requests and seconds to reset.
type RateLimit struct {
	Remaining, Reset int
}

// App is a running test app.
type App struct {
	URL string // the base URL: /oauth/token and /api/...
	// Certificate is the server's certificate, with Options.TLS.
	Certificate *x509.Certificate
	// ClientNames are the common names of the client certificates presented.
	clientNames []string

	opts Options

	// TokenRequests counts the requests to the token endpoint; APIRequests the others.
	TokenRequests atomic.Int64
	APIRequests   atomic.Int64
	// DropLocation answers creates 201 without a Location header (the id is lost).
	DropLocation atomic.Bool
	// TokenStatus, when not 0, makes the token endpoint fail with that status.
	TokenStatus atomic.Int32
	gate        chan struct{} // when set, token requests wait until it is closed

	mu       sync.Mutex
	tokens   map[string]time.Time // access token -> expiry
	accounts map[string]url.Values
	order    []string
	nextID   int
	seen     []string // the raw query and Authorization of every /api/ request
}

// Start starts the app on 127.0.0.1; it stops when the test ends.
func Start(t testing.TB, o Options) *App {
	t.Helper()
	if o.Auth == "" {
		o.Auth = AuthBearer
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = time.Hour
	}
	if o.PageSize == 0 {
		o.PageSize = 2
	}
	a := &App{opts: o, tokens: map[string]time.Time{}, accounts: map[string]url.Values{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", a.token)
	mux.HandleFunc("/api/", a.api)
	srv := httptest.NewUnstartedServer(mux)
	if o.TLS != nil {
		srv.TLS = o.TLS
		srv.StartTLS()
		a.Certificate = srv.Certificate()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// HoldTokens makes token requests wait until ReleaseTokens.
func (a *App) HoldTokens() {
	a.mu.Lock()
	a.gate = make(chan struct{})
	a.mu.Unlock()
}

// ReleaseTokens lets the held token requests (and later ones) through.
func (a *App) ReleaseTokens() {
	a.mu.Lock()
	if a.gate != nil {
		close(a.gate)
		a.gate = nil
	}
	a.mu.Unlock()
}

// Expire makes every token issued so far invalid (the app restarted, a key rotated).
func (a *App) Expire() {
	a.mu.Lock()
	clear(a.tokens)
	a.mu.Unlock()
}

// Accounts returns the accounts by native id.
func (a *App) Accounts() map[string]url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]url.Values, len(a.accounts))
	for k, v := range a.accounts {
		out[k] = v
	}
	return out
}

// Add creates an account directly (a fixture).
func (a *App) Add(fields url.Values) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addLocked(fields)
}

// ClientNames returns the common names of the client certificates of /api/ requests.
func (a *App) ClientNames() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.clientNames...)
}

// Seen returns, per /api/ request, its Authorization header and raw query.
func (a *App) Seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

func (a *App) addLocked(fields url.Values) string {
	a.nextID++
	id := strconv.Itoa(1000 + a.nextID)
	a.accounts[id] = fields
	a.order = append(a.order, id)
	return id
}

func (a *App) token(w http.ResponseWriter, r *http.Request) {
	a.TokenRequests.Add(1)
	a.mu.Lock()
	gate := a.gate
	a.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if s := a.TokenStatus.Load(); s != 0 {
		w.Header().Set("Retry-After", "7")
		writeJSON(w, int(s), map[string]any{"error": "temporarily_unavailable"})
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if !equal(id, a.opts.ClientID) || !equal(secret, a.opts.ClientSecret) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	a.mu.Lock()
	a.tokens[tok] = time.Now().Add(a.opts.TokenTTL)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer",
		"expires_in": int(a.opts.TokenTTL / time.Second), "scope": r.PostForm.Get("scope")})
}

func (a *App) authorized(r *http.Request) bool {
	switch a.opts.Auth {
	case AuthBasic:
		u, p, ok := r.BasicAuth()
		return ok && equal(u, a.opts.User) && equal(p, a.opts.Password)
	case AuthAPIKey:
		k := r.Header.Get("X-Api-Key")
		if k == "" {
			k = r.URL.Query().Get("api_key")
		}
		return equal(k, a.opts.Key)
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	a.mu.Lock()
	exp, found := a.tokens[tok]
	a.mu.Unlock()
	return found && time.Now().Before(exp)
}

func (a *App) api(w http.ResponseWriter, r *http.Request) {
	a.APIRequests.Add(1)
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Get("Authorization")+" ?"+r.URL.RawQuery)
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		a.clientNames = append(a.clientNames, r.TLS.PeerCertificates[0].Subject.CommonName)
	}
	a.mu.Unlock()
	if rl := a.opts.RateLimit; rl != nil {
		w.Header().Set("RateLimit-Remaining", strconv.Itoa(rl.Remaining))
		w.Header().Set("RateLimit-Reset", strconv.Itoa(rl.Reset))
	}
	if !a.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "unauthorized"})
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/api/users")
	switch {
	case rest == "" && r.Method == http.MethodPost:
		a.create(w, r)
	case rest == "" && r.Method == http.MethodGet:
		a.list(w, r)
	case strings.HasPrefix(rest, "/") && r.Method == http.MethodGet:
		a.get(w, rest[1:])
	case strings.HasPrefix(rest, "/") && (r.Method == http.MethodPut || r.Method == http.MethodPatch || r.Method == http.MethodPost):
		a.update(w, r, rest[1:])
	case strings.HasPrefix(rest, "/") && r.Method == http.MethodDelete:
		a.delete(w, rest[1:])
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such route"})
	}
}

// body reads the fields of a form (or, without Options.Form, a flat JSON object).
func (a *App) body(r *http.Request) (url.Values, bool) {
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		if err := r.ParseForm(); err != nil {
			return nil, false
		}
		return r.PostForm, true
	}
	if a.opts.Form {
		return nil, false
	}
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		return nil, false
	}
	v := url.Values{}
	for k, x := range m {
		v.Set(k, fmt.Sprint(x))
	}
	return v, true
}

func (a *App) create(w http.ResponseWriter, r *http.Request) {
	fields, ok := a.body(r)
	if !ok || fields.Get("login") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "a form body with login is required"})
		return
	}
	a.mu.Lock()
	for _, acc := range a.accounts {
		if strings.EqualFold(acc.Get("login"), fields.Get("login")) {
			a.mu.Unlock()
			writeJSON(w, http.StatusConflict, map[string]any{"error": "login taken"})
			return
		}
	}
	id := a.addLocked(fields)
	a.mu.Unlock()
	if !a.DropLocation.Load() {
		w.Header().Set("Location", a.URL+"/api/users/"+id)
	}
	w.WriteHeader(http.StatusCreated)
}

func (a *App) get(w http.ResponseWriter, id string) {
	a.mu.Lock()
	acc, ok := a.accounts[id]
	a.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such user"})
		return
	}
	writeJSON(w, http.StatusOK, accountJSON(id, acc))
}

func (a *App) update(w http.ResponseWriter, r *http.Request, id string) {
	fields, ok := a.body(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "a form body is required"})
		return
	}
	a.mu.Lock()
	acc, found := a.accounts[id]
	if found {
		for k, v := range fields {
			acc[k] = v
		}
	}
	a.mu.Unlock()
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such user"})
		return
	}
	writeJSON(w, http.StatusOK, accountJSON(id, acc))
}

func (a *App) delete(w http.ResponseWriter, id string) {
	a.mu.Lock()
	_, found := a.accounts[id]
	delete(a.accounts, id)
	a.mu.Unlock()
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such user"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// list answers GET /api/users[?login=x][&page=N]: a page of accounts in creation order,
// with a Link rel="next" header and "next_page" in the body while more follow.
func (a *App) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page := 1
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad page"})
			return
		}
		page = n
	}
	a.mu.Lock()
	var ids []string
	for _, id := range a.order {
		acc, ok := a.accounts[id]
		if ok && (q.Get("login") == "" || strings.EqualFold(acc.Get("login"), q.Get("login"))) {
			ids = append(ids, id)
		}
	}
	items := []any{}
	start := (page - 1) * a.opts.PageSize
	for i := start; i < len(ids) && i < start+a.opts.PageSize; i++ {
		items = append(items, accountJSON(ids[i], a.accounts[ids[i]]))
	}
	a.mu.Unlock()
	body := map[string]any{"items": items}
	if start+a.opts.PageSize < len(ids) {
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("page", strconv.Itoa(page+1))
		w.Header().Set("Link", fmt.Sprintf(`<%s/api/users?%s>; rel="next"`, a.URL, next.Encode()))
		body["next_page"] = page + 1
	}
	writeJSON(w, http.StatusOK, body)
}

func accountJSON(id string, acc url.Values) map[string]any {
	m := map[string]any{"id": id}
	keys := make([]string, 0, len(acc))
	for k := range acc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m[k] = acc.Get(k)
	}
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func equal(a, b string) bool {
	return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
