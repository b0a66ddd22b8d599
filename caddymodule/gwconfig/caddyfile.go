package gwconfig

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/dustin/go-humanize"

	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/secret"
)

func ParseTarget(d *caddyfile.Dispenser) (*TargetConfig, error) {
	tc := &TargetConfig{}
	if !d.NextArg() {
		return nil, d.Errf("target needs a name: target <name> { url ...; mapping ... }")
	}
	tc.Name = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !slices.Contains(targetOptions, opt) {
			return nil, unknownOption(d, "target", opt, targetOptions)
		}
		if seen[opt] {
			return nil, d.Errf("target: %s is set twice", opt)
		}
		seen[opt] = true
		switch opt {
		case "dry_run":
			tc.DryRun = true
			if d.NextArg() {
				v, err := strconv.ParseBool(d.Val())
				if err != nil || d.NextArg() {
					return nil, d.Errf("target: dry_run takes no argument, or true or false")
				}
				tc.DryRun = v
			}
			continue
		case "reconcile":
			rc, err := parseReconcileBlock(d)
			if err != nil {
				return nil, err
			}
			tc.Reconcile = rc
			continue
		case "auth":
			ac, err := parseAuthBlock(d)
			if err != nil {
				return nil, err
			}
			tc.Auth = ac
			continue
		case "queue":
			q, err := parseQueueBlock(d)
			if err != nil {
				return nil, err
			}
			tc.Queue = q
			continue
		case "transport":
			if !d.NextArg() || d.Val() != "http" {
				return nil, d.Errf("target: transport: only the http transport is supported")
			}
			unm, err := caddyfile.UnmarshalModule(d, "http.reverse_proxy.transport.http")
			if err != nil {
				return nil, err
			}
			ht, ok := unm.(*reverseproxy.HTTPTransport)
			if !ok {
				return nil, d.Errf("target: transport: unexpected module %T", unm)
			}
			tc.Transport = ht
			continue
		case "header":
			delete(seen, opt) // may repeat
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Errf("target: header takes a name and a value")
			}
			if tc.Headers == nil {
				tc.Headers = map[string]string{}
			}
			tc.Headers[args[0]] = args[1]
			continue
		case "rate_limit":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return nil, d.ArgErr()
			}
			rps, err := strconv.ParseFloat(args[0], 64)
			if err != nil || rps <= 0 {
				return nil, d.Errf("target: rate_limit: want requests per second > 0, got %q", args[0])
			}
			tc.RateLimit = rps
			if len(args) == 2 {
				if tc.RateBurst, err = strconv.Atoi(args[1]); err != nil || tc.RateBurst <= 0 {
					return nil, d.Errf("target: rate_limit: want a positive burst, got %q", args[1])
				}
			}
			continue
		}
		v, err := OneArg(d)
		if err != nil {
			return nil, err
		}
		switch opt {
		case "url":
			tc.URL = v
		case "mapping":
			tc.Mapping = v
		case "delivery":
			if !outbox.Mode(v).Valid() {
				return nil, d.Errf("target: delivery: want immediate, queued or fallback, got %q", v)
			}
			tc.Delivery = v
		case "timeout", "max_retry_after":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("target: %s: want a positive duration, got %q", opt, v)
			}
			if opt == "timeout" {
				tc.Timeout = caddy.Duration(dur)
			} else {
				tc.MaxRetryAfter = caddy.Duration(dur)
			}
		case "max_concurrent", "max_retries":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || (opt == "max_concurrent" && n == 0) {
				return nil, d.Errf("target: %s: want a non-negative integer, got %q", opt, v)
			}
			if opt == "max_concurrent" {
				tc.MaxConcurrent = n
			} else {
				tc.MaxRetries = n
				if n == 0 {
					tc.MaxRetries = -1 // zero means "no retries" here, not "the default"
				}
			}
		case "max_response_size":
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 {
				return nil, d.Errf("target: max_response_size: want a size such as 4MiB, got %q", v)
			}
			tc.MaxResponseBytes = int64(n)
		}
	}
	if tc.URL == "" || tc.Mapping == "" {
		return nil, d.Errf("target %s needs url and mapping", tc.Name)
	}
	return tc, nil
}

