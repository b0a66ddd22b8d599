package gwconfig

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/provision"
)

// TargetConfig is the legacy application the gateway provisions: every change Entra makes
// is rewritten, through the mapping file, into the app's own REST calls.
type TargetConfig struct {
	// Name identifies the target in the id map, the journal and policies. Default: the
	// mapping file's base name without extension.
	Name string `json:"name,omitempty"`

	// URL is the app's base URL; mapping paths are relative to it. Placeholders resolved.
	URL string `json:"url"`

	// Mapping is the path of the mapping file (see caddymodule/mapping/doc.go).
	Mapping string `json:"mapping"`

	// DryRun decides, maps and journals every change (outcome dry_run) but sends nothing.
	DryRun bool `json:"dry_run,omitempty"`

	// Timeout is the time one native call may take, per attempt. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// MaxConcurrent bounds the calls in flight to the app. Default 16.
	MaxConcurrent int `json:"max_concurrent,omitempty"`

	// RateLimit bounds the calls per second to the app (0: no limit); RateBurst is the
	// burst allowed above it.
	RateLimit float64 `json:"rate_limit,omitempty"`
	RateBurst int     `json:"rate_burst,omitempty"`

	// MaxRetries is how often a call that is safe to repeat is retried. Default 2.
	MaxRetries int `json:"max_retries,omitempty"`

	// MaxRetryAfter caps how long the gateway waits on the app's 429/503 Retry-After
	// before answering Entra 503 itself. Default 5s.
	MaxRetryAfter caddy.Duration `json:"max_retry_after,omitempty"`

	// MaxResponseBytes bounds the app's responses. Default 4 MiB.
	MaxResponseBytes int64 `json:"max_response_bytes,omitempty"`

	// Headers are added to every native call (after the mapping file's), usually secrets:
	// header values may be placeholders such as {env.APP_API_KEY}, resolved at start-up.
	Headers map[string]string `json:"headers,omitempty"`

	// Auth is how the gateway authenticates to the app: HTTP basic, an API key, or an
	// OAuth 2.0 client-credentials token (see AuthConfig). Secrets come from placeholders
	// or files, never from the config itself.
	Auth *AuthConfig `json:"auth,omitempty"`

	// Transport holds Caddy's HTTP transport options for the app (timeouts, TLS,
	// keep-alive, client certificates for mTLS with tls_client_auth), as in reverse_proxy's
	// `transport http` block. The OAuth token requests use it too.
	Transport *reverseproxy.HTTPTransport `json:"transport,omitempty"`

	// Delivery is when changes reach the app: "immediate" (the default: Entra's request
	// waits for the app), "queued" (committed with a task in the outbox, Entra answered at
	// once, delivered by a worker) or "fallback" (at once, queued when the app is
	// unavailable). See the README's "Delivery modes".
	Delivery string `json:"delivery,omitempty"`

	// Queue tunes queued delivery (the queued and fallback modes).
	Queue *QueueConfig `json:"queue,omitempty"`

	// Reconcile schedules reconciles of the app with the directory and sets how they
	// repair (see ReconcileConfig). Without it the app is reconciled on request only.
	Reconcile *ReconcileConfig `json:"reconcile,omitempty"`
}

