package caddymodule

// Integration tests: a real Caddy, started in this process from testdata/entra/Caddyfile,
// with the scim_gateway module on a loopback port, driven by a real net/http client
// through the requests Microsoft Entra ID's provisioning service sends (entra-wire.md
// §1-4). Every step asserts both the response and the state stored, read back with GET.
//
// Caddy's running configuration is process-global: the tests in this file must not call
// t.Parallel.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/google/uuid"

	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
	"github.com/scimgate/scimgate/internal/testnet"
)

// itServer is a running Caddy serving the gateway.
type itServer struct {
	base    string // Tenant URL: http://127.0.0.1:<port>/scim/v2
	cfgJSON []byte // the adapted config, for reloads
	dataDir string // the gateway's data_dir
	client  *http.Client
}

// itStartCaddy adapts testdata/entra/Caddyfile (the listener on a free loopback port, the
// store and Caddy's storage in temporary directories, no admin endpoint) and runs it.
// Caddy is stopped when the test ends.
func itStartCaddy(t *testing.T) *itServer {
	t.Helper()
	return itStartCaddyfile(t, filepath.Join("testdata", "entra", "Caddyfile"))
}

// itStartCaddyfile is itStartCaddy with another Caddyfile of the same shape (the
// environment variables SCIMGATE_IT_*; set more before calling).
func itStartCaddyfile(t *testing.T, caddyfile string) *itServer {
	t.Helper()
	addr := testnet.FreeAddr(t)
	s := &itServer{
		base:    "http://" + addr + "/scim/v2",
		dataDir: t.TempDir(),
		client:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
	}
	t.Setenv("SCIMGATE_IT_ADDR", addr)
	t.Setenv("SCIMGATE_IT_DATA", s.dataDir)
	t.Setenv("SCIMGATE_IT_STORAGE", t.TempDir())
	t.Setenv("SCIMGATE_IT_TOKEN", testToken)

	src, err := os.ReadFile(caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v", err)
	}
	for _, w := range warnings {
		t.Logf("Caddyfile warning: %s", w.String())
	}
	if bytes.Contains(cfg, []byte(testToken)) {
		t.Fatal("the adapted config holds the token; {env.*} must be resolved at provisioning")
	}
	s.cfgJSON = cfg
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop stops Caddy; calling it again is harmless.
func (s *itServer) stop(t *testing.T) {
	t.Helper()
	s.client.CloseIdleConnections()
	if err := caddy.Stop(); err != nil {
		t.Errorf("stopping Caddy: %v", err)
	}
}

// itResponse is a response read in full.
type itResponse struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to path (relative to the Tenant URL) as Entra does: with the bearer
// token, and Content-Type application/scim+json; charset=utf-8 when there is a body.
// headers are name/value pairs; an empty value deletes the header.
func (s *itServer) do(t *testing.T, method, path, body string, headers ...string) *itResponse {
	t.Helper()
	return sendSCIM(t, s.client, method, s.base+path, body, headers...)
}

// sendSCIM sends one request to url as Entra does (see itServer.do) with client.
func sendSCIM(t *testing.T, client *http.Client, method, url, body string, headers ...string) *itResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", method, url, err)
	}
	return &itResponse{status: resp.StatusCode, header: resp.Header, body: data}
}

// expect fails the test unless the response has the status; a response with a body must
// be application/scim+json, a 204 must have none.
func (r *itResponse) expect(t *testing.T, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	if status == http.StatusNoContent {
		if len(r.body) != 0 {
			t.Fatalf("204 with a body: %s", r.body)
		}
		return
	}
	itCheckSCIMContentType(t, r.header)
}

// object decodes the body as a JSON object.
func (r *itResponse) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("the body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

func itCheckSCIMContentType(t testing.TB, h http.Header) {
	t.Helper()
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/scim+json") {
		t.Fatalf("Content-Type %q, want application/scim+json", ct)
	}
}

// itCheckErrorBody checks a SCIM Error response (RFC 7644 §3.12): the status, the status
// repeated as a JSON string, scimType (absent when want is ""), a detail a person can act
// on, and the SCIM media type.
func itCheckErrorBody(t testing.TB, status int, h http.Header, body []byte, wantStatus int, wantType string) map[string]any {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d; body: %s", status, wantStatus, body)
	}
	itCheckSCIMContentType(t, h)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("the error body is not a JSON object: %v\n%s", err, body)
	}
	if !reflect.DeepEqual(m["schemas"], []any{scim.ErrorSchema}) {
		t.Errorf("schemas = %v, want [%s]", m["schemas"], scim.ErrorSchema)
	}
	if got, ok := m["status"].(string); !ok || got != strconv.Itoa(wantStatus) {
		t.Errorf("status in the body = %#v, want the string %q", m["status"], strconv.Itoa(wantStatus))
	}
	gotType, hasType := m["scimType"]
	switch {
	case wantType == "" && hasType:
		t.Errorf("scimType = %v, want none", gotType)
	case wantType != "" && gotType != wantType:
		t.Errorf("scimType = %v, want %q", gotType, wantType)
	}
	if d, _ := m["detail"].(string); strings.TrimSpace(d) == "" {
		t.Errorf("no detail in the error body: %s", body)
	}
	return m
}

