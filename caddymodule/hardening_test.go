package caddymodule

// Tests of the request bounds the handler enforces before anything else sees a request
// (ids no resource can have, numbers no attribute can hold, the body's deadline), of
// public_url, and of the log of failed authentications.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/gwconfig"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/internal/testnet"
)

// TestHandlerInvalidIDs: an id no resource can have (a NUL or another control character,
// more than 256 bytes, not UTF-8) answers 404 naming the problem for every method, never a
// storage error, and a write's rejection is journaled with the id quoted and cut.
func TestHandlerInvalidIDs(t *testing.T) {
	g := newTestGateway(t, nil)
	uid := itPostID(t, g, "/Users", map[string]any{"userName": "ada@contoso.example"})
	gid := itPostID(t, g, "/Groups", map[string]any{"displayName": "Team", "members": []any{map[string]any{"value": uid}}})

	ids := []struct{ name, escaped, problem string }{
		{"NUL", "abc%00def", "control characters"},
		{"newline", "abc%0Adef", "control characters"},
		{"15,000 characters", strings.Repeat("a", 15000), "ids are at most 256 bytes, this one has 15000"},
		{"not UTF-8", "%FF%FE", "UTF-8"},
	}
	patch := map[string]any{"schemas": []any{scim.PatchOpSchema}, "Operations": []any{map[string]any{"op": "replace", "path": "title", "value": "x"}}}
	put := map[string]any{"userName": "someone@contoso.example"}
	for _, id := range ids {
		for _, endpoint := range []string{"/Users/", "/Groups/"} {
			for _, m := range []struct {
				method string
				body   any
			}{{http.MethodGet, nil}, {http.MethodHead, nil}, {http.MethodPut, put}, {http.MethodPatch, patch}, {http.MethodDelete, nil}} {
				t.Run(id.name+" "+m.method+" "+endpoint, func(t *testing.T) {
					w := serve(t, g, m.method, itBase+endpoint+id.escaped, m.body)
					if m.method == http.MethodHead {
						if w.Code != http.StatusNotFound {
							t.Fatalf("status %d, want 404", w.Code)
						}
						return
					}
					body := itWantError(t, w, http.StatusNotFound, "")
					if d, _ := body["detail"].(string); !strings.Contains(d, "with that id: ") || !strings.Contains(d, id.problem) {
						t.Errorf("detail %q does not name the problem %q", d, id.problem)
					}
				})
			}
		}
	}

	// The writes' rejections are journaled, with the id quoted and cut to 64 bytes.
	rec := lastRecord(t, g)
	if rec.Action != change.ActionDelete || rec.Status != http.StatusNotFound || rec.SCIMID != `"\xff\xfe"` {
		t.Errorf("last record: action %s status %d scim_id %q", rec.Action, rec.Status, rec.SCIMID)
	}
	for _, r := range auditRecords(t, g) {
		if len(r.SCIMID) > 80 {
			t.Errorf("a journal record holds a %d-byte id", len(r.SCIMID))
		}
	}
	auditVerify(t, g)

	// A method that is not allowed is still 405, whatever the id.
	w := serve(t, g, http.MethodPost, itBase+"/Users/abc%00def", put)
	itWantError(t, w, http.StatusMethodNotAllowed, "")

	// A filter on such an id matches nothing (200, an empty list, as Entra expects).
	for _, v := range []string{`abc\u0000def`, strings.Repeat("a", 3000), `\u0085`} {
		ids, _ := itListIDs(t, g, "/Users", itQ(`id eq "`+v+`"`))
		if len(ids) != 0 {
			t.Errorf("filter on an invalid id found %v", ids)
		}
	}
	if ids, _ := itListIDs(t, g, "/Users", itQ(`id eq "`+uid+`"`)); len(ids) != 1 {
		t.Errorf("filter on a valid id found %v", ids)
	}

	// A member reference that cannot be an id is 400 invalidValue, not a storage error.
	for _, member := range []string{"abc\x00def", strings.Repeat("m", 300)} {
		w := serve(t, g, http.MethodPatch, itBase+"/Groups/"+gid, map[string]any{
			"schemas":    []any{scim.PatchOpSchema},
			"Operations": []any{map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": member}}}},
		})
		itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidValue)
		w = serve(t, g, http.MethodPost, itBase+"/Groups", map[string]any{"displayName": "Other " + url.PathEscape(member[:3]), "members": []any{member}})
		itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidValue)
	}

	// Valid ids still work.
	itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users/"+uid, nil), http.StatusOK)
	itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Groups/"+gid, nil), http.StatusOK)
}

