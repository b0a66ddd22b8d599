package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// allowAllPolicy lets every change through; leavePolicy takes the users of
// leave.example out of scope and lets no deactivation through (its brake: none an hour).
const (
	allowAllPolicy = "package scimgate\n\nimport rego.v1\n\ndefault decision := {\"allow\": true}\n"
	leavePolicy    = `package scimgate

import rego.v1

default decision := {"allow": true}

decision := {"allow": false, "reasons": ["no deactivations allowed"]} if "deactivate" in input.events

decision := {"allow": true, "skip": true} if {
	not "deactivate" in input.events
	endswith(input.resource.userName, "@leave.example")
}
`
)

func writePolicyDir(t *testing.T, rego string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(rego), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitCalls waits until app has at least n calls that f selects, for at most 20 s.
func waitCalls(t *testing.T, app *peopleApp, n int, f func(peopleCall) bool) []peopleCall {
	t.Helper()
	for i := 0; ; i++ {
		calls := app.callsMatching(f)
		if len(calls) >= n {
			return calls
		}
		if i == 2000 {
			t.Fatalf("%d calls after 20 s, want %d: %+v", len(calls), n, calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRefusedReloadKeepsTheWorker: a reload the brake refuses leaves the config in force
// serving, and its queued changes are delivered the way it says (its target URL), not the
// refused config's. Before, the refused config's engine took the outbox worker over while
// it started and kept it after Caddy threw the config away: queued changes went to the
// refused config's app.
func TestRefusedReloadKeepsTheWorker(t *testing.T) {
	appA, appB := startPeopleApp(t), startPeopleApp(t)
	allow := writePolicyDir(t, allowAllPolicy)
	o := rigOptions{tag: "a", appURL: appA.url, delivery: "queued", policy: allow}
	r := startReloadRig(t, o)
	for _, n := range []string{"ann@leave.example", "ben@leave.example"} {
		r.create(t, "/Users", `{"userName":"`+n+`"}`)
	}
	waitCalls(t, appA, 2, func(c peopleCall) bool { return c.Method == http.MethodPost })

	refused := o
	refused.tag, refused.appURL, refused.policy = "b", appB.url, writePolicyDir(t, leavePolicy)
	err := r.reload(t, refused)
	if err == nil || !strings.Contains(err.Error(), "refusing the reload") {
		t.Fatalf("the reload past the brake: %v", err)
	}
	itWaitConfig(t, r.itServer, "a")
	r.create(t, "/Users", `{"userName":"cy@contoso.example"}`)
	for i := 0; len(appA.callsMatching(func(c peopleCall) bool { return c.Handle == "cy@contoso.example" })) == 0; i++ {
		if calls := appB.callsMatching(func(peopleCall) bool { return true }); len(calls) != 0 {
			t.Fatalf("the refused config's app got calls: %+v", calls)
		}
		if i == 2000 {
			t.Fatal("the change queued after the refused reload was not delivered in 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestThrownAwayConfigHandsTheWorkerBack: a config that started on the open store and was
// then thrown away (Caddy cleans up a config whose other apps did not start) hands the
// outbox worker back to the config in force, which delivers with its own target.
func TestThrownAwayConfigHandsTheWorkerBack(t *testing.T) {
	appA, appB := startPeopleApp(t), startPeopleApp(t)
	mapFile := filepath.Join(t.TempDir(), "people.json")
	if err := os.WriteFile(mapFile, []byte(peopleMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	target := func(url string) *TargetConfig {
		return &TargetConfig{Name: "people", URL: url, Mapping: mapFile, Delivery: "queued", MaxRetries: -1,
			Queue: &QueueConfig{RetryMin: caddy.Duration(10 * time.Millisecond), RetryMax: caddy.Duration(50 * time.Millisecond)}}
	}
	old := newTestGateway(t, func(g *Handler) { g.Target = target(appA.url) })
	thrown := newTestGateway(t, func(g *Handler) { g.DataDir, g.Target = old.DataDir, target(appB.url) })
	if thrown.engine.Worker() != old.engine.Worker() {
		t.Fatal("a second worker for the same target")
	}
	if err := thrown.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if w := serve(t, old, http.MethodPost, "/scim/v2/Users", `{"userName":"dee@contoso.example"}`); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	for i := 0; len(appA.callsMatching(func(c peopleCall) bool { return c.Handle == "dee@contoso.example" })) == 0; i++ {
		if calls := appB.callsMatching(func(peopleCall) bool { return true }); len(calls) != 0 {
			t.Fatalf("the thrown-away config's app got calls: %+v", calls)
		}
		if i == 2000 {
			t.Fatal("the change was not delivered in 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFailedReloadsKeepServing: reloads that fail (a mapping that is not JSON, a policy
// that does not compile, a data_dir whose store cannot be opened) name the problem, and
// the config in force keeps serving writes, which reach its app.
func TestFailedReloadsKeepServing(t *testing.T) {
	app := startPeopleApp(t)
	o := rigOptions{tag: "ok", appURL: app.url, delivery: "queued"}
	r := startReloadRig(t, o)
	good, err := os.ReadFile(r.mapping)
	if err != nil {
		t.Fatal(err)
	}
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		prep func(*rigOptions)
		want string
	}{
		{"mapping", func(*rigOptions) {
			if err := os.WriteFile(r.mapping, []byte(`{"version": 1, "users": {`), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "people.json"},
		{"policy", func(n *rigOptions) {
			n.policy = writePolicyDir(t, "package scimgate\n\ndecision := {\"allow\": true\n")
		}, "policy.rego"},
		{"store", func(n *rigOptions) { n.dataDir = notADir }, notADir},
	}
	for i, c := range cases {
		next := o
		next.tag = c.name
		c.prep(&next)
		err := r.reload(t, next)
		t.Logf("reload with a bad %s: %v", c.name, err)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("reload with a bad %s: %v, want an error naming %s", c.name, err, c.want)
		}
		if err := os.WriteFile(r.mapping, good, 0o600); err != nil {
			t.Fatal(err)
		}
		itWaitConfig(t, r.itServer, "ok")
		user := fmt.Sprintf("kept%d@contoso.example", i)
		r.create(t, "/Users", `{"userName":"`+user+`"}`)
		waitCalls(t, app, 1, func(c peopleCall) bool { return c.Handle == user })
	}
}
