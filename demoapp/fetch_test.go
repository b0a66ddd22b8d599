package demoapp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFetchState(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != "/api/v1/_state":
			http.NotFound(w, r)
		case r.Header.Get("X-Api-Key") != "k":
			http.Error(w, `{"error":{"code":"UNAUTHORIZED"}}`, http.StatusUnauthorized)
		default:
			_, _ = w.Write([]byte(`{"accounts":[{"id":1,"login":"ada"}],"teams":[],"memberships":[]}`))
		}
	}))
	defer srv.Close()
	s, err := FetchState(srv.Client(), srv.URL, "k")
	if err != nil || len(s.Accounts) != 1 || s.Accounts[0].Login != "ada" {
		t.Fatalf("FetchState = %+v, %v", s, err)
	}
	if _, err := FetchState(srv.Client(), srv.URL, "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong key: %v, want an error with the status", err)
	}
}
