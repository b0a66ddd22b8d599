package demoapp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

const testKey = "demo-key-0123456789"

// fixedClock is the clock of test states, so that timestamps are predictable.
var fixedClock = func() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) }

// newTestApp provisions an App with its own state (named after the test) and releases it
// when the test ends. mods change the config before provisioning.
func newTestApp(t *testing.T, mods ...func(*App)) *App {
	t.Helper()
	a, err := provisionApp(t, mods...)
	if err != nil {
		t.Fatalf("provisioning: %v", err)
	}
	if err := a.Validate(); err != nil {
		t.Fatalf("validating: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	a.state.mu.Lock()
	a.state.now = fixedClock
	a.state.mu.Unlock()
	return a
}

// provisionApp provisions an App with mods applied and returns it, or the error of its
// provisioning. The caller cleans it up.
func provisionApp(t *testing.T, mods ...func(*App)) (*App, error) {
	t.Helper()
	a := &App{APIKey: testKey, Name: t.Name()}
	for _, m := range mods {
		m(a)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := a.Provision(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// nextHandler records that a request was passed on.
type nextHandler struct{ called bool }

func (n *nextHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	n.called = true
	w.WriteHeader(http.StatusTeapot)
	return nil
}

// do sends one request with the API key (unless headers override X-Api-Key) and returns
// the recorded response. headers are name/value pairs.
func do(t *testing.T, a *App, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("X-Api-Key", testKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	rec := httptest.NewRecorder()
	if err := a.ServeHTTP(rec, req, &nextHandler{}); err != nil {
		t.Fatalf("%s %s: ServeHTTP returned %v", method, path, err)
	}
	return rec
}

// must sends a request and fails the test unless the status is want.
func must(t *testing.T, a *App, want int, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := do(t, a, method, path, body)
	if rec.Code != want {
		t.Fatalf("%s %s %s: status %d, want %d; body %s", method, path, body, rec.Code, want, rec.Body)
	}
	return rec
}

// decode decodes a response body into a T.
func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decoding %s: %v", rec.Body, err)
	}
	return v
}

// errorCode returns the code of an error response, failing if the body is not the app's
// error format.
func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var b errorBody
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("not an error body (%v): %s", err, rec.Body)
	}
	return b.Error.Code
}

// seed creates the fixture most tests start from:
//
//	account 1 ada@contoso.example, account 2 grace@contoso.example (managed by 1),
//	team 1 "Engineering" with member 1, team 2 "Sales" without members.
func seed(t *testing.T, a *App) {
	t.Helper()
	must(t, a, http.StatusCreated, "POST", "/api/v1/accounts", `{"login":"ada@contoso.example","person":{"first":"Ada","last":"Lovelace"}}`)
	must(t, a, http.StatusCreated, "POST", "/api/v1/accounts", `{"login":"grace@contoso.example","org":{"manager_id":1}}`)
	must(t, a, http.StatusCreated, "POST", "/api/v1/teams", `{"name":"Engineering"}`)
	must(t, a, http.StatusCreated, "POST", "/api/v1/teams", `{"name":"Sales","description":"sells"}`)
	must(t, a, http.StatusNoContent, "PUT", "/api/v1/teams/1/members/1", "")
}

var _ caddyhttp.Handler = (*nextHandler)(nil)
