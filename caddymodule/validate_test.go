package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/scimgate/scimgate/caddymodule/store"
	"github.com/scimgate/scimgate/internal/testnet"
)

// validateConfig adapts testdata/policy/Caddyfile (tokens, a policy, a target with its
// mapping, the demo app) for the data directory dataDir; vars are more environment
// variables to set (name, value pairs) before adapting.
func validateConfig(t *testing.T, dataDir string, vars ...string) []byte {
	t.Helper()
	a := testnet.FreeAddrs(t, 2)
	t.Setenv("SCIMGATE_IT_ADDR", a[0])
	t.Setenv("SCIMGATE_IT_DEMO_ADDR", a[1])
	t.Setenv("SCIMGATE_IT_DEMO_NAME", "validate")
	t.Setenv("SCIMGATE_IT_DEMO_KEY", policyDemoKey)
	t.Setenv("SCIMGATE_IT_APP_URL", "http://127.0.0.1:1")
	t.Setenv("SCIMGATE_IT_DATA", dataDir)
	t.Setenv("SCIMGATE_IT_STORAGE", t.TempDir())
	t.Setenv("SCIMGATE_IT_TOKEN", testToken)
	t.Setenv("SCIMGATE_IT_POLICY", copyShippedPolicies(t, `{}`))
	t.Setenv("SCIMGATE_IT_MAPPING", filepath.Join("..", "mappings", "demoapp.json"))
	for i := 0; i+1 < len(vars); i += 2 {
		t.Setenv(vars[i], vars[i+1])
	}
	return adaptCaddyfile(t, filepath.Join("testdata", "policy", "Caddyfile"))
}

