package caddymodule

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scimgate/scimgate/caddymodule/store"
)

func provisionHandler(t *testing.T, g *Handler) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := g.Provision(ctx); err != nil {
		return err
	}
	return g.Validate()
}

func TestTokenConfigErrors(t *testing.T) {
	t.Setenv("SCIMGATE_TEST_SHORT", "short-token")
	t.Setenv("SCIMGATE_TEST_GOOD", testToken)
	cases := []struct {
		name   string
		tokens []Token
		err    string
	}{
		{"no token", nil, "needs at least one token"},
		{"empty value", []Token{{Name: "entra", Value: ""}}, `token "entra" is empty`},
		{"unset env", []Token{{Name: "entra", Value: "{env.SCIMGATE_TEST_UNSET}"}}, `token "entra" is empty`},
		{"short", []Token{{Name: "entra", Value: "{env.SCIMGATE_TEST_SHORT}"}}, "at least 32 bytes"},
		{"31 bytes", []Token{{Name: "entra", Value: strings.Repeat("a", 31)}}, "at least 32 bytes"},
		{"no name", []Token{{Name: "", Value: testToken}}, "has no name"},
		{"duplicate name", []Token{{Name: "a", Value: testToken}, {Name: "a", Value: testToken + "x"}}, "used twice"},
		{"duplicate value", []Token{{Name: "a", Value: testToken}, {Name: "b", Value: "{env.SCIMGATE_TEST_GOOD}"}}, "same value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &Handler{Tokens: tc.tokens, DataDir: t.TempDir()}
			err := provisionHandler(t, g)
			_ = g.Cleanup()
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "short-token") {
				t.Fatalf("the error reveals the secret: %v", err)
			}
		})
	}
}

