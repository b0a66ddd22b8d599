package legacy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Defaults of OAuthConfig.
const (
	// DefaultRefreshBefore is how long before its expiry a token is replaced (at most half
	// of the token's lifetime, so a token that lives a minute is still used for 30s).
	DefaultRefreshBefore = 60 * time.Second
	// defaultFailureHold is how long a failed token request answers the callers that come
	// after it, when the token endpoint gave no Retry-After: a token endpoint that is down
	// is not asked again by every request of a burst.
	defaultFailureHold = time.Second
	// maxFailureHold caps the token endpoint's own Retry-After.
	maxFailureHold = time.Minute
)

// OAuthConfig is the OAuth 2.0 client-credentials grant (RFC 6749 §4.4): the gateway
// fetches an access token from the token endpoint and sends it as a bearer token.
type OAuthConfig struct {
	// TokenURL is the token endpoint (http or https).
	TokenURL string
	// ClientID and ClientSecret identify the gateway at the token endpoint.
	ClientID     string
	ClientSecret string
	// SecretInBody sends the client id and secret as form fields (client_secret_post);
	// default: HTTP basic auth (client_secret_basic, RFC 6749 §2.3.1).
	SecretInBody bool
	// Scopes are sent space-separated as "scope", when any.
	Scopes []string
	// Audience is sent as "audience", when set (Auth0, Okta and others ask for it).
	Audience string
	// Params are further form fields of the token request ("resource", ...).
	Params url.Values
	// RefreshBefore is how long before its expiry a token is replaced. Default 60s, at
	// most half the token's lifetime.
	RefreshBefore time.Duration
	// Transport sends the token requests (nil: a default transport). Pass the target's, so
	// that TLS settings and client certificates apply to the token endpoint too.
	Transport http.RoundTripper
	// Timeout bounds one token request. Default 10s.
	Timeout time.Duration
}

// OAuth is an Auth that holds one access token at a time: cached, replaced before it
// expires, fetched again once when the app answers 401, and fetched by one caller at a
// time (the callers that wait for a fetch share its token, or its failure).
type OAuth struct {
	cfg           clientcredentials.Config
	hc            *http.Client
	refreshBefore time.Duration
	now           func() time.Time
	turn          chan struct{} // held by the caller that fetches

	mu        sync.Mutex
	tok       *oauth2.Token
	refreshAt time.Time
	gen       uint64 // fetches completed
	failErr   *Error // the last fetch's failure, shared until failUntil
	failUntil time.Time

	fetches atomic.Int64
}

// NewOAuth checks cfg and returns the token source. It fetches nothing yet.
func NewOAuth(cfg OAuthConfig) (*OAuth, error) {
	u, err := url.Parse(cfg.TokenURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, errors.New("legacy: the OAuth token URL must be an absolute http or https URL")
	case u.User != nil:
		return nil, errors.New("legacy: the OAuth token URL must not carry credentials")
	case cfg.ClientID == "":
		return nil, errors.New("legacy: OAuth needs a client id")
	case cfg.ClientSecret == "":
		return nil, errors.New("legacy: OAuth needs a client secret")
	case cfg.RefreshBefore < 0 || cfg.Timeout < 0:
		return nil, errors.New("legacy: OAuth refresh_before and timeout must not be negative")
	}
	params := url.Values{}
	for k, v := range cfg.Params {
		switch k {
		case "grant_type", "scope", "client_id", "client_secret":
			return nil, fmt.Errorf("legacy: the OAuth parameter %q is set by the gateway", k)
		}
		params[k] = append([]string(nil), v...)
	}
	if cfg.Audience != "" {
		params.Set("audience", cfg.Audience)
	}
	style := oauth2.AuthStyleInHeader
	if cfg.SecretInBody {
		style = oauth2.AuthStyleInParams
	}
	rt := cfg.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	o := &OAuth{
		cfg: clientcredentials.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenURL: cfg.TokenURL,
			Scopes: cfg.Scopes, EndpointParams: params, AuthStyle: style,
		},
		// No redirects: a redirected token request would carry the secret elsewhere.
		hc: &http.Client{Transport: rt, Timeout: orDefault(cfg.Timeout, DefaultTimeout),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		refreshBefore: orDefault(cfg.RefreshBefore, DefaultRefreshBefore),
		now:           time.Now,
		turn:          make(chan struct{}, 1),
	}
	return o, nil
}

// Fetches is how many token requests were made (for metrics and tests).
func (o *OAuth) Fetches() int64 { return o.fetches.Load() }

