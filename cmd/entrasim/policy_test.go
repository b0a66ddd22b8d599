package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/internal/testnet"
)

// brakeLimit is the mass-deprovision brake TestBrakeUnderLoad configures.
const brakeLimit = 10

// shippedPoliciesWithConfig copies the repository's Rego policies (without tests) into a
// new directory with config as data.scimgate.config.
func shippedPoliciesWithConfig(t *testing.T, config string) string {
	t.Helper()
	dst, src := t.TempDir(), filepath.Join("..", "..", "policies")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".rego") || strings.HasSuffix(path, "_test.rego") {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		body, err := os.ReadFile(path)
		if err == nil {
			err = os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o700)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, rel), body, 0o600)
		}
		return err
	})
	if err == nil {
		err = os.MkdirAll(filepath.Join(dst, "scimgate", "config"), 0o700)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dst, "scimgate", "config", "data.json"), []byte(config), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestBrakeUnderLoad plays Entra's cycles at concurrency 8 through the gateway with the
// shipped mass-deprovision brake at 10 per hour: exactly 10 disables and deletes reach
// the demo app, every other one is refused with 403 and the brake's reason, and the
// directory and the app still agree on every user.
func TestBrakeUnderLoad(t *testing.T) {
	t.Setenv("ENTRASIM_IT_POLICY", shippedPoliciesWithConfig(t,
		`{"defaults": {"mass_deprovision": {"max_per_hour": `+strconv.Itoa(brakeLimit)+`}}}`))
	a := testnet.FreeAddrs(t, 2)
	addr, demo := a[0], a[1]
	t.Setenv("ENTRASIM_IT_ADDR", addr)
	t.Setenv("ENTRASIM_IT_DEMO_ADDR", demo)
	t.Setenv("ENTRASIM_IT_DEMO_NAME", "brake")
	t.Setenv("ENTRASIM_IT_DEMO_KEY", demoKey)
	runCaddyfile(t, "Caddyfile.policy")
	tenant, app := "http://"+addr+"/scim/v2", "http://"+demo

	cfg := testConfig(tenant, dialectDefault, 31)
	cfg.Changes = 120
	ds := generate(cfg.Seed, cfg.Users, cfg.Groups)
	plan := planChanges(cfg.Seed, ds, cfg.Changes)
	deprovisions := 0
	for _, c := range plan {
		if c.Kind == chDisable || c.Kind == chDelete {
			deprovisions++
		}
	}
	if deprovisions <= brakeLimit {
		t.Fatalf("the plan has %d deprovisions; the test needs more than %d", deprovisions, brakeLimit)
	}

	var out bytes.Buffer
	sum, err := run(context.Background(), cfg, &out)
	if !errors.Is(err, errUnexpected) {
		t.Fatalf("run: %v (want the brake's refusals reported as unexpected)\n%s", err, out.String())
	}
	if want := deprovisions - brakeLimit; sum.Unexpected != want {
		t.Errorf("%d unexpected outcomes, want %d (the deprovisions past the brake)\n%s", sum.Unexpected, want, out.String())
	}
	for _, s := range sum.UnexpectedSamples {
		if !strings.Contains(s, "-> 403") || !strings.Contains(s, "brake") {
			t.Errorf("an outcome other than the brake's 403: %s", s)
		}
	}

	// The app: exactly brakeLimit users that were active are now locked or gone, and the
	// directory agrees with the app on every user.
	v := &verifier{t: t, base: tenant}
	snap := demoState(t, app)
	locked := map[string]bool{}
	for _, a := range snap.Accounts {
		locked[strings.ToLower(a.Login)] = a.Locked
	}
	gone := 0
	for _, u := range ds.Users {
		isLocked, has := locked[strings.ToLower(u.UserName)]
		res := v.find("Users", "userName", u.UserName)
		if (res != nil) != has {
			t.Errorf("user %s: in the directory %v, in the app %v", u.UserName, res != nil, has)
			continue
		}
		if has {
			if active, _ := res["active"].(bool); active == isLocked {
				t.Errorf("user %s: active %v in the directory, locked %v in the app", u.UserName, active, isLocked)
			}
		}
		if u.IsActive() && (!has || isLocked) {
			gone++
		}
	}
	if gone != brakeLimit {
		t.Errorf("%d users were deprovisioned in the app, want exactly %d", gone, brakeLimit)
	}
}
