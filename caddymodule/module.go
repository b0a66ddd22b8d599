// Package caddymodule registers scimgate's Caddy HTTP handler, scim_gateway: a SCIM 2.0
// server hardened for Microsoft Entra ID provisioning, with its directory in an embedded
// bbolt store. The package is glue: SCIM protocol work lives in ./scim, storage in ./store.
package caddymodule

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"runtime"
	rtrace "runtime/trace"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/gwconfig"
	"github.com/scimgate/scimgate/caddymodule/gwmetrics"
	"github.com/scimgate/scimgate/caddymodule/internal/slots"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/query"
	"github.com/scimgate/scimgate/caddymodule/reconcile"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/storeconfig"

	// The journal's admin routes and its command register themselves with Caddy, so that
	// every build with this package (cmd/scimgate, xcaddy.sh) has them.
	_ "github.com/scimgate/scimgate/caddymodule/journaladmin"
	_ "github.com/scimgate/scimgate/caddymodule/journalcmd"
	_ "github.com/scimgate/scimgate/caddymodule/outboxadmin"
	_ "github.com/scimgate/scimgate/caddymodule/outboxcmd"
	_ "github.com/scimgate/scimgate/caddymodule/reconcilecmd"
	_ "github.com/scimgate/scimgate/caddymodule/storecmd"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults for the Handler's optional settings.
const (
	DefaultBasePath     = "/scim/v2"
	DefaultMaxBodyBytes = 4 << 20
	DefaultMaxResults   = 200
	DefaultDataDir      = "./scimgate-data"
	storeFileName       = storeconfig.FileName
	MinTokenBytes       = 32
	// maxMaxBodyBytes bounds MaxBodyBytes (the Caddyfile's max_body_size too): past it the
	// default body_timeout would overflow.
	maxMaxBodyBytes = 1 << 40
	// The other bounds Validate checks, which the Caddyfile checks with its line.
	minBodyBytes               = 1024
	minJSONDepth, maxJSONDepth = 8, 1024
	maxMaxResults              = 100000
)