// TestHandlerNumbersOutOfRange: a number no attribute can hold answers 400 invalidValue,
// naming its attribute, in POST, PUT, PATCH and .search bodies, before the policy sees it
// (a policy that allows everything fails on 1e999999 and would answer 403).
func TestHandlerNumbersOutOfRange(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package scimgate\n\ndecision := {\"allow\": true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, func(g *Handler) {
		g.Policy = &PolicyConfig{Dir: dir, Timeout: caddy.Duration(time.Second)}
	})
	uid := itPostID(t, g, "/Users", map[string]any{"userName": "ada@contoso.example"})
	const ext = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
	cases := []struct{ name, method, path, body, attr string }{
		{"POST", http.MethodPost, "/Users", `{"userName":"bob@contoso.example","x":1e999999}`, `"x"`},
		{"POST extension", http.MethodPost, "/Users", `{"userName":"bob@contoso.example","` + ext + `":{"badge":-1e999999}}`, `"` + ext + `:badge"`},
		{"POST underflow", http.MethodPost, "/Users", `{"userName":"bob@contoso.example","x":1e-999999}`, `"x"`},
		{"PUT", http.MethodPut, "/Users/" + uid, `{"userName":"ada@contoso.example","emails":[{"value":"ada@contoso.example","rank":1e999999}]}`, `"emails.rank"`},
		{"PATCH", http.MethodPatch, "/Users/" + uid, `{"schemas":["` + scim.PatchOpSchema + `"],"Operations":[{"op":"replace","path":"title","value":1e999999}]}`, `"Operations.value"`},
		{".search", http.MethodPost, "/Users/.search", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"count":1e999999}`, `"count"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := itWantError(t, serve(t, g, tc.method, itBase+tc.path, tc.body), http.StatusBadRequest, scim.TypeInvalidValue)
			if d, _ := body["detail"].(string); !strings.Contains(d, "out of range") || !strings.Contains(d, tc.attr) {
				t.Errorf("detail %q does not name %s", d, tc.attr)
			}
		})
	}
	// In a PATCH path's filter (which can create an element from its value) too.
	w := serve(t, g, http.MethodPatch, itBase+"/Users/"+uid, `{"schemas":["`+scim.PatchOpSchema+`"],"Operations":[{"op":"add","path":"phoneNumbers[type eq 1e999999].value","value":"1"}]}`)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "out of range") {
		t.Errorf("filtered path: %d %s", w.Code, w.Body)
	}
	// And in a list filter.
	w = serve(t, g, http.MethodGet, itBase+"/Users?"+itQ("title eq 1e999999"), nil)
	itWantError(t, w, http.StatusBadRequest, scim.TypeInvalidFilter)

	// Numbers a double holds still pass through the policy.
	itPost(t, g, "/Users", `{"userName":"carol@contoso.example","x":1.5e300}`)
}

