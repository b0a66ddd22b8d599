package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/teststore"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/legacy"
	"github.com/scimgate/scimgate/caddymodule/mapping"
	"github.com/scimgate/scimgate/caddymodule/policy"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
	"github.com/scimgate/scimgate/demoapp"
)

const demoKey = "reconcile-demo-key-0123456789"

// demo is the demo app (demoapp) served on 127.0.0.1, and a client that changes it behind
// the gateway's back (as an admin of the app would).
type demo struct {
	t   testing.TB
	url string
	// intercept, when set, sees each request first and answers it by returning true.
	intercept atomic.Value
}

// startDemo runs the demo legacy app on a loopback port for the test.
func startDemo(t testing.TB) *demo {
	t.Helper()
	a := &demoapp.App{APIKey: demoKey, Name: "reconcile-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Cleanup() })
	d := &demo{t: t}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, _ := d.intercept.Load().(func(http.ResponseWriter, *http.Request) bool); f != nil && f(w, r) {
			return
		}
		_ = a.ServeHTTP(w, r, nil)
	}))
	t.Cleanup(srv.Close)
	d.url = srv.URL
	return d
}

// interceptPages makes f answer (or, returning false, pass on) the app's account list
// requests, whose pages it makes 10 accounts long (the mapping asks for 200).
func (d *demo) interceptPages(f func(w http.ResponseWriter, r *http.Request) bool) {
	d.intercept.Store(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || r.URL.Path != "/api/v1/accounts" {
			return false
		}
		q := r.URL.Query()
		q.Set("limit", "10")
		r.URL.RawQuery = q.Encode()
		return f(w, r)
	})
}

// call makes one call to the app and fails the test unless it answers want.
func (d *demo) call(method, path, body string, want int) []byte {
	d.t.Helper()
	req, err := http.NewRequest(method, d.url+path, strings.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", demoKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		d.t.Fatalf("%s %s: %d %s (want %d)", method, path, resp.StatusCode, out, want)
	}
	return out
}

// state is everything the app holds.
func (d *demo) state() demoapp.Snapshot {
	d.t.Helper()
	s, err := demoapp.FetchState(http.DefaultClient, d.url, demoKey)
	if err != nil {
		d.t.Fatal(err)
	}
	return s
}

// rig is a gateway's directory and engine with the demo app as its target, through the
// repository's mappings/demoapp.json.
type rig struct {
	t      testing.TB
	app    *demo
	store  *store.Store
	j      *journal.Journal
	shared *provision.Shared
	target *provision.Target
	eng    *provision.Engine
	// plain is an engine of the same store without a target: a change it makes never
	// reaches the app (as before the target was configured).
	plain *provision.Engine
}

func newRig(t testing.TB) *rig {
	t.Helper()
	return newPolicyRig(t, nil)
}

// newPolicyRig is newRig with a policy deciding every change (nil: none).
func newPolicyRig(t testing.TB, pol *policy.Engine) *rig {
	t.Helper()
	app := startDemo(t)
	dir := t.TempDir()
	s := teststore.Open(t, dir)
	j, err := journal.Open(s.DB(), journal.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = j.Close()
		_ = s.Close()
	})
	m, err := mapping.Load(filepath.Join("..", "..", "mappings", "demoapp.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := legacy.New(legacy.Options{BaseURL: app.url, Timeout: 5 * time.Second, MaxConcurrent: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	r := &rig{t: t, app: app, store: s, j: j, shared: provision.NewShared(nil),
		target: &provision.Target{Name: "demo", Mapping: m, Client: c, Headers: http.Header{"X-Api-Key": {demoKey}}}}
	if r.eng, err = provision.New(provision.Config{Store: s, Journal: j, Shared: r.shared, Target: r.target, Policy: pol}); err != nil {
		t.Fatal(err)
	}
	if r.plain, err = provision.New(provision.Config{Store: s, Journal: j, Shared: r.shared}); err != nil {
		t.Fatal(err)
	}
	return r
}

// reconciler returns a reconciler of the rig's target.
func (r *rig) reconciler(opts Options) *Reconciler {
	r.t.Helper()
	rc, err := New(r.store, r.j, r.eng, r.target, opts, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	return rc
}

var entra = provision.Request{ID: "test", Client: "entra"}

// apply makes one change through eng, as Entra would, and fails the test on an error.
func (r *rig) apply(eng *provision.Engine, op *provision.Op) string {
	r.t.Helper()
	res := eng.Apply(entra, op)
	if res.Err != nil {
		r.t.Fatalf("%s %s: %v", op.Action, op.Type, res.Err)
	}
	return res.ID
}

func (r *rig) create(eng *provision.Engine, typ string, doc map[string]any) string {
	r.t.Helper()
	p, err := scim.PrepareResource(typ, doc)
	if err != nil {
		r.t.Fatal(err)
	}
	return r.apply(eng, &provision.Op{Action: change.ActionCreate, Type: typ, Resource: p, Status: http.StatusCreated})
}

// user is a user's SCIM body.
func user(name, title string, active bool) map[string]any {
	return map[string]any{
		"schemas":  []any{scim.UserSchema},
		"userName": name + "@example.com",
		"active":   active,
		"name":     map[string]any{"givenName": strings.ToUpper(name[:1]) + name[1:], "familyName": "Test"},
		"emails":   []any{map[string]any{"type": "work", "value": name + "@example.com", "primary": true}},
		"title":    title,
	}
}

func group(name string, members ...string) map[string]any {
	ms := make([]any, len(members))
	for i, m := range members {
		ms[i] = map[string]any{"value": m}
	}
	return map[string]any{"schemas": []any{scim.GroupSchema}, "displayName": name, "members": ms}
}

// patch changes a resource through eng with SCIM PATCH operations.
func (r *rig) patch(eng *provision.Engine, typ, id, ops string) {
	r.t.Helper()
	var body map[string]any
	if err := json.Unmarshal([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":`+ops+`}`), &body); err != nil {
		r.t.Fatal(err)
	}
	p, err := scim.ParsePatch(body)
	if err != nil {
		r.t.Fatal(err)
	}
	r.apply(eng, &provision.Op{Action: change.ActionPatch, Type: typ, ID: id, Patch: p, Status: http.StatusOK})
}

func (r *rig) nativeID(typ, id string) string {
	r.t.Helper()
	var n string
	err := r.store.View(func(tx *store.Tx) error {
		var err error
		n, err = tx.NativeID(r.target.IDMapKey(typ), id)
		return err
	})
	if err != nil {
		r.t.Fatalf("native id of %s %s: %v", typ, id, err)
	}
	return n
}

// records returns the journal's records with the given request id.
func (r *rig) records(requestID string) []journal.Record {
	r.t.Helper()
	var buf bytes.Buffer
	if _, err := r.j.Export(context.Background(), &buf, journal.Query{}, journal.FormatJSONL); err != nil {
		r.t.Fatal(err)
	}
	var out []journal.Record
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var line struct {
			Record *journal.Record `json:"record"`
		}
		if err := dec.Decode(&line); err != nil {
			r.t.Fatal(err)
		}
		if line.Record != nil && line.Record.RequestID == requestID {
			out = append(out, *line.Record)
		}
	}
	return out
}

// findingKey names a finding in tests: kind, type, subject and, for members, the member.
func findingKey(f Finding) string {
	k := fmt.Sprintf("%s %s %s", f.Kind, f.ResourceType, f.Subject)
	if f.Member != nil {
		k += " member " + f.Member.Subject
	}
	return k
}
