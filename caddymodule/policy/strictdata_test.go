package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/policytest"
)

// TestLoadRefusesAmbiguousData: a data file the decoders would read differently from what
// it says fails the load with the file, the place and the key, never loads with one reading
// picked in silence. A key given twice (JSON and YAML decoders keep the last one: a brake
// of 5 followed by one of 100000 was read as 100000, a break-glass section followed by
// `"break_glass": {"enabled": false}` switched it off), bytes that are not UTF-8 (the JSON
// decoder turned them into U+FFFD, so a break-glass name no longer matched), and YAML
// files with more than one document (only the first was read).
func TestLoadRefusesAmbiguousData(t *testing.T) {
	tests := []struct {
		name, file, content string
		want                []string
	}{
		{"JSON duplicate setting", "data.json",
			"{\"defaults\": {\"mass_deprovision\": {\"max_per_hour\": 5,\n  \"max_per_hour\": 100000}}}",
			[]string{"data.json:2:", `key "max_per_hour" appears twice`, "data.scimgate.config.defaults.mass_deprovision"}},
		{"JSON duplicate section", "data.json",
			`{"defaults": {"break_glass": {"user_names": ["bg@x"]}, "break_glass": {"enabled": false}}}`,
			[]string{"data.json:1:", `key "break_glass" appears twice`, "data.scimgate.config.defaults"}},
		{"JSON duplicate key spelt with an escape", "data.json",
			`{"defaults": {}, "targets": {"demo": {}, "d\u0065mo": {"mass_deprovision": {"max_per_hour": 0}}}}`,
			[]string{`key "demo" appears twice`, "data.scimgate.config.targets"}},
		{"JSON duplicate inside an array", "data.json",
			`{"defaults": {}, "x": [{"a": 1}, {"b": 1, "b": 2}]}`,
			[]string{`key "b" appears twice`, "data.scimgate.config.x[1]"}},
		{"JSON not UTF-8", "data.json",
			"{\"defaults\": {\"break_glass\": {\n\"user_names\": [\"bg\xff@x\"]}}}",
			[]string{"data.json:2:", "not valid UTF-8", "save the file as UTF-8"}},
		{"YAML duplicate setting", "data.yaml",
			"defaults:\n  mass_deprovision:\n    max_per_hour: 5\n    max_per_hour: 100000\n",
			[]string{"data.yaml:4:", `key "max_per_hour" appears twice`, "data.scimgate.config.defaults.mass_deprovision", "line 3"}},
		{"YAML written as JSON with a duplicate", "data.yaml",
			`{"defaults": {"mass_deprovision": {"max_per_hour": 5, "max_per_hour": 100000}}}`,
			[]string{"data.yaml:1:", `key "max_per_hour" appears twice`}},
		{"YAML two documents", "data.yaml",
			"defaults:\n  mass_deprovision:\n    max_per_hour: 5\n---\ntargets:\n  demo: {}\n",
			[]string{"data.yaml:4:", "more than one YAML document", "only the first would be read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := policytest.CopyShipped(t, "")
			file := filepath.Join(dir, "scimgate", "config", tt.file)
			if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
				t.Fatal(err)
			}
			writeFile(t, file, tt.content)
			e, err := Load(Options{Dir: dir})
			if err == nil {
				_ = e.Close()
				t.Fatalf("Load succeeded; want an error naming %s", file)
			}
			want := append([]string{file}, tt.want...)
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}

			// The same content as an extra data file, merged at the root.
			extra := filepath.Join(t.TempDir(), "extra"+filepath.Ext(tt.file))
			writeFile(t, extra, tt.content)
			e, err = Load(Options{Dir: policytest.CopyShipped(t, `{"defaults": {}}`), DataFiles: []string{extra}})
			if err == nil {
				_ = e.Close()
				t.Fatalf("Load with DataFiles succeeded; want an error naming %s", extra)
			}
			if !strings.Contains(err.Error(), extra) {
				t.Errorf("error does not name %s:\n%v", extra, err)
			}
		})
	}
	if n := cacheLen(); n != 0 {
		t.Errorf("failed loads left %d cache entries", n)
	}
}

// TestLoadKeepsWellFormedData: what the checks refuse is only the ambiguous: the same key
// in different objects, a YAML merge key overridden, a trailing document separator and
// non-ASCII UTF-8 all load.
func TestLoadKeepsWellFormedData(t *testing.T) {
	for name, c := range map[string]struct{ file, content string }{
		"JSON same key in two objects":                   {"data.json", `{"defaults": {"break_glass": {"user_names": ["é@x"]}, "mass_deprovision": {"max_per_hour": 5}}, "targets": {"demo": {"mass_deprovision": {"max_per_hour": 7}}}}`},
		"YAML merge key overridden":                      {"data.yaml", "defaults:\n  mass_deprovision: &m\n    max_per_hour: 5\ntargets:\n  demo:\n    mass_deprovision:\n      <<: *m\n      max_per_hour: 7\n"},
		"YAML trailing separator":                        {"data.yaml", "defaults:\n  break_glass:\n    user_names: [\"ü@x\"]\n---\n"},
		"JSON strings holding quotes, braces and commas": {"data.json", `{"defaults": {"break_glass": {"user_names": ["a\"}{[,:", "\\", "user_names"], "patterns": ["^x,\"y"]}}, "targets": {"a\"b": {}, "a\\\"b": {}}}`},
	} {
		t.Run(name, func(t *testing.T) {
			dir := policytest.CopyShipped(t, "")
			file := filepath.Join(dir, "scimgate", "config", c.file)
			if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
				t.Fatal(err)
			}
			writeFile(t, file, c.content)
			load(t, Options{Dir: dir})
		})
	}
}
