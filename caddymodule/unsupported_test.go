package caddymodule

// What the gateway deliberately does not support answers as the README's "Conformance"
// section says: /Bulk and /Me are 501 SCIM errors for every method, sorting parameters
// are ignored (the store's order), and /ServiceProviderConfig says so where it can.

import (
	"net/http"
	"slices"
	"testing"
)

func TestHandlerDeliberatelyUnsupported(t *testing.T) {
	g := newTestGateway(t, nil)
	for _, path := range []string{"/Bulk", "/Me", "/Me/x", "/bulk"} {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			itWantError(t, serve(t, g, m, itBase+path, map[string]any{}), http.StatusNotImplemented, "")
		}
	}
	spc := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/ServiceProviderConfig", nil), http.StatusOK)
	for _, feature := range []string{"bulk", "sort", "changePassword"} {
		if f, _ := spc[feature].(map[string]any); f["supported"] != false {
			t.Errorf("%s = %v, want supported false", feature, spc[feature])
		}
	}
	for _, n := range []string{"b", "c", "a"} {
		itPostID(t, g, "/Users", map[string]any{"userName": n + "@contoso.example"})
	}
	plain, _ := itListIDs(t, g, "/Users", "")
	for _, q := range []string{"sortBy=userName", "sortBy=userName&sortOrder=descending", "sortBy=nosuch&sortOrder=sideways"} {
		if got, _ := itListIDs(t, g, "/Users", q); !slices.Equal(got, plain) {
			t.Errorf("%s: %v, want the store's order %v", q, got, plain)
		}
	}
	res, _ := rootSearch(t, g, map[string]any{"sortBy": "userName", "sortOrder": "descending"})
	if got := rootSearchIDs(res); !slices.Equal(got, plain) {
		t.Errorf(".search with sortBy: %v, want the store's order %v", got, plain)
	}
}