// serveHost is serve with the request's Host header set to host (httptest.NewRequest takes
// it from the URL), the way a client that spoofs Host sends it.
func serveHost(t testing.TB, g *Handler, method, host, target string, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://"+host+target, r)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	w := httptest.NewRecorder()
	if err := g.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestHandlerPublicURL: with public_url, a spoofed Host header changes nothing the gateway
// answers: Location, meta.location, members' and groups' $ref and the discovery documents
// are all built from public_url and base_path.
func TestHandlerPublicURL(t *testing.T) {
	t.Setenv("SCIMGATE_TEST_PUBLIC_URL", "https://scim.example.com/")
	g := newTestGateway(t, func(g *Handler) { g.PublicURL = "{env.SCIMGATE_TEST_PUBLIC_URL}" })
	const evil = "evil.example"
	const base = "https://scim.example.com/scim/v2"

	w := serveHost(t, g, http.MethodPost, evil, itBase+"/Users", `{"userName":"ada@contoso.example"}`)
	user := itWantOK(t, w, http.StatusCreated)
	uid, _ := user["id"].(string)
	if got := w.Header().Get("Location"); got != base+"/Users/"+uid {
		t.Errorf("Location = %q, want %q", got, base+"/Users/"+uid)
	}
	w = serveHost(t, g, http.MethodPost, evil, itBase+"/Groups", `{"displayName":"Team","members":[{"value":"`+uid+`"}]}`)
	group := itWantOK(t, w, http.StatusCreated)
	gid, _ := group["id"].(string)
	if got := w.Header().Get("Location"); got != base+"/Groups/"+gid {
		t.Errorf("Location = %q", got)
	}

	reads := []string{
		"/Users/" + uid, "/Groups/" + gid, "/Users", "/Groups?" + itQ(`displayName eq "Team"`),
		"/ServiceProviderConfig", "/ResourceTypes", "/ResourceTypes/User", "/Schemas",
		"/Schemas/" + scim.UserSchema,
	}
	for _, path := range reads {
		w := serveHost(t, g, http.MethodGet, evil, itBase+path, "")
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		if strings.Contains(w.Body.String(), evil) {
			t.Errorf("GET %s reflects the Host header: %s", path, w.Body)
		}
		if !strings.Contains(w.Body.String(), `"`+base+"/") {
			t.Errorf("GET %s has no location under %s: %s", path, base, w.Body)
		}
	}
	got := decodeJSON(t, serveHost(t, g, http.MethodGet, evil, itBase+"/Users/"+uid, ""))
	if loc := got["meta"].(map[string]any)["location"]; loc != base+"/Users/"+uid {
		t.Errorf("meta.location = %v", loc)
	}
	if ref := got["groups"].([]any)[0].(map[string]any)["$ref"]; ref != base+"/Groups/"+gid {
		t.Errorf("groups[0].$ref = %v", ref)
	}
	got = decodeJSON(t, serveHost(t, g, http.MethodGet, evil, itBase+"/Groups/"+gid, ""))
	if ref := got["members"].([]any)[0].(map[string]any)["$ref"]; ref != base+"/Users/"+uid {
		t.Errorf("members[0].$ref = %v", ref)
	}

	// Without public_url the Host header is reflected, as before: hence the host matcher.
	plain := newTestGateway(t, nil)
	w = serveHost(t, plain, http.MethodPost, evil, itBase+"/Users", `{"userName":"ada@contoso.example"}`)
	if loc := w.Header().Get("Location"); !strings.HasPrefix(loc, "http://"+evil+itBase+"/Users/") {
		t.Errorf("without public_url, Location = %q", loc)
	}
}

func TestParsePublicURL(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"https://scim.example.com", "https://scim.example.com", ""},
		{"https://scim.example.com/", "https://scim.example.com", ""},
		{"HTTPS://scim.example.com:8443", "https://scim.example.com:8443", ""},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", ""},
		{"https://[::1]:8443", "https://[::1]:8443", ""},
		{"scim.example.com", "", "absolute http or https URL"},
		{"ftp://scim.example.com", "", "absolute http or https URL"},
		{"https://", "", "no host"},
		{"https://:8443", "", "no host"},
		{"https://user:pw@scim.example.com", "", "user information"},
		{"https://scim.example.com/scim/v2", "", "has a path"},
		{"https://scim.example.com?x=1", "", "query or fragment"},
		{"https://scim.example.com?", "", "query or fragment"},
		{"https://scim.example.com#top", "", "query or fragment"},
		{"https://scim.example.com:port", "", "invalid port"},
	}
	for _, tc := range cases {
		got, err := gwconfig.ParsePublicURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("gwconfig.ParsePublicURL(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("the error repeats a password: %v", err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("gwconfig.ParsePublicURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	// A bad value (after its placeholders) stops provisioning.
	t.Setenv("SCIMGATE_TEST_PUBLIC_URL", "scim.example.com")
	g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(), PublicURL: "{env.SCIMGATE_TEST_PUBLIC_URL}"}
	if err := provisionHandler(t, g); err == nil || !strings.Contains(err.Error(), "public_url") {
		t.Fatalf("provision = %v, want a public_url error", err)
	}
}

