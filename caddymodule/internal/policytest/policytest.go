// Package policytest gives tests the repository's shipped policies as a user adapting
// them would have them: a copy of every non-test .rego file below policies/, with a
// configuration of the test's own.
package policytest

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Dir is the repository's policies/ directory.
func Dir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("policytest: cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "policies")
}

// CopyShipped copies the shipped policies (without their tests) into a new directory and
// writes config as scimgate/config/data.json (none when config is ""). It returns the
// directory.
func CopyShipped(t testing.TB, config string) string {
	t.Helper()
	src, dst := Dir(t), t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), body, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	if config != "" {
		WriteConfig(t, dst, config)
	}
	return dst
}

// WriteConfig writes config as the guardrails' configuration of the policy directory dir
// (scimgate/config/data.json).
func WriteConfig(t testing.TB, dir, config string) {
	t.Helper()
	cfgDir := filepath.Join(dir, "scimgate", "config")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "data.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
}
