package demoapp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	t.Setenv("SCIMGATE_DATA", "./scimgate-data") // {$SCIMGATE_DATA:...} is replaced as the Caddyfile is read
	cases := []struct {
		name, input string
		want        App
		err         string
	}{
		{
			name: "full",
			input: `scimgate_demo_app {
				api_key {env.SCIMGATE_DEMO_KEY}
				name demo
				max_accounts 500
				max_teams 20
				max_memberships 1000
				state_file {$SCIMGATE_DATA:./scimgate-data}/demoapp-state.json
			}`,
			want: App{APIKey: "{env.SCIMGATE_DEMO_KEY}", Name: "demo", MaxAccounts: 500, MaxTeams: 20, MaxMemberships: 1000, StateFile: "./scimgate-data/demoapp-state.json"},
		},
		{name: "state_file without a path", input: "scimgate_demo_app {\n state_file\n}", err: "wrong argument count"},
		{name: "minimal", input: "scimgate_demo_app {\n api_key k\n}", want: App{APIKey: "k"}},
		{name: "no block", input: "scimgate_demo_app", want: App{}},
		{name: "argument", input: "scimgate_demo_app extra {\n api_key k\n}", err: "wrong argument count"},
		{name: "unknown option", input: "scimgate_demo_app {\n token k\n}", err: `unknown option "token"`},
		{name: "api_key twice", input: "scimgate_demo_app {\n api_key a\n api_key b\n}", err: "api_key is set twice"},
		{name: "api_key without value", input: "scimgate_demo_app {\n api_key\n}", err: "wrong argument count"},
		{name: "api_key two values", input: "scimgate_demo_app {\n api_key a b\n}", err: "wrong argument count"},
		{name: "max_accounts not a number", input: "scimgate_demo_app {\n max_accounts lots\n}", err: `max_accounts must be a positive integer, not "lots"`},
		{name: "max_teams zero", input: "scimgate_demo_app {\n max_teams 0\n}", err: "max_teams must be a positive integer"},
		{name: "max_memberships negative", input: "scimgate_demo_app {\n max_memberships -5\n}", err: "max_memberships must be a positive integer"},
		{name: "fixed latency", input: "scimgate_demo_app {\n latency 20ms\n}", want: App{Latency: caddy.Duration(20 * time.Millisecond)}},
		{name: "distributed latency", input: "scimgate_demo_app {\n latency 10ms 100ms\n}", want: App{Latency: caddy.Duration(10 * time.Millisecond), LatencyMax: caddy.Duration(100 * time.Millisecond)}},
		{name: "latency not a duration", input: "scimgate_demo_app {\n latency soon\n}", err: `latency: "soon" is not a duration`},
		{name: "latency three values", input: "scimgate_demo_app {\n latency 1ms 2ms 3ms\n}", err: "wrong argument count"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got App
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestCaddyfileAdapts checks the directive is known without an order line, runs before
// respond, and keeps the key placeholder out of the adapted JSON.
func TestCaddyfileAdapts(t *testing.T) {
	src := "http://127.0.0.1:9 {\n" +
		"\trespond \"fallback\" 404\n" +
		"\tscimgate_demo_app {\n" +
		"\t\tapi_key {env.SCIMGATE_DEMO_KEY}\n" +
		"\t}\n" +
		"}\n"
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	js := string(cfg)
	app, respond := strings.Index(js, `"handler":"scimgate_demo_app"`), strings.Index(js, `"handler":"static_response"`)
	if app < 0 || respond < 0 || app > respond {
		t.Errorf("the demo app must come before respond: %s", js)
	}
	if !strings.Contains(js, `"api_key":"{env.SCIMGATE_DEMO_KEY}"`) {
		t.Errorf("the key placeholder must reach the JSON unresolved: %s", js)
	}
}

func TestProvisionErrors(t *testing.T) {
	t.Setenv("DEMOAPP_EMPTY_KEY", "")
	cases := []struct {
		name string
		app  App
		err  string
	}{
		{"no key", App{}, "api_key is required"},
		{"empty env key", App{APIKey: "{env.DEMOAPP_EMPTY_KEY}"}, "api_key is required"},
		{"unset env key", App{APIKey: "{env.DEMOAPP_NEVER_SET_KEY}"}, "api_key is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			tc.app.Name = t.Name()
			err := tc.app.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
	if err := (&App{MaxAccounts: -1, MaxTeams: 1, MaxMemberships: 1}).Validate(); err == nil {
		t.Error("a negative max_accounts validated")
	}
	ms := func(n int) caddy.Duration { return caddy.Duration(time.Duration(n) * time.Millisecond) }
	for _, bad := range []App{
		{Latency: ms(-1)},
		{Latency: ms(50), LatencyMax: ms(10)},
		{Latency: ms(10), LatencyMax: caddy.Duration(2 * time.Minute)},
	} {
		bad.MaxAccounts, bad.MaxTeams, bad.MaxMemberships = 1, 1, 1
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "latency") {
			t.Errorf("latency %v..%v: error %v, want one about latency", bad.Latency, bad.LatencyMax, err)
		}
	}
}

func TestProvisionResolvesEnvKey(t *testing.T) {
	t.Setenv("DEMOAPP_TEST_KEY", "from-env")
	a := newTestApp(t, func(a *App) { a.APIKey = "{env.DEMOAPP_TEST_KEY}" })
	if a.MaxAccounts != DefaultMaxAccounts || a.MaxTeams != DefaultMaxTeams || a.MaxMemberships != DefaultMaxMemberships {
		t.Errorf("defaults not set: %+v", a)
	}
	if rec := do(t, a, "GET", "/api/v1/accounts", "", "X-Api-Key", "from-env"); rec.Code != 200 {
		t.Errorf("env key refused: %d", rec.Code)
	}
	if rec := do(t, a, "GET", "/api/v1/accounts", "", "X-Api-Key", "{env.DEMOAPP_TEST_KEY}"); rec.Code != 401 {
		t.Errorf("the placeholder itself was accepted: %d", rec.Code)
	}
}
