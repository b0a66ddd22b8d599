package gwconfig

import (
	"path/filepath"
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