var validTargetName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// provision resolves the target's settings and compiles its mapping into the engine's
// target. A mapping that does not load fails the (re)load.
func (c *TargetConfig) Provision(ctx caddy.Context, repl *caddy.Replacer) (*provision.Target, error) {
	if c.Mapping == "" {
		return nil, fmt.Errorf("target: mapping is required (the path of the mapping file)")
	}
	mapPath, err := resolveSetting(repl, c.Mapping)
	if err != nil {
		return nil, fmt.Errorf("target: mapping %q: %w", c.Mapping, err)
	}
	name := c.name(mapPath)
	if !validTargetName.MatchString(name) || name == "." || name == ".." {
		// "." and "..": a path segment of the admin routes (/scimgate/outbox/{target}) that
		// HTTP servers resolve away, so the target could not be operated.
		return nil, fmt.Errorf("target: name %q must be 1-64 letters, digits, '.', '_' or '-' (not \".\" or \"..\")", name)
	}
	base, err := resolveSetting(repl, c.URL)
	if err != nil {
		return nil, fmt.Errorf("target %s: url %q: %w", name, c.URL, err)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %s: url %q must be an absolute http or https URL", name, c.URL)
	}
	resolve := func(s string) (string, error) {
		out, err := repl.ReplaceOrErr(s, true, true)
		if err != nil {
			return "", err
		}
		return out, nil
	}
	m, err := mapping.Load(mapPath, resolve)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", name, err)
	}
	headers := http.Header{}
	for k, v := range c.Headers {
		val, err := resolve(v)
		if err != nil || val == "" {
			return nil, fmt.Errorf("target %s: header %s: %q resolves to an empty value", name, k, v)
		}
		headers.Set(k, val)
	}
	var rt http.RoundTripper
	if c.Transport != nil {
		if err := c.Transport.Provision(ctx); err != nil {
			return nil, fmt.Errorf("target %s: transport: %w", name, err)
		}
		rt = c.Transport
	}
	var auth legacy.Auth
	if c.Auth != nil {
		if auth, err = c.Auth.build(repl, rt, time.Duration(c.Timeout)); err != nil {
			return nil, fmt.Errorf("target %s: %w", name, err)
		}
	}
	client, err := legacy.New(legacy.Options{
		BaseURL:          base,
		Transport:        rt,
		Auth:             auth,
		Timeout:          time.Duration(c.Timeout),
		MaxConcurrent:    c.MaxConcurrent,
		RateLimit:        c.RateLimit,
		RateBurst:        c.RateBurst,
		MaxRetries:       c.MaxRetries,
		MaxRetryAfter:    time.Duration(c.MaxRetryAfter),
		MaxResponseBytes: c.MaxResponseBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", name, err)
	}
	delivery, err := c.DeliverySettings()
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", name, err)
	}
	if delivery.Mode != outbox.Immediate && m.Roles() != nil {
		// A role list is recomputed from the directory as the change leaves it, under the
		// users' locks until the commit: a queued delivery, made later, would send lists
		// of another moment.
		return nil, fmt.Errorf("target %s: groups as roles (groups.roles in %s) are delivered immediately only: remove delivery %s", name, c.Mapping, delivery.Mode)
	}
	if delivery.Mode == outbox.Immediate && c.Queue != nil {
		ctx.Logger().Warn("the target's queue block is unused: its delivery is immediate, and queue settings apply to delivery queued or fallback only; set the delivery, or remove the block",
			zap.String("target", name))
	}
	return &provision.Target{Name: name, DryRun: c.DryRun, Mapping: m, Client: client, Headers: headers, Delivery: delivery}, nil
}

// name is the target's name: Name, or the base name of its mapping file mapPath.
func (c *TargetConfig) name(mapPath string) string {
	if c.Name != "" {
		return c.Name
	}
	return strings.TrimSuffix(filepath.Base(mapPath), filepath.Ext(mapPath))
}

// UnprovisionedTargets names the targets of the scim_gateway handlers of h's routes that
// are not provisioned yet: Caddy keeps a route's handlers as JSON until it provisions
// them, and a handler may call this while h provisions its servers.
func UnprovisionedTargets(h *caddyhttp.App, repl *caddy.Replacer) []string {
	var raws []json.RawMessage
	for _, srv := range h.Servers {
		routes := slices.Clone(srv.Routes)
		if srv.Errors != nil {
			routes = append(routes, srv.Errors.Routes...)
		}
		for _, r := range srv.NamedRoutes {
			routes = append(routes, *r)
		}
		for _, r := range routes {
			raws = append(raws, r.HandlersRaw...)
		}
	}
	return gatewayTargets(raws, repl)
}

// gatewayTargets names the targets of the scim_gateway handlers found anywhere in the JSON
// of raws (handler lists of routes, subroutes included), with placeholders of their mapping
// paths resolved by repl; a handler whose target cannot be read is left out (its own
// provisioning says why).
func gatewayTargets(raws []json.RawMessage, repl *caddy.Replacer) []string {
	var names []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "scim_gateway" {
				if t, ok := x["target"].(map[string]any); ok {
					c := TargetConfig{}
					c.Name, _ = t["name"].(string)
					c.Mapping, _ = t["mapping"].(string)
					names = append(names, c.name(repl.ReplaceAll(c.Mapping, "")))
				}
			}
			for _, child := range x {
				walk(child)
			}
		case []any:
			for _, child := range x {
				walk(child)
			}
		}
	}
	for _, raw := range raws {
		var v any
		if json.Unmarshal(raw, &v) == nil {
			walk(v)
		}
	}
	return names
}

// resolveSetting replaces the placeholders in s, refusing one that is unknown or resolves
// to nothing (an unset variable): the setting would otherwise be refused for what is left,
// "not an absolute URL", without a word about the variable.
func resolveSetting(repl *caddy.Replacer, s string) (string, error) {
	out, err := repl.ReplaceOrErr(s, true, true)
	if err == nil {
		return out, nil
	}
	for rest := s; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return "", err
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return "", err
		}
		p := rest[i : i+j+1]
		if v, known := repl.Get(p[1 : len(p)-1]); known && caddy.ToString(v) == "" {
			return "", fmt.Errorf("the placeholder %s is empty (is the variable set?)", p)
		}
		rest = rest[i+j+1:]
	}
}