// TestTokenWithWhitespaceRefused: a token that starts or ends with whitespace, or holds a
// control character, cannot arrive in an Authorization header as configured (HTTP strips
// the whitespace around a header value): such a token started the gateway, which then
// answered 401 to every request. It is a config error now, naming the token and its
// placeholder, never the value.
func TestTokenWithWhitespaceRefused(t *testing.T) {
	dir := t.TempDir()
	blankLine := filepath.Join(dir, "blank-line")
	if err := os.WriteFile(blankLine, []byte(testToken+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oneNewline := filepath.Join(dir, "one-newline")
	if err := os.WriteFile(oneNewline, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SCIMGATE_TEST_TRAILING_SPACE", testToken+" ")
	t.Setenv("SCIMGATE_TEST_TAB", testToken[:10]+"\t"+testToken[10:])
	for _, tc := range []struct{ value, err string }{
		{"{file." + blankLine + "}", `token "entra" (configured as "{file.` + blankLine + `}") starts or ends with whitespace`},
		{"{env.SCIMGATE_TEST_TRAILING_SPACE}", "starts or ends with whitespace"},
		{"{env.SCIMGATE_TEST_TAB}", "holds a control character"},
		{" " + testToken, `token "entra" starts or ends with whitespace`},
	} {
		g := &Handler{Tokens: []Token{{Name: "entra", Value: tc.value}}, DataDir: t.TempDir()}
		err := provisionHandler(t, g)
		_ = g.Cleanup()
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Fatalf("%s: error = %v, want it to contain %q", tc.value, err, tc.err)
		}
		if strings.Contains(err.Error(), testToken[10:]) {
			t.Fatalf("the error reveals the secret: %v", err)
		}
	}
	// A file's one final newline is not part of the token ({file.*} drops it).
	g := newTestGateway(t, func(g *Handler) { g.Tokens = []Token{{Name: "entra", Value: "{file." + oneNewline + "}"}} })
	if w := serve(t, g, "GET", "/scim/v2/Users", nil, "Authorization", "Bearer "+testToken); w.Code != 200 {
		t.Fatalf("token from a file with one final newline: %d", w.Code)
	}
}

// TestInlineTokensWarned: a token written in the config is in the adapted JSON and in
// every answer of the admin API's GET /config/; the gateway says so at start-up, naming
// the token, never its value. A placeholder is not warned about.
func TestInlineTokensWarned(t *testing.T) {
	t.Setenv("SCIMGATE_TEST_GOOD", testToken+"y")
	set, err := newTokenSet([]Token{{Name: "inline", Value: testToken}, {Name: "env", Value: "{env.SCIMGATE_TEST_GOOD}"}}, caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	set.warnInline(zap.New(core), "SCIM tokens")
	all := logs.All()
	if len(all) != 1 || all[0].Level != zapcore.WarnLevel || !strings.Contains(all[0].Message, "GET /config/") {
		t.Fatalf("logs = %v, want one warning about GET /config/", all)
	}
	if names := all[0].ContextMap()["tokens"]; fmt.Sprint(names) != "[inline]" {
		t.Fatalf("tokens named = %v, want [inline]", names)
	}
	if strings.Contains(fmt.Sprint(all[0].ContextMap()), testToken) {
		t.Fatalf("the warning reveals the token: %v", all[0].ContextMap())
	}
}

func TestTokensFromEnvAndRotation(t *testing.T) {
	t.Setenv("SCIMGATE_TEST_OLD", "old-token-0123456789abcdef0123456789")
	t.Setenv("SCIMGATE_TEST_NEW", "new-token-0123456789abcdef0123456789")
	g := newTestGateway(t, func(g *Handler) {
		g.Tokens = []Token{{Name: "old", Value: "{env.SCIMGATE_TEST_OLD}"}, {Name: "new", Value: "{env.SCIMGATE_TEST_NEW}"}}
	})
	for _, tok := range []string{"old-token-0123456789abcdef0123456789", "new-token-0123456789abcdef0123456789"} {
		w := serve(t, g, "GET", "/scim/v2/Users", nil, "Authorization", "Bearer "+tok)
		if w.Code != 200 {
			t.Fatalf("token %s...: status %d", tok[:3], w.Code)
		}
	}
	if w := serve(t, g, "GET", "/scim/v2/Users", nil, "Authorization", "Bearer {env.SCIMGATE_TEST_OLD}"); w.Code != 401 {
		t.Fatalf("the placeholder text itself was accepted: %d", w.Code)
	}
}

// TestReloadSharesStore is what `caddy reload` with the same file does: the new config is
// provisioned while the old one still holds the store, then the old one is cleaned up.
func TestReloadSharesStore(t *testing.T) {
	dir := t.TempDir()
	mk := func() *Handler {
		return &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: dir}
	}
	oldCfg := mk()
	if err := provisionHandler(t, oldCfg); err != nil {
		t.Fatal(err)
	}
	if w := serve(t, oldCfg, "POST", "/scim/v2/Users", map[string]any{"userName": "before-reload"}); w.Code != 201 {
		t.Fatalf("create before reload: %d %s", w.Code, w.Body)
	}
	newCfg := mk()
	if err := provisionHandler(t, newCfg); err != nil {
		t.Fatalf("provisioning the new config while the old one runs: %v", err)
	}
	if err := oldCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	w := serve(t, newCfg, "POST", "/scim/v2/Users", map[string]any{"userName": "after-reload"})
	if w.Code != 201 {
		t.Fatalf("the store is not writable after the old config's cleanup: %d %s", w.Code, w.Body)
	}
	w = serve(t, newCfg, "GET", "/scim/v2/Users?filter=userName+eq+%22before-reload%22", nil)
	if got := decodeJSON(t, w)["totalResults"]; got != float64(1) {
		t.Fatalf("data from before the reload: totalResults = %v", got)
	}
	if err := newCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// With the last user gone the file is closed: it can be opened again.
	s, err := store.Open(filepath.Join(dir, storeFileName), store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("store still open after the last cleanup: %v", err)
	}
	_ = s.Close()
}

// TestStoreHeldByAnotherProcess runs a child process that holds the store file, and
// checks that provisioning fails with an error that says so.
func TestStoreHeldByAnotherProcess(t *testing.T) {
	if os.Getenv("SCIMGATE_HOLD_STORE") != "" {
		return // the child's copy of this test; see TestMain
	}
	dir := t.TempDir()
	path := filepath.Join(dir, storeFileName)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SCIMGATE_HOLD_STORE="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "holding" {
		t.Fatalf("child did not take the store: %q %v", line, err)
	}
	g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: dir}
	err = provisionHandler(t, g)
	if err == nil {
		_ = g.Cleanup()
		t.Fatal("provisioned a store another process holds")
	}
	if !strings.Contains(err.Error(), "another process") || !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not say another process holds %s: %v", path, err)
	}
}

