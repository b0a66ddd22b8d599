package gwconfig

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/policy"
)

// PolicyConfig points the gateway at its Open Policy Agent policies: every write request
// is decided by data.scimgate.decision (see the README's "Policies" section and
// policies/README.md) before anything reaches the directory's target.
type PolicyConfig struct {
	// Dir holds the Rego policies: every *.rego file below it except *_test.rego, plus
	// data files named data.json or data.yaml, mounted at their directory's path.
	// Placeholders are resolved.
	Dir string `json:"dir"`
	// Data lists further JSON or YAML data files, each an object merged at the data root.
	Data []string `json:"data,omitempty"`
	// Query is the decision's path. Default: data.scimgate.decision.
	Query string `json:"query,omitempty"`
	// Timeout bounds the CPU time of one decision's evaluation, not its waits for a core
	// (README "How timeout counts"); a change not decided in time answers 503 with
	// Retry-After (journaled as failed, not denied). Default: 100ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// ForceReload lets a reload through whose new policy would deactivate, or take out of
	// scope, more of the target's accounts than the new policy's mass-deprovision brake
	// allows in an hour (such a reload is refused by default, with the number). Default:
	// false.
	ForceReload bool `json:"force_reload,omitempty"`
}

// provision loads and compiles the policies. A policy that does not compile fails the
// (re)load, so the previous configuration stays in force.
func (c *PolicyConfig) Provision(repl *caddy.Replacer, logger *zap.Logger) (*policy.Engine, error) {
	dir := repl.ReplaceAll(c.Dir, "")
	if dir == "" {
		return nil, errors.New("policy: dir is required (the directory of the Rego policies)")
	}
	data := make([]string, 0, len(c.Data))
	for _, f := range c.Data {
		if f = repl.ReplaceAll(f, ""); f == "" {
			return nil, fmt.Errorf("policy %s: a data file resolves to an empty path", dir)
		}
		data = append(data, f)
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("policy %s: timeout must be positive", dir)
	}
	eng, err := policy.Load(policy.Options{
		Dir:       dir,
		DataFiles: data,
		Query:     c.Query,
		Timeout:   time.Duration(c.Timeout),
		Print: func(location, msg string) {
			logger.Debug("policy print", zap.String("location", location), zap.String("message", msg))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", dir, err)
	}
	return eng, nil
}