// itFixture reads testdata/entra/<name> and replaces each ${KEY} by its value; vars are
// KEY, value pairs.
func itFixture(t *testing.T, name string, vars ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "entra", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(vars); i += 2 {
		s = strings.ReplaceAll(s, "${"+vars[i]+"}", vars[i+1])
	}
	if i := strings.Index(s, "${"); i >= 0 {
		t.Fatalf("%s: placeholder left unfilled at %q", name, s[i:min(len(s), i+20)])
	}
	return s
}

// itPatchBody wraps operations (a JSON array's elements) in a PatchOp message.
func itPatchBody(ops ...string) string {
	return `{"schemas":["` + scim.PatchOpSchema + `"],"Operations":[` + strings.Join(ops, ",") + `]}`
}

// get reads a resource and fails unless it is there.
func (s *itServer) get(t *testing.T, path string) map[string]any {
	t.Helper()
	r := s.do(t, http.MethodGet, path, "")
	r.expect(t, http.StatusOK)
	return r.object(t)
}

// query runs a list query and returns its Resources, checking the ListResponse envelope.
func (s *itServer) query(t *testing.T, endpoint string, params url.Values) []map[string]any {
	t.Helper()
	r := s.do(t, http.MethodGet, endpoint+"?"+params.Encode(), "")
	r.expect(t, http.StatusOK)
	return itListResources(t, r.object(t))
}

// itListResources checks a ListResponse and returns its resources.
func itListResources(t testing.TB, m map[string]any) []map[string]any {
	t.Helper()
	if !reflect.DeepEqual(m["schemas"], []any{scim.ListResponseSchema}) {
		t.Fatalf("not a ListResponse: %v", m)
	}
	raw, ok := m["Resources"].([]any)
	if !ok {
		t.Fatalf("Resources is %#v, want an array (never null, never absent)", m["Resources"])
	}
	out := make([]map[string]any, 0, len(raw))
	for _, e := range raw {
		res, ok := e.(map[string]any)
		if !ok {
			t.Fatalf("a resource is not an object: %v", e)
		}
		out = append(out, res)
	}
	if m["itemsPerPage"] != float64(len(out)) {
		t.Errorf("itemsPerPage = %v with %d resources", m["itemsPerPage"], len(out))
	}
	return out
}

