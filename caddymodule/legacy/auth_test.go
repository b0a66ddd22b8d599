package legacy

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/apptest"
)

const (
	testClientSecret = "s3cret-client-secret-4ae1"
	testPassword     = "pa55-word-9f3c"
	testAPIKey       = "key-7d1e0b"
)

func newOAuthApp(t *testing.T, ttl time.Duration) *apptest.App {
	return apptest.Start(t, apptest.Options{ClientID: "gateway", ClientSecret: testClientSecret, TokenTTL: ttl})
}

func newOAuth(t *testing.T, app *apptest.App, mutate func(*OAuthConfig)) *OAuth {
	t.Helper()
	cfg := OAuthConfig{TokenURL: app.URL + "/oauth/token", ClientID: "gateway", ClientSecret: testClientSecret, Scopes: []string{"users.write"}}
	if mutate != nil {
		mutate(&cfg)
	}
	o, err := NewOAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func get(t *testing.T, c *Client) error {
	t.Helper()
	_, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/api/users"})
	return err
}

// TestOAuthCachesAndRenews: one token serves many calls; it is replaced before it expires
// (by the client's clock), and fetched again once when the app rejects it with 401.
func TestOAuthCachesAndRenews(t *testing.T) {
	app := newOAuthApp(t, 10*time.Minute)
	o := newOAuth(t, app, nil)
	clock := &fakeClock{t: time.Now()}
	o.now = clock.now
	c := newTestClient(t, app.URL, Options{Auth: o})
	for range 5 {
		if err := get(t, c); err != nil {
			t.Fatal(err)
		}
	}
	if n := app.TokenRequests.Load(); n != 1 {
		t.Fatalf("5 calls made %d token requests, want 1", n)
	}
	clock.advance(9*time.Minute + 30*time.Second) // within the 60s before expiry
	if err := get(t, c); err != nil {
		t.Fatal(err)
	}
	if n := app.TokenRequests.Load(); n != 2 {
		t.Fatalf("a token due for renewal made %d token requests in all, want 2", n)
	}
	app.Expire() // the app forgets its tokens: the next call gets 401
	if err := get(t, c); err != nil {
		t.Fatalf("a call after a 401 with a fresh token: %v", err)
	}
	if n := app.TokenRequests.Load(); n != 3 {
		t.Fatalf("a 401 made %d token requests in all, want 3", n)
	}
	if n := app.APIRequests.Load(); n != 8 {
		t.Fatalf("the app saw %d calls, want 8 (7 calls, one repeated after its 401)", n)
	}
}

// TestOAuthShortLivedTokens: tokens that expire within the test (by the app's real
// clock) are replaced, so no call fails.
func TestOAuthShortLivedTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a token to expire")
	}
	app := newOAuthApp(t, 2*time.Second)
	c := newTestClient(t, app.URL, Options{Auth: newOAuth(t, app, nil)})
	for range 3 {
		if err := get(t, c); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond)
	}
	// 2s tokens are renewed after half their life: every call after the first sleep
	// finds its token due.
	if n := app.TokenRequests.Load(); n < 3 {
		t.Fatalf("%d token requests, want at least 3 (one per call, each after the last token's renewal time)", n)
	}
}

// TestOAuthSingleFlight: 32 callers that find the token expired together make one token
// request, and all use its token.
func TestOAuthSingleFlight(t *testing.T) {
	app := newOAuthApp(t, 10*time.Minute)
	o := newOAuth(t, app, nil)
	clock := &fakeClock{t: time.Now()}
	o.now = clock.now
	c := newTestClient(t, app.URL, Options{Auth: o, MaxConcurrent: 64})
	if err := get(t, c); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Hour)
	app.HoldTokens()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			_, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/api/users"})
			errs <- err
		})
	}
	waitFor(t, func() bool { return app.TokenRequests.Load() == 2 })
	app.ReleaseTokens()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := app.TokenRequests.Load(); n != 2 {
		t.Fatalf("32 callers with an expired token made %d token requests, want 1 (2 in all)", n)
	}
}

