// Package policies holds the Rego policies shipped with scimgate. This test runs every
// *_test.rego file below this directory with OPA's tester, so `go test ./...` checks the
// policies with everything else (as `opa test policies/` would).
package policies

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/tester"
)

func TestRegoPolicies(t *testing.T) {
	results, err := tester.Run(context.Background(), ".")
	if err != nil {
		t.Fatalf("loading policies: %v", err)
	}
	if len(results) == 0 {
		t.Fatal("no Rego tests found under policies/")
	}
	for _, r := range results {
		if !r.Pass() {
			t.Errorf("%s.%s: %s %v", r.Package, r.Name, r.String(), r.Error)
		} else {
			t.Logf("PASS %s.%s", r.Package, r.Name)
		}
	}
}