func TestUnmarshalCaddyfileHardening(t *testing.T) {
	cases := []struct {
		name, input, err string
		check            func(t *testing.T, g *Handler)
	}{
		{name: "public_url", input: "scim_gateway {\n public_url https://scim.example.com\n}", check: func(t *testing.T, g *Handler) {
			if g.PublicURL != "https://scim.example.com" {
				t.Errorf("public_url = %q", g.PublicURL)
			}
		}},
		{name: "public_url placeholder", input: "scim_gateway {\n public_url {env.SCIMGATE_PUBLIC_URL}\n}", check: func(t *testing.T, g *Handler) {
			if g.PublicURL != "{env.SCIMGATE_PUBLIC_URL}" {
				t.Errorf("public_url = %q", g.PublicURL)
			}
		}},
		{name: "public_url with a path", input: "scim_gateway {\n public_url https://scim.example.com/scim/v2\n}", err: "base_path is appended"},
		{name: "public_url not absolute", input: "scim_gateway {\n public_url scim.example.com\n}", err: "absolute http or https URL"},
		{name: "public_url twice", input: "scim_gateway {\n public_url https://a.example\n public_url https://b.example\n}", err: "public_url is set twice"},
		{name: "public_url without value", input: "scim_gateway {\n public_url\n}", err: "wrong argument count"},
		{name: "body_timeout", input: "scim_gateway {\n body_timeout 45s\n}", check: func(t *testing.T, g *Handler) {
			if time.Duration(g.BodyTimeout) != 45*time.Second {
				t.Errorf("body_timeout = %v", time.Duration(g.BodyTimeout))
			}
		}},
		{name: "body_timeout zero", input: "scim_gateway {\n body_timeout 0s\n}", err: "positive duration"},
		{name: "body_timeout bad", input: "scim_gateway {\n body_timeout soon\n}", err: "positive duration"},
		{name: "body_timeout twice", input: "scim_gateway {\n body_timeout 1s\n body_timeout 2s\n}", err: "body_timeout is set twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := new(Handler)
			err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, g)
		})
	}
}

// slowRequest sends the head of a request with a body of bodyLen bytes on a new loopback
// connection to addr, then one byte of the body every interval (until it has sent them all
// or the server stops reading). It returns the connection; the writer stops when the test
// ends.
func slowRequest(t *testing.T, addr, method, path, token string, bodyLen int, interval time.Duration) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	head := method + " " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/scim+json\r\n" +
		"Content-Length: " + strconv.Itoa(bodyLen) + "\r\n"
	if token != "" {
		head += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for range bodyLen {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{' '}); err != nil {
				return // the server closed the connection
			}
		}
	}()
	return conn
}

// expectAnswerAndClose reads the response on conn, which must have status want and come
// within within of start, and then the end of the connection: the server does not hold it.
func expectAnswerAndClose(t *testing.T, conn net.Conn, start time.Time, want int, within time.Duration) *http.Response {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(within + 5*time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response after %v: %v", time.Since(start), err)
	}
	elapsed := time.Since(start)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("status %d after %v, want %d: %s", resp.StatusCode, elapsed, want, body)
	}
	if elapsed > within {
		t.Errorf("answered after %v, want within %v", elapsed, within)
	}
	itCheckErrorBody(t, resp.StatusCode, resp.Header, body, want, "")
	// The server closes the connection; a held one would time out here instead.
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer the connection gave %v, want EOF (closed by the server)", err)
	}
	if time.Since(start) > within+time.Second {
		t.Errorf("the connection was closed %v after the request began", time.Since(start))
	}
	return resp
}