func TestMain(m *testing.M) {
	if path := os.Getenv("SCIMGATE_HOLD_STORE"); path != "" {
		s, err := store.Open(path, store.Options{})
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
		os.Stdout.WriteString("holding\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
		_ = s.Close()
		os.Exit(0)
	}
	if spec := os.Getenv("SCIMGATE_TARGET_CHILD"); spec != "" {
		os.Exit(crashTargetChild(spec))
	}
	if os.Getenv("SCIMGATE_SERVE_CHILD") != "" {
		os.Exit(serveChild())
	}
	if dir := os.Getenv("SCIMGATE_CRASH_CHILD"); dir != "" {
		os.Exit(crashChild(dir))
	}
	os.Exit(m.Run())
}

func TestProvisionDefaultsAndValidation(t *testing.T) {
	g := newTestGateway(t, nil)
	if g.BasePath != DefaultBasePath || g.MaxBodyBytes != DefaultMaxBodyBytes || g.MaxResults != DefaultMaxResults {
		t.Fatalf("defaults not set: %+v", g)
	}
	bad := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(), MaxJSONDepth: 100000}
	err := provisionHandler(t, bad)
	_ = bad.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "max_json_depth") {
		t.Fatalf("error = %v", err)
	}
	bad = &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(), MembersReplace: "wipe"}
	err = provisionHandler(t, bad)
	_ = bad.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "members_replace") {
		t.Fatalf("error = %v", err)
	}
}

// TestReloadWithChangedJournalSettings: the store (and its journal) stay open across a
// reload; changed journal settings are detected (Provision warns that they apply after a
// restart) and unchanged ones are not, and the journal keeps working.
func TestReloadWithChangedJournalSettings(t *testing.T) {
	dir := t.TempDir()
	mk := func(every int64) *Handler {
		return &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: dir, Journal: &JournalConfig{CheckpointEvery: every}}
	}
	changedSettings := func(g *Handler) bool {
		opts, _, err := g.Journal.JournalOptions(caddy.NewReplacer())
		if err != nil {
			t.Fatal(err)
		}
		return g.store.journalFP != journalFingerprint(opts)
	}
	first := mk(1000)
	if err := provisionHandler(t, first); err != nil {
		t.Fatal(err)
	}
	same, changed := mk(1000), mk(10)
	for _, g := range []*Handler{same, changed} {
		if err := provisionHandler(t, g); err != nil {
			t.Fatal(err)
		}
		defer g.Cleanup()
	}
	if changedSettings(first) || changedSettings(same) {
		t.Fatal("unchanged settings reported as changed")
	}
	if !changedSettings(changed) {
		t.Fatal("changed settings not detected")
	}
	_ = first.Cleanup()
	if w := serve(t, changed, "POST", "/scim/v2/Users", map[string]any{"userName": "x"}); w.Code != 201 {
		t.Fatalf("after the reload: %d", w.Code)
	}
}

// TestEmptyTokenNamesItsVariable: a token whose {env.*} placeholder is unset says which
// variable to set. The hint named SCIM_TOKEN whatever the placeholder was, so an operator
// whose audit token {env.SCIMGATE_AUDIT_TOKEN} was unset was told to export SCIM_TOKEN.
func TestEmptyTokenNamesItsVariable(t *testing.T) {
	g := &Handler{
		Tokens:  []Token{{Name: "entra", Value: testToken}},
		Audit:   &AuditConfig{Tokens: []Token{{Name: "auditor", Value: "{env.SCIMGATE_TEST_AUDIT_UNSET}"}}},
		DataDir: t.TempDir(),
	}
	err := provisionHandler(t, g)
	_ = g.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "export SCIMGATE_TEST_AUDIT_UNSET=") || strings.Contains(err.Error(), "SCIM_TOKEN") {
		t.Fatalf("error = %v, want it to name SCIMGATE_TEST_AUDIT_UNSET (and not SCIM_TOKEN)", err)
	}
	g = &Handler{Tokens: []Token{{Name: "entra", Value: "{env.SCIMGATE_TEST_ENTRA_UNSET}"}}, DataDir: t.TempDir()}
	err = provisionHandler(t, g)
	_ = g.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "export SCIMGATE_TEST_ENTRA_UNSET=") {
		t.Fatalf("error = %v, want it to name SCIMGATE_TEST_ENTRA_UNSET", err)
	}
}

