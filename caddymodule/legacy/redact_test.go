package legacy

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// TestRedactCredentialText: what looks like a credential in an app's message is replaced,
// whatever call it answered; prose and the app's own validation messages are kept.
func TestRedactCredentialText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Authorization: Bearer eyJhbGciOi.J9eyJzdWIi.Ok3x", "Authorization: Bearer [REDACTED]"},
		{"authorization=Basic dXNlcjpwYXNzd29yZA==", "authorization=Basic [REDACTED]"},
		{`{"headers":{"X-Api-Key":"k-123456789"}}`, `{"headers":{"X-Api-Key":"[REDACTED]"}}`},
		{`{"password":"hunter2!"}`, `{"password":"[REDACTED]"}`},
		{`{"password":"hunter\"22"}`, `{"password":"[REDACTED]"}`},
		{"GET /x?api_key=abc123&x=1", "GET /x?api_key=[REDACTED]&x=1"},
		{"access_token=ya29.a0Af; next", "access_token=[REDACTED]; next"},
		{"Cookie: sid=abc123; theme=dark\nnext line", "Cookie: [REDACTED]\nnext line"},
		{"db postgres://app:s3cret@db.internal:5432/x unreachable", "db postgres://[REDACTED]@db.internal:5432/x unreachable"},
		{"client_secret: 'Zx9-long'", "client_secret: '[REDACTED]'"},
		// Kept: prose, validation messages, the app's own codes.
		{"password: must be at least 8 characters", "password: must be at least 8 characters"},
		{`{"password":"is too short"}`, `{"password":"is too short"}`},
		{`{"errors":{"password":["is too short"]}}`, `{"errors":{"password":["is too short"]}}`},
		{"login is taken", "login is taken"},
		{`{"error":"invalid_token"}`, `{"error":"invalid_token"}`},
		{"the token expired", "the token expired"},
		{"basic plan", "basic plan"},
	} {
		if got := redactCredentialText(c.in); got != c.want {
			t.Errorf("redactCredentialText(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

// TestErrorMessageHidesCredentials: an app whose error answer echoes the request (its
// headers, its query, in text or JSON, in the message or past the 300 characters kept)
// never gets the gateway's credentials into Error.Message, Error() or the SCIM error Entra
// gets: basic auth, an API key in a header or the query, an OAuth token, a static header.
func TestErrorMessageHidesCredentials(t *testing.T) {
	const (
		pass   = "pw-Secret-0042"
		key    = "apikey-Secret-0042"
		static = "static-Secret-0042"
	)
	echo := func(w http.ResponseWriter, r *http.Request) {
		var dump strings.Builder
		for name, vals := range r.Header {
			fmt.Fprintf(&dump, "%s=%s ", name, strings.Join(vals, ","))
		}
		body, _ := io.ReadAll(r.Body)
		shape := r.URL.Query().Get("shape")
		w.Header().Set("Content-Type", map[bool]string{true: "text/plain", false: "application/json"}[shape == "text"])
		w.WriteHeader(http.StatusBadRequest)
		switch shape {
		case "text":
			fmt.Fprintf(w, "bad request %s query %s body %s", dump.String(), r.URL.RawQuery, body)
		case "long": // the credentials after the first 1,200 bytes the message is cut from
			fmt.Fprintf(w, `{"message":"%s %s %s"}`, strings.Repeat("x", 1190), dump.String(), r.URL.RawQuery)
		default: // an echo the patterns cannot read as a credential: only the value shows it
			fmt.Fprintf(w, `{"message":"bad request; you sent: %s / %s"}`, strings.ReplaceAll(dump.String(), "=", " "), strings.ReplaceAll(r.URL.RawQuery, "=", " "))
		}
	}
	srv, _ := newServer(t, echo)
	basic, err := NewBasicAuth("svc-gateway", pass)
	if err != nil {
		t.Fatal(err)
	}
	headerKey, _ := NewAPIKey("X-Api-Key", "", key)
	queryKey, _ := NewAPIKey("", "api_key", key)
	app := newOAuthApp(t, 0)
	oauth := newOAuth(t, app, nil)
	tokenApp := newTestClient(t, app.URL, Options{Auth: oauth})
	if err := get(t, tokenApp); err != nil { // fetches the token
		t.Fatal(err)
	}
	oauth.mu.Lock()
	token := oauth.tok.AccessToken
	oauth.mu.Unlock()
	secrets := []string{pass, key, static, token, base64.StdEncoding.EncodeToString([]byte("svc-gateway:" + pass))}
	for _, auth := range []struct {
		name string
		a    Auth
	}{{"basic", basic}, {"header key", headerKey}, {"query key", queryKey}, {"oauth", oauth}} {
		c := newTestClient(t, srv.URL, Options{Auth: auth.a, MaxRetries: -1})
		for _, shape := range []string{"text", "long", "plain"} {
			_, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/accounts?shape=" + shape,
				Header: http.Header{"X-Static-Token": {static}}, Body: []byte(`{"login":"ada"}`)})
			e := asError(t, err)
			if e.Status != http.StatusBadRequest || e.Message == "" {
				t.Fatalf("%s %s: %v", auth.name, shape, err)
			}
			se, _ := ToSCIM(change.Create, nil, err)
			for _, s := range secrets {
				for what, text := range map[string]string{"Message": e.Message, "Error()": e.Error(), "SCIM detail": se.Detail} {
					if strings.Contains(text, s) {
						t.Errorf("%s, %s answer: %s holds the credential %q: %s", auth.name, shape, what, s, text)
					}
				}
			}
			if shape == "plain" && !strings.Contains(e.Message, Redacted) {
				t.Errorf("%s: the credential's place is not marked: %s", auth.name, e.Message)
			}
		}
	}
}
