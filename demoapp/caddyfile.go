package demoapp

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("scimgate_demo_app", parseCaddyfile)
	// Before respond, so that no `order` line is needed and a trailing respond can answer
	// the paths outside /api/v1.
	httpcaddyfile.RegisterDirectiveOrder("scimgate_demo_app", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	a := new(App)
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	scimgate_demo_app [<matcher>] {
//	    api_key <key>            # required; usually {env.SCIMGATE_DEMO_KEY}
//	    name <name>              # state shared by handlers of this name; default "default"
//	    max_accounts <n>         # default 100000
//	    max_teams <n>            # default 100000
//	    max_memberships <n>      # default 1000000
//	    latency <d> [<max>]      # answer after d, or after a uniform time in [d, max]; default 0
//	    state_file <path>        # keep the state in this file across restarts; default memory only
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("%s is set twice", opt)
		}
		seen[opt] = true
		switch opt {
		case "api_key":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			a.APIKey = v
		case "name":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			a.Name = v
		case "max_accounts":
			if err := positiveArg(d, "max_accounts", &a.MaxAccounts); err != nil {
				return err
			}
		case "max_teams":
			if err := positiveArg(d, "max_teams", &a.MaxTeams); err != nil {
				return err
			}
		case "max_memberships":
			if err := positiveArg(d, "max_memberships", &a.MaxMemberships); err != nil {
				return err
			}
		case "latency":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			for i, v := range args {
				dur, err := caddy.ParseDuration(v)
				if err != nil {
					return d.Errf("latency: %q is not a duration: %v", v, err)
				}
				if i == 0 {
					a.Latency = caddy.Duration(dur)
				} else {
					a.LatencyMax = caddy.Duration(dur)
				}
			}
		case "state_file":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			a.StateFile = v
		default:
			return d.Errf("unknown option %q (want api_key, name, max_accounts, max_teams, max_memberships, latency or state_file)", opt)
		}
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser) (string, error) {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return "", d.ArgErr()
	}
	return args[0], nil
}

func positiveArg(d *caddyfile.Dispenser, opt string, dst *int) error {
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return d.Errf("%s must be a positive integer, not %q", opt, v)
	}
	*dst = n
	return nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*App)(nil)