// queryIDs runs a filter query and returns the ids it matched.
func (s *itServer) queryIDs(t *testing.T, endpoint, filter string, extra ...string) []string {
	t.Helper()
	params := url.Values{"filter": {filter}}
	for i := 0; i+1 < len(extra); i += 2 {
		params.Set(extra[i], extra[i+1])
	}
	var ids []string
	for _, res := range s.query(t, endpoint, params) {
		id, _ := res["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// itMemberIDs returns the sorted member ids of a rendered group, failing when a member
// is malformed. A group without members has no members attribute: "members": [] fails
// (an empty multi-valued attribute is unassigned, RFC 7643 §2.5).
func itMemberIDs(t testing.TB, group map[string]any) []string {
	t.Helper()
	v, has := group["members"]
	if !has {
		return []string{}
	}
	raw, ok := v.([]any)
	if !ok || len(raw) == 0 {
		t.Fatalf("members is %#v, want a non-empty array or no members attribute", v)
	}
	ids := []string{}
	for _, e := range raw {
		m, _ := e.(map[string]any)
		id, _ := m["value"].(string)
		if id == "" {
			t.Fatalf("member without value: %v", e)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// itMember returns the member entry with the given id, or nil.
func itMember(group map[string]any, id string) map[string]any {
	raw, _ := group["members"].([]any)
	for _, e := range raw {
		if m, _ := e.(map[string]any); m != nil && m["value"] == id {
			return m
		}
	}
	return nil
}

// itEnterprise returns a user's enterprise extension object, or nil.
func itEnterprise(user map[string]any) map[string]any {
	m, _ := user[scim.EnterpriseUserSchema].(map[string]any)
	return m
}

// itJSON decodes a JSON literal for comparisons.
func itJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON literal %s: %v", s, err)
	}
	return v
}

func itSorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// itCreate POSTs a resource and returns its id, checking 201 and Location.
func (s *itServer) create(t *testing.T, endpoint, body string) (string, map[string]any) {
	t.Helper()
	r := s.do(t, http.MethodPost, endpoint, body)
	r.expect(t, http.StatusCreated)
	res := r.object(t)
	id, _ := res["id"].(string)
	if id == "" {
		t.Fatalf("created resource has no id: %s", r.body)
	}
	if loc := r.header.Get("Location"); loc != s.base+endpoint+"/"+id {
		t.Errorf("Location = %q, want %q", loc, s.base+endpoint+"/"+id)
	}
	return id, res
}

// TestIntegrationEntraCycle plays one provisioning cycle as Entra runs it: Test Connection,
// match-then-create, reference pass (manager, group members), both PATCH dialects,
// soft delete and hard delete.
func TestIntegrationEntraCycle(t *testing.T) {
	s := itStartCaddy(t)
	var userID, managerID, thirdID, groupID, nestedID string
	const userName = "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
	const externalID = "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
	managerPath := scim.EnterpriseUserSchema + ":manager"

	step := func(name string, fn func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, fn) {
			t.FailNow() // later steps build on this one
		}
	}

	step("test connection probes answer 200 with an empty ListResponse", func(t *testing.T) {
		r := s.do(t, http.MethodGet, "/Users?filter=userName+eq+%22"+uuid.NewString()+"%22", "")
		r.expect(t, http.StatusOK)
		m := r.object(t)
		if res := itListResources(t, m); len(res) != 0 || m["totalResults"] != float64(0) || m["startIndex"] != float64(1) {
			t.Fatalf("probe matched something: %s", r.body)
		}
		// The feature flag of the Tenant URL may come along on every request: ignored.
		r = s.do(t, http.MethodGet, "/Users?aadOptscim062020&filter=userName+eq+%22"+uuid.NewString()+"%22", "")
		r.expect(t, http.StatusOK)
		if res := itListResources(t, r.object(t)); len(res) != 0 {
			t.Fatalf("probe with the flag matched something: %s", r.body)
		}
		r = s.do(t, http.MethodGet, "/Groups?excludedAttributes=members&filter=displayName+eq+%22"+uuid.NewString()+"%22", "")
		r.expect(t, http.StatusOK)
		if res := itListResources(t, r.object(t)); len(res) != 0 {
			t.Fatalf("group probe matched something: %s", r.body)
		}
	})

	step("match miss then create", func(t *testing.T) {
		if ids := s.queryIDs(t, "/Users", `userName eq "`+userName+`"`); len(ids) != 0 {
			t.Fatalf("match before create: %v", ids)
		}
		r := s.do(t, http.MethodPost, "/Users", itFixture(t, "user_create.json"))
		r.expect(t, http.StatusCreated)
		u := r.object(t)
		userID, _ = u["id"].(string)
		if userID == "" {
			t.Fatalf("no id: %s", r.body)
		}
		loc := r.header.Get("Location")
		if loc != s.base+"/Users/"+userID {
			t.Errorf("Location = %q", loc)
		}
		meta, _ := u["meta"].(map[string]any)
		if meta["resourceType"] != "User" || meta["location"] != loc {
			t.Errorf("meta = %v", meta)
		}
		for _, k := range []string{"created", "lastModified"} {
			ts, _ := meta[k].(string)
			if _, err := time.Parse(time.RFC3339, ts); err != nil {
				t.Errorf("meta.%s = %q: %v", k, ts, err)
			}
		}
		if v, _ := meta["version"].(string); v == "" || r.header.Get("ETag") != v {
			t.Errorf("meta.version %q, ETag %q", meta["version"], r.header.Get("ETag"))
		}
		want := itJSON(t, itFixture(t, "user_create.json")).(map[string]any)
		for _, k := range []string{"userName", "externalId", "active", "emails", "name"} {
			if !reflect.DeepEqual(u[k], want[k]) {
				t.Errorf("%s = %v, want %v as sent", k, u[k], want[k])
			}
		}
		if !slices.Contains(u["schemas"].([]any), any(scim.UserSchema)) {
			t.Errorf("schemas = %v", u["schemas"])
		}
		if got := s.get(t, "/Users/"+userID); !reflect.DeepEqual(got, u) {
			t.Errorf("GET differs from the POST response:\n GET  %v\n POST %v", got, u)
		}
	})

	step("match by userName in another case", func(t *testing.T) {
		for _, v := range []string{strings.ToUpper(userName), strings.ToLower(userName)} {
			if ids := s.queryIDs(t, "/Users", `userName eq "`+v+`"`); !slices.Equal(ids, []string{userID}) {
				t.Errorf("userName eq %q matched %v, want [%s]", v, ids, userID)
			}
		}
	})

	step("match by externalId, unquoted and quoted", func(t *testing.T) {
		// The raw query as the Tutorial writes it (filter=externalId eq jyoung).
		r := s.do(t, http.MethodGet, "/Users?filter=externalId+eq+"+externalID, "")
		r.expect(t, http.StatusOK)
		res := itListResources(t, r.object(t))
		if len(res) != 1 || res[0]["id"] != userID {
			t.Fatalf("unquoted externalId: %s", r.body)
		}
		if ids := s.queryIDs(t, "/Users", `externalId eq "`+externalID+`"`); !slices.Equal(ids, []string{userID}) {
			t.Fatalf("quoted externalId matched %v", ids)
		}
	})

	step("create the manager", func(t *testing.T) {
		managerID, _ = s.create(t, "/Users", itFixture(t, "user_manager.json"))
	})

	step("link the manager in every form Entra sends", func(t *testing.T) {
		ref := s.base + "/Users/" + managerID
		cases := []struct {
			name, op string
			want     string // the manager object GET must show; "" for none
		}{
			{"bare string under the URN path", `{"op":"add","path":"` + managerPath + `","value":"` + managerID + `"}`,
				`{"value":"` + managerID + `"}`},
			{"empty string removes", `{"op":"Replace","path":"` + managerPath + `","value":""}`, ""},
			{"object value", `{"op":"replace","path":"` + managerPath + `","value":{"value":"` + managerID + `"}}`,
				`{"value":"` + managerID + `"}`},
			{"object with empty value removes", `{"op":"replace","path":"` + managerPath + `","value":{"value":""}}`, ""},
			{"Tutorial Example 5: array with $ref under path manager (the $ref is not kept)",
				`{"op":"Add","path":"manager","value":[{"$ref":"` + ref + `","value":"` + managerID + `"}]}`,
				`{"value":"` + managerID + `"}`},
			{"op remove", `{"op":"remove","path":"` + managerPath + `"}`, ""},
			{"capitalised Add of a bare string", `{"op":"Add","path":"` + managerPath + `","value":"` + managerID + `"}`,
				`{"value":"` + managerID + `"}`},
			{"remove with a value filter", `{"op":"remove","path":"manager[value eq \"` + managerID + `\"]"}`, ""},
			{"remove when already absent", `{"op":"remove","path":"` + managerPath + `"}`, ""},
			{"relink for the reference check", `{"op":"Add","path":"` + managerPath + `","value":"` + managerID + `"}`,
				`{"value":"` + managerID + `"}`},
		}
		for _, tc := range cases {
			r := s.do(t, http.MethodPatch, "/Users/"+userID, itPatchBody(tc.op))
			r.expect(t, http.StatusOK)
			for from, u := range map[string]map[string]any{"PATCH response": r.object(t), "GET": s.get(t, "/Users/"+userID)} {
				got, has := itEnterprise(u)["manager"]
				switch {
				case tc.want == "" && has:
					t.Errorf("%s: %s shows manager %v, want none", tc.name, from, got)
				case tc.want != "" && !reflect.DeepEqual(got, itJSON(t, tc.want)):
					t.Errorf("%s: %s shows manager %#v, want %s", tc.name, from, got, tc.want)
				}
			}
		}
		// The reference-attribute check of the legacy Tutorial example.
		ids := s.queryIDs(t, "/Users", "id eq "+userID+" and manager eq "+managerID, "attributes", "id")
		if !slices.Equal(ids, []string{userID}) {
			t.Errorf("id eq .. and manager eq .. matched %v", ids)
		}
		if ids := s.queryIDs(t, "/Users", "id eq "+managerID+" and manager eq "+userID); len(ids) != 0 {
			t.Errorf("reverse reference check matched %v", ids)
		}
	})

	step("PATCH in the default dialect", func(t *testing.T) {
		r := s.do(t, http.MethodPatch, "/Users/"+managerID, itFixture(t, "user_patch_default.json"))
		r.expect(t, http.StatusOK)
		u := s.get(t, "/Users/"+managerID)
		if !reflect.DeepEqual(r.object(t), u) {
			t.Errorf("the PATCH response differs from what GET reads back:\n PATCH %s\n GET   %v", r.body, u)
		}
		checks := map[string]string{
			"emails":    `[{"type":"work","value":"MeganB@mail.contoso.example"}]`,
			"addresses": `[{"type":"work","formatted":"18/2111"}]`,
			"name":      `{"familyName":"Bowen-Smith","givenName":"Megan","honorificPrefix":"Dr."}`,
			"roles":     `[{"value":"{\"id\":\"06b07648-ecfe-589f-9d2f-6325724a46ee\",\"value\":\"25\",\"displayName\":\"Role1234\"}"}]`,
		}
		for k, want := range checks {
			if !reflect.DeepEqual(u[k], itJSON(t, want)) {
				t.Errorf("%s = %v, want %s", k, u[k], want)
			}
		}
		if d := itEnterprise(u)["department"]; d != "Retail" {
			t.Errorf("department = %v", d)
		}
		if !slices.Contains(u["schemas"].([]any), any(scim.EnterpriseUserSchema)) {
			t.Errorf("schemas = %v lacks the enterprise URN", u["schemas"])
		}
		// The created work email is filterable (a uniqueness attribute must be).
		ids := s.queryIDs(t, "/Users", `emails[type eq "work"].value eq "MeganB@mail.contoso.example"`)
		if !slices.Equal(ids, []string{managerID}) {
			t.Errorf("emails[type eq \"work\"].value eq matched %v", ids)
		}
	})

	step("PATCH in the aadOptscim062020 dialect", func(t *testing.T) {
		body := itFixture(t, "user_patch_flag.json")
		r := s.do(t, http.MethodPatch, "/Users/"+managerID, body)
		r.expect(t, http.StatusOK)
		u := s.get(t, "/Users/"+managerID)
		checks := map[string]string{
			"nickName":    `"Babs"`,
			"displayName": `"Megan B. Bowen"`,
			"emails":      `[{"type":"work","value":"megan.bowen@mail.contoso.example"}]`,
			"name":        `{"familyName":"Bowen","givenName":"Meg","honorificPrefix":"Dr."}`,
		}
		for k, want := range checks {
			if !reflect.DeepEqual(u[k], itJSON(t, want)) {
				t.Errorf("%s = %v, want %s", k, u[k], want)
			}
		}
		ext := itEnterprise(u)
		if ext["employeeNumber"] != "E-1042" || ext["department"] != "Retail" {
			t.Errorf("enterprise extension = %v", ext)
		}
		for k := range u {
			if strings.HasPrefix(k, "name.") || strings.HasPrefix(strings.ToLower(k), strings.ToLower(scim.EnterpriseUserSchema)+":") {
				t.Errorf("a path-less key was stored literally: %q", k)
			}
		}
		if raw := s.do(t, http.MethodGet, "/Users/"+managerID, ""); bytes.Contains(raw.body, []byte(`"name.givenName"`)) {
			t.Errorf("a literal name.givenName key is stored: %s", raw.body)
		}
		// Steady state: Entra re-sends what it wrote; nothing changes, not even the version.
		version := u["meta"].(map[string]any)["version"]
		s.do(t, http.MethodPatch, "/Users/"+managerID, body).expect(t, http.StatusOK)
		again := s.get(t, "/Users/"+managerID)
		if !reflect.DeepEqual(again, u) {
			t.Errorf("re-sending the same PATCH changed the user (version %v -> %v)", version, again["meta"].(map[string]any)["version"])
		}
	})

	step("create a group with the Tutorial body", func(t *testing.T) {
		var g map[string]any
		groupID, g = s.create(t, "/Groups", itFixture(t, "group_create.json"))
		// The Tutorial's example answer shows "members": []; a group without members has
		// no members attribute (RFC 7643 §2.5: the same state), and Entra reads only the id
		// of a create's answer and never reads members back.
		if m, has := g["members"]; has {
			t.Errorf("members = %#v, want no members attribute", m)
		}
		if g["displayName"] != "Sales Team" || g["externalId"] != "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159" {
			t.Errorf("group = %v", g)
		}
		if meta, _ := g["meta"].(map[string]any); meta["resourceType"] != "Group" {
			t.Errorf("meta = %v", g["meta"])
		}
		if !slices.Contains(g["schemas"].([]any), any(scim.GroupSchema)) {
			t.Errorf("schemas = %v", g["schemas"])
		}
		stored := s.get(t, "/Groups/"+groupID)
		if !reflect.DeepEqual(stored, g) {
			t.Errorf("GET differs from the POST response:\n GET  %v\n POST %v", stored, g)
		}
	})

	step("group lookup excludes members", func(t *testing.T) {
		r := s.do(t, http.MethodGet, "/Groups?excludedAttributes=members&filter=displayName+eq+%22sales+team%22", "")
		r.expect(t, http.StatusOK)
		res := itListResources(t, r.object(t))
		if len(res) != 1 || res[0]["id"] != groupID {
			t.Fatalf("lookup: %s", r.body)
		}
		if _, has := res[0]["members"]; has {
			t.Errorf("members returned although excluded: %s", r.body)
		}
		if _, has := s.get(t, "/Groups/"+groupID+"?excludedAttributes=members")["members"]; has {
			t.Errorf("GET by id returned members although excluded")
		}
	})

	step("create a third user", func(t *testing.T) {
		thirdID, _ = s.create(t, "/Users", `{"schemas":["`+scim.UserSchema+`"],"userName":"AdeleV@contoso.example","externalId":"adele.vance","active":true}`)
	})

	step("add several members in one operation", func(t *testing.T) {
		r := s.do(t, http.MethodPatch, "/Groups/"+groupID, itFixture(t, "group_add_members.json", "U1", userID, "U2", managerID, "U3", thirdID))
		r.expect(t, http.StatusNoContent)
		g := s.get(t, "/Groups/"+groupID)
		if got, want := itMemberIDs(t, g), itSorted(userID, managerID, thirdID); !slices.Equal(got, want) {
			t.Fatalf("members = %v, want %v", got, want)
		}
		for _, id := range []string{userID, managerID, thirdID} {
			if m := itMember(g, id); m["type"] != "User" || m["$ref"] != s.base+"/Users/"+id {
				t.Errorf("member %v lacks type User or its $ref", m)
			}
		}
		groups, _ := s.get(t, "/Users/"+thirdID)["groups"].([]any)
		if len(groups) != 1 || groups[0].(map[string]any)["value"] != groupID {
			t.Errorf("the user's groups = %v, want the group", groups)
		}
	})

	step("Remove members with a value array removes only those", func(t *testing.T) {
		r := s.do(t, http.MethodPatch, "/Groups/"+groupID, itFixture(t, "group_remove_member_default.json", "MEMBER", userID))
		r.expect(t, http.StatusNoContent)
		if got, want := itMemberIDs(t, s.get(t, "/Groups/"+groupID)), itSorted(managerID, thirdID); !slices.Equal(got, want) {
			t.Fatalf("members = %v, want %v", got, want)
		}
	})

	step("remove members[value eq] removes only that one", func(t *testing.T) {
		r := s.do(t, http.MethodPatch, "/Groups/"+groupID, itFixture(t, "group_remove_member_flag.json", "MEMBER", managerID))
		r.expect(t, http.StatusNoContent)
		if got := itMemberIDs(t, s.get(t, "/Groups/"+groupID)); !slices.Equal(got, []string{thirdID}) {
			t.Fatalf("members = %v, want [%s]", got, thirdID)
		}
	})

	step("partial replace of members keeps the others", func(t *testing.T) {
		r := s.do(t, http.MethodPatch, "/Groups/"+groupID, itFixture(t, "group_replace_members_partial.json", "MEMBER", userID))
		r.expect(t, http.StatusNoContent)
		if got, want := itMemberIDs(t, s.get(t, "/Groups/"+groupID)), itSorted(userID, thirdID); !slices.Equal(got, want) {
			t.Fatalf("members = %v, want %v", got, want)
		}
	})

	step("nested group member without type becomes a Group member", func(t *testing.T) {
		nestedID, _ = s.create(t, "/Groups", `{"schemas":["`+scim.GroupSchema+`"],"displayName":"Sales Leads","externalId":"5d3f1ad4-5d3b-4c0e-9b0a-1f0d6c7a9e11"}`)
		s.do(t, http.MethodPatch, "/Groups/"+nestedID, itFixture(t, "group_add_member.json", "MEMBER", thirdID)).expect(t, http.StatusNoContent)
		s.do(t, http.MethodPatch, "/Groups/"+groupID, itFixture(t, "group_add_member.json", "MEMBER", nestedID)).expect(t, http.StatusNoContent)
		g := s.get(t, "/Groups/"+groupID)
		if got, want := itMemberIDs(t, g), itSorted(userID, thirdID, nestedID); !slices.Equal(got, want) {
			t.Fatalf("members = %v, want %v", got, want)
		}
		if m := itMember(g, nestedID); m["type"] != "Group" || m["$ref"] != s.base+"/Groups/"+nestedID {
			t.Errorf("nested member = %v, want type Group and a /Groups $ref", m)
		}
	})

	step("rename a group in both dialects", func(t *testing.T) {
		s.do(t, http.MethodPatch, "/Groups/"+groupID, itPatchBody(`{"op":"Replace","path":"displayName","value":"Sales Team EMEA"}`)).expect(t, http.StatusNoContent)
		if ids := s.queryIDs(t, "/Groups", `displayName eq "sales team emea"`, "excludedAttributes", "members"); !slices.Equal(ids, []string{groupID}) {
			t.Fatalf("lookup by the new name matched %v", ids)
		}
		s.do(t, http.MethodPatch, "/Groups/"+groupID, itPatchBody(`{"op":"replace","value":{"displayName":"Sales Team"}}`)).expect(t, http.StatusNoContent)
		g := s.get(t, "/Groups/"+groupID)
		if g["displayName"] != "Sales Team" {
			t.Errorf("displayName = %v", g["displayName"])
		}
		if got, want := itMemberIDs(t, g), itSorted(userID, thirdID, nestedID); !slices.Equal(got, want) {
			t.Errorf("a rename changed the members: %v, want %v", got, want)
		}
	})

	step("disable and enable with string and JSON booleans", func(t *testing.T) {
		cases := []struct {
			value string
			want  bool
		}{{`"False"`, false}, {`"True"`, true}, {`"false"`, false}, {`true`, true}, {`false`, false}, {`"True"`, true}}
		for _, tc := range cases {
			r := s.do(t, http.MethodPatch, "/Users/"+userID, itPatchBody(`{"op":"Replace","path":"active","value":`+tc.value+`}`))
			r.expect(t, http.StatusOK)
			if got := r.object(t)["active"]; got != tc.want {
				t.Errorf("active %s: the PATCH response shows %#v", tc.value, got)
			}
			if got := s.get(t, "/Users/"+userID)["active"]; got != tc.want {
				t.Errorf("active %s: GET shows %#v, want the JSON boolean %v", tc.value, got, tc.want)
			}
			// A disabled user stays visible to the matching query.
			res := s.query(t, "/Users", url.Values{"filter": {`userName eq "` + userName + `"`}})
			if len(res) != 1 || res[0]["id"] != userID || res[0]["active"] != tc.want {
				t.Errorf("active %s: the userName match returned %v", tc.value, res)
			}
		}
	})

	step("delete a user", func(t *testing.T) {
		s.do(t, http.MethodDelete, "/Users/"+thirdID, "").expect(t, http.StatusNoContent)
		r := s.do(t, http.MethodGet, "/Users/"+thirdID, "")
		itCheckErrorBody(t, r.status, r.header, r.body, http.StatusNotFound, "")
		r = s.do(t, http.MethodDelete, "/Users/"+thirdID, "")
		itCheckErrorBody(t, r.status, r.header, r.body, http.StatusNotFound, "")
		if ids := s.queryIDs(t, "/Users", `userName eq "AdeleV@contoso.example"`); len(ids) != 0 {
			t.Errorf("the deleted user still matches: %v", ids)
		}
		for _, gid := range []string{groupID, nestedID} {
			g := s.get(t, "/Groups/"+gid)
			if itMember(g, thirdID) != nil {
				t.Errorf("the deleted user is still a member of group %s: %v", gid, g["members"])
			}
		}
		if got, want := itMemberIDs(t, s.get(t, "/Groups/"+groupID)), itSorted(userID, nestedID); !slices.Equal(got, want) {
			t.Errorf("members = %v, want %v", got, want)
		}
	})

	step("delete groups", func(t *testing.T) {
		s.do(t, http.MethodDelete, "/Groups/"+nestedID, "").expect(t, http.StatusNoContent)
		r := s.do(t, http.MethodGet, "/Groups/"+nestedID, "")
		itCheckErrorBody(t, r.status, r.header, r.body, http.StatusNotFound, "")
		if got := itMemberIDs(t, s.get(t, "/Groups/"+groupID)); !slices.Equal(got, []string{userID}) {
			t.Errorf("the deleted group is still a member: %v", got)
		}
		s.do(t, http.MethodDelete, "/Groups/"+groupID, "").expect(t, http.StatusNoContent)
		r = s.do(t, http.MethodDelete, "/Groups/"+groupID, "")
		itCheckErrorBody(t, r.status, r.header, r.body, http.StatusNotFound, "")
		if groups, has := s.get(t, "/Users/"+userID)["groups"]; has {
			t.Errorf("the user still lists groups: %v", groups)
		}
		if ids := s.queryIDs(t, "/Groups", `displayName eq "Sales Team"`, "excludedAttributes", "members"); len(ids) != 0 {
			t.Errorf("the deleted group still matches: %v", ids)
		}
	})

	step("outside the base path the next handler answers", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(s.base, "/scim/v2")+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET /: reading the response: %v", err)
		}
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "/scim/v2") {
			t.Errorf("GET / = %d %q, want the site's 404 respond", resp.StatusCode, body)
		}
	})
}

