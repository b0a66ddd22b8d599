package gwconfig

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/secret"
)

// Auth types of a target.
const (
	AuthBasic  = "basic"
	AuthAPIKey = "api_key"
	AuthOAuth2 = "oauth2"
)

// AuthConfig is how the gateway authenticates to the app, beyond static headers. Secrets
// (password, key, client_secret) are never written in the config itself: each is a
// placeholder such as {env.APP_PASSWORD}, resolved at start-up, or read from a file
// (password_file, key_file, client_secret_file), so that neither `caddy adapt` nor the
// admin API's config ever shows them.
type AuthConfig struct {
	// Type is basic, api_key or oauth2.
	Type string `json:"type"`

	// Username and Password (or PasswordFile) for basic: HTTP basic auth.
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	PasswordFile string `json:"password_file,omitempty"`

	// Header or Query names where api_key sends Key (or the content of KeyFile).
	Header  string `json:"header,omitempty"`
	Query   string `json:"query,omitempty"`
	Key     string `json:"key,omitempty"`
	KeyFile string `json:"key_file,omitempty"`

	// TokenURL, ClientID and ClientSecret (or ClientSecretFile) for oauth2: the
	// client-credentials grant (RFC 6749 §4.4).
	TokenURL         string `json:"token_url,omitempty"`
	ClientID         string `json:"client_id,omitempty"`
	ClientSecret     string `json:"client_secret,omitempty"`
	ClientSecretFile string `json:"client_secret_file,omitempty"`
	// ClientAuth is how the client id and secret reach the token endpoint: basic (HTTP
	// basic auth, the default) or body (form fields).
	ClientAuth string `json:"client_auth,omitempty"`
	// Scopes, Audience and Params are sent with the token request.
	Scopes   []string          `json:"scopes,omitempty"`
	Audience string            `json:"audience,omitempty"`
	Params   map[string]string `json:"params,omitempty"`
	// RefreshBefore is how long before its expiry a token is replaced. Default 60s (at
	// most half the token's lifetime).
	RefreshBefore caddy.Duration `json:"refresh_before,omitempty"`
}

// build resolves the secrets and returns the client's Auth. rt, when not nil, is the
// target's transport, which the token requests use too (TLS settings, client certificates).
func (a *AuthConfig) build(repl *caddy.Replacer, rt http.RoundTripper, timeout time.Duration) (legacy.Auth, error) {
	if err := a.checkFields(); err != nil {
		return nil, err
	}
	switch a.Type {
	case AuthBasic:
		pw, err := secret.Resolve(repl, "auth", "password", a.Password, a.PasswordFile)
		if err != nil {
			return nil, err
		}
		user, err := secret.Value(repl, a.Username)
		if err != nil {
			return nil, fmt.Errorf("auth basic: username: %w", err)
		}
		return legacy.NewBasicAuth(user, pw)
	case AuthAPIKey:
		key, err := secret.Resolve(repl, "auth", "key", a.Key, a.KeyFile)
		if err != nil {
			return nil, err
		}
		return legacy.NewAPIKey(a.Header, a.Query, key)
	case AuthOAuth2:
		return a.buildOAuth(repl, rt, timeout)
	case "":
		return nil, errors.New("auth: type is required: basic, api_key or oauth2")
	}
	return nil, fmt.Errorf("auth: unknown type %q; use basic, api_key or oauth2", a.Type)
}

func (a *AuthConfig) buildOAuth(repl *caddy.Replacer, rt http.RoundTripper, timeout time.Duration) (legacy.Auth, error) {
	cs, err := secret.Resolve(repl, "auth", "client_secret", a.ClientSecret, a.ClientSecretFile)
	if err != nil {
		return nil, err
	}
	cfg := legacy.OAuthConfig{ClientSecret: cs, Scopes: a.Scopes, Transport: rt, Timeout: timeout,
		RefreshBefore: time.Duration(a.RefreshBefore)}
	for _, f := range []struct {
		name string
		in   string
		out  *string
	}{{"token_url", a.TokenURL, &cfg.TokenURL}, {"client_id", a.ClientID, &cfg.ClientID}, {"audience", a.Audience, &cfg.Audience}} {
		if *f.out, err = secret.Value(repl, f.in); err != nil {
			return nil, fmt.Errorf("auth oauth2: %s: %w", f.name, err)
		}
	}
	switch a.ClientAuth {
	case "", "basic":
	case "body":
		cfg.SecretInBody = true
	default:
		return nil, fmt.Errorf("auth oauth2: client_auth %q: use basic or body", a.ClientAuth)
	}
	if len(a.Params) > 0 {
		cfg.Params = map[string][]string{}
		for k, v := range a.Params {
			val, err := secret.Value(repl, v)
			if err != nil {
				return nil, fmt.Errorf("auth oauth2: param %s: %w", k, err)
			}
			cfg.Params[k] = []string{val}
		}
	}
	return legacy.NewOAuth(cfg)
}

// checkFields rejects settings of another auth type.
func (a *AuthConfig) checkFields() error {
	switch a.Type {
	case AuthBasic:
		return a.only("username", "password", "password_file")
	case AuthAPIKey:
		return a.only("header", "query", "key", "key_file")
	case AuthOAuth2:
		return a.only("token_url", "client_id", "client_secret", "client_secret_file", "client_auth", "scopes", "audience", "params", "refresh_before")
	}
	return nil
}

// only rejects the fields that do not belong to the auth type, so a setting written for
// another type is not silently ignored.
func (a *AuthConfig) only(allowed ...string) error {
	set := map[string]bool{
		"username": a.Username != "", "password": a.Password != "", "password_file": a.PasswordFile != "",
		"header": a.Header != "", "query": a.Query != "", "key": a.Key != "", "key_file": a.KeyFile != "",
		"token_url": a.TokenURL != "", "client_id": a.ClientID != "", "client_secret": a.ClientSecret != "",
		"client_secret_file": a.ClientSecretFile != "", "client_auth": a.ClientAuth != "", "scopes": len(a.Scopes) > 0,
		"audience": a.Audience != "", "params": len(a.Params) > 0, "refresh_before": a.RefreshBefore != 0,
	}
	for _, k := range allowed {
		delete(set, k)
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if set[k] {
			return fmt.Errorf("auth %s: %s does not apply (it belongs to another auth type)", a.Type, k)
		}
	}
	return nil
}