// TestMaxBodyBytesBounded: a JSON config's max_body_bytes past 1 TiB (which the Caddyfile
// already refuses) overflowed the default body_timeout, and the error blamed body_timeout,
// an option the config did not set. The error names max_body_bytes now.
func TestMaxBodyBytesBounded(t *testing.T) {
	g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(), MaxBodyBytes: 9999999999999999}
	err := provisionHandler(t, g)
	_ = g.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "max_body_bytes must be between 1024 and") || strings.Contains(err.Error(), "body_timeout") {
		t.Fatalf("error = %v, want it to name max_body_bytes", err)
	}
}

// TestBearerParsing: the scheme is matched case-insensitively and the spaces around the
// token are ignored; two Authorization headers are refused on the SCIM and the audit
// routes even when one of them holds a good token (Authorization is a singleton field: a
// proxy in front may have checked the other one). The first header was taken.
func TestBearerParsing(t *testing.T) {
	const auditToken = "auditor-token-0123456789abcdef0123456789"
	g := newTestGateway(t, func(g *Handler) {
		g.Audit = &AuditConfig{Tokens: []Token{{Name: "auditor", Value: auditToken}}}
	})
	for _, tc := range []struct {
		name    string
		headers []string
		want    int
	}{
		{"lower-case scheme", []string{"Authorization", "bearer " + testToken}, 200},
		{"upper-case scheme", []string{"Authorization", "BEARER " + testToken}, 200},
		{"spaces around the token", []string{"Authorization", "Bearer   " + testToken + "  "}, 200},
		{"no token", []string{"Authorization", "Bearer "}, 401},
		{"no space", []string{"Authorization", "Bearer" + testToken}, 401},
		{"token only", []string{"Authorization", testToken}, 401},
		{"two headers, good first", []string{"Authorization", "Bearer " + testToken, "Authorization", "Bearer wrong"}, 401},
		{"two headers, good second", []string{"Authorization", "Bearer wrong", "Authorization", "Bearer " + testToken}, 401},
		{"very long", []string{"Authorization", "Bearer " + strings.Repeat("x", 64<<10)}, 401},
	} {
		w := serve(t, g, "GET", "/scim/v2/Users", nil, tc.headers...)
		if w.Code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, w.Code, tc.want)
		}
		if w.Code == 401 && w.Header().Get("WWW-Authenticate") != `Bearer realm="scimgate"` {
			t.Errorf("%s: WWW-Authenticate = %q", tc.name, w.Header().Get("WWW-Authenticate"))
		}
	}
	if w := serve(t, g, "GET", DefaultAuditPath, nil, "Authorization", "Bearer "+auditToken); w.Code != 200 {
		t.Fatalf("audit route with the auditor's token: %d %s", w.Code, w.Body)
	}
	if w := serve(t, g, "GET", DefaultAuditPath, nil, "Authorization", "Bearer "+auditToken, "Authorization", "Basic eDp5"); w.Code != 401 {
		t.Fatalf("audit route with two Authorization headers: %d, want 401", w.Code)
	}
}

// TestPublicURLUnsetVariable: a public_url whose placeholder resolves to nothing says so
// and names the placeholder; it said `public_url "": want an absolute http or https URL`.
func TestPublicURLUnsetVariable(t *testing.T) {
	g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(), PublicURL: "{env.SCIMGATE_TEST_UNSET_URL}"}
	err := provisionHandler(t, g)
	_ = g.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "public_url {env.SCIMGATE_TEST_UNSET_URL} resolves to nothing") {
		t.Fatalf("error = %v, want it to name the unset placeholder", err)
	}
}