// TestOAuthTokenEndpointFails: Entra gets 503 with Retry-After (the token endpoint's),
// never 401; the cause names the endpoint's status, not the secret; callers that waited
// for the failed request share its failure.
func TestOAuthTokenEndpointFails(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusUnauthorized} {
		app := newOAuthApp(t, time.Hour)
		app.TokenStatus.Store(int32(status))
		o := newOAuth(t, app, nil)
		c := newTestClient(t, app.URL, Options{Auth: o, CircuitFailures: 1})
		for range 3 {
			resp, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/api/users", Body: []byte(`{}`)})
			e := asError(t, err)
			if e.Kind != KindAuth {
				t.Fatalf("kind %s, want auth", e.Kind)
			}
			se, ra := ToSCIM(change.Create, resp, err)
			if se.Status != http.StatusServiceUnavailable || ra != 7*time.Second {
				t.Fatalf("token endpoint %d: Entra gets %d with Retry-After %v, want 503 and 7s", status, se.Status, ra)
			}
			for _, text := range []string{e.Error(), e.Cause(), se.Detail} {
				if strings.Contains(text, testClientSecret) {
					t.Fatalf("the secret is in %q", text)
				}
				if !strings.Contains(text, "token endpoint answered HTTP "+strconv.Itoa(status)) {
					t.Fatalf("%q does not name the token endpoint's status", text)
				}
			}
		}
		if n := app.APIRequests.Load(); n != 0 {
			t.Fatalf("%d calls reached the app without a token", n)
		}
		if n := app.TokenRequests.Load(); n != 1 {
			t.Fatalf("3 calls within the token endpoint's Retry-After made %d token requests, want 1", n)
		}
		// The app did nothing wrong: its circuit stays closed.
		if _, _, ok := c.breaker.allow(); !ok {
			t.Fatal("a token endpoint failure opened the app's circuit")
		}
	}
}