// Handler is the scim_gateway HTTP handler: it authenticates Entra's provisioning service,
// answers the SCIM 2.0 protocol at BasePath and keeps the directory in a bbolt store.
type Handler struct {
	// Tokens are the bearer tokens accepted, each with a name that logs and the journal use
	// instead of the secret. Several tokens allow rotation without downtime. Values may be
	// placeholders such as {env.SCIM_TOKEN}; each must resolve to at least 32 bytes.
	Tokens []Token `json:"tokens,omitempty"`

	// BasePath is the URL path under which SCIM is served; Entra's Tenant URL is
	// scheme://host:port + BasePath. Default: /scim/v2.
	BasePath string `json:"base_path,omitempty"`

	// PublicURL is the origin clients reach the gateway at, such as
	// https://scim.example.com: a scheme (http or https), a host and an optional port; no
	// path, query or fragment. When set, Location headers, meta.location, $ref and the
	// discovery documents are built from it plus BasePath. Without it they reflect the
	// request's Host header, which the client chooses: then put the handler behind a host
	// matcher. Placeholders are resolved. Default: none.
	PublicURL string `json:"public_url,omitempty"`

	// DataDir is the directory holding the store file (scimgate.db). Default:
	// ./scimgate-data. Placeholders are resolved.
	DataDir string `json:"data_dir,omitempty"`

	// Store chooses where everything is kept: the embedded bbolt file in DataDir (default),
	// or an etcd cluster shared by a fleet of gateways. See storeconfig.Config.
	Store *storeconfig.Config `json:"store,omitempty"`

	// MaxBodyBytes bounds request bodies; larger ones answer 413. Default: 4 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`

	// BodyTimeout bounds the time a request's body may take to arrive in full, counted
	// from when the request reaches the handler; a body still incomplete then answers 408
	// (and the HTTP/1 connection is closed). Default: 5s plus 5s per started MiB of
	// MaxBodyBytes (25s for 4 MiB).
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`

	// MaxJSONDepth bounds JSON nesting in request bodies, checked before parsing; deeper
	// bodies answer 400 invalidSyntax. Default: 64.
	MaxJSONDepth int `json:"max_json_depth,omitempty"`

	// LargeBodyBytes is the body size from which a request counts as large: at most
	// MaxLargeBodies large requests are processed at once (their memory is many times their
	// size); another waits up to 2 s for a turn, then answers 503 with Retry-After.
	// Default: 1 MiB.
	LargeBodyBytes int64 `json:"large_body_bytes,omitempty"`

	// MaxLargeBodies is how many large requests are processed at once. Default 2; -1 for
	// no limit.
	MaxLargeBodies int `json:"max_large_bodies,omitempty"`

	// MaxScans is how many lists and searches whose filter no index serves (a full scan
	// of the type: userName co "x", pr, not(...)) run at once; another waits up to 2 s for
	// a turn, then answers 503 with Retry-After. Default: GOMAXPROCS (the cores Go uses);
	// -1 for no limit.
	MaxScans int `json:"max_scans,omitempty"`

	// MaxResults is the largest page a list or filter query returns (advertised as
	// filter.maxResults; larger counts are capped). Default: 200.
	MaxResults int `json:"max_results,omitempty"`

	// MembersReplace says what PATCH replace on a group's members does: "merge" (default)
	// adds the listed members and removes none, because Entra has been seen sending partial
	// lists with replace; "exact" makes the list the new member set (RFC 7644 semantics).
	MembersReplace string `json:"members_replace,omitempty"`

	// UserPatchResponse is what a successful user PATCH answers: "resource" (default: 200
	// with the resource, as Microsoft's SCIM Validator expects) or "no_content" (204, as
	// Microsoft's Postman collection expects). A request's Prefer: return=minimal or
	// return=representation header overrides it.
	UserPatchResponse string `json:"user_patch_response,omitempty"`

	// Journal configures the tamper-evident audit journal kept in the store file. Every
	// write request is journaled (in the transaction of its change); reads optionally.
	Journal *JournalConfig `json:"journal,omitempty"`

	// Target is the legacy application every change is rewritten for (see TargetConfig).
	// Without one the gateway is a SCIM server on its own directory.
	Target *TargetConfig `json:"target,omitempty"`

	// Policy is the Open Policy Agent policy that decides every write request (see
	// PolicyConfig). Without one every change is allowed.
	Policy *PolicyConfig `json:"policy,omitempty"`

	// Audit serves the journal's read routes on this site to auditors, with credentials of
	// their own (see AuditConfig), so that Caddy's admin endpoint can stay on a unix socket
	// or off. Without it the journal is read through the admin endpoint only.
	Audit *AuditConfig `json:"audit,omitempty"`

	// FilesHash is the SHA-256 of the files the config loads (the target's mapping, the
	// policy directory and its data files), which the Caddyfile adapter writes: Caddy
	// applies a config only when its JSON changed, so a `caddy reload` after an edit of one
	// of these files applies it without --force. The gateway does not check it; a JSON
	// config may set any value that changes with the files, or reload with --force.
	FilesHash string `json:"files_hash,omitempty"`

	publicBase string // PublicURL + BasePath; "" without PublicURL
	audit      *audit // nil without Audit
	// largeBodies limits the large requests processed at once (nil: no limit).
	largeBodies *slots.Limit
	// scans limits the full scans run at once (nil: no limit).
	scans *query.ScanLimit
	// scanning, in tests, is called by a full scan while it holds its slot.
	scanning func()

	storeCfg    *storeconfig.Resolved
	storeKey    string // the store file's absolute path, or the etcd cluster and prefix
	journalOpts journal.Options
	journalKeys []ed25519.PublicKey
	// started is closed when start has run (or will not): requests wait for it.
	started chan struct{}
	// listen are the addresses of the server the gateway is in; addrKeys the locks taken
	// on them (see addrLocks), released by Cleanup.
	listen    []string
	addrKeys  []string
	store     *storeHandle // nil until started
	requests  *inflight    // the requests in progress: the store is released after them
	released  bool         // Cleanup released the store reference (Caddy calls Cleanup once, but be safe)
	tokens    *tokenSet
	patchOpts scim.PatchOptions
	metrics   *gwmetrics.Metrics
	engine    *provision.Engine
	target    *provision.Target // nil without one; Cleanup closes its idle connections
	policy    *policy.Engine    // nil without one; Cleanup drops this config's reference
	logger    *zap.Logger

	reconciler          *reconcile.Reconciler // nil when the target cannot be reconciled
	unregisterReconcile func()
	stopReconcile       func() // stops the schedule; nil without one
}

// Token is a named bearer token.
type Token struct {
	// Name identifies the client in logs and audit records; never the secret.
	Name string `json:"name"`
	// Value is the secret, usually a placeholder such as {env.SCIM_TOKEN}.
	Value string `json:"value"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.scim_gateway",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, resolves placeholders, checks the tokens and compiles the
// policies, the mapping and the journal settings. The store opens when Caddy starts the
// config (see App), so that validating a config has no side effects.
func (g *Handler) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	repl := caddy.NewReplacer()

	if g.BasePath == "" {
		g.BasePath = DefaultBasePath
	}
	g.BasePath = "/" + strings.Trim(g.BasePath, "/")
	if g.BasePath == "/" {
		g.BasePath = ""
	}
	if g.PublicURL != "" {
		v := repl.ReplaceAll(g.PublicURL, "")
		if v == "" {
			return fmt.Errorf("public_url %s resolves to nothing (is the variable set?)", g.PublicURL)
		}
		origin, err := gwconfig.ParsePublicURL(v)
		if err != nil {
			return err
		}
		g.publicBase = origin + g.BasePath
	}
	if g.MaxBodyBytes == 0 {
		g.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if g.BodyTimeout == 0 && g.MaxBodyBytes <= maxMaxBodyBytes { // larger: Validate says so
		g.BodyTimeout = caddy.Duration(defaultBodyTimeout(g.MaxBodyBytes))
	}
	if g.LargeBodyBytes == 0 {
		g.LargeBodyBytes = DefaultLargeBodyBytes
	}
	switch {
	case g.MaxLargeBodies == 0:
		g.largeBodies = slots.New(DefaultMaxLargeBodies, largeBodyWait)
	case g.MaxLargeBodies > 0:
		g.largeBodies = slots.New(g.MaxLargeBodies, largeBodyWait)
	}
	switch {
	case g.MaxScans == 0:
		g.scans = query.NewScanLimit(runtime.GOMAXPROCS(0), largeBodyWait)
	case g.MaxScans > 0:
		g.scans = query.NewScanLimit(g.MaxScans, largeBodyWait)
	}
	if g.MaxJSONDepth == 0 {
		g.MaxJSONDepth = scim.DefaultMaxJSONDepth
	}
	if g.MaxResults == 0 {
		g.MaxResults = DefaultMaxResults
	}
	switch strings.ToLower(g.MembersReplace) {
	case "", "merge":
		g.patchOpts.MembersReplace = scim.MembersReplaceMerge
	case "exact":
		g.patchOpts.MembersReplace = scim.MembersReplaceExact
	default:
		return fmt.Errorf("members_replace must be merge or exact, not %q", g.MembersReplace)
	}
	switch strings.ToLower(g.UserPatchResponse) {
	case "", "resource", "no_content":
	default:
		return fmt.Errorf("user_patch_response must be resource or no_content, not %q", g.UserPatchResponse)
	}

	metrics, err := gwmetrics.New(ctx.GetMetricsRegistry(), outboxCollector{}, etcdCollector{})
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	g.metrics = metrics

	tokens, err := newTokenSet(g.Tokens, repl)
	if err != nil {
		return err
	}
	g.tokens = tokens
	tokens.warnInline(g.logger, "SCIM tokens")
	if g.Audit != nil {
		a, err := g.Audit.provision(repl, g.BasePath, tokens)
		if err != nil {
			return err
		}
		g.audit = a
		a.tokens.warnInline(g.logger, "audit tokens")
	}

	sc, err := g.Store.Resolve(repl, g.DataDir)
	if err != nil {
		return err
	}
	if g.Policy != nil {
		eng, err := g.Policy.Provision(repl, g.logger)
		if err != nil {
			return err
		}
		g.policy = eng
	}
	if g.Target != nil {
		t, err := g.Target.Provision(ctx, repl)
		if err != nil {
			return err
		}
		g.target = t
		if err := g.checkReconcile(); err != nil {
			return err
		}
	}
	if g.Journal == nil {
		g.Journal = &JournalConfig{}
	}
	jopts, jkeys, err := g.Journal.JournalOptions(repl)
	if err != nil {
		return err
	}
	g.storeCfg, g.storeKey, g.journalOpts, g.journalKeys = sc, sc.Key, jopts, jkeys
	g.started = make(chan struct{})
	g.requests = &inflight{}
	app, srv, err := gatewayApp(ctx)
	if err != nil {
		return err
	}
	if err := g.checkPolicyTargets(ctx, app); err != nil {
		g.logger.Warn("policy settings for a target no gateway of this config has never apply", zap.Error(err))
	}
	if app == nil {
		return g.start()
	}
	g.listen = srv.Listen
	return app.add(g) // the store opens when Caddy starts the config (see App)
}

// start opens (or shares) the store and makes the engine on it, then lets requests in.
func (g *Handler) start() error {
	defer close(g.started)
	keys, err := lockAddresses(g.listen)
	if err != nil {
		return err
	}
	g.addrKeys = keys
	h, err := acquireStore(g.storeCfg, g.journalOpts, g.journalKeys)
	if err != nil {
		return err
	}
	g.store = h
	eng, err := provision.New(provision.Config{
		Store:        h.Store,
		Journal:      h.journal,
		Shared:       h.shared,
		SharedStore:  h.DB().Shared(),
		Target:       g.target,
		Policy:       g.policy,
		PatchOptions: g.patchOpts,
		JournalReads: g.Journal.Reads,
		Logger:       g.logger,
		OnDecision:   g.metrics.PolicyDecision,
		OnDelivery:   g.metrics.Delivery,
	})
	if err != nil {
		return err // Caddy cleans up a config that failed to start: the store is released
	}
	g.engine = eng
	if err := g.checkReloadBrake(registerGateway(g)); err != nil {
		return err // Cleanup unregisters g
	}
	if err := g.provisionReconcile(); err != nil {
		return err
	}
	eng.Activate() // Cleanup releases it: a config Caddy throws away hands the worker back
	if h.journalFP != journalFingerprint(g.journalOpts) {
		g.logger.Warn("the journal settings changed while its store stayed open; they apply after a restart",
			zap.String("journal", h.journal.Name()), zap.String("configured_name", g.journalOpts.Name))
	}
	g.logger.Info("scim gateway started",
		zap.String("base_path", g.BasePath),
		zap.String("store", g.storeKey),
		zap.String("journal", h.journal.Name()),
		zap.Bool("checkpoints_signed", len(g.journalKeys) > 0),
		zap.String("policy_hash", eng.PolicyHash()),
		zap.Strings("tokens", g.tokens.names()))
	return nil
}

// abandon lets the requests waiting for a start that will not happen answer 503.
func (g *Handler) abandon() { close(g.started) }

// Validate checks the provisioned configuration.
func (g *Handler) Validate() error {
	if g.tokens == nil || len(g.tokens.tokens) == 0 {
		return fmt.Errorf("scim_gateway needs at least one token")
	}
	if g.MaxBodyBytes < minBodyBytes || g.MaxBodyBytes > maxMaxBodyBytes {
		return fmt.Errorf("max_body_bytes must be between %d and %d (1 TiB), got %d", minBodyBytes, int64(maxMaxBodyBytes), g.MaxBodyBytes)
	}
	if g.BodyTimeout <= 0 {
		return fmt.Errorf("body_timeout must be positive, got %s", time.Duration(g.BodyTimeout))
	}
	if g.LargeBodyBytes < 1024 {
		return fmt.Errorf("large_body_bytes must be at least 1024, got %d", g.LargeBodyBytes)
	}
	if g.MaxLargeBodies < -1 {
		return fmt.Errorf("max_large_bodies must be positive, or -1 for no limit; got %d", g.MaxLargeBodies)
	}
	if g.MaxScans < -1 {
		return fmt.Errorf("max_scans must be positive, or -1 for no limit; got %d", g.MaxScans)
	}
	if g.MaxJSONDepth < minJSONDepth || g.MaxJSONDepth > maxJSONDepth {
		return fmt.Errorf("max_json_depth must be between %d and %d, got %d", minJSONDepth, maxJSONDepth, g.MaxJSONDepth)
	}
	if g.MaxResults < 1 || g.MaxResults > maxMaxResults {
		return fmt.Errorf("max_results must be between 1 and %d, got %d", maxMaxResults, g.MaxResults)
	}
	return nil
}

// Cleanup releases this config's reference to the store; the file closes when the last
// config using it is gone (Caddy provisions a new config before it cleans up the old one).
func (g *Handler) Cleanup() error {
	g.cleanupReconcile()
	if g.policy != nil {
		// Requests of this config may still be running: Decide keeps working after Close,
		// which only drops this config's reference to the compiled (shared) policy.
		_ = g.policy.Close()
	}
	if g.target != nil {
		g.target.Client.CloseIdleConnections()
	}
	// Caddy cleans up an old config as soon as its servers have begun shutting down, while
	// their last requests may still run: nothing they use is cleared here. The store stays
	// open while a newer config uses it, and until this config's last request has ended.
	if g.released {
		return nil
	}
	unregisterGateway(g)
	g.released = true
	if g.engine != nil {
		g.engine.Release()
	}
	releaseAddresses(g.addrKeys)
	if g.store == nil {
		return nil
	}
	return g.requests.whenIdle(func() error {
		err := releaseStore(g.storeKey)
		if err != nil {
			g.logger.Error("releasing the store", zap.Error(err))
		}
		return err
	})
}

// ServeHTTP answers SCIM requests under BasePath, and the audit routes under their path
// when configured. Requests outside both go to next.
func (g *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if g.audit != nil {
		if route, ok := g.audit.route(r.URL.Path); ok {
			// Not counted in g.requests: an auditor's live stream lasts until its server
			// shuts down or the journal closes, and a read the store closed under only fails.
			if g.awaitStart(w, r) {
				g.serveAudit(w, r, route)
			}
			return nil
		}
	}
	rel, ok := g.relativePath(r.URL.Path)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	if !g.awaitStart(w, r) {
		return nil
	}
	g.requests.enter()
	defer g.requests.leave()
	if rtrace.IsEnabled() {
		// While an execution trace runs (Caddy's /debug/pprof/trace), each SCIM request is
		// a region of its own: cmd/writetail splits its time by what it waited on.
		defer rtrace.StartRegion(r.Context(), RequestTraceRegion).End()
	}
	start := time.Now()
	sw := &gwmetrics.StatusWriter{ResponseWriter: w}
	g.serveSCIM(sw, r, rel)
	g.metrics.Observe(gwmetrics.Endpoint(rel), r.Method, sw.Status, start)
	return nil
}

// RequestTraceRegion is the name of the execution trace region each SCIM request is
// served in while a trace runs.
const RequestTraceRegion = "scimgate.request"

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
