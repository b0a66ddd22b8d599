package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/scimgate/scimgate/caddymodule/gwconfig"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the scimgate app. A config never needs to name it: the first scim_gateway
// handler of a config loads it. It opens the stores of the config's gateways when Caddy
// starts the config, not when it provisions it, because `caddy validate` (and
// `scimgate validate`) provisions a config and never starts it: validating checks the
// tokens, mapping, policies, journal and target settings without opening or creating a
// store, so it works while the gateway runs. A store that cannot be opened fails the
// start, and Caddy keeps the config it had (or exits, for `caddy run`).
type App struct {
	// gateways are this config's handlers; Caddy provisions and starts a config in one
	// goroutine.
	gateways []*Handler
	// targets names the targets of the gateways not yet provisioned when the first gateway
	// asked (see configTargets); nil until then.
	targets []string
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "scimgate",
		New: func() caddy.Module { return new(App) },
	}
}

// add registers a gateway provisioned in this config, to be started with it. Two gateways
// of one config on one store must be one gateway served at more addresses (a site block
// with two ports makes two handlers of the same settings): one store is one directory, id
// map, outbox and journal, and two targets, journals or policies on it would provision,
// reconcile and record each other's users (and `scimgate preview`, reconcile and the
// reload brake would see only one of them). So their target, journal and policy settings
// must be the same.
func (a *App) add(g *Handler) error {
	for _, o := range a.gateways {
		if o.storeKey != g.storeKey {
			continue
		}
		if what := storeSettingsDiffer(o, g); what != "" {
			return fmt.Errorf("the store %s is also the store of the scim_gateway at %s, whose %s settings differ: one store holds one gateway's directory and journal, so give each gateway its own data_dir (or store prefix), or serve both addresses from one scim_gateway block",
				g.storeKey, strings.Join(o.listen, " "), what)
		}
	}
	a.gateways = append(a.gateways, g)
	return nil
}

// checkPolicyTargets reports policy settings for a target no gateway of this config has
// (see policy.Engine.CheckTargets): per gateway, because gateways of different targets
// may share one policy. Provision warns of them rather than refuse the config: one policy
// bundle is also deployed to separate gateways of different targets, each of which sees
// the others' sections. app is nil for a handler provisioned on its own.
func (g *Handler) checkPolicyTargets(ctx caddy.Context, app *App) error {
	if g.policy == nil || g.target == nil {
		return nil // without a target no settings of one apply
	}
	names := []string{g.target.Name}
	if app != nil {
		names = append(names, app.configTargets(ctx)...)
	}
	slices.Sort(names)
	if err := g.policy.CheckTargets(slices.Compact(names)); err != nil {
		return fmt.Errorf("policy %s: %w", g.Policy.Dir, err)
	}
	return nil
}

// configTargets names the targets of this config's gateways: those provisioned, and those
// whose JSON is still in the HTTP app's routes (Caddy drops a route's JSON once it has
// provisioned its handlers; a gateway provisioned before is in a.gateways).
func (a *App) configTargets(ctx caddy.Context) []string {
	if a.targets == nil {
		a.targets = []string{}
		if m, err := ctx.App("http"); err == nil {
			if h, ok := m.(*caddyhttp.App); ok {
				a.targets = gwconfig.UnprovisionedTargets(h, caddy.NewReplacer())
			}
		}
	}
	names := slices.Clone(a.targets)
	for _, o := range a.gateways {
		if o.target != nil {
			names = append(names, o.target.Name)
		}
	}
	return names
}

// storeSettingsDiffer names the part (target, journal or policy) whose configuration
// differs between gateways a and b, or "" when none does.
func storeSettingsDiffer(a, b *Handler) string {
	for _, p := range []struct {
		name string
		a, b any
	}{{"target", a.Target, b.Target}, {"journal", a.Journal, b.Journal}, {"policy", a.Policy, b.Policy}} {
		ja, errA := json.Marshal(p.a)
		jb, errB := json.Marshal(p.b)
		if errA != nil || errB != nil || !bytes.Equal(ja, jb) {
			return p.name
		}
	}
	return ""
}

// Start takes the locks of every gateway's listen addresses (see addrLocks) and opens its
// store. After the first that fails, the
// others are not opened: their requests answer 503 until Caddy has stopped the config.
func (a *App) Start() error {
	var err error
	for _, g := range a.gateways {
		if err != nil {
			g.abandon()
			continue
		}
		if err = g.start(); err != nil {
			err = fmt.Errorf("starting scim_gateway: %w", err)
		}
	}
	return err
}

// Stop does nothing: each gateway releases its store in its Cleanup, once Caddy has
// provisioned the config that replaces it (which shares the open store).
func (a *App) Stop() error { return nil }

// gatewayApp returns the scimgate app of the config ctx provisions and the HTTP server
// the handler is in, or nils when ctx provisions no HTTP server (a handler provisioned on
// its own, as unit tests and embedders do): such a handler is started at once.
func gatewayApp(ctx caddy.Context) (*App, *caddyhttp.Server, error) {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil {
		return nil, nil, nil
	}
	app, err := ctx.App("scimgate")
	if err != nil {
		return nil, nil, err
	}
	return app.(*App), srv, nil
}

// awaitStart waits until the gateway's config has started (Caddy may start the HTTP
// app before this one, so a request can arrive in between) or the request is abandoned.
// It answers 503 and returns false when the gateway cannot serve: its start failed, and
// Caddy is stopping the config.
func (g *Handler) awaitStart(w http.ResponseWriter, r *http.Request) bool {
	select {
	case <-g.started:
	case <-r.Context().Done():
		return false
	}
	if g.engine != nil {
		return true
	}
	e := scim.Errorf(http.StatusServiceUnavailable, "", "the gateway did not start (see the server's log); its config is being stopped")
	data, _ := marshalJSON(e.Body())
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	_, _ = w.Write(data)
	return false
}

// Interface guards
var _ caddy.App = (*App)(nil)
