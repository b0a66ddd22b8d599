package caddymodule

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/scimgate/scimgate/demoapp" // Caddyfile.example runs the demo app too
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestUnmarshalCaddyfile(t *testing.T) {
	cases := []struct {
		name, input, err string
		check            func(t *testing.T, g *Handler)
	}{
		{
			name: "full",
			input: `scim_gateway {
				token entra {env.SCIM_TOKEN}
				token entra-next {env.SCIM_TOKEN_NEXT}
				base_path /scim
				data_dir /var/lib/scimgate
				max_body_size 1MiB
				max_json_depth 32
				max_results 100
				members_replace exact
				user_patch_response no_content
			}`,
			check: func(t *testing.T, g *Handler) {
				if len(g.Tokens) != 2 || g.Tokens[1].Name != "entra-next" || g.Tokens[0].Value != "{env.SCIM_TOKEN}" {
					t.Errorf("tokens = %+v", g.Tokens)
				}
				if g.BasePath != "/scim" || g.DataDir != "/var/lib/scimgate" || g.MaxBodyBytes != 1<<20 ||
					g.MaxJSONDepth != 32 || g.MaxResults != 100 || g.MembersReplace != "exact" || g.UserPatchResponse != "no_content" {
					t.Errorf("got %+v", g)
				}
			},
		},
		{name: "minimal", input: `scim_gateway {
				token entra {env.SCIM_TOKEN}
			}`, check: func(t *testing.T, g *Handler) {
			if len(g.Tokens) != 1 || g.BasePath != "" {
				t.Errorf("got %+v", g)
			}
		}},
		{name: "journal", input: `scim_gateway {
				token entra {env.SCIM_TOKEN}
				journal {
					name audit-1
					checkpoint_every 500
					checkpoint_interval 1m
					signing_key {env.SCIMGATE_JOURNAL_KEY}
					key_id k1
					verify_key MCowBQYDK2VwAyEAOrUd2Mrxf+1Yqgv+EhsL7W4qU5Cx8QWq5G4NbfYXlTc=
					verify_key 3ab51dd8caf17fed58aa0bfe121b0bed6e2a5390b1f105aae46e0d6df617953
					redact name.familyName phoneNumbers
					redact addresses
					max_age 2160h
					max_records 1000000
					max_size 10GiB
					reads
				}
			}`, check: func(t *testing.T, g *Handler) {
			j := g.Journal
			if j == nil || j.Name != "audit-1" || j.CheckpointEvery != 500 || time.Duration(j.CheckpointInterval) != time.Minute ||
				j.SigningKey != "{env.SCIMGATE_JOURNAL_KEY}" || j.KeyID != "k1" || len(j.Redact) != 3 || len(j.VerifyKeys) != 2 ||
				time.Duration(j.MaxAge) != 2160*time.Hour || j.MaxRecords != 1000000 || j.MaxBytes != 10<<30 || !j.Reads {
				t.Errorf("journal = %+v", j)
			}
		}},
		{name: "journal off switches", input: "scim_gateway {\n journal {\n checkpoint_every -1\n checkpoint_interval -1\n }\n}", check: func(t *testing.T, g *Handler) {
			if g.Journal.CheckpointEvery != -1 || g.Journal.CheckpointInterval != -1 {
				t.Errorf("journal = %+v", g.Journal)
			}
		}},
		{name: "journal unknown", input: "scim_gateway {\n journal {\n colour red\n }\n}", err: `unrecognized journal option "colour"`},
		{name: "journal twice", input: "scim_gateway {\n journal {\n name a\n name b\n }\n}", err: "name is set twice"},
		{name: "journal bad count", input: "scim_gateway {\n journal {\n checkpoint_every 0\n }\n}", err: "checkpoint_every"},
		{name: "journal bad age", input: "scim_gateway {\n journal {\n max_age forever\n }\n}", err: "max_age"},
		{name: "policy", input: `scim_gateway {
				policy {env.POLICY_DIR} {
					data policies/site.json policies/targets.yaml
					data more.json
					query data.acme.decision
					timeout 250ms
					force_reload
				}
			}`, check: func(t *testing.T, g *Handler) {
			p := g.Policy
			if p == nil || p.Dir != "{env.POLICY_DIR}" || len(p.Data) != 3 || p.Data[2] != "more.json" ||
				p.Query != "data.acme.decision" || time.Duration(p.Timeout) != 250*time.Millisecond || !p.ForceReload {
				t.Errorf("policy = %+v", p)
			}
		}},
		{name: "policy dir only", input: "scim_gateway {\n policy policies\n}", check: func(t *testing.T, g *Handler) {
			if g.Policy == nil || g.Policy.Dir != "policies" || g.Policy.Data != nil || g.Policy.ForceReload {
				t.Errorf("policy = %+v", g.Policy)
			}
		}},
		{name: "policy without dir", input: "scim_gateway {\n policy\n}", err: "policy needs the directory"},
		{name: "policy two dirs", input: "scim_gateway {\n policy a b\n}", err: "wrong argument count"},
		{name: "policy unknown", input: "scim_gateway {\n policy p {\n colour red\n }\n}", err: `unrecognized policy option "colour"`},
		{name: "policy empty data", input: "scim_gateway {\n policy p {\n data\n }\n}", err: "data needs at least one file"},
		{name: "policy bad timeout", input: "scim_gateway {\n policy p {\n timeout 0s\n }\n}", err: "positive duration"},
		{name: "policy force_reload with an argument", input: "scim_gateway {\n policy p {\n force_reload yes\n }\n}", err: "wrong argument count"},
		{name: "policy force_reload twice", input: "scim_gateway {\n policy p {\n force_reload\n force_reload\n }\n}", err: "force_reload is set twice"},
		{name: "policy timeout twice", input: "scim_gateway {\n policy p {\n timeout 1s\n timeout 2s\n }\n}", err: "timeout is set twice"},
		{name: "inline arg", input: `scim_gateway foo`, err: "wrong argument count"},
		{name: "token without value", input: "scim_gateway {\n token entra\n}", err: "token takes a name and a value"},
		{name: "duplicate option", input: "scim_gateway {\n data_dir a\n data_dir b\n}", err: "data_dir is set twice"},
		{name: "unknown option", input: "scim_gateway {\n colour blue\n}", err: `unrecognized scim_gateway option "colour"`},
		{name: "bad size", input: "scim_gateway {\n max_body_size lots\n}", err: "want a size from 1KiB"},
		{name: "bad depth", input: "scim_gateway {\n max_json_depth -1\n}", err: "max_json_depth: want an integer from 8 to 1024"},
		// Out of range: refused with the Caddyfile's line and option name, not at
		// provision with the JSON config's.
		{name: "shallow depth", input: "scim_gateway {\n token entra {env.T}\n max_json_depth 3\n}", err: `max_json_depth: want an integer from 8 to 1024, got "3", at Testfile:3`},
		{name: "deep depth", input: "scim_gateway {\n max_json_depth 1025\n}", err: `max_json_depth: want an integer from 8 to 1024, got "1025", at Testfile:2`},
		{name: "too many results", input: "scim_gateway {\n token entra {env.T}\n\n max_results 1000000\n}", err: `max_results: want an integer from 1 to 100000, got "1000000", at Testfile:4`},
		{name: "small body", input: "scim_gateway {\n max_body_size 100B\n}", err: `max_body_size: want a size from 1KiB to 1TiB, such as 4MiB, got "100B", at Testfile:2`},
		{name: "bad replace mode", input: "scim_gateway {\n members_replace wipe\n}", err: "merge or exact"},
		{name: "bad patch response", input: "scim_gateway {\n user_patch_response 202\n}", err: "resource or no_content"},
		{name: "relative base path", input: "scim_gateway {\n base_path scim\n}", err: "must start with /"},
		{name: "extra arg", input: "scim_gateway {\n data_dir a b\n}", err: "wrong argument count"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := new(Handler)
			err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, g)
		})
	}
}

