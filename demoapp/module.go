package demoapp

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Defaults of the config.
const (
	DefaultName           = "default"
	DefaultMaxAccounts    = 100_000
	DefaultMaxTeams       = 100_000
	DefaultMaxMemberships = 1_000_000
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the demo legacy app as a Caddy HTTP handler: requests under /api/v1 are answered
// by the app, all others go to the next handler.
type App struct {
	// APIKey is the key clients must send in the X-Api-Key header. Placeholders are
	// resolved at provisioning, so {env.SCIMGATE_DEMO_KEY} keeps the key out of the JSON
	// config. Required: it must not be empty after resolution.
	APIKey string `json:"api_key,omitempty"`

	// Name names the in-memory state. Handlers with the same name share one state, and it
	// survives a config reload as long as a handler with that name stays configured.
	// Default "default".
	Name string `json:"name,omitempty"`

	// MaxAccounts bounds the number of accounts; creating one more is a 507. Default 100000.
	MaxAccounts int `json:"max_accounts,omitempty"`

	// MaxTeams bounds the number of teams. Default 100000.
	MaxTeams int `json:"max_teams,omitempty"`

	// MaxMemberships bounds the number of (team, account) memberships over all teams.
	// Default 1000000.
	MaxMemberships int `json:"max_memberships,omitempty"`

	// Latency delays every authorised answer under /api/v1, as a legacy app that takes its
	// time would (benchmarks use it: a gateway's added latency means little against an app
	// that answers in microseconds). With LatencyMax as well, each answer waits a uniformly
	// distributed time in [Latency, LatencyMax]. A client that goes away stops the wait.
	// Default 0: answer at once.
	Latency caddy.Duration `json:"latency,omitempty"`

	// LatencyMax is the upper bound of a distributed delay; 0 means a fixed Latency.
	LatencyMax caddy.Duration `json:"latency_max,omitempty"`

	// StateFile keeps the state in this file and logs beside it, so that the app still
	// holds its accounts and teams after a restart or a crash, as the gateway's store holds
	// what it provisioned: each change is logged and synced before it is answered (see
	// persist.go). Placeholders are resolved. Default: none, the state lives in memory only.
	StateFile string `json:"state_file,omitempty"`

	keyHash [sha256.Size]byte
	limits  limits
	state   *state
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.scimgate_demo_app",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves the API key, sets defaults and acquires the named state.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	key := caddy.NewReplacer().ReplaceKnown(a.APIKey, "")
	if key == "" {
		return errors.New("api_key is required (and empty after resolving placeholders; is the environment variable set?)")
	}
	a.keyHash = sha256.Sum256([]byte(key))
	if a.Name == "" {
		a.Name = DefaultName
	}
	if a.MaxAccounts == 0 {
		a.MaxAccounts = DefaultMaxAccounts
	}
	if a.MaxTeams == 0 {
		a.MaxTeams = DefaultMaxTeams
	}
	if a.MaxMemberships == 0 {
		a.MaxMemberships = DefaultMaxMemberships
	}
	a.limits = limits{accounts: a.MaxAccounts, teams: a.MaxTeams, memberships: a.MaxMemberships}
	file := caddy.NewReplacer().ReplaceKnown(a.StateFile, "")
	if a.StateFile != "" && file == "" {
		return errors.New("state_file is empty after resolving placeholders")
	}
	st, err := acquireState(a.Name, file, a.logger)
	if err != nil {
		return err
	}
	a.state = st
	a.logger.Debug("demo legacy app ready; not for production", zap.String("name", a.Name), zap.String("base_path", basePath))
	return nil
}

// Validate checks the limits and the latency.
func (a *App) Validate() error {
	switch {
	case a.Latency < 0 || a.LatencyMax < 0:
		return fmt.Errorf("latency must not be negative")
	case a.LatencyMax != 0 && a.LatencyMax < a.Latency:
		return fmt.Errorf("latency_max (%s) must not be below latency (%s)", time.Duration(a.LatencyMax), time.Duration(a.Latency))
	case a.LatencyMax > caddy.Duration(maxLatency) || a.Latency > caddy.Duration(maxLatency):
		return fmt.Errorf("latency is at most %s", maxLatency)
	}
	for _, l := range []struct {
		name string
		v    int
	}{{"max_accounts", a.MaxAccounts}, {"max_teams", a.MaxTeams}, {"max_memberships", a.MaxMemberships}} {
		if l.v < 1 {
			return fmt.Errorf("%s must be positive, not %d", l.name, l.v)
		}
	}
	return nil
}

// Cleanup releases this config's reference to the state.
func (a *App) Cleanup() error {
	if a.state == nil {
		return nil
	}
	a.state = nil
	return releaseState(a.Name)
}

// ServeHTTP answers requests under /api/v1 and passes the others on. Every failure is
// answered here in the app's own error format; nothing is returned to Caddy's error
// handling, so a client always sees the legacy app's wire format.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !owns(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	if !a.authorized(r) {
		a.writeError(w, errorf(http.StatusUnauthorized, CodeUnauthorized, "send a valid API key in the X-Api-Key header"))
		return nil
	}
	if !inspection(r.URL.Path) {
		a.state.countCall()
	}
	if !a.wait(r) {
		return nil // the client went away
	}
	var rep reply
	var err *apiError
	if p := a.state.persist; p != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		rep, err = p.change(a, w, r) // logged before it is answered
	} else {
		rep, err = a.dispatch(w, r)
	}
	if err != nil {
		a.writeError(w, err)
		return nil
	}
	if rep.location != "" {
		w.Header().Set("Location", rep.location)
	}
	a.writeJSON(w, rep.status, rep.body)
	return nil
}

// maxLatency bounds the configured delay, so a typo cannot make every answer hang.
const maxLatency = time.Minute

// wait holds the answer for the configured latency; false when the client went away first.
func (a *App) wait(r *http.Request) bool {
	d := time.Duration(a.Latency)
	if a.LatencyMax > a.Latency {
		d += rand.N(time.Duration(a.LatencyMax-a.Latency) + 1)
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// authorized compares digests in constant time, so that neither the key's bytes nor its
// length leak through timing.
func (a *App) authorized(r *http.Request) bool {
	got := sha256.Sum256([]byte(r.Header.Get("X-Api-Key")))
	return subtle.ConstantTimeCompare(got[:], a.keyHash[:]) == 1
}

func (a *App) writeError(w http.ResponseWriter, e *apiError) {
	if e.status >= 500 {
		a.logger.Warn("demo app request failed", zap.Int("status", e.status), zap.String("code", e.code), zap.String("message", e.message))
	}
	a.writeJSON(w, e.status, e.body())
}

// writeJSON writes status and body; a nil body writes no body (204).
func (a *App) writeJSON(w http.ResponseWriter, status int, body any) {
	if body == nil {
		w.WriteHeader(status)
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "R&D", not "R\u0026D": this is an API, not a web page
	if err := enc.Encode(body); err != nil {
		// Only our own types are encoded, so this means a bug; say so without a body
		// that might be half-written.
		a.logger.Error("encoding a response", zap.Error(err))
		http.Error(w, `{"error":{"code":"INTERNAL","message":"encoding the response failed"}}`, http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// now is the clock of new states; tests replace it.
var now = time.Now

// Interface guards.
var (
	_ caddy.Provisioner           = (*App)(nil)
	_ caddy.Validator             = (*App)(nil)
	_ caddy.CleanerUpper          = (*App)(nil)
	_ caddyhttp.MiddlewareHandler = (*App)(nil)
)