// itWaitAnswered probes the server with a read until one is answered, for at most 5 s.
func itWaitAnswered(t *testing.T, s *itServer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, err := http.NewRequest(http.MethodGet, s.base+"/ServiceProviderConfig", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := s.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not answer after the reload: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createdAfterReload POSTs body to /Users, on a new connection each time, until the answer
// is 201 Created; an answer of the old config (a connection closed unanswered, or 403 from
// the policy the reload replaced) is sent again, anything else fails the test, as does no
// 201 within 5 s.
func createdAfterReload(t *testing.T, s *itServer, body string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.client.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodPost, s.base+"/Users", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
		resp, err := s.client.Do(req)
		status, detail := 0, ""
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status, detail = resp.StatusCode, string(data)
			switch status {
			case http.StatusCreated:
				return
			case http.StatusForbidden:
			default:
				t.Fatalf("POST /Users after the reload: %d %s", status, detail)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reloaded policy did not answer within 5 s: last %d %s (error %v)", status, detail, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tagConfig returns cfg (a Caddy JSON config) with a first route on every HTTP server that
// sets the response header X-Test-Config to tag, so that a test can tell which config
// answered: after caddy.Load returns, Caddy has only begun to shut the old servers down
// (caddyhttp.App.Stop waits for their shutdowns to start, not to finish), and one of them
// may still accept a connection for a moment.
func tagConfig(t *testing.T, cfg []byte, tag string) []byte {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(cfg, &v); err != nil {
		t.Fatal(err)
	}
	apps, _ := v["apps"].(map[string]any)
	httpApp, _ := apps["http"].(map[string]any)
	servers, _ := httpApp["servers"].(map[string]any)
	if len(servers) == 0 {
		t.Fatal("tagConfig: the config has no HTTP servers")
	}
	for _, srv := range servers {
		srv := srv.(map[string]any)
		routes, _ := srv["routes"].([]any)
		tagRoute := map[string]any{"handle": []any{map[string]any{
			"handler": "headers", "response": map[string]any{"set": map[string]any{"X-Test-Config": []any{tag}}},
		}}}
		srv["routes"] = append([]any{tagRoute}, routes...)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// itWaitConfig waits until the config tagged tag (see tagConfig) answers new connections:
// several in a row, since the old config's server may still accept one for a moment after
// the new one answered (and then close it unanswered: a test's next request gets EOF).
func itWaitConfig(t *testing.T, s *itServer, tag string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	inARow := 0
	for {
		s.client.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodGet, s.base+"/ServiceProviderConfig", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := s.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Test-Config") == tag {
				if inARow++; inARow == 5 {
					s.client.CloseIdleConnections()
					return
				}
				continue
			}
		}
		inARow = 0
		if time.Now().After(deadline) {
			t.Fatalf("the config %q did not answer after the reload (last error %v)", tag, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIntegrationReload reloads the running config in-process, as `caddy reload` does: the
// new config is provisioned while the old one still holds the store, then the old one is
// cleaned up. The store must stay open, writable and hold its data.
func TestIntegrationReload(t *testing.T) {
	s := itStartCaddy(t)
	beforeID, _ := s.create(t, "/Users", `{"userName":"before-reload@contoso.example"}`)

	// The same config without force is no change for Caddy; with force it is a reload.
	for _, force := range []bool{false, true, true} {
		if err := caddy.Load(s.cfgJSON, force); err != nil {
			t.Fatalf("reload (force=%v): %v", force, err)
		}
		// A keep-alive connection to the old server may be closed by its graceful
		// shutdown after Load returns; what is tested here is the store, so start afresh.
		s.client.CloseIdleConnections()
		s.client.Transport = &http.Transport{}
	}
	// A connection the old server accepted while it shut down is closed unanswered (the
	// request never reaches a handler): wait until a probe is answered by the new one.
	itWaitAnswered(t, s)

	afterID, _ := s.create(t, "/Users", `{"userName":"after-reload@contoso.example"}`)
	s.do(t, http.MethodPatch, "/Users/"+beforeID, itPatchBody(`{"op":"Replace","path":"displayName","value":"Written after the reload"}`)).expect(t, http.StatusOK)
	if got := s.get(t, "/Users/"+beforeID)["displayName"]; got != "Written after the reload" {
		t.Errorf("displayName = %v", got)
	}
	for name, id := range map[string]string{"before-reload@contoso.example": beforeID, "after-reload@contoso.example": afterID} {
		if ids := s.queryIDs(t, "/Users", `userName eq "`+name+`"`); !slices.Equal(ids, []string{id}) {
			t.Errorf("%s matched %v, want [%s]", name, ids, id)
		}
	}

	// Stopping Caddy releases the store: the file can be opened again.
	s.stop(t)
	st, err := store.Open(filepath.Join(s.dataDir, storeFileName), store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("the store is still held after Caddy stopped: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