// TestCaddyfileAdapt checks testdata/caddyfile_adapt/*.caddyfiletest: a Caddyfile, a line of
// dashes, and the JSON it must adapt to (or an error substring). Run with -update to
// rewrite the JSON halves after a deliberate change.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.SplitN(string(data), "----------", 2)
			if len(parts) != 2 {
				t.Fatalf("%s: no ---------- separator", file)
			}
			input, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			if strings.HasPrefix(expected, "{") || (*update && expected == "") {
				if *update {
					out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
					if err != nil {
						t.Fatal(err)
					}
					pretty := caddyconfigIndent(t, out)
					if err := os.WriteFile(file, []byte(strings.TrimSpace(parts[0])+"\n----------\n"+pretty+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				if !caddytest.CompareAdapt(t, file, input, "caddyfile", expected) {
					t.Errorf("%s does not adapt to the expected JSON", file)
				}
				return
			}
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
			if err == nil || !strings.Contains(err.Error(), expected) {
				t.Fatalf("adapt error = %v, want it to contain %q", err, expected)
			}
		})
	}
}

// TestCaddyfileExample adapts the repository's Caddyfile.example with its environment
// defaults, so the file users run first can never drift out of date.
func TestCaddyfileExample(t *testing.T) {
	data, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(data, nil)
	if err != nil {
		t.Fatalf("Caddyfile.example does not adapt: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("warning: line %d: %s", w.Line, w.Message)
	}
	cfg := string(out)
	for _, want := range []string{`"handler":"scim_gateway"`, `"value":"{env.SCIM_TOKEN}"`, `"data_dir":"./scimgate-data"`, `"mapping":"mappings/demoapp.json"`, `"handler":"scimgate_demo_app"`, `"max_accounts":100000`, `"listen":["0.0.0.0:8080","[::]:8080"]`, `"admin":{"listen":"localhost:2019"}`, `"policy":{"dir":"policies","timeout":100000000}`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("adapted Caddyfile.example lacks %s:\n%s", want, cfg)
		}
	}
}