// String names the kind and the client, never the secret.
func (o *OAuth) String() string { return "oauth2 client credentials (client " + o.cfg.ClientID + ")" }

// Apply sets the bearer token, fetching one when there is none or it is due for renewal.
func (o *OAuth) Apply(ctx context.Context, req *http.Request) (func() bool, error) {
	tok, err := o.Token(ctx)
	if err != nil {
		return nil, err
	}
	tok.SetAuthHeader(req)
	return func() bool { o.drop(tok); return true }, nil
}

// Token returns a usable token. A failure is an *Error of KindAuth (or KindTimeout or
// KindCanceled when the caller's context ended while it waited).
func (o *OAuth) Token(ctx context.Context) (*oauth2.Token, error) {
	tok, gen := o.cached()
	if tok != nil {
		return tok, nil
	}
	select {
	case o.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, contextError(ctx.Err())
	}
	defer func() { <-o.turn }()
	o.mu.Lock()
	if o.tok != nil && o.now().Before(o.refreshAt) {
		tok := o.tok
		o.mu.Unlock()
		return tok, nil // fetched while this caller waited
	}
	if o.failErr != nil && (o.gen != gen || o.now().Before(o.failUntil)) {
		e := *o.failErr // failed while this caller waited, or moments ago
		o.mu.Unlock()
		return nil, &e
	}
	o.mu.Unlock()
	return o.fetch(ctx)
}

// cached returns the token when it is not due for renewal, and the fetch generation.
func (o *OAuth) cached() (*oauth2.Token, uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tok != nil && o.now().Before(o.refreshAt) {
		return o.tok, o.gen
	}
	return nil, o.gen
}

// fetch makes one token request; the caller holds the turn.
func (o *OAuth) fetch(ctx context.Context) (*oauth2.Token, error) {
	o.fetches.Add(1)
	start := o.now()
	tok, err := o.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, o.hc))
	if err == nil && tok.AccessToken == "" {
		err = errors.New("no access token")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gen++
	if err != nil {
		if ctx.Err() != nil {
			// The call's time ran out (or its caller gave up) while the token endpoint
			// was answering: the next caller tries itself.
			o.failErr = nil
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, &Error{Kind: KindAuth, Err: errors.New("the token endpoint did not answer in time")}
			}
			return nil, contextError(ctx.Err())
		}
		e := tokenError(err, start)
		hold := defaultFailureHold
		if e.RetryAfter > 0 {
			hold = min(e.RetryAfter, maxFailureHold)
		}
		o.tok, o.failErr, o.failUntil = nil, e, o.now().Add(hold)
		return nil, e
	}
	o.tok, o.failErr = tok, nil
	o.refreshAt = start.Add(24 * time.Hour) // a token without expires_in: until a 401
	if !tok.Expiry.IsZero() {
		// The lifetime the endpoint gave (oauth2 dates it by the system clock), counted
		// from when it was asked for.
		life := max(time.Until(tok.Expiry), 0)
		o.refreshAt = start.Add(life - min(o.refreshBefore, life/2))
	}
	return tok, nil
}

// drop forgets tok after the app rejected it; a token fetched since is kept.
func (o *OAuth) drop(tok *oauth2.Token) {
	o.mu.Lock()
	if o.tok == tok {
		o.tok = nil
	}
	o.mu.Unlock()
}

// tokenError describes a failed token request for the journal and the logs: the token
// endpoint's status and RFC 6749 error code, or the network failure; never the response
// body, the client secret or the token URL's query.
func tokenError(err error, now time.Time) *Error {
	e := &Error{Kind: KindAuth}
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re) && re.Response != nil:
		what := fmt.Sprintf("the token endpoint answered HTTP %d", re.Response.StatusCode)
		if code := sanitizeMessage(re.ErrorCode); code != "" && len(code) <= 64 {
			what += " (" + code + ")"
		}
		e.Err = errors.New(what)
		e.RetryAfter, _ = parseRetryAfter(re.Response.Header.Get("Retry-After"), now)
	case isTimeout(err):
		e.Err = errors.New("the token endpoint did not answer in time")
	case netCause(err) != "":
		e.Err = errors.New("the token endpoint is unreachable: " + netCause(err))
	case strings.Contains(err.Error(), "access_token") || err.Error() == "no access token":
		e.Err = errors.New("the token endpoint's answer holds no access token")
	default:
		e.Err = errors.New("the token request failed (the token endpoint's answer could not be read)")
	}
	return e
}
