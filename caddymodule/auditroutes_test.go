package caddymodule

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

const testAuditToken = "auditor-token-0123456789abcdef0123456789"

// TestAuditRoutesOnTheSite: with the admin endpoint off, an auditor reads, verifies, backs
// up and follows the journal on the gateway's own site with a token of their own (bearer
// or Basic, as a browser sends it); Entra's token reads nothing there and the auditor's
// changes nothing in the directory; nothing that writes is served.
func TestAuditRoutesOnTheSite(t *testing.T) {
	t.Setenv("SCIMGATE_IT_AUDIT_TOKEN", testAuditToken)
	s := itStartCaddyfile(t, filepath.Join("testdata", "audit", "Caddyfile"))
	if strings.Contains(string(s.cfgJSON), testAuditToken) {
		t.Fatal("the adapted config holds the auditor's token")
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(s.base, "http://"), "/scim/v2")
	s.create(t, "/Users", `{"userName":"audited@contoso.example"}`)

	audit := "http://" + addr + DefaultAuditPath
	get := func(path string, auth func(*http.Request)) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, audit+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != nil {
			auth(req)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	basic := func(r *http.Request) { r.SetBasicAuth("auditor", testAuditToken) }

	for name, auth := range map[string]func(*http.Request){"none": nil, "Entra's token": bearer(testToken), "a wrong token": bearer(strings.Repeat("x", 40)),
		"Basic with Entra's token": func(r *http.Request) { r.SetBasicAuth("auditor", testToken) }} {
		resp, _ := get("/export", auth)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), ","), "Basic") {
			t.Errorf("%s: %d %v, want 401 asking for Basic or Bearer", name, resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
		}
	}
	// The auditor's token is not a SCIM token.
	if r := sendSCIM(t, s.client, http.MethodGet, s.base+"/Users", "", "Authorization", "Bearer "+testAuditToken); r.status != http.StatusUnauthorized {
		t.Errorf("the auditor's token on SCIM: %d", r.status)
	}

	resp, body := get("", bearer(testAuditToken))
	var desc struct {
		Name    string `json:"name"`
		HeadSeq uint64 `json:"head_seq"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &desc) != nil || desc.Name != "scimgate" || desc.HeadSeq == 0 {
		t.Fatalf("description: %d %s", resp.StatusCode, body)
	}
	resp, body = get("/export?format=jsonl", basic)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "audited@contoso.example") {
		t.Fatalf("export: %d %.200s", resp.StatusCode, body)
	}
	var n int
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		var line struct {
			Record *journal.Record `json:"record"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Record != nil {
			n++
		}
	}
	if n == 0 {
		t.Fatal("the export holds no record")
	}
	if resp, body = get("/verify", bearer(testAuditToken)); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok":true`) {
		t.Fatalf("verify: %d %s", resp.StatusCode, body)
	}
	if resp, body = get("/backup", bearer(testAuditToken)); resp.StatusCode != http.StatusOK || len(body) < 4096 {
		t.Fatalf("backup: %d, %d bytes", resp.StatusCode, len(body))
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(backup, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := journal.VerifyFileJournal(context.Background(), backup, "", nil); err != nil || !rep.OK {
		t.Fatalf("the backup does not verify: %v %+v", err, rep)
	}
	if resp, body = get("/watch", basic); resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") == "" || !strings.Contains(string(body), "<html") {
		t.Fatalf("watch: %d %v", resp.StatusCode, resp.Header)
	}
	for _, path := range []string{"/checkpoint", "/nope", "/export/more"} {
		if resp, _ := get(path, bearer(testAuditToken)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
	// GET only: a HEAD of /backup would build a backup to throw it away.
	for _, m := range []struct{ method, path string }{{http.MethodPost, "/export"}, {http.MethodHead, "/backup"}, {http.MethodHead, "/export"}, {http.MethodDelete, ""}} {
		req, _ := http.NewRequest(m.method, audit+m.path, nil)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("auditor:"+testAuditToken)))
		if resp, err := s.client.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodGet {
			t.Errorf("%s %s: %v %v", m.method, m.path, err, resp)
		} else {
			resp.Body.Close()
		}
	}

	// The live stream sends the records as they commit.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, audit+"/live?backlog=0", nil)
	basic(req)
	live, err := s.client.Do(req)
	if err != nil || live.StatusCode != http.StatusOK {
		t.Fatalf("live: %v %v", err, live)
	}
	defer live.Body.Close()
	s.create(t, "/Users", `{"userName":"live@contoso.example"}`)
	rd := bufio.NewReader(live.Body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("the live stream ended before the new record: %v", err)
		}
		if strings.Contains(line, "live@contoso.example") {
			break
		}
	}
}

