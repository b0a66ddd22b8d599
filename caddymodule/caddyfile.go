package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/scimgate/scimgate/caddymodule/gwconfig"
	"github.com/scimgate/scimgate/caddymodule/storeconfig"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("scim_gateway", parseCaddyfile)
	// Before respond, so that no `order` line is needed in a site block.
	httpcaddyfile.RegisterDirectiveOrder("scim_gateway", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Handler)
	if err := g.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	// `caddy reload` adapts the Caddyfile again: with the digest of the files in the JSON,
	// an edit of the mapping or a policy is a changed config, which Caddy applies.
	g.FilesHash = filesDigest(g.configFiles())
	return g, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	scim_gateway [<matcher>] {
//	    token <name> <value>            # one or more; value usually {env.SCIM_TOKEN}
//	    base_path <path>                # default /scim/v2
//	    public_url <url>                # e.g. https://scim.example.com; default: the Host header
//	    data_dir <dir>                  # default ./scimgate-data
//	    store bbolt|etcd { ... }        # default bbolt in data_dir; see storeconfig
//	    max_body_size <size>            # default 4MiB
//	    body_timeout <duration>         # default 5s + 5s per MiB of max_body_size
//	    max_json_depth <n>              # default 64
//	    large_body_size <size>          # default 1MiB: from here a body is large
//	    max_large_bodies <n>            # large requests at once; default 2, -1 no limit
//	    max_scans <n>                   # unindexed searches at once; default GOMAXPROCS, -1 no limit
//	    max_results <n>                 # default 200
//	    members_replace merge|exact     # default merge
//	    user_patch_response resource|no_content   # default resource
//	    target <name> {                 # the legacy app every change is rewritten for
//	        url <base url>
//	        mapping <file>              # see caddymodule/mapping/doc.go
//	        header <name> <value>       # added to every call; value usually {env.*}
//	        dry_run [true|false]        # decide, map and journal; send nothing
//	        timeout <dur>               # per native call attempt; default 10s
//	        max_concurrent <n>          # calls in flight; default 16
//	        rate_limit <per second> [<burst>]
//	        max_retries <n>             # default 2, only where safe
//	        max_retry_after <dur>       # default 5s
//	        max_response_size <size>    # default 4MiB
//	        auth basic|api_key|oauth2 { ... }   # see gwconfig.ParseTarget; secrets from {env.*} or *_file
//	        transport http { ... }      # Caddy's reverse_proxy HTTP transport options
//	                                    # (tls, tls_client_auth <cert> <key> for mTLS, timeouts)
//	        delivery immediate|queued|fallback   # default immediate
//	        queue { ... }               # queued delivery; see gwconfig
//	        reconcile { ... }           # schedule and repairs; see gwconfig
//	    }
//	    journal {
//	        name <name>                 # default scimgate
//	        checkpoint_every <n>        # default 1000; -1 off
//	        checkpoint_interval <dur>   # default 5m; -1 off
//	        signing_key <placeholder>   # Ed25519 seed, base64 or hex: {env.*} or {file.*}
//	        signing_key_file <path>
//	        key_id <id>
//	        verify_key <public key>     # an earlier signing key's (repeatable)
//	        redact <path>...            # password is always redacted
//	        max_age <dur>               # retention by age
//	        max_records <n>             # retention by count
//	        max_size <size>             # retention by stored size, e.g. 10GiB
//	        reads                       # journal reads too
//	    }
//	    policy <dir> {                  # Rego guardrails deciding every write
//	        data <file>...              # more data files merged at the root
//	        query <path>                # default data.scimgate.decision
//	        timeout <dur>               # default 100ms
//	        force_reload                # reload even past the brake (see README)
//	    }
//	    audit {                         # the journal's read routes on this site
//	        path <path>                 # default /scimgate/audit
//	        token <name> <value>        # one or more auditors; value usually {env.*}
//	    }
//	}
func (g *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if opt != "token" {
			if seen[opt] {
				return d.Errf("%s is set twice", opt)
			}
			seen[opt] = true
		}
		switch opt {
		case "token":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("token takes a name and a value: token <name> {env.SCIM_TOKEN}")
			}
			g.Tokens = append(g.Tokens, Token{Name: args[0], Value: args[1]})
		case "base_path":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(v, "/") {
				return d.Errf("base_path must start with /, got %q", v)
			}
			g.BasePath = v
		case "public_url":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			if !strings.Contains(v, "{") { // placeholders are checked at provisioning
				if _, err := gwconfig.ParsePublicURL(v); err != nil {
					return d.Err(err.Error())
				}
			}
			g.PublicURL = v
		case "store":
			g.Store = &storeconfig.Config{}
			if err := g.Store.UnmarshalCaddyfile(d); err != nil {
				return err
			}
		case "data_dir":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			g.DataDir = v
		case "max_body_size":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n < minBodyBytes || n > maxMaxBodyBytes {
				return d.Errf("max_body_size: want a size from 1KiB to 1TiB, such as 4MiB, got %q", v)
			}
			g.MaxBodyBytes = int64(n)
		case "body_timeout":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("body_timeout: want a positive duration such as 30s, got %q", v)
			}
			g.BodyTimeout = caddy.Duration(dur)
		case "large_body_size":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n < 1024 || n > maxMaxBodyBytes {
				return d.Errf("large_body_size: want a size from 1KiB, such as 1MiB, got %q", v)
			}
			g.LargeBodyBytes = int64(n)
		case "max_large_bodies", "max_scans":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || (n <= 0 && n != -1) {
				return d.Errf("%s: want a positive integer, or -1 for no limit, got %q", opt, v)
			}
			if opt == "max_scans" {
				g.MaxScans = n
			} else {
				g.MaxLargeBodies = n
			}
		case "max_json_depth", "max_results":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			lo, hi, field := minJSONDepth, maxJSONDepth, &g.MaxJSONDepth
			if opt == "max_results" {
				lo, hi, field = 1, maxMaxResults, &g.MaxResults
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				return d.Errf("%s: want an integer from %d to %d, got %q", opt, lo, hi, v)
			}
			*field = n
		case "members_replace":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			if v != "merge" && v != "exact" {
				return d.Errf("members_replace: want merge or exact, got %q", v)
			}
			g.MembersReplace = v
		case "user_patch_response":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return err
			}
			if v != "resource" && v != "no_content" {
				return d.Errf("user_patch_response: want resource or no_content, got %q", v)
			}
			g.UserPatchResponse = v
		case "target":
			tc, err := gwconfig.ParseTarget(d)
			if err != nil {
				return err
			}
			g.Target = tc
		case "audit":
			ac, err := parseAuditBlock(d)
			if err != nil {
				return err
			}
			g.Audit = ac
		case "policy":
			pc, err := gwconfig.ParsePolicy(d)
			if err != nil {
				return err
			}
			g.Policy = pc
		case "journal":
			if d.NextArg() {
				return d.ArgErr()
			}
			jc, err := gwconfig.ParseJournal(d)
			if err != nil {
				return err
			}
			g.Journal = jc
		default:
			return d.Errf("unrecognized scim_gateway option %q", opt)
		}
	}
	return nil
}

// parseAuditBlock parses
//
//	audit {
//	    path <path>
//	    token <name> <value>
//	}
func parseAuditBlock(d *caddyfile.Dispenser) (*AuditConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	ac := &AuditConfig{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] && opt != "token" {
			return nil, d.Errf("audit: %s is set twice", opt)
		}
		seen[opt] = true
		switch opt {
		case "path":
			v, err := gwconfig.OneArg(d)
			if err != nil {
				return nil, err
			}
			if !strings.HasPrefix(v, "/") {
				return nil, d.Errf("audit: path must start with /, got %q", v)
			}
			ac.Path = v
		case "token":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Errf("audit: token takes a name and a value: token <name> {env.SCIMGATE_AUDIT_TOKEN}")
			}
			ac.Tokens = append(ac.Tokens, Token{Name: args[0], Value: args[1]})
		default:
			return nil, d.Errf("unrecognized audit option %q (want path or token)", opt)
		}
	}
	if len(ac.Tokens) == 0 {
		return nil, d.Errf("audit needs at least one token: token <name> {env.SCIMGATE_AUDIT_TOKEN}")
	}
	return ac, nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