// parseAuthBlock parses a target's auth. Secrets are placeholders ({env.*}, {file.*}) or
// files, never literals, so that `caddy adapt` output never holds them:
//
//	auth basic {
//	    username <user>
//	    password {env.APP_PASSWORD}         # or: password_file <path>
//	}
//	auth api_key {
//	    header <name>                       # or: query <name>
//	    key {env.APP_KEY}                   # or: key_file <path>
//	}
//	auth oauth2 {
//	    token_url <url>
//	    client_id <id>
//	    client_secret {env.APP_CLIENT_SECRET}   # or: client_secret_file <path>
//	    client_auth basic|body              # default basic
//	    scope <scope>...
//	    audience <audience>
//	    param <name> <value>                # repeatable
//	    refresh_before <duration>           # default 60s
//	}
func parseAuthBlock(d *caddyfile.Dispenser) (*AuthConfig, error) {
	if !d.NextArg() {
		return nil, d.Errf("target: auth needs a type: basic, api_key or oauth2")
	}
	ac := &AuthConfig{Type: d.Val()}
	if ac.Type != AuthBasic && ac.Type != AuthAPIKey && ac.Type != AuthOAuth2 {
		return nil, d.Errf("target: auth: unknown type %q; use basic, api_key or oauth2", ac.Type)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !slices.Contains(authOptions, opt) {
			return nil, unknownOption(d, "auth", opt, authOptions)
		}
		if seen[opt] && opt != "param" {
			return nil, d.Errf("auth: %s is set twice", opt)
		}
		seen[opt] = true
		switch opt {
		case "scope":
			ac.Scopes = d.RemainingArgs()
			if len(ac.Scopes) == 0 {
				return nil, d.ArgErr()
			}
			continue
		case "param":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Errf("auth: param takes a name and a value")
			}
			if ac.Params == nil {
				ac.Params = map[string]string{}
			}
			ac.Params[args[0]] = args[1]
			continue
		}
		v, err := OneArg(d)
		if err != nil {
			return nil, err
		}
		if err := setAuthOption(ac, opt, v); err != nil {
			return nil, d.Err(err.Error())
		}
	}
	if err := ac.checkFields(); err != nil {
		return nil, d.Err(err.Error())
	}
	return ac, nil
}

func setAuthOption(ac *AuthConfig, opt, v string) error {
	secretOpt := map[string]*string{"password": &ac.Password, "key": &ac.Key, "client_secret": &ac.ClientSecret}
	if p, ok := secretOpt[opt]; ok {
		if !secret.IsPlaceholder(v) {
			return fmt.Errorf("auth: %s must be a placeholder such as {env.APP_SECRET}, or use %s_file: a secret written in the Caddyfile would show in `caddy adapt` output", opt, opt)
		}
		*p = v
		return nil
	}
	plain := map[string]*string{
		"username": &ac.Username, "password_file": &ac.PasswordFile, "header": &ac.Header, "query": &ac.Query,
		"key_file": &ac.KeyFile, "token_url": &ac.TokenURL, "client_id": &ac.ClientID,
		"client_secret_file": &ac.ClientSecretFile, "client_auth": &ac.ClientAuth, "audience": &ac.Audience,
	}
	if p, ok := plain[opt]; ok {
		*p = v
		return nil
	}
	if opt == "refresh_before" {
		dur, err := caddy.ParseDuration(v)
		if err != nil || dur <= 0 {
			return fmt.Errorf("auth: refresh_before: want a positive duration, got %q", v)
		}
		ac.RefreshBefore = caddy.Duration(dur)
		return nil
	}
	return fmt.Errorf("unrecognized auth option %q", opt)
}