// TestBodyDeadlineSlowClient: on a real loopback connection served by net/http, a client
// that sends its body one byte every 200ms gets 408 once body_timeout has passed, journaled
// like any rejection, and its connection is closed; an unauthenticated one gets its 401
// within the same bound. A body that arrives in time works, and the request goes on past
// the deadline without its context being cancelled.
func TestBodyDeadlineSlowClient(t *testing.T) {
	g := newTestGateway(t, func(g *Handler) { g.BodyTimeout = caddy.Duration(500 * time.Millisecond) })
	ctxErr := make(chan error, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = g.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
		if r.Header.Get("X-Linger") != "" {
			time.Sleep(time.Second) // past the body's deadline
			ctxErr <- r.Context().Err()
		}
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	t.Run("authenticated", func(t *testing.T) {
		start := time.Now()
		conn := slowRequest(t, addr, http.MethodPost, itBase+"/Users", testToken, 100, 200*time.Millisecond)
		resp := expectAnswerAndClose(t, conn, start, http.StatusRequestTimeout, 1500*time.Millisecond)
		if !resp.Close {
			t.Error("the 408 does not say Connection: close")
		}
		rec := lastRecord(t, g)
		if rec.Action != change.ActionCreate || rec.Status != http.StatusRequestTimeout || rec.Outcome != change.Rejected {
			t.Errorf("journal: action %s status %d outcome %s", rec.Action, rec.Status, rec.Outcome)
		}
	})
	t.Run("PATCH", func(t *testing.T) {
		start := time.Now()
		conn := slowRequest(t, addr, http.MethodPatch, itBase+"/Users/2819c223-7f76-453a-919d-413861904646", testToken, 100, 200*time.Millisecond)
		expectAnswerAndClose(t, conn, start, http.StatusRequestTimeout, 1500*time.Millisecond)
	})
	t.Run("unauthenticated", func(t *testing.T) {
		start := time.Now()
		conn := slowRequest(t, addr, http.MethodPost, itBase+"/Users", "", 100, 200*time.Millisecond)
		expectAnswerAndClose(t, conn, start, http.StatusUnauthorized, 1500*time.Millisecond)
	})
	t.Run("stalled", func(t *testing.T) {
		start := time.Now()
		conn := slowRequest(t, addr, http.MethodPost, itBase+"/Users", testToken, 100, time.Hour)
		expectAnswerAndClose(t, conn, start, http.StatusRequestTimeout, 1500*time.Millisecond)
	})
	t.Run("in time", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+itBase+"/Users", strings.NewReader(`{"userName":"ada@contoso.example"}`))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/scim+json")
		req.Header.Set("X-Linger", "1")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if err := <-ctxErr; err != nil {
			t.Errorf("the request's context ended after its body was read: %v", err)
		}
	})
}

// TestBodyDeadlineWithoutConnectionDeadline: where the writer cannot set a read deadline
// (here a test recorder), the body is checked against its deadline between reads.
func TestBodyDeadlineWithoutConnectionDeadline(t *testing.T) {
	g := newTestGateway(t, func(g *Handler) { g.BodyTimeout = caddy.Duration(300 * time.Millisecond) })
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		for range 20 {
			time.Sleep(100 * time.Millisecond)
			if _, err := pw.Write([]byte{' '}); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = pr.Close() })
	req := httptest.NewRequest(http.MethodPost, "http://scim.test"+itBase+"/Users", pr)
	req.Header.Set("Authorization", "Bearer "+testToken)
	start := time.Now()
	w := httptest.NewRecorder()
	if err := g.ServeHTTP(w, req, nil); err != nil {
		t.Fatal(err)
	}
	itWantError(t, w, http.StatusRequestTimeout, "")
	if time.Since(start) > time.Second || w.Header().Get("Connection") != "close" {
		t.Errorf("answered after %v with Connection %q", time.Since(start), w.Header().Get("Connection"))
	}
}

func TestBodyTimeoutDefaults(t *testing.T) {
	for _, tc := range []struct {
		maxBody int64
		want    time.Duration
	}{{0, 25 * time.Second}, {1024, 10 * time.Second}, {1 << 20, 10 * time.Second}, {1<<20 + 1, 15 * time.Second}, {64 << 20, 325 * time.Second}} {
		g := newTestGateway(t, func(g *Handler) { g.MaxBodyBytes = tc.maxBody })
		if got := time.Duration(g.BodyTimeout); got != tc.want {
			t.Errorf("max_body_bytes %d: body_timeout %v, want %v", tc.maxBody, got, tc.want)
		}
	}
	g := newTestGateway(t, func(g *Handler) { g.BodyTimeout = caddy.Duration(3 * time.Second) })
	if time.Duration(g.BodyTimeout) != 3*time.Second {
		t.Errorf("configured body_timeout became %v", time.Duration(g.BodyTimeout))
	}
	bad := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(), BodyTimeout: -1}
	if err := provisionHandler(t, bad); err == nil || !strings.Contains(err.Error(), "body_timeout") {
		t.Errorf("negative body_timeout: %v", err)
	}
	_ = bad.Cleanup()
}

