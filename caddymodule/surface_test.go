package caddymodule

import (
	"net/http"
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