func ParseJournal(d *caddyfile.Dispenser) (*JournalConfig, error) {
	jc := &JournalConfig{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !slices.Contains(journalOptions, opt) {
			return nil, unknownOption(d, "journal", opt, journalOptions)
		}
		if seen[opt] && opt != "redact" && opt != "verify_key" {
			return nil, d.Errf("journal: %s is set twice", opt)
		}
		seen[opt] = true
		if opt == "reads" {
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			jc.Reads = true
			continue
		}
		if opt == "redact" {
			paths := d.RemainingArgs()
			if len(paths) == 0 {
				return nil, d.ArgErr()
			}
			jc.Redact = append(jc.Redact, paths...)
			continue
		}
		v, err := OneArg(d)
		if err != nil {
			return nil, err
		}
		switch opt {
		case "name":
			jc.Name = v
		case "signing_key":
			if !secret.IsPlaceholder(v) {
				return nil, d.Errf("journal: signing_key must be a placeholder such as {env.SCIMGATE_JOURNAL_KEY}, or use signing_key_file: a key written in the Caddyfile would show in `caddy adapt` output and the admin API's config, and whoever reads it could sign checkpoints")
			}
			jc.SigningKey = v
		case "signing_key_file":
			jc.SigningKeyFile = v
		case "key_id":
			jc.KeyID = v
		case "verify_key":
			jc.VerifyKeys = append(jc.VerifyKeys, v)
		case "checkpoint_every":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n == 0 || n < -1 {
				return nil, d.Errf("journal: checkpoint_every: want a positive integer or -1 (off), got %q", v)
			}
			jc.CheckpointEvery = n
		case "checkpoint_interval", "max_age":
			var dur caddy.Duration
			if v == "-1" && opt == "checkpoint_interval" {
				dur = -1
			} else {
				pd, err := caddy.ParseDuration(v)
				if err != nil || pd <= 0 {
					return nil, d.Errf("journal: %s: want a positive duration such as 5m, got %q", opt, v)
				}
				dur = caddy.Duration(pd)
			}
			if opt == "max_age" {
				jc.MaxAge = dur
			} else {
				jc.CheckpointInterval = dur
			}
		case "max_size":
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 {
				return nil, d.Errf("journal: max_size: want a size such as 10GiB, got %q", v)
			}
			jc.MaxBytes = n
		case "max_records":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				return nil, d.Errf("journal: max_records: want a positive integer, got %q", v)
			}
			jc.MaxRecords = n
		}
	}
	return jc, nil
}

// ParsePolicy parses
//
//	policy <dir> {
//	    data <file>...
//	    query <data.path>
//	    timeout <duration>
//	    force_reload
//	}
func ParsePolicy(d *caddyfile.Dispenser) (*PolicyConfig, error) {
	pc := &PolicyConfig{}
	if !d.NextArg() {
		return nil, d.Errf("policy needs the directory of its Rego files: policy <dir> { data ...; timeout ... }")
	}
	pc.Dir = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] && opt != "data" {
			return nil, d.Errf("policy: %s is set twice", opt)
		}
		seen[opt] = true
		switch opt {
		case "data":
			files := d.RemainingArgs()
			if len(files) == 0 {
				return nil, d.Errf("policy: data needs at least one file")
			}
			pc.Data = append(pc.Data, files...)
		case "query":
			v, err := OneArg(d)
			if err != nil {
				return nil, err
			}
			pc.Query = v
		case "timeout":
			v, err := OneArg(d)
			if err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("policy: timeout: want a positive duration, got %q", v)
			}
			pc.Timeout = caddy.Duration(dur)
		case "force_reload":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			pc.ForceReload = true
		default:
			return nil, d.Errf("unrecognized policy option %q (want data, query, timeout or force_reload)", opt)
		}
	}
	return pc, nil
}

// The options of each block, checked before their arguments: a misspelt option is named
// as such ("unrecognized target option "headr" (want ...)"), not reported as a wrong count
// of arguments for the option it was not.
var (
	targetOptions = []string{"url", "mapping", "header", "dry_run", "timeout", "max_concurrent", "rate_limit",
		"max_retries", "max_retry_after", "max_response_size", "auth", "transport", "delivery", "queue", "reconcile"}
	authOptions = []string{"username", "password", "password_file", "header", "query", "key", "key_file",
		"token_url", "client_id", "client_secret", "client_secret_file", "client_auth", "scope", "audience",
		"param", "refresh_before"}
	journalOptions = []string{"name", "checkpoint_every", "checkpoint_interval", "signing_key", "signing_key_file",
		"key_id", "verify_key", "redact", "max_age", "max_records", "max_size", "reads"}
	reconcileOptions = []string{"every", "fix", "orphans", "keep", "max_findings"}
)

// unknownOption is the error for an option block does not have, listing the ones it has.
func unknownOption(d *caddyfile.Dispenser, block, opt string, known []string) error {
	return d.Errf("unrecognized %s option %q (want %s or %s)", block, opt,
		strings.Join(known[:len(known)-1], ", "), known[len(known)-1])
}

func OneArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}