// TestOAuthClientSecretInBody: the secret goes as form fields when asked, with the scope,
// audience and extra parameters.
func TestOAuthClientSecretInBody(t *testing.T) {
	var form map[string]string
	var basic bool
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_, _, basic = r.BasicAuth()
		form = map[string]string{}
		for k := range r.PostForm {
			form[k] = r.PostForm.Get(k)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"t1","token_type":"bearer","expires_in":3600}`))
	})
	o, err := NewOAuth(OAuthConfig{TokenURL: srv.URL, ClientID: "gw", ClientSecret: "sec", SecretInBody: true,
		Scopes: []string{"a", "b"}, Audience: "https://api.example", Params: map[string][]string{"resource": {"r1"}}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := o.Token(context.Background())
	if err != nil || tok.AccessToken != "t1" {
		t.Fatalf("token %v, %v", tok, err)
	}
	want := map[string]string{"grant_type": "client_credentials", "client_id": "gw", "client_secret": "sec",
		"scope": "a b", "audience": "https://api.example", "resource": "r1"}
	if basic || len(form) != len(want) {
		t.Fatalf("basic %v, form %v, want %v", basic, form, want)
	}
	for k, v := range want {
		if form[k] != v {
			t.Fatalf("form %s = %q, want %q", k, form[k], v)
		}
	}
}

func TestNewAuthRejectsBadConfig(t *testing.T) {
	bad := []OAuthConfig{
		{TokenURL: "ftp://x/token", ClientID: "a", ClientSecret: "b"},
		{TokenURL: "https://u:p@x/token", ClientID: "a", ClientSecret: "b"},
		{TokenURL: "https://x/token", ClientSecret: "b"},
		{TokenURL: "https://x/token", ClientID: "a"},
		{TokenURL: "https://x/token", ClientID: "a", ClientSecret: "b", Params: map[string][]string{"client_secret": {"c"}}},
	}
	for i, cfg := range bad {
		if _, err := NewOAuth(cfg); err == nil {
			t.Errorf("%d: NewOAuth accepted %+v", i, cfg)
		} else if strings.Contains(err.Error(), "b") && cfg.ClientSecret == "b" && strings.Contains(err.Error(), `"b"`) {
			t.Errorf("%d: error quotes the secret: %v", i, err)
		}
	}
	if _, err := NewBasicAuth("a:b", "p"); err == nil {
		t.Error("a username with a colon was accepted")
	}
	if _, err := NewBasicAuth("a", ""); err == nil {
		t.Error("an empty password was accepted")
	}
	if _, err := NewAPIKey("X-Key", "key", "v"); err == nil {
		t.Error("a key in both a header and a query parameter was accepted")
	}
	if _, err := NewAPIKey("Bad Header", "", "v"); err == nil {
		t.Error("a header name with a space was accepted")
	}
}

// TestBasicAndAPIKey: the app checks the credentials; wrong ones are a 503 for Entra,
// and the key in the query never reaches an error text.
func TestBasicAndAPIKey(t *testing.T) {
	basicApp := apptest.Start(t, apptest.Options{Auth: apptest.AuthBasic, User: "svc", Password: testPassword})
	ba, _ := NewBasicAuth("svc", testPassword)
	if err := get(t, newTestClient(t, basicApp.URL, Options{Auth: ba})); err != nil {
		t.Fatalf("basic: %v", err)
	}
	wrong, _ := NewBasicAuth("svc", "nope")
	err := get(t, newTestClient(t, basicApp.URL, Options{Auth: wrong}))
	if se, _ := ToSCIM(change.Create, nil, err); se == nil || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("wrong basic credentials: %v, want a 503 for Entra", err)
	}

	keyApp := apptest.Start(t, apptest.Options{Auth: apptest.AuthAPIKey, Key: testAPIKey})
	for _, k := range []struct{ header, query string }{{"X-Api-Key", ""}, {"", "api_key"}} {
		ak, err := NewAPIKey(k.header, k.query, testAPIKey)
		if err != nil {
			t.Fatal(err)
		}
		c := newTestClient(t, keyApp.URL, Options{Auth: ak})
		if _, err := c.Do(context.Background(), Request{Path: "/api/users?login=ada"}); err != nil {
			t.Fatalf("%s: %v", ak, err)
		}
		if strings.Contains(ak.String(), testAPIKey) {
			t.Fatalf("String() holds the key: %s", ak)
		}
	}
	seen := keyApp.Seen()
	if len(seen) != 2 || !strings.Contains(seen[1], "api_key="+testAPIKey) || !strings.Contains(seen[1], "login=ada") {
		t.Fatalf("the app saw %q, want the key added to the query and the path's query kept", seen)
	}
	// A key in the query, a server that fails: the error says nothing of the URL.
	ak, _ := NewAPIKey("", "api_key", testAPIKey)
	_, err = newTestClient(t, refusedURL(t), Options{Auth: ak, MaxRetries: -1}).Do(context.Background(), Request{Path: "/api/users"})
	if err == nil || strings.Contains(err.Error(), testAPIKey) || strings.Contains(asError(t, err).Cause(), testAPIKey) {
		t.Fatalf("error %v holds the key (or is nil)", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOAuthTokenEndpointUnreachable: a token endpoint that refuses connections, or answers
// too slowly, is named as the cause; nothing reaches the app.
func TestOAuthTokenEndpointUnreachable(t *testing.T) {
	app := newOAuthApp(t, time.Hour)
	refused := newOAuth(t, app, func(c *OAuthConfig) { c.TokenURL = refusedURL(t) + "/token" })
	slowSrv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so the server notices the client hang up
		blockUntilDone(w, r)
	})
	slow := newOAuth(t, app, func(c *OAuthConfig) { c.TokenURL = slowSrv.URL })
	for want, o := range map[string]*OAuth{"unreachable: connection refused": refused, "did not answer in time": slow} {
		c := newTestClient(t, app.URL, Options{Auth: o, Timeout: 200 * time.Millisecond})
		_, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/api/users"})
		e := asError(t, err)
		if e.Kind != KindAuth || !strings.Contains(e.Cause(), want) {
			t.Errorf("%s: %v (%s)", want, err, e.Cause())
		}
	}
	if n := app.APIRequests.Load(); n != 0 {
		t.Fatalf("%d calls reached the app", n)
	}
}
