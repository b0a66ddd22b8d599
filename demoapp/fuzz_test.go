package demoapp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzRequests sends arbitrary paths and bodies to a seeded app: no input may panic or
// produce a 500, and every answer is either empty (204) or JSON. Run longer with
// go test -fuzz FuzzRequests ./demoapp/.
func FuzzRequests(f *testing.F) {
	seeds := []struct{ method, path, body string }{
		{"POST", "/api/v1/accounts", `{"login":"z@x","org":{"manager_id":1}}`},
		{"PATCH", "/api/v1/accounts/1", `{"person":{"first":null},"org":{"manager_id":2}}`},
		{"PATCH", "/api/v1/accounts/2", `{"org":[1,{"a":{"b":null}}]}`},
		{"PUT", "/api/v1/accounts/1", `{"login":"ada@contoso.example","contact":{"mail":"@"}}`},
		{"POST", "/api/v1/teams/1/members:batch", `{"add":[1,2,-3],"remove":[9223372036854775807]}`},
		{"POST", "/api/v1/teams", `{"name":"\u0000"}`},
		{"GET", "/api/v1/accounts?cursor=YWNjb3VudHM6MQ&limit=1", ""},
		{"DELETE", "/api/v1/teams/1/members/1", ""},
		{"PATCH", "/api/v1/teams/2", `{"name":{"x":1}}`},
	}
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.body)
	}
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !slices.Contains(methods, method) {
			method = "POST"
		}
		u, err := url.ParseRequestURI(path)
		if err != nil {
			t.Skip("not a request URI")
		}
		a := newTestApp(t)
		seed(t, a)
		req := httptest.NewRequest(method, "/", strings.NewReader(body))
		req.URL = u
		req.Header.Set("X-Api-Key", testKey)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		if err := a.ServeHTTP(rec, req, &nextHandler{}); err != nil {
			t.Fatal(err)
		}
		if rec.Code >= 500 && rec.Code != http.StatusInsufficientStorage {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusNoContent && rec.Code != http.StatusTeapot && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: not JSON: %s", method, path, rec.Body)
		}
	})
}
