package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

var update = flag.Bool("update", false, "rewrite the golden want.json files from the current output")

// testSecrets are what {env.*} placeholders resolve to in tests.
var testSecrets = map[string]string{
	"SCIMGATE_DEMO_KEY": "demo-secret-key",
	"ALT_TOKEN":         "alt-token",
}

var envPlaceholder = regexp.MustCompile(`\{env\.([A-Za-z0-9_]+)\}`)

// testResolve stands in for Caddy's replacer: {env.NAME} from testSecrets, an error for
// any other name.
func testResolve(s string) (string, error) {
	var err error
	out := envPlaceholder.ReplaceAllStringFunc(s, func(m string) string {
		name := envPlaceholder.FindStringSubmatch(m)[1]
		v, ok := testSecrets[name]
		if !ok {
			err = fmt.Errorf("environment variable %s is not set", name)
		}
		return v
	})
	return out, err
}

// goldenInput is a case's input.json.
type goldenInput struct {
	// Mapping names a shared mapping under testdata/; empty when the case has mapping.json.
	Mapping string `json:"mapping"`
	// Lookup builds the reconciliation lookup for Input.Resource instead of the event's calls.
	Lookup bool `json:"lookup"`
	// Assign builds groups.roles.assign for the user Input.Resource with RoleIDs.
	Assign  bool              `json:"assign"`
	RoleIDs []string          `json:"role_ids"`
	Input   goldenEvent       `json:"input"`
	IDMap   map[string]string `json:"id_map"`
	// Response is the native response to the first request, from which the native id is
	// extracted with the request's IDPath.
	Response json.RawMessage `json:"response"`
}

type goldenEvent struct {
	ResourceType string          `json:"resource_type"`
	Event        change.Event    `json:"event"`
	Resource     json.RawMessage `json:"resource"`
	Previous     json.RawMessage `json:"previous"`
	Changed      []string        `json:"changed"`
	NativeID     string          `json:"native_id"`
	Members      []goldenMember  `json:"members"`
}

type goldenMember struct {
	SCIMID   string `json:"scim_id"`
	NativeID string `json:"native_id"`
	Type     string `json:"type"`
}

// goldenWant is a case's want.json.
type goldenWant struct {
	Requests []goldenRequest `json:"requests"`
	NativeID string          `json:"native_id,omitempty"`
	Error    string          `json:"error,omitempty"`
}

type goldenRequest struct {
	Method     string          `json:"method"`
	Path       string          `json:"path"`
	Header     http.Header     `json:"header"`
	Body       json.RawMessage `json:"body,omitempty"`
	Idempotent bool            `json:"idempotent"`
	IDPath     string          `json:"id_path,omitempty"`
}

// TestGolden runs every case under testdata/golden: a SCIM change in, the native requests
// out (method, path, headers, body byte for byte), and a native create response in, the
// extracted native id out. Run with -update to rewrite want.json after a deliberate change,
// then review the diff.
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/golden/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no golden cases")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := runGolden(t, dir)
			gotJSON, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			gotJSON = append(gotJSON, '\n')
			wantFile := filepath.Join(dir, "want.json")
			if *update {
				if err := os.WriteFile(wantFile, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(want, gotJSON) {
				t.Errorf("output differs from %s (run go test -update and review the diff)\ngot:\n%s\nwant:\n%s", wantFile, gotJSON, want)
			}
		})
	}
}

func runGolden(t *testing.T, dir string) goldenWant {
	t.Helper()
	var in goldenInput
	readJSON(t, filepath.Join(dir, "input.json"), &in)
	mappingFile := filepath.Join(dir, "mapping.json")
	if in.Mapping != "" {
		mappingFile = filepath.Join("testdata", in.Mapping)
	}
	m, err := Load(mappingFile, testResolve)
	if err != nil {
		t.Fatal(err)
	}
	if in.Lookup {
		req, ok, err := m.LookupRequest(in.Input.ResourceType, decodeResource(t, in.Input.Resource))
		if !ok {
			t.Fatal("no lookup configured")
		}
		if err != nil {
			return goldenWant{Error: err.Error()}
		}
		return goldenWant{Requests: toGolden(t, []Request{*req})}
	}
	if in.Assign {
		req, err := m.Roles().AssignRequest(Input{Resource: decodeResource(t, in.Input.Resource), NativeID: in.Input.NativeID, RoleIDs: in.RoleIDs})
		if err != nil {
			return goldenWant{Error: err.Error()}
		}
		return goldenWant{Requests: toGolden(t, []Request{req})}
	}
	input := Input{
		ResourceType: in.Input.ResourceType,
		Event:        in.Input.Event,
		Resource:     decodeResource(t, in.Input.Resource),
		Previous:     decodeResource(t, in.Input.Previous),
		Changed:      in.Input.Changed,
		NativeID:     in.Input.NativeID,
		NativeIDOf: func(id string) (string, RefState) {
			if v, ok := in.IDMap[id]; ok {
				return v, RefLinked
			}
			return "", RefPending
		},
	}
	for _, mb := range in.Input.Members {
		input.Members = append(input.Members, Member(mb))
	}
	reqs, err := m.Requests(input)
	if err != nil {
		return goldenWant{Error: err.Error()}
	}
	out := goldenWant{Requests: toGolden(t, reqs)}
	if in.Response != nil {
		if len(reqs) == 0 || reqs[0].IDPath == "" {
			t.Fatal("the case has a response but the first request has no IDPath")
		}
		id, err := ExtractID(in.Response, reqs[0].IDPath)
		if err != nil {
			out.Error = err.Error()
		}
		out.NativeID = id
	}
	return out
}

func toGolden(t *testing.T, reqs []Request) []goldenRequest {
	out := make([]goldenRequest, 0, len(reqs))
	for _, r := range reqs {
		if r.Body != nil && !json.Valid(r.Body) {
			t.Fatalf("request %s %s has an invalid JSON body: %s", r.Method, r.Path, r.Body)
		}
		out = append(out, goldenRequest{Method: r.Method, Path: r.Path, Header: r.Header, Body: r.Body, Idempotent: r.Idempotent, IDPath: r.IDPath})
	}
	return out
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func decodeResource(t *testing.T, raw json.RawMessage) scim.Resource {
	t.Helper()
	if isNull(raw) {
		return nil
	}
	v, err := scim.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := v.(map[string]any)
	if !ok {
		t.Fatal(errors.New("a resource must be a JSON object"))
	}
	return r
}