func TestAuditConfig(t *testing.T) {
	long := strings.Repeat("a", 40)
	cases := []struct {
		name string
		cfg  *AuditConfig
		want string
	}{
		{"no token", &AuditConfig{}, "at least one token"},
		{"short token", &AuditConfig{Tokens: []Token{{Name: "a", Value: "short"}}}, "at least 32 bytes"},
		{"Entra's token", &AuditConfig{Tokens: []Token{{Name: "a", Value: testToken}}}, `has the value of the SCIM token "entra"`},
		{"under the base path", &AuditConfig{Path: "/scim/v2/audit", Tokens: []Token{{Name: "a", Value: long}}}, "apart from the SCIM base path"},
		{"the base path", &AuditConfig{Path: "/SCIM/v2", Tokens: []Token{{Name: "a", Value: long}}}, "apart from the SCIM base path"},
		{"root", &AuditConfig{Path: "/", Tokens: []Token{{Name: "a", Value: long}}}, "apart from the SCIM base path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(), Audit: c.cfg}
			err := provisionHandler(t, g)
			_ = g.Cleanup()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	d := caddyfile.NewTestDispenser(`scim_gateway {
		token entra {env.T}
		audit {
			path /audit
			token alice {env.A}
			token bob {env.B}
		}
	}`)
	g := new(Handler)
	if err := g.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if g.Audit == nil || g.Audit.Path != "/audit" || len(g.Audit.Tokens) != 2 || g.Audit.Tokens[1] != (Token{Name: "bob", Value: "{env.B}"}) {
		t.Fatalf("parsed %+v", g.Audit)
	}
	for _, bad := range []string{
		`scim_gateway { audit }`,
		`scim_gateway { audit { path audit
			token a b } }`,
		`scim_gateway { audit { token a } }`,
		`scim_gateway { audit { token a b
			colour red } }`,
	} {
		if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestAuditLiveEndsWhenItsServerStops: an auditor's live stream on the site never ends by
// itself, and Caddy's servers shut down with an eternal grace period by default: a stream
// that outlived its server would keep a stopping gateway from exiting (SIGTERM waited for
// the auditor to close the page) and keep a reloaded config's old server serving. When its
// server begins to shut down the stream tells the client to reconnect and ends, so the
// shutdown completes; the client reconnects to the new config.
func TestAuditLiveEndsWhenItsServerStops(t *testing.T) {
	t.Setenv("SCIMGATE_IT_AUDIT_TOKEN", testAuditToken)
	s := itStartCaddyfile(t, filepath.Join("testdata", "audit", "Caddyfile"))
	addr := strings.TrimSuffix(strings.TrimPrefix(s.base, "http://"), "/scim/v2")
	open := func(name string) *bufio.Reader {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+DefaultAuditPath+"/live?backlog=0", nil)
		req.Header.Set("Authorization", "Bearer "+testAuditToken)
		live, err := s.client.Do(req)
		if err != nil || live.StatusCode != http.StatusOK {
			t.Fatalf("live: %v %v", err, live)
		}
		t.Cleanup(func() { live.Body.Close() })
		s.create(t, "/Users", `{"userName":"`+name+`"}`)
		rd := bufio.NewReader(live.Body)
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("the live stream ended before the record of %s: %v", name, err)
			}
			if strings.Contains(line, name) {
				return rd
			}
		}
	}
	rd := open("before-reload@contoso.example")

	start := time.Now()
	if err := caddy.Load(s.cfgJSON, true); err != nil { // a reload: the old server shuts down
		t.Fatal(err)
	}
	var rest strings.Builder
	for {
		line, err := rd.ReadString('\n')
		rest.WriteString(line)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the stream after the reload: %v (%.2fs after it); it sent %q", err, time.Since(start).Seconds(), rest.String())
		}
	}
	if !strings.HasSuffix(rest.String(), "event: dropped\ndata: {\"reconnect\":true}\n\n") {
		t.Errorf("the stream ended with %q, want a dropped event that asks the client to reconnect", rest.String())
	}
	// The client reconnects, to the new config's server.
	s.client.CloseIdleConnections()
	itWaitAnswered(t, s)
	open("after-reload@contoso.example")
}
