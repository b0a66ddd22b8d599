package gwconfig

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestTargetNames: a target's name is a segment of the admin routes' paths
// (/scimgate/outbox/{target}, /scimgate/reconcile/{target}); "." and "..", which HTTP
// servers resolve away, are refused at load like names with '/', '%' or spaces.
func TestTargetNames(t *testing.T) {
	mapping := filepath.Join(t.TempDir(), "missing.json")
	for _, name := range []string{".", "..", "a/b", "a%2Fb", "a b", ""} {
		c := &TargetConfig{Name: name, URL: "http://127.0.0.1:1", Mapping: mapping}
		if name == "" {
			c.Mapping = filepath.Join(t.TempDir(), "..json") // the name comes from the file: "."
		}
		_, err := c.Provision(caddy.Context{}, caddy.NewReplacer())
		if err == nil || !strings.Contains(err.Error(), "must be 1-64 letters") {
			t.Errorf("name %q: %v, want the name refused", name, err)
		}
	}
}

// TestTargetEmptyPlaceholder: a url or mapping whose placeholder resolves to nothing (an
// unset variable) is refused naming the placeholder, not as "must be an absolute URL" or
// a target name "." taken from an empty mapping path.
func TestTargetEmptyPlaceholder(t *testing.T) {
	t.Setenv("SCIMGATE_TEST_UNSET", "")
	mapping := filepath.Join(t.TempDir(), "app.json")
	for _, c := range []struct {
		cfg  TargetConfig
		want string
	}{
		{TargetConfig{Name: "app", URL: "{env.SCIMGATE_TEST_UNSET}/api", Mapping: mapping}, `target app: url "{env.SCIMGATE_TEST_UNSET}/api": the placeholder {env.SCIMGATE_TEST_UNSET} is empty (is the variable set?)`},
		{TargetConfig{Name: "app", URL: "http://127.0.0.1:1", Mapping: "{env.SCIMGATE_TEST_UNSET}"}, `target: mapping "{env.SCIMGATE_TEST_UNSET}": the placeholder {env.SCIMGATE_TEST_UNSET} is empty (is the variable set?)`},
		{TargetConfig{Name: "app", URL: "{envx.NOPE}", Mapping: mapping}, `target app: url "{envx.NOPE}": unrecognized placeholder {envx.NOPE}`},
	} {
		_, err := c.cfg.Provision(caddy.Context{}, caddy.NewReplacer())
		if err == nil || err.Error() != c.want {
			t.Errorf("%+v: error %v, want %s", c.cfg, err, c.want)
		}
	}
}

// TestGatewayTargets: the targets of scim_gateway handlers still in JSON are found in
// subroutes too, named as their provisioning would name them (the mapping's base name
// when the target has no name).
func TestGatewayTargets(t *testing.T) {
	t.Setenv("SCIMGATE_TEST_MAP", "erp")
	raws := []json.RawMessage{
		[]byte(`{"handler": "subroute", "routes": [{"handle": [{"handler": "scim_gateway", "target": {"mapping": "/m/{env.SCIMGATE_TEST_MAP}.json"}}]}]}`),
		[]byte(`{"handler": "scim_gateway", "target": {"name": "hr", "mapping": "/m/app.json"}}`),
		[]byte(`{"handler": "scim_gateway"}`),
		[]byte(`{"handler": "static_response", "body": "scim_gateway"}`),
	}
	if got := gatewayTargets(raws, caddy.NewReplacer()); !slices.Equal(got, []string{"erp", "hr"}) {
		t.Fatalf("targets = %v, want [erp hr]", got)
	}
}