// TestValidateOpensNoStore runs Caddy's validation (what `caddy validate` and `scimgate
// validate` do) on a config whose store another holder has open, as a running gateway
// does, and on one whose data directory does not exist: both pass, and neither opens nor
// creates a store. Starting the first config fails and says why.
func TestValidateOpensNoStore(t *testing.T) {
	held := t.TempDir()
	st, err := store.Open(filepath.Join(held, storeFileName), store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := validateConfig(t, held)
	if err := caddy.Validate(mustConfig(t, cfg)); err != nil {
		t.Fatalf("validating a config whose store is held: %v", err)
	}

	missing := filepath.Join(t.TempDir(), "not-yet")
	if err := caddy.Validate(mustConfig(t, validateConfig(t, missing))); err != nil {
		t.Fatalf("validating a config whose data directory does not exist: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("validation created the data directory: %v", err)
	}

	// Starting is where the store opens: the held one fails the start, with the reason.
	err = caddy.Load(validateConfig(t, held), true)
	if err == nil {
		_ = caddy.Stop()
		t.Fatal("a config whose store another holder has open started")
	}
	if !strings.Contains(err.Error(), "another process holds the file") {
		t.Fatalf("start error = %v, want it to say another process holds the store", err)
	}
}

// TestValidateChecksGatewayConfig: validation still checks what the gateway would load,
// each broken part named in the error.
func TestValidateChecksGatewayConfig(t *testing.T) {
	badMapping := filepath.Join(t.TempDir(), "broken.json")
	if err := os.WriteFile(badMapping, []byte("{\n  \"users\": {\n    \"create\": ,\n  }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPolicy := t.TempDir()
	if err := os.WriteFile(filepath.Join(badPolicy, "broken.rego"), []byte("package scimgate.x\n\nallow if {"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		vars []string
		want string
	}{
		{"short token", []string{"SCIMGATE_IT_TOKEN", "short"}, "at least 32 bytes"},
		{"missing mapping", []string{"SCIMGATE_IT_MAPPING", filepath.Join(t.TempDir(), "none.json")}, "none.json"},
		{"mapping syntax", []string{"SCIMGATE_IT_MAPPING", badMapping}, "invalid JSON at line 3, column 15"},
		{"policy syntax", []string{"SCIMGATE_IT_POLICY", badPolicy}, "broken.rego"},
		{"target url", []string{"SCIMGATE_IT_APP_URL", "ftp://legacy"}, "absolute http or https URL"},
		{"target url unset", []string{"SCIMGATE_IT_APP_URL", "{env.SCIMGATE_IT_UNSET_URL}/api", "SCIMGATE_IT_UNSET_URL", ""}, `target demo: url "{env.SCIMGATE_IT_UNSET_URL}/api": the placeholder {env.SCIMGATE_IT_UNSET_URL} is empty (is the variable set?)`},
		{"token unset", []string{"SCIMGATE_IT_TOKEN", ""}, `token "entra" is empty`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			err := caddy.Validate(mustConfig(t, validateConfig(t, dir, tc.vars...)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("validation created the data directory: %v", err)
			}
		})
	}
}

// mustConfig decodes a JSON config as caddy.Load does.
func mustConfig(t *testing.T, cfgJSON []byte) *caddy.Config {
	t.Helper()
	var cfg caddy.Config
	if err := caddy.StrictUnmarshalJSON(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// TestRequestsWaitForStart: a request that reaches a gateway whose config has not started
// yet (Caddy may start the HTTP app before the scimgate app) waits for the start; when the
// start will not happen (another gateway of the config failed), it answers 503 with a SCIM
// error instead of waiting for ever.
func TestRequestsWaitForStart(t *testing.T) {
	g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir()}
	if err := provisionHandler(t, g); err != nil { // started at once: no HTTP server in ctx
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Cleanup() })
	if rec := serve(t, g, "GET", "/scim/v2/Users", nil); rec.Code != http.StatusOK {
		t.Fatalf("a started gateway answered %d", rec.Code)
	}

	waiting := &Handler{BasePath: DefaultBasePath, started: make(chan struct{})}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serve(t, waiting, "GET", "/scim/v2/Users", nil) }()
	select {
	case rec := <-done:
		t.Fatalf("a request did not wait for the start: %d %s", rec.Code, rec.Body)
	case <-time.After(100 * time.Millisecond):
	}
	waiting.abandon()
	rec := <-done
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "did not start") {
		t.Fatalf("a request to a gateway that will not start: %d %s", rec.Code, rec.Body)
	}
	itCheckErrorBody(t, rec.Code, rec.Header(), rec.Body.Bytes(), http.StatusServiceUnavailable, "")
}

// TestOneStoreOneGateway: two scim_gateway blocks of one config on the same data_dir with
// different targets (or journals, or policies) are refused when the config is validated,
// naming the store and the other block's address: they would share one directory, id map
// and journal. One block served on two ports (two handlers of the same settings) passes.
func TestOneStoreOneGateway(t *testing.T) {
	a := testnet.FreeAddrs(t, 3)
	dir := filepath.Join(t.TempDir(), "data")
	mapping := filepath.Join("..", "mappings", "demoapp.json")
	block := func(target, journal string) string {
		return "scim_gateway {\n token entra " + testToken + "\n data_dir " + dir +
			"\n target " + target + " {\n url http://127.0.0.1:1\n mapping " + mapping +
			"\n }\n journal {\n name " + journal + "\n }\n }\n"
	}
	adapt := func(t *testing.T, src string) *caddy.Config {
		t.Helper()
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n admin off\n}\n"+src), map[string]any{"filename": "Caddyfile"})
		if err != nil {
			t.Fatal(err)
		}
		return mustConfig(t, cfg)
	}
	for _, tt := range []struct{ name, second, want string }{
		{"targets", block("other", "scimgate"), "whose target settings differ"},
		{"journals", block("demo", "audit-2"), "whose journal settings differ"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := "http://" + a[0] + " {\n" + block("demo", "scimgate") + "}\nhttp://" + a[1] + " {\n" + tt.second + "}\n"
			err := caddy.Validate(adapt(t, src))
			for _, w := range []string{tt.want, filepath.Join(dir, storeFileName), "give each gateway its own data_dir"} {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	two := "http://" + a[0] + ", http://" + a[2] + " {\n" + block("demo", "scimgate") + "}\n"
	if err := caddy.Validate(adapt(t, two)); err != nil {
		t.Errorf("one block on two ports: %v", err)
	}
}

// TestTokenFileHint: a token read from {file.X} that comes out empty says what is wrong
// with the file (missing, or empty), not to set an environment variable.
func TestTokenFileHint(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for file, want := range map[string]string{
		missing: "the file cannot be read (stat " + missing + ": no such file or directory)",
		empty:   "the file " + empty + " is empty: write the token into it",
	} {
		_, err := newTokenSet([]Token{{Name: "entra", Value: "{file." + file + "}"}}, caddy.NewReplacer())
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `token "entra" is empty`) {
			t.Errorf("{file.%s}: %v, want %q", file, err, want)
		}
	}
}

// TestUnusedQueueWarned: a target's queue block is read only by queued delivery; with
// delivery immediate (the default) it would be ignored in silence, so validating (and
// loading) the config warns, naming the target. With delivery queued it is not warned.
func TestUnusedQueueWarned(t *testing.T) {
	a := testnet.FreeAddrs(t, 1)
	mapping := filepath.Join("..", "mappings", "demoapp.json")
	for _, tt := range []struct {
		delivery string
		warned   bool
	}{{"", true}, {"delivery immediate", true}, {"delivery queued", false}, {"delivery fallback", false}} {
		t.Run(tt.delivery, func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "log.json")
			src := "{\n admin off\n log {\n output file " + logFile + "\n format json\n }\n}\nhttp://" + a[0] + " {\n scim_gateway {\n token entra " + testToken +
				"\n data_dir " + filepath.Join(t.TempDir(), "data") + "\n target erp {\n url http://127.0.0.1:1\n mapping " + mapping + "\n " + tt.delivery +
				"\n queue {\n max_age 1h\n }\n }\n }\n}\n"
			cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
			if err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(mustConfig(t, cfg)); err != nil {
				t.Fatal(err)
			}
			logs, err := os.ReadFile(logFile)
			if err != nil {
				t.Fatal(err)
			}
			var warned bool
			for line := range strings.SplitSeq(string(logs), "\n") {
				if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "queue block is unused") && strings.Contains(line, `"target":"erp"`) {
					warned = true
				}
			}
			if warned != tt.warned {
				t.Errorf("warned %v, want %v; log:\n%s", warned, tt.warned, logs)
			}
		})
	}
}

// TestPolicySettingsForUnknownTarget: settings under the policy's targets for a target no
// scim_gateway of the config has (a misspelt name) would never apply, leaving the real
// target on the defaults; loading warns of them, naming the data file, the name and the
// config's targets. It warns rather than refuses: one policy bundle is also deployed to
// separate gateways of different targets (Caddyfile.production's "app" with the shipped
// policies' "demo" section), which must start. Two blocks with different targets sharing
// one policy directory (one compiled policy) are not warned, whichever block Caddy
// provisions first.
func TestPolicySettingsForUnknownTarget(t *testing.T) {
	a := testnet.FreeAddrs(t, 2)
	mapping := filepath.Join("..", "mappings", "demoapp.json")
	block := func(addr, target, policy string) string {
		return "http://" + addr + " {\n scim_gateway {\n token entra " + testToken + "\n data_dir " + filepath.Join(t.TempDir(), "data") +
			"\n policy " + policy + "\n target " + target + " {\n url http://127.0.0.1:1\n mapping " + mapping + "\n }\n }\n}\n"
	}
	// validate validates the config and returns the warnings about unknown targets' settings.
	validate := func(t *testing.T, src string) []string {
		t.Helper()
		logFile := filepath.Join(t.TempDir(), "log.json")
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n admin off\n log {\n output file "+logFile+"\n format json\n }\n}\n"+src), map[string]any{"filename": "Caddyfile"})
		if err != nil {
			t.Fatal(err)
		}
		if err := caddy.Validate(mustConfig(t, cfg)); err != nil {
			t.Fatal(err)
		}
		logs, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		var warned []string
		for line := range strings.SplitSeq(string(logs), "\n") {
			if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "names no target of this config") {
				warned = append(warned, line)
			}
		}
		return warned
	}
	section := `{"mass_deprovision": {"max_per_hour": 5}}`

	misspelt := copyShippedPolicies(t, `{"defaults": {}, "targets": {"dmeo": `+section+`}}`)
	want := "scimgate.config.targets.dmeo names no target of this config's gateways (targets: demo)"
	if w := validate(t, block(a[0], "demo", misspelt)); len(w) != 1 || !strings.Contains(w[0], want) || !strings.Contains(w[0], "data.json") {
		t.Fatalf("warnings %q, want one containing %q", w, want)
	}

	shared := copyShippedPolicies(t, `{"defaults": {}, "targets": {"hr": `+section+`, "erp": {}}}`)
	for range 4 { // the two servers are provisioned in either order
		if w := validate(t, block(a[0], "hr", shared)+block(a[1], "erp", shared)); len(w) != 0 {
			t.Fatalf("two gateways sharing a policy with a section each were warned: %q", w)
		}
	}
	extra := copyShippedPolicies(t, `{"defaults": {}, "targets": {"hr": {}, "erp": {}, "crm": `+section+`}}`)
	want = "scimgate.config.targets.crm names no target of this config's gateways (targets: erp, hr)"
	if w := validate(t, block(a[0], "hr", extra)+block(a[1], "erp", extra)); len(w) == 0 || !strings.Contains(w[0], want) {
		t.Fatalf("warnings %q, want them to contain %q", w, want)
	}
}
