package caddymodule

// The reload rig: a real Caddy in this process, configured in JSON (a reload is
// caddy.Load, what POST /load and `caddy reload` do), in front of peopleApp, a legacy app
// on 127.0.0.1 of its own shape (not the demo app's): people under /v2/people, the native
// id in result.uid, updates by PUT, an API key header, and a count of every call it
// applied, so that a test can tell a change applied twice from one applied once.
//
// Caddy's running configuration is process-global: the tests using the rig must not call
// t.Parallel.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/internal/testnet"
)

// peopleMapping maps users onto peopleApp; peopleMappingDept (the mapping after an edit)
// sends a new field, the user's displayName as person.dept.
const peopleMapping = `{
  "version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/v2/people?handle={userName}", "id": "items.0.uid"},
    "events": {
      "create": {"method": "POST", "path": "/v2/people", "id": "result.uid",
        "body": {"person.handle": {"from": "userName", "required": true}, "person.title": {"from": "title", "transforms": [{"default": ""}]}}},
      "update": {"method": "PUT", "path": "/v2/people/{id}", "send": "all",
        "body": {"person.handle": {"from": "userName"}, "person.title": {"from": "title", "transforms": [{"default": ""}]}}},
      "delete": {"method": "DELETE", "path": "/v2/people/{id}"}
    }
  }
}`

var peopleMappingDept = strings.Replace(peopleMapping,
	`"person.title": {"from": "title", "transforms": [{"default": ""}]}}},
      "update"`,
	`"person.title": {"from": "title", "transforms": [{"default": ""}]}, "person.dept": {"from": "displayName", "transforms": [{"default": ""}]}}},
      "update"`, 1)

// peopleCall is one call peopleApp applied.
type peopleCall struct {
	Method, Path, Handle, Title, Dept, Key string
	HasDept                                bool
}

// peopleApp is the rig's legacy app. Calls are applied in full before they are answered.
type peopleApp struct {
	url   string
	key   atomic.Value // string: the X-People-Key it accepts ("" accepts any)
	delay atomic.Int64 // nanoseconds each write waits before it is applied
	// started is told (without blocking) each write that arrives, before its delay.
	started chan string

	mu     sync.Mutex
	next   int
	people map[string]map[string]string // uid -> handle, title, dept
	calls  []peopleCall
}

func startPeopleApp(t *testing.T) *peopleApp {
	t.Helper()
	a := &peopleApp{people: map[string]map[string]string{}, started: make(chan string, 1024)}
	a.key.Store("")
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

func (a *peopleApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if want := a.key.Load().(string); want != "" && r.Header.Get("X-People-Key") != want {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"problem":"bad key"}`)
		return
	}
	var body struct {
		Person map[string]string `json:"person"`
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	if r.Method != http.MethodGet {
		select {
		case a.started <- r.Method + " " + r.URL.Path:
		default:
		}
		if d := a.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	uid := strings.TrimPrefix(r.URL.Path, "/v2/people/")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v2/people":
		items := []map[string]string{}
		for id, p := range a.people {
			if p["handle"] == r.URL.Query().Get("handle") {
				items = append(items, map[string]string{"uid": id})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
		return
	case r.Method == http.MethodPost && r.URL.Path == "/v2/people":
		a.next++
		uid = fmt.Sprintf("P%04d", a.next)
		a.people[uid] = map[string]string{}
	case (r.Method == http.MethodPut || r.Method == http.MethodDelete) && a.people[uid] != nil:
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"problem":"no such person"}`)
		return
	}
	dept, hasDept := body.Person["dept"]
	a.calls = append(a.calls, peopleCall{Method: r.Method, Path: r.URL.Path, Handle: body.Person["handle"], Title: body.Person["title"],
		Dept: dept, HasDept: hasDept, Key: r.Header.Get("X-People-Key")})
	if r.Method == http.MethodDelete {
		delete(a.people, uid)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	for k, v := range body.Person {
		a.people[uid][k] = v
	}
	if r.Method == http.MethodPost {
		w.WriteHeader(http.StatusCreated)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"result": map[string]string{"uid": uid}})
}

// callsMatching returns the calls that f selects.
func (a *peopleApp) callsMatching(f func(peopleCall) bool) []peopleCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []peopleCall
	for _, c := range a.calls {
		if f(c) {
			out = append(out, c)
		}
	}
	return out
}

// reloadRig is a Caddy serving one gateway, reloaded with configs reloadRig.config builds.
type reloadRig struct {
	*itServer
	mapping string // the mapping file the configs name
}

// rigOptions are what a test changes between configs.
type rigOptions struct {
	tag      string            // X-Test-Config of the config's answers (see tagConfig)
	appURL   string            // the target's URL
	delivery string            // immediate (""), queued or fallback
	headers  map[string]string // the target's headers
	tokens   []Token           // default: entra with testToken
	policy   string            // a policy directory, "" for none
	journal  map[string]any    // the journal block
	dataDir  string            // default: the rig's
	extra    map[string]any    // more handler fields
}

func startReloadRig(t *testing.T, o rigOptions) *reloadRig {
	t.Helper()
	addr := testnet.FreeAddr(t)
	r := &reloadRig{
		itServer: &itServer{
			base:    "http://" + addr + "/scim/v2",
			dataDir: t.TempDir(),
			client:  &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}},
		},
		mapping: filepath.Join(t.TempDir(), "people.json"),
	}
	if err := os.WriteFile(r.mapping, []byte(peopleMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(r.config(t, o), true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() { r.stop(t) })
	itWaitConfig(t, r.itServer, o.tag)
	return r
}

// config is the rig's JSON config with o.
func (r *reloadRig) config(t *testing.T, o rigOptions) []byte {
	t.Helper()
	tokens := o.tokens
	if tokens == nil {
		tokens = []Token{{Name: "entra", Value: testToken}}
	}
	dataDir := o.dataDir
	if dataDir == "" {
		dataDir = r.dataDir
	}
	target := map[string]any{"name": "people", "url": o.appURL, "mapping": r.mapping, "timeout": "10s", "max_retries": -1}
	if o.delivery != "" {
		target["delivery"] = o.delivery
		target["queue"] = map[string]any{"retry_min": "10ms", "retry_max": "50ms"}
	}
	if o.headers != nil {
		target["headers"] = o.headers
	}
	gw := map[string]any{"handler": "scim_gateway", "tokens": tokens, "data_dir": dataDir, "target": target}
	if o.policy != "" {
		gw["policy"] = map[string]any{"dir": o.policy, "timeout": "10s"}
	}
	if o.journal != nil {
		gw["journal"] = o.journal
	}
	for k, v := range o.extra {
		gw[k] = v
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(r.base, "http://"), "/scim/v2")
	cfg := map[string]any{
		"admin":   map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"writer": map[string]any{"output": "discard"}}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"rig": map[string]any{
			"listen":          []string{addr},
			"automatic_https": map[string]any{"disable": true},
			"routes": []any{map[string]any{"handle": []any{
				map[string]any{"handler": "headers", "response": map[string]any{"set": map[string]any{
					"X-Test-Config": []string{o.tag}, "X-Request-Id": []string{"{http.request.uuid}"}}}},
				gw,
			}}},
		}}}},
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// reload applies the config with o as `caddy reload` does (forced: the tests change files
// the JSON names, which Caddy would not notice), and waits for it to answer when it loaded.
func (r *reloadRig) reload(t *testing.T, o rigOptions) error {
	t.Helper()
	err := caddy.Load(r.config(t, o), true)
	if err == nil {
		itWaitConfig(t, r.itServer, o.tag)
	}
	return err
}
