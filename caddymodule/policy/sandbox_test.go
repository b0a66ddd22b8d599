package policy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// schemaServer is an HTTP server on 127.0.0.1 that serves a JSON schema and counts the
// requests it gets: a policy must never make one.
func schemaServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"type": "string"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &hits
}

// policyDir writes one decision.rego into a new policy directory and returns the directory
// and the file's name.
func policyDir(t *testing.T, src string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "decision.rego")
	writeFile(t, file, src)
	return dir, file
}

// The JSON schema builtins resolve a schema's $ref: a file:// one is read from the
// gateway's disk (any file it may read: a secret, /proc/self/environ) and an http one is
// fetched from wherever it points, with what they find reflected in their result (the enum
// below comes back in the validation error, and so in the 403 Entra shows). Policies may
// not call them: the load fails naming the builtin and the file and row.
func TestSchemaBuiltinsAreRefused(t *testing.T) {
	url, hits := schemaServer(t)
	secret := filepath.Join(t.TempDir(), "secret.json")
	writeFile(t, secret, `{"token": {"enum": ["s3cr3t-token"]}}`)
	tests := map[string]string{
		"match_schema file": `json.match_schema("\"x\"", {"$ref": "file://` + secret + `#/token"})`,
		"match_schema http": `json.match_schema({"a": 1}, {"$ref": "` + url + `/s.json"})`,
		"verify_schema":     `json.verify_schema({"$ref": "file://` + secret + `"})`,
	}
	for name, call := range tests {
		t.Run(name, func(t *testing.T) {
			builtin := call[:strings.IndexByte(call, '(')]
			dir, file := policyDir(t, "package scimgate\n\ndecision := {\"allow\": false, \"reasons\": [sprintf(\"%v\", [r])]} if {\n\tr := "+call+"\n}\n")
			e, err := Load(Options{Dir: dir})
			if err == nil {
				d, derr := e.Decide(context.Background(), &Input{Client: "c"})
				_ = e.Close()
				t.Fatalf("Load succeeded; the decision: %+v (%v), %d request(s) to the schema server", d, derr, hits.Load())
			}
			for _, w := range []string{file + ":4:", "undefined function " + builtin, "fix: " + builtin + " is disabled in scimgate", "$ref"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the schema server got %d request(s)", n)
	}
}

// strings.render_template runs a Go template, which the decision's timeout cannot stop:
// `{{range 100000000}}` in a policy with a 100 ms timeout held its core for 30 seconds and
// built gigabytes, and a template calling a template twice, nested, never ends. Policies
// may not call it.
func TestRenderTemplateIsRefused(t *testing.T) {
	dir, file := policyDir(t, "package scimgate\n\ndecision := {\"allow\": false, \"reasons\": [\n\tstrings.render_template(\"{{range 100000000}}x{{end}}\", {}),\n]}\n")
	e, err := Load(Options{Dir: dir})
	if err == nil {
		_ = e.Close()
		t.Fatal("Load succeeded")
	}
	for _, w := range []string{file + ":4:", "undefined function strings.render_template", "fix: strings.render_template is disabled", "sprintf or concat"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
}

// A schema annotation (# METADATA schemas:, which the type checker reads at load time)
// whose $ref names a file or a URL would read the file, or make the request, at every
// load. It fails the load instead, naming the file and row and the $ref; a $ref within
// the annotation's own schema is fine.
func TestSchemaAnnotationRefsStayInside(t *testing.T) {
	url, hits := schemaServer(t)
	local := filepath.Join(t.TempDir(), "schema.json")
	writeFile(t, local, `{"type": "object", "properties": {"target": {"type": "string"}}}`)
	annotated := func(schema string) string {
		return "package scimgate\n\n# METADATA\n# schemas:\n#   - input: " + schema + "\ndecision := {\"allow\": input.target == \"demo\"}\n"
	}
	for name, ref := range map[string]string{"http": url + "/input.json", "file": "file://" + local, "relative": "input.json"} {
		t.Run(name, func(t *testing.T) {
			dir, file := policyDir(t, annotated(`{"$ref": "`+ref+`"}`))
			e, err := Load(Options{Dir: dir})
			if err == nil {
				_ = e.Close()
				t.Fatalf("Load succeeded; %d request(s) to the schema server", hits.Load())
			}
			for _, w := range []string{file + ":3:", ref, "only refer within the schema"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the schema server got %d request(s)", n)
	}
	t.Run("within", func(t *testing.T) {
		dir, _ := policyDir(t, annotated(`{"type": "object", "properties": {"target": {"$ref": "#/definitions/name"}}, "definitions": {"name": {"type": "string"}}}`))
		load(t, Options{Dir: dir})
	})
}

// Every builtin OPA marks nondeterministic reads something besides its arguments: the
// clock, randomness, the network, the process, the disk. Each one a policy may call has
// been reviewed (the clock and randomness: the memos never keep what they compute); any
// other, a new one OPA adds included, must be reviewed before policies may call it: add it
// to disabledBuiltins, or, once sure it reads neither network, disk nor process, here.
func TestNondeterministicBuiltinsReviewed(t *testing.T) {
	reviewed := []string{
		"time.now_ns", "rand.intn", "uuid.rfc4122", // clock and randomness
		"io.jwt.decode_verify", "io.jwt.encode_sign", "io.jwt.encode_sign_raw", // clock and randomness, keys from arguments
	}
	for _, b := range capabilities.Builtins {
		if _, off := disabledBuiltins[b.Name]; off {
			t.Errorf("%s is disabled but in the capabilities", b.Name)
		}
		if b.Nondeterministic && !slices.Contains(reviewed, b.Name) {
			t.Errorf("policies may call %s, which OPA marks nondeterministic and nobody reviewed: disable it, or review it", b.Name)
		}
	}
	if capabilities.AllowNet == nil || len(capabilities.AllowNet) != 0 {
		t.Errorf("capabilities allow_net = %q, want none (nil allows every host)", capabilities.AllowNet)
	}
}
