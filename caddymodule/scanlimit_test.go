package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestScansAreLimited: with max_scans 1, while one unindexed search holds the slot another
// (list, .search, at the root) waits, then answers 503 with Retry-After and a detail that
// says what to filter on; an indexed filter (an or of them too), a read by id and an
// unfiltered list are answered meanwhile; once the first is answered a scan runs again.
func TestScansAreLimited(t *testing.T) {
	g := newTestGateway(t, func(h *Handler) { h.MaxScans = 1 })
	var uid string
	for i := range 3 {
		w := serve(t, g, http.MethodPost, "/scim/v2/Users", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"user%d@contoso.example"}`, i))
		if w.Code != http.StatusCreated {
			t.Fatalf("create: %d %s", w.Code, w.Body)
		}
		uid = decodeJSON(t, w)["id"].(string)
	}
	held, gate := make(chan struct{}), make(chan struct{})
	var scans atomic.Int32
	g.scanning = func() {
		if scans.Add(1) == 1 {
			close(held)
			<-gate // the first scan keeps its slot until the test lets it go
		}
	}
	scan := "/scim/v2/Users?filter=" + url.QueryEscape(`userName co "contoso"`)
	var first *httptest.ResponseRecorder
	var wg sync.WaitGroup
	wg.Go(func() { first = serve(t, g, http.MethodGet, scan, nil) })
	<-held

	for _, target := range []string{
		"/scim/v2/Users?filter=" + url.QueryEscape(`userName eq "user1@contoso.example"`),
		"/scim/v2/Users/" + uid,
		"/scim/v2/Users?count=1",
	} {
		if w := serve(t, g, http.MethodGet, target, nil); w.Code != http.StatusOK {
			t.Fatalf("GET %s while a scan runs: %d %s", target, w.Code, w.Body)
		}
	}
	// An or of indexed equalities is index lookups, not a scan.
	or := `userName eq "USER0@contoso.example" or userName eq "user2@contoso.example" or id eq "` + uid + `" or externalId eq "none"`
	if w := serve(t, g, http.MethodGet, "/scim/v2/Users?count=1&filter="+url.QueryEscape(or), nil); w.Code != http.StatusOK || decodeJSON(t, w)["totalResults"] != 2.0 {
		t.Fatalf("an or of indexed equalities while a scan runs: %d %s", w.Code, w.Body)
	}
	if w := serve(t, g, http.MethodPost, "/scim/v2/Users/.search", map[string]any{"filter": or}); w.Code != http.StatusOK || decodeJSON(t, w)["totalResults"] != 2.0 {
		t.Fatalf(".search with an or of indexed equalities while a scan runs: %d %s", w.Code, w.Body)
	}
	busy := []*httptest.ResponseRecorder{
		serve(t, g, http.MethodGet, scan, nil),
		serve(t, g, http.MethodPost, "/scim/v2/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"not (userName eq \"x\")"}`),
	}
	for i, w := range busy {
		var body struct{ Status, Detail string }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusServiceUnavailable || body.Status != "503" || w.Header().Get("Retry-After") == "" ||
			!strings.Contains(body.Detail, "other unindexed searches are running; filter on an indexed attribute") {
			t.Errorf("scan %d while the slot is taken: %d %v %s", i, w.Code, w.Header(), w.Body)
		}
	}

	close(gate)
	wg.Wait()
	if first.Code != http.StatusOK || decodeJSON(t, first)["totalResults"] != 3.0 {
		t.Fatalf("the first scan: %d %s", first.Code, first.Body)
	}
	if w := serve(t, g, http.MethodGet, scan, nil); w.Code != http.StatusOK || decodeJSON(t, w)["totalResults"] != 3.0 {
		t.Fatalf("a scan after the slot freed: %d %s", w.Code, w.Body)
	}
}

// TestMaxScansConfig: max_scans in the Caddyfile and JSON; by default as many scans as
// GOMAXPROCS, -1 no limit, anything else not positive refused.
func TestMaxScansConfig(t *testing.T) {
	for _, c := range []struct {
		input string
		want  int
		err   string
	}{
		{"max_scans 3", 3, ""},
		{"max_scans -1", -1, ""},
		{"max_scans 0", 0, "max_scans: want a positive integer, or -1 for no limit"},
		{"max_scans -2", 0, "max_scans: want a positive integer"},
		{"max_scans many", 0, "max_scans: want a positive integer"},
		{"max_scans", 0, "wrong argument count"},
		{"max_scans 2\n max_scans 3", 0, "max_scans is set twice"},
	} {
		g := new(Handler)
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("scim_gateway {\n " + c.input + "\n}"))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error = %v, want %q", c.input, err, c.err)
			}
			continue
		}
		if err != nil || g.MaxScans != c.want {
			t.Errorf("%q: MaxScans %d, error %v", c.input, g.MaxScans, err)
		}
	}
	for _, c := range []struct {
		json  string
		slots int // 0: no limit
		err   string
	}{
		{`{}`, runtime.GOMAXPROCS(0), ""},
		{`{"max_scans":3}`, 3, ""},
		{`{"max_scans":-1}`, 0, ""},
		{`{"max_scans":-2}`, 0, "max_scans must be positive, or -1 for no limit; got -2"},
	} {
		g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir()}
		if err := json.Unmarshal([]byte(c.json), g); err != nil {
			t.Fatal(err)
		}
		err := provisionHandler(t, g)
		_ = g.Cleanup()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error = %v, want %q", c.json, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.json, err)
		}
		if got := g.scans.Slots(); got != c.slots {
			t.Errorf("%s: %d scan slots, want %d", c.json, got, c.slots)
		}
	}
}
