package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// testToken is a 32-byte token used by in-process tests.
const testToken = "test-token-0123456789abcdef01234567"

func caddyconfigIndent(t *testing.T, data []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// newTestGateway provisions a Handler (through Caddy's real Provision/Validate) with a
// fresh data directory and testToken. mutate may adjust the config before provisioning.
// The gateway is cleaned up when the test ends.
func newTestGateway(t testing.TB, mutate func(g *Handler)) *Handler {
	t.Helper()
	g := &Handler{
		Tokens:  []Token{{Name: "entra", Value: testToken}},
		DataDir: t.TempDir(),
	}
	if mutate != nil {
		mutate(g)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := g.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := g.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	t.Cleanup(func() { _ = g.Cleanup() })
	return g
}

// serve sends one request through the handler and returns the recorded response. body may
// be nil, a string, []byte, or any value to marshal as JSON.
func serve(t testing.TB, g *Handler, method, target string, body any, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, "http://scim.test"+target, r)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	}
	given := map[string]bool{} // a header named twice is sent as two lines
	for i := 0; i+1 < len(headers); i += 2 {
		switch {
		case headers[i+1] == "":
			req.Header.Del(headers[i])
		case given[headers[i]]:
			req.Header.Add(headers[i], headers[i+1])
		default:
			req.Header.Set(headers[i], headers[i+1])
		}
		given[headers[i]] = true
	}
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusTeapot) // outside BasePath
		return nil
	})
	if err := g.ServeHTTP(w, req, next); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	return w
}

// decodeJSON decodes a response body into a map, failing the test on error.
func decodeJSON(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, w.Body.String())
	}
	return m
}