// TestBodyDeadlineThroughCaddy: the same slow client against a real Caddy, where the
// deadline goes through Caddy's own idle read timeout (on by default): 408 once
// body_timeout has passed and the connection closed, 401 in the same bound for a client
// without a token, and a body sent in time still works.
func TestBodyDeadlineThroughCaddy(t *testing.T) {
	addr := testnet.FreeAddr(t)
	t.Setenv("SCIMGATE_IT_TOKEN", testToken)
	caddyfile := `{
	admin off
	persist_config off
	auto_https off
	storage file_system ` + t.TempDir() + `
	log {
		output discard
	}
}
http://` + addr + ` {
	bind 127.0.0.1
	scim_gateway {
		token entra {env.SCIMGATE_IT_TOKEN}
		data_dir ` + t.TempDir() + `
		body_timeout 500ms
		public_url https://scim.example.com
	}
}
`
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	start := time.Now()
	conn := slowRequest(t, addr, http.MethodPost, itBase+"/Users", testToken, 100, 200*time.Millisecond)
	if resp := expectAnswerAndClose(t, conn, start, http.StatusRequestTimeout, 1500*time.Millisecond); !resp.Close {
		t.Error("the 408 does not say Connection: close")
	}
	start = time.Now()
	conn = slowRequest(t, addr, http.MethodPut, itBase+"/Users/2819c223-7f76-453a-919d-413861904646", testToken, 100, 200*time.Millisecond)
	expectAnswerAndClose(t, conn, start, http.StatusRequestTimeout, 1500*time.Millisecond)
	start = time.Now()
	conn = slowRequest(t, addr, http.MethodPost, itBase+"/Users", "", 100, 200*time.Millisecond)
	expectAnswerAndClose(t, conn, start, http.StatusUnauthorized, 1500*time.Millisecond)
	// A client that sends nothing after the head: the read in flight fails at the deadline
	// (Caddy's own idle timeout would wait a minute).
	start = time.Now()
	conn = slowRequest(t, addr, http.MethodPatch, itBase+"/Users/2819c223-7f76-453a-919d-413861904646", testToken, 100, time.Hour)
	expectAnswerAndClose(t, conn, start, http.StatusRequestTimeout, 1500*time.Millisecond)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	res := sendSCIM(t, client, http.MethodPost, "http://"+addr+itBase+"/Users", `{"userName":"ada@contoso.example"}`)
	res.expect(t, http.StatusCreated)
	if loc := res.header.Get("Location"); !strings.HasPrefix(loc, "https://scim.example.com/scim/v2/Users/") {
		t.Errorf("Location = %q, want it under public_url", loc)
	}
}

// TestAuthFailureLog: a failed authentication is logged at info with the client's
// address, the path and why, never the token; a flood of them is cut to the bucket's
// burst, and the next line counts the failures left out.
func TestAuthFailureLog(t *testing.T) {
	g := newTestGateway(t, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	g.logger = zap.New(core)
	const wrong = "wrong-token-that-must-never-be-logged-0123456789"
	send := func(authorization string) {
		t.Helper()
		w := serve(t, g, http.MethodGet, itBase+"/Users", nil, "Authorization", authorization)
		itWantError(t, w, http.StatusUnauthorized, "")
	}
	send("")
	send("Basic " + wrong)
	send("Bearer " + wrong)
	send("Bearer " + testToken + "x") // one byte more than a real token
	entries := logs.FilterMessage("authentication failed").All()
	if len(entries) != 4 {
		t.Fatalf("%d lines, want 4: %v", len(entries), logs.All())
	}
	reasons := []string{authNoHeader, authNotBearer, authUnknownToken, authUnknownToken}
	for i, e := range entries {
		f := e.ContextMap()
		if e.Level != zapcore.InfoLevel || f["reason"] != reasons[i] || f["remote_ip"] != "192.0.2.1" ||
			f["path"] != itBase+"/Users" || f["method"] != http.MethodGet {
			t.Errorf("line %d: %s %v", i, e.Level, f)
		}
	}

	// A flood: the burst is logged, the rest is counted.
	for range 3 * authLogBurst {
		send("Bearer " + wrong)
	}
	if n := logs.FilterMessage("authentication failed").Len(); n != authLogBurst {
		t.Errorf("%d lines after a flood, want the burst of %d", n, authLogBurst)
	}
	// A request that authenticates logs nothing of the kind.
	itWantOK(t, serve(t, g, http.MethodGet, itBase+"/Users", nil), http.StatusOK)
	if n := logs.FilterMessage("authentication failed").Len(); n != authLogBurst {
		t.Errorf("%d lines after a good request", n)
	}
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, wrong) || strings.Contains(line, testToken) {
			t.Errorf("a log line holds a token: %s", line)
		}
	}
}

