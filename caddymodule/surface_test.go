package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestQueryReadAsSent: a list query's parameters are read as the client sent them. Before,
// net/url skipped a pair it could not decode (an unencoded "%" or ";" in a filter) and
// matched names case-sensitively (Filter=), and the client got the whole, unfiltered list,
// whose first resource an Entra-like client takes for its match.
func TestQueryReadAsSent(t *testing.T) {
	g := newTestGateway(t, nil)
	for _, name := range []string{"query-a@contoso.example", "query-b@contoso.example", "100% Sales@contoso.example"} {
		itPostID(t, g, "/Users", map[string]any{"userName": name})
	}
	rd := itPostID(t, g, "/Groups", map[string]any{"displayName": "R;D"})
	itPostID(t, g, "/Groups", map[string]any{"displayName": "Ops"})

	found := []struct{ name, endpoint, query string }{
		{"Filter in another case", "/Users", `Filter=userName+eq+%22nobody%22`},
		{"FILTER in capitals", "/Users", `FILTER=userName+eq+%22nobody%22`},
		{"a ; in a filter value", "/Groups", `filter=displayName+eq+%22R;D%22`},
		{"an unknown flag beside the filter", "/Users", `aadOptscim062020&filter=userName+eq+%22nobody%22`},
	}
	want := map[string]int{"Filter in another case": 0, "FILTER in capitals": 0, "a ; in a filter value": 1, "an unknown flag beside the filter": 0}
	for _, tc := range found {
		t.Run(tc.name, func(t *testing.T) {
			ids, m := itListIDs(t, g, tc.endpoint, tc.query)
			if len(ids) != want[tc.name] || m["totalResults"] != float64(want[tc.name]) {
				t.Fatalf("%s?%s: %d resources (totalResults %v), want %d", tc.endpoint, tc.query, len(ids), m["totalResults"], want[tc.name])
			}
			if want[tc.name] == 1 && ids[0] != rd {
				t.Errorf("found %s, want the group R;D (%s)", ids[0], rd)
			}
		})
	}
	t.Run("startindex and COUNT in any case", func(t *testing.T) {
		ids, m := itListIDs(t, g, "/Users", "startindex=2&COUNT=1")
		if len(ids) != 1 || m["startIndex"] != float64(2) || m["totalResults"] != float64(3) {
			t.Errorf("startindex=2&COUNT=1: %d resources, startIndex %v, totalResults %v; want 1, 2, 3", len(ids), m["startIndex"], m["totalResults"])
		}
	})
	t.Run("Attributes on a read by id", func(t *testing.T) {
		m := itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+rd+"?Attributes=externalId", nil), http.StatusOK)
		if _, ok := m["displayName"]; ok {
			t.Errorf("Attributes=externalId still returned displayName: %v", m)
		}
	})

	refused := []struct{ name, path, scimType, detail string }{
		{"an unencoded % in another parameter", `/Users?filter=userName+eq+%22100%25%20Sales%40contoso.example%22&x=1%`, scim.TypeInvalidValue, `"%" at byte 2`},
		{"an unencoded % in the filter", `/Users?filter=userName+eq+%22100%+Sales%22`, scim.TypeInvalidFilter, `"%+S" at byte 19`},
		{"a filter given twice", `/Users?filter=userName+eq+%22a%22&filter=userName+eq+%22b%22`, scim.TypeInvalidFilter, "filter is given more than once"},
		{"filter and Filter", `/Users?filter=userName+eq+%22a%22&Filter=userName+eq+%22b%22`, scim.TypeInvalidFilter, "filter is given more than once"},
		{"count given twice", `/Users?count=1&count=2`, scim.TypeInvalidValue, "count is given more than once"},
		{"a broken name", `/Users?fil%ter=x`, scim.TypeInvalidValue, "query parameter name"},
		{"a broken attributes on a read by id", `/Groups/` + rd + `?attributes=%zz`, scim.TypeInvalidValue, "attributes"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			body := itWantError(t, serve(t, g, http.MethodGet, itBase+tc.path, nil), http.StatusBadRequest, tc.scimType)
			if detail, _ := body["detail"].(string); !strings.Contains(detail, tc.detail) {
				t.Errorf("detail %q does not mention %q", detail, tc.detail)
			}
		})
	}
	t.Run("a discovery filter in another case is refused as one in lower case", func(t *testing.T) {
		itWantError(t, serve(t, g, http.MethodGet, itBase+"/Schemas?Filter=id+eq+%22x%22", nil), http.StatusForbidden, "")
	})
}

// TestBodyCharset: a body is read as UTF-8, so one declared in another charset is 415
// instead of being stored as other characters than the client meant.
func TestBodyCharset(t *testing.T) {
	g := newTestGateway(t, nil)
	latin1 := "{\"userName\":\"charset@contoso.example\",\"displayName\":\"Ren\xc3\xa9\"}" // "RenÃ©" in Latin-1
	for _, ct := range []string{"application/scim+json; charset=iso-8859-1", "application/json; charset=windows-1252", "application/scim+json; charset=utf-16"} {
		t.Run(ct, func(t *testing.T) {
			body := itWantError(t, serve(t, g, http.MethodPost, itBase+"/Users", latin1, "Content-Type", ct), http.StatusUnsupportedMediaType, "")
			if detail, _ := body["detail"].(string); !strings.Contains(detail, "UTF-8") {
				t.Errorf("detail %q does not say to send UTF-8", detail)
			}
		})
	}
	for i, ct := range []string{"application/scim+json; charset=UTF-8", "application/json;charset=utf8", "application/scim+json; charset=us-ascii", "application/scim+json; charset=\"utf-8\""} {
		t.Run(ct, func(t *testing.T) {
			body := map[string]any{"userName": "charset-" + string(rune('a'+i)) + "@contoso.example"}
			itWantOK(t, serve(t, g, http.MethodPost, itBase+"/Users", body, "Content-Type", ct), http.StatusCreated)
		})
	}
}

// TestAnnouncedBodyTooLarge: a Content-Length over max_body_size is 413 before any of the
// body is read. Before, the gateway read what came: a client announcing a terabyte held the
// connection until the body deadline (408), and one that sent less than it announced had
// its short body processed.
func TestAnnouncedBodyTooLarge(t *testing.T) {
	g := newTestGateway(t, nil)
	body := `{"userName":"announced@contoso.example"}`
	r := httptest.NewRequest(http.MethodPost, "http://scim.test"+itBase+"/Users", io.NopCloser(strings.NewReader(body)))
	r.ContentLength = g.MaxBodyBytes + 1
	r.Header.Set("Authorization", "Bearer "+testToken)
	r.Header.Set("Content-Type", "application/scim+json")
	w := httptest.NewRecorder()
	if err := g.ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	itWantError(t, w, http.StatusRequestEntityTooLarge, "")
	if w.Header().Get("Connection") != "close" {
		t.Errorf("Connection %q, want close: the body is left unread", w.Header().Get("Connection"))
	}
	if ids, _ := itListIDs(t, g, "/Users", "filter=userName+eq+%22announced%40contoso.example%22"); len(ids) != 0 {
		t.Errorf("the user was created from a body announced too large")
	}
}