func TestAuthFailureLogBucket(t *testing.T) {
	var l authFailureLog
	now := time.Unix(1_700_000_000, 0)
	for i := range authLogBurst {
		if ok, n := l.note(now); !ok || n != 0 {
			t.Fatalf("failure %d: log %v suppressed %d", i, ok, n)
		}
	}
	for range 25 {
		if ok, _ := l.note(now); ok {
			t.Fatal("logged past the burst")
		}
	}
	// A token comes back every 60/authLogPerMinute seconds; the line counts what was left out.
	now = now.Add(time.Minute / authLogPerMinute)
	if ok, n := l.note(now); !ok || n != 25 {
		t.Fatalf("after a refill: log %v suppressed %d, want true 25", ok, n)
	}
	if ok, _ := l.note(now); ok {
		t.Fatal("logged twice on one token")
	}
	// An hour later the bucket is full again, no fuller.
	now = now.Add(time.Hour)
	logged := 0
	for range 2 * authLogBurst {
		if ok, _ := l.note(now); ok {
			logged++
		}
	}
	if logged != authLogBurst {
		t.Errorf("logged %d after an hour, want %d", logged, authLogBurst)
	}
	// A clock that goes backwards refills nothing.
	if ok, _ := l.note(now.Add(-time.Hour)); ok {
		t.Error("a clock going backwards refilled the bucket")
	}
}

// TestHandlerControlCharactersInNames: a userName, a group's displayName or an externalId
// holding a control character (C0, DEL or C1: a line feed, NUL, ESC, U+0085) answers 400
// invalidValue naming the attribute and the character, in a create, PUT and PATCH, and the
// app is never called; names in any script, with spaces, accents and emoji, pass.
func TestHandlerControlCharactersInNames(t *testing.T) {
	app, appURL := startFaultApp(t, "ok")
	g := newTargetGateway(t, appURL, nil)
	uid := itPostID(t, g, "/Users", map[string]any{"userName": "Zoë O'Brien 李 🚀@contoso.example", "externalId": "a0b1-ß"})
	calls := app.calls.Load()
	cases := []struct{ name, method, path, body, attr, char string }{
		{"POST line feed", http.MethodPost, "/Users", `{"userName":"eve@contoso.example\nadmin=true"}`, "userName", "U+000A"},
		{"POST NUL", http.MethodPost, "/Users", `{"userName":"eve\u0000@contoso.example"}`, "userName", "U+0000"},
		{"POST externalId ESC", http.MethodPost, "/Users", `{"userName":"eve@contoso.example","externalId":"\u001b[31mred"}`, "externalId", "U+001B"},
		{"POST group NEL", http.MethodPost, "/Groups", `{"displayName":"Team\u0085X"}`, "displayName", "U+0085"},
		{"PUT DEL", http.MethodPut, "/Users/" + uid, `{"userName":"zoe\u007f@contoso.example"}`, "userName", "U+007F"},
		{"PATCH carriage return", http.MethodPatch, "/Users/" + uid, `{"schemas":["` + scim.PatchOpSchema + `"],"Operations":[{"op":"replace","path":"userName","value":"zoe\r@contoso.example"}]}`, "userName", "U+000D"},
		{"PATCH no path", http.MethodPatch, "/Users/" + uid, `{"schemas":["` + scim.PatchOpSchema + `"],"Operations":[{"op":"replace","value":{"externalId":"x\ty"}}]}`, "externalId", "U+0009"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := itWantError(t, serve(t, g, tc.method, itBase+tc.path, tc.body), http.StatusBadRequest, scim.TypeInvalidValue)
			if d, _ := body["detail"].(string); !strings.Contains(d, tc.attr) || !strings.Contains(d, tc.char) {
				t.Errorf("detail %q does not name %s and %s", d, tc.attr, tc.char)
			}
		})
	}
	if n := app.calls.Load(); n != calls {
		t.Errorf("the app was called %d times for refused requests", n-calls)
	}
	if n := userCount(t, g); n != 1 {
		t.Errorf("%d users stored, want 1", n)
	}
}
