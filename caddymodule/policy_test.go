package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/policytest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/demoapp"
	"github.com/scimgate/scimgate/internal/testnet"
)

const policyDemoKey = "policy-demo-key-0123456789abcdef"

// policyRig is a real Caddy running the gateway (with a policy) in front of the demo app.
type policyRig struct {
	*itServer
	app       string // the demo app's base URL
	policyDir string
	cfgJSON   []byte
}

// copyShippedPolicies copies the repository's Rego policies (without their tests) into a
// new directory, with config as the guardrails' configuration (data.scimgate.config), as a
// user adapting the shipped policies would.
func copyShippedPolicies(t *testing.T, config string) string {
	t.Helper()
	return policytest.CopyShipped(t, config)
}

// writePolicyConfig writes the guardrails' configuration into a policy directory.
func writePolicyConfig(t *testing.T, dir, config string) {
	t.Helper()
	policytest.WriteConfig(t, dir, config)
}

// startPolicyRig runs testdata/policy/Caddyfile with the policies in policyDir, in front
// of the demo app through the repository's mapping.
func startPolicyRig(t *testing.T, policyDir string) *policyRig {
	t.Helper()
	return startPolicyRigWith(t, policyDir, "", "")
}

// startPolicyRigWith is startPolicyRig with another legacy app (appURL, "" for the demo
// app in the same Caddy) and mapping file ("" for mappings/demoapp.json).
func startPolicyRigWith(t *testing.T, policyDir, appURL, mappingFile string) *policyRig {
	t.Helper()
	a := testnet.FreeAddrs(t, 2)
	addr, demo := a[0], a[1]
	r := &policyRig{
		itServer: &itServer{
			base:    "http://" + addr + "/scim/v2",
			dataDir: t.TempDir(),
			client:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
		},
		app:       "http://" + demo,
		policyDir: policyDir,
	}
	t.Setenv("SCIMGATE_IT_ADDR", addr)
	t.Setenv("SCIMGATE_IT_DEMO_ADDR", demo)
	t.Setenv("SCIMGATE_IT_DEMO_NAME", strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	t.Setenv("SCIMGATE_IT_DEMO_KEY", policyDemoKey)
	t.Setenv("SCIMGATE_IT_DATA", r.dataDir)
	t.Setenv("SCIMGATE_IT_STORAGE", t.TempDir())
	t.Setenv("SCIMGATE_IT_TOKEN", testToken)
	t.Setenv("SCIMGATE_IT_POLICY", policyDir)
	if os.Getenv("SCIMGATE_IT_POLICY_TIMEOUT") == "" {
		// These tests check what a decision does, not how fast it is made: under the race
		// detector on a loaded CI machine a decision takes longer than the default 100ms.
		t.Setenv("SCIMGATE_IT_POLICY_TIMEOUT", "10s")
	}
	if appURL == "" {
		appURL = r.app
	}
	if mappingFile == "" {
		mappingFile = filepath.Join("..", "mappings", "demoapp.json")
	}
	t.Setenv("SCIMGATE_IT_APP_URL", appURL)
	t.Setenv("SCIMGATE_IT_MAPPING", mappingFile)
	r.cfgJSON = adaptCaddyfile(t, filepath.Join("testdata", "policy", "Caddyfile"))
	if err := caddy.Load(r.cfgJSON, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// adaptCaddyfile adapts a Caddyfile to JSON (placeholders {$...} are resolved now).
func adaptCaddyfile(t *testing.T, path string) []byte {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting %s: %v", path, err)
	}
	return cfg
}

// state is the demo app's whole state.
func (r *policyRig) state(t *testing.T) demoapp.Snapshot {
	t.Helper()
	s, err := demoapp.FetchState(r.client, r.app, policyDemoKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// account returns the demo app's account with login, or nil.
func (r *policyRig) account(t *testing.T, login string) *demoapp.Account {
	t.Helper()
	for _, a := range r.state(t).Accounts {
		if strings.EqualFold(a.Login, login) {
			return &a
		}
	}
	return nil
}

// team returns the demo app's team named name and the logins of its members, or nil.
func (r *policyRig) team(t *testing.T, name string) (*demoapp.Team, []string) {
	t.Helper()
	s := r.state(t)
	logins := map[int64]string{}
	for _, a := range s.Accounts {
		logins[a.ID] = a.Login
	}
	for _, tm := range s.Teams {
		if tm.Name != name {
			continue
		}
		var members []string
		for _, m := range s.Memberships {
			if m.TeamID == tm.ID {
				members = append(members, logins[m.AccountID])
			}
		}
		slices.Sort(members)
		return &tm, members
	}
	return nil, nil
}

// records returns the journal's records, read from the store Caddy holds open (found in
// the store pool, as the admin API finds it).
func (r *policyRig) records(t *testing.T) []journal.Record {
	t.Helper()
	path := mustAbs(t, filepath.Join(r.dataDir, storeFileName))
	var h *storeHandle
	stores.Range(func(key, value any) bool {
		if key == path {
			h, _ = value.(*storeHandle)
		}
		return h == nil
	})
	if h == nil {
		t.Fatalf("the store %s is not open", path)
	}
	return journalRecords(t, h.journal)
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// lastRecord is the newest record of the journal for a SCIM id (or any, for "").
func (r *policyRig) lastRecord(t *testing.T, scimID string) journal.Record {
	t.Helper()
	recs := r.records(t)
	for i := len(recs) - 1; i >= 0; i-- {
		if scimID == "" || recs[i].SCIMID == scimID {
			return recs[i]
		}
	}
	t.Fatalf("no record for %q", scimID)
	return journal.Record{}
}

// guardrailConfig is the guardrails' configuration the effect tests run with.
const guardrailConfig = `{
  "defaults": {
    "required_attributes": {"User": ["userName", "emails"], "Group": ["displayName"]},
    "privileged_groups": {"names": ["Domain Admins"], "patterns": ["(?i)^tier0-"], "effect": "deny"},
    "break_glass": {"patterns": ["(?i)^break-?glass"]},
    "mass_deprovision": {"max_per_hour": 3}
  },
  "targets": {
    "demo": {
      "scoping": {"enabled": true, "domains": ["contoso.example"], "on_exit": "deactivate"},
      "attribute_allowlist": {
        "enabled": true,
        "User": ["userName", "active", "externalId", "displayName", "name.givenName", "name.familyName",
                 "emails.value", "emails.type", "emails.primary",
                 "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"],
        "Group": ["displayName", "externalId", "members"]
      }
    }
  }
}`

// policyUser is an Entra-style user body.
func policyUser(userName, title string) string {
	return `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		"userName":"` + userName + `","active":true,"displayName":"D ` + userName + `","title":"` + title + `",
		"name":{"givenName":"Given","familyName":"Family"},
		"emails":[{"primary":true,"type":"work","value":"` + userName + `"}],
		"phoneNumbers":[{"type":"work","value":"+1 555 0100"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales"}}`
}

// TestPolicyEffects drives each effect of the shipped guardrails end to end: through a
// real Caddy, into the real demo app, with the journal checked.
func TestPolicyEffects(t *testing.T) {
	r := startPolicyRig(t, copyShippedPolicies(t, guardrailConfig))

	t.Run("allow with dropped attributes", func(t *testing.T) {
		id, _ := r.create(t, "/Users", policyUser("alice@contoso.example", "Chief Executive"))
		a := r.account(t, "alice@contoso.example")
		if a == nil {
			t.Fatal("alice has no account in the app")
		}
		if a.Org.Title != "" || a.Contact.Phone != "" {
			t.Errorf("dropped attributes reached the app: title %q phone %q", a.Org.Title, a.Contact.Phone)
		}
		if a.Org.Dept != "Sales" || a.Person.First != "Given" {
			t.Errorf("allowed attributes missing in the app: %+v", a)
		}
		u := r.get(t, "/Users/"+id)
		if u["title"] != "Chief Executive" || u["phoneNumbers"] == nil {
			t.Errorf("the directory lost what Entra wrote: title %v phoneNumbers %v", u["title"], u["phoneNumbers"])
		}
		rec := r.lastRecord(t, id)
		if rec.Outcome != change.Applied || rec.Decision == nil || !rec.Decision.Allow ||
			!slices.Contains(rec.Decision.DroppedAttributes, "title") || !slices.Contains(rec.Decision.DroppedAttributes, "phoneNumbers") {
			t.Errorf("journal: outcome %s decision %+v", rec.Outcome, rec.Decision)
		}
		// A change of a dropped attribute alone sends nothing to the app.
		before := r.account(t, "alice@contoso.example")
		r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"replace","path":"title","value":"CEO"}`)).expect(t, http.StatusOK)
		if after := r.account(t, "alice@contoso.example"); after.UpdatedAt != before.UpdatedAt || after.Org.Title != "" {
			t.Errorf("a change of a dropped attribute reached the app: %+v", after)
		}
		if got := r.get(t, "/Users/"+id)["title"]; got != "CEO" {
			t.Errorf("directory title = %v", got)
		}
	})

	t.Run("deny: break-glass deactivation", func(t *testing.T) {
		id, _ := r.create(t, "/Users", policyUser("breakglass@contoso.example", ""))
		resp := r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"Replace","path":"active","value":"False"}`))
		body := itCheckErrorBody(t, resp.status, resp.header, resp.body, http.StatusForbidden, "")
		if d, _ := body["detail"].(string); !strings.Contains(d, "denied by policy") || !strings.Contains(strings.ToLower(d), "break") {
			t.Errorf("detail = %q, want the policy's reason", d)
		}
		if a := r.account(t, "breakglass@contoso.example"); a == nil || a.Locked {
			t.Errorf("the app's account changed: %+v", a)
		}
		if active := r.get(t, "/Users/"+id)["active"]; active != true {
			t.Errorf("the directory changed: active = %v", active)
		}
		rec := r.lastRecord(t, id)
		if rec.Outcome != change.Denied || rec.Status != http.StatusForbidden || rec.Decision == nil || rec.Decision.Allow || len(rec.Decision.Reasons) == 0 {
			t.Errorf("journal: %+v decision %+v", rec, rec.Decision)
		}
		r.do(t, http.MethodDelete, "/Users/"+id, "").expect(t, http.StatusForbidden)
		if r.account(t, "breakglass@contoso.example") == nil {
			t.Error("the break-glass account was deleted from the app")
		}
	})

	t.Run("deny: privileged group", func(t *testing.T) {
		resp := r.do(t, http.MethodPost, "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Domain Admins"}`)
		itCheckErrorBody(t, resp.status, resp.header, resp.body, http.StatusForbidden, "")
		if tm, _ := r.team(t, "Domain Admins"); tm != nil {
			t.Error("the privileged group reached the app")
		}
		if ids := r.queryIDs(t, "/Groups", `displayName eq "Domain Admins"`); len(ids) != 0 {
			t.Errorf("the directory holds the denied group: %v", ids)
		}
		// Renaming an ordinary group into a privileged name is denied too.
		gid, _ := r.create(t, "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Ops"}`)
		resp = r.do(t, http.MethodPatch, "/Groups/"+gid, itPatchBody(`{"op":"Replace","path":"displayName","value":"tier0-ops"}`))
		itCheckErrorBody(t, resp.status, resp.header, resp.body, http.StatusForbidden, "")
		if tm, _ := r.team(t, "Ops"); tm == nil {
			t.Error("the group's team was renamed or lost")
		}
	})

	t.Run("deny: required attribute", func(t *testing.T) {
		resp := r.do(t, http.MethodPost, "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"noemail@contoso.example"}`)
		body := itCheckErrorBody(t, resp.status, resp.header, resp.body, http.StatusForbidden, "")
		if d, _ := body["detail"].(string); !strings.Contains(d, "emails") {
			t.Errorf("detail = %q, want it to name the missing attribute", d)
		}
		if r.account(t, "noemail@contoso.example") != nil {
			t.Error("the app got the account")
		}
	})

	t.Run("skip out of scope, then in, out and in again", func(t *testing.T) {
		id, _ := r.create(t, "/Users", policyUser("bob@fabrikam.example", ""))
		if r.account(t, "bob@fabrikam.example") != nil {
			t.Fatal("an out-of-scope user reached the app")
		}
		rec := r.lastRecord(t, id)
		if rec.Outcome != change.Skipped || rec.Status != http.StatusCreated || rec.Decision == nil || !rec.Decision.Skip || len(rec.Decision.Reasons) == 0 {
			t.Errorf("journal: %+v decision %+v", rec, rec.Decision)
		}
		// An out-of-scope member of a group is left out of the app's team, and the
		// membership stays in the directory.
		gid, _ := r.create(t, "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Sales"}`)
		carol, _ := r.create(t, "/Users", policyUser("carol@contoso.example", ""))
		r.do(t, http.MethodPatch, "/Groups/"+gid, itPatchBody(`{"op":"Add","path":"members","value":[{"value":"`+id+`"},{"value":"`+carol+`"}]}`)).expect(t, http.StatusNoContent)
		if _, members := r.team(t, "Sales"); !slices.Equal(members, []string{"carol@contoso.example"}) {
			t.Errorf("team members = %v, want only the in-scope carol", members)
		}
		if got := itSorted(itMemberIDs(t, r.get(t, "/Groups/"+gid))...); !slices.Equal(got, itSorted(id, carol)) {
			t.Errorf("directory members = %v", got)
		}
		rec = r.lastRecord(t, gid)
		if rec.Decision == nil || !slices.Contains(rec.Decision.DroppedMembers, id) {
			t.Errorf("journal decision %+v, want %s dropped", rec.Decision, id)
		}

		// Into scope: the account is created at that moment.
		r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"Replace","path":"userName","value":"bob@contoso.example"}`)).expect(t, http.StatusOK)
		a := r.account(t, "bob@contoso.example")
		if a == nil || a.Locked {
			t.Fatalf("coming into scope: account %+v", a)
		}
		// ... and joins the teams of the groups it already belongs to.
		if _, members := r.team(t, "Sales"); !slices.Equal(members, []string{"bob@contoso.example", "carol@contoso.example"}) {
			t.Errorf("coming into scope: team members = %v, want bob to have joined", members)
		}
		// Out of scope again: on_exit deactivate locks the account; the directory keeps
		// the user active, as Entra wrote it.
		r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"Replace","path":"userName","value":"bob@fabrikam.example"}`)).expect(t, http.StatusOK)
		if a := r.account(t, "bob@contoso.example"); a == nil || !a.Locked {
			t.Errorf("leaving scope: account %+v, want it locked", a)
		}
		if active := r.get(t, "/Users/"+id)["active"]; active != true {
			t.Errorf("directory active = %v", active)
		}
		// While out of scope, changes do not reach the app.
		r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"Replace","path":"displayName","value":"Robert"}`)).expect(t, http.StatusOK)
		if a := r.account(t, "bob@contoso.example"); a == nil || a.Person.Display == "Robert" {
			t.Errorf("an out-of-scope change reached the app: %+v", a)
		}
		// Back in scope: the policy's deactivation is undone.
		r.do(t, http.MethodPatch, "/Users/"+id, itPatchBody(`{"op":"Replace","path":"userName","value":"bob@contoso.example"}`)).expect(t, http.StatusOK)
		if a := r.account(t, "bob@contoso.example"); a == nil || a.Locked || a.Person.Display != "Robert" {
			t.Errorf("back in scope: account %+v, want it unlocked and current", a)
		}
	})

	t.Run("mass-deprovision brake", func(t *testing.T) {
		var ids []string
		for _, n := range []string{"d1", "d2", "d3", "d4"} {
			id, _ := r.create(t, "/Users", policyUser(n+"@contoso.example", ""))
			ids = append(ids, id)
		}
		// The brake counts deactivations and deletions of the last hour, the scope test's
		// deactivation included: limit 3.
		used := 0
		for _, rec := range r.records(t) {
			if rec.Outcome == change.Applied && (slices.Contains(rec.Events, "deactivate") || slices.Contains(rec.Events, "delete") ||
				(rec.Decision != nil && rec.Decision.Deactivate)) {
				used++
			}
		}
		var denied []string
		for i, id := range ids {
			resp := r.do(t, http.MethodDelete, "/Users/"+id, "")
			switch resp.status {
			case http.StatusNoContent:
			case http.StatusForbidden:
				denied = append(denied, id)
				if d := string(resp.body); !strings.Contains(d, "brake") {
					t.Errorf("delete %d denied without the brake's reason: %s", i, d)
				}
			default:
				t.Fatalf("delete %d: status %d %s", i, resp.status, resp.body)
			}
		}
		if want := max(0, len(ids)-max(0, 3-used)); len(denied) != want {
			t.Errorf("%d deletions denied, want %d (limit 3, %d used before)", len(denied), want, used)
		}
		for _, id := range denied {
			r.get(t, "/Users/"+id) // still in the directory
		}
	})
}

// TestPolicyFailsClosed: a policy whose decision is undefined for a request denies it
// (403, nothing reaches the app), and reads are not affected.
func TestPolicyFailsClosed(t *testing.T) {
	dir := t.TempDir()
	rego := `package scimgate

# Decides only for users; groups get no decision at all.
decision := {"allow": true} if input.resource_type == "User"
`
	if err := os.WriteFile(filepath.Join(dir, "decision.rego"), []byte(rego), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startPolicyRig(t, dir)
	r.create(t, "/Users", policyUser("erin@contoso.example", ""))
	resp := r.do(t, http.MethodPost, "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Undecided"}`)
	body := itCheckErrorBody(t, resp.status, resp.header, resp.body, http.StatusForbidden, "")
	if d, _ := body["detail"].(string); !strings.Contains(d, "undefined") {
		t.Errorf("detail = %q, want it to say the decision is undefined", d)
	}
	if tm, _ := r.team(t, "Undecided"); tm != nil {
		t.Error("an undecided group reached the app")
	}
	if got := r.queryIDs(t, "/Users", `userName eq "erin@contoso.example"`); len(got) != 1 {
		t.Errorf("reads: %v", got)
	}
}

// TestPolicyReload: a policy changed under load is applied by a reload without a failed
// request, and a broken policy fails the reload while the previous one stays in force.
func TestPolicyReload(t *testing.T) {
	cfg := strings.Replace(guardrailConfig, `"max_per_hour": 3`, `"max_per_hour": 100000`, 1)
	dir := copyShippedPolicies(t, cfg)
	// The legacy app runs outside Caddy here, as in production: a reload must not restart
	// it (the demo app, in the same Caddy config, would be restarted with the gateway).
	_, appURL := startFaultApp(t, "ok")
	mapFile := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(faultMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	// What is tested is the reload, not the decision's speed: a reload compiles the new
	// policy on the same two cores as the load, so a decision can wait longer than the
	// default 100 ms for a core (timings never decide a test here).
	t.Setenv("SCIMGATE_IT_POLICY_TIMEOUT", "10s")
	r := startPolicyRigWith(t, dir, appURL, mapFile)

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		created  atomic.Int64
		dropped  atomic.Int64
	)
	// Go's HTTP server closes, without an answer, a connection whose request it reads after
	// its shutdown began, and Caddy's old and new servers share the listener during a
	// reload: such a request never reaches any handler (so it changed nothing) and the
	// client sees EOF; Entra, like this client, sends it again. What must hold is that no
	// request the gateway handled failed or was refused, and nothing was applied twice.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	post := func(name string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodPost, r.base+"/Users", strings.NewReader(policyUser(name, "")))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/scim+json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		// The status decides; the body only explains a failure. A body cut off by the
		// reload is not retried: the request was handled, and a retry would conflict.
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 100_000 && !stop.Load(); i++ {
				name := "load-" + strconv.Itoa(w) + "-" + strconv.Itoa(i) + "@contoso.example"
				status, body, err := post(name)
				for attempt := 0; err != nil && attempt < 5; attempt++ {
					dropped.Add(1)
					status, body, err = post(name)
				}
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case status != http.StatusCreated:
					failures = append(failures, strconv.Itoa(status)+" "+body)
				default:
					created.Add(1)
				}
				mu.Unlock()
			}
		})
	}
	// Three reloads with a changed policy (the required attributes change back and forth;
	// every request of the load satisfies both).
	for i := range 3 {
		time.Sleep(150 * time.Millisecond)
		req := `["userName", "emails"]`
		if i%2 == 0 {
			req = `["userName"]`
		}
		writePolicyConfig(t, dir, strings.Replace(cfg, `"User": ["userName", "emails"]`, `"User": `+req, 1))
		if err := caddy.Load(r.cfgJSON, true); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	time.Sleep(150 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d users failed during policy reloads; first: %s", len(failures), int(created.Load())+len(failures), failures[0])
	}
	t.Logf("%d users created during 3 reloads; %d connections dropped by a stopping server before any handler saw them, and sent again", created.Load(), dropped.Load())
	r.client.CloseIdleConnections()
	list := r.get(t, "/Users?count=0&filter="+url.QueryEscape(`userName sw "load-"`))
	if n, _ := list["totalResults"].(float64); int64(n) != created.Load() {
		t.Errorf("the directory holds %v load users, want %d (each exactly once)", list["totalResults"], created.Load())
	}

	// The last reload required only userName: a user without emails is created.
	createdAfterReload(t, r.itServer, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"noemail-1@contoso.example"}`)

	// A broken policy fails the reload; the previous policy stays in force.
	if err := os.WriteFile(filepath.Join(dir, "scimgate", "broken.rego"), []byte("package scimgate\n\ndecision := {\"allow\": true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := caddy.Load(r.cfgJSON, true)
	if err == nil || !strings.Contains(err.Error(), "broken.rego") {
		t.Fatalf("reload with a broken policy: %v, want an error naming the file", err)
	}
	r.client.CloseIdleConnections()
	id, _ := r.create(t, "/Users", policyUser("breakglass-2@contoso.example", ""))
	r.do(t, http.MethodDelete, "/Users/"+id, "").expect(t, http.StatusForbidden)
}

// TestPolicyReloadKeepsPolicyInForce: a reload whose policy has a type error, calls a
// builtin the gateway refuses (one that would read the environment, holding this
// gateway's token and the app's key, or a file through a schema's $ref), or whose
// directory is gone fails with the file and row, and the policy in force keeps deciding.
func TestPolicyReloadKeepsPolicyInForce(t *testing.T) {
	dir := copyShippedPolicies(t, guardrailConfig)
	r := startPolicyRig(t, dir)
	extra := filepath.Join(dir, "scimgate", "extra.rego")
	cases := []struct {
		name, rego string
		want       []string
	}{
		{"type error", "x := count(1)", []string{extra + ":3:", "rego_type_error"}},
		{"environment", "x := opa.runtime().env", []string{extra + ":3:", "undefined function opa.runtime", "holds the gateway's secrets"}},
		{"file through $ref", `x := json.match_schema("\"x\"", {"$ref": "file:///proc/self/environ"})`, []string{extra + ":3:", "undefined function json.match_schema", "read files"}},
		{"directory gone", "", []string{dir + " does not exist"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rego == "" {
				moved := dir + ".moved"
				if err := os.Rename(dir, moved); err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := os.Rename(moved, dir); err != nil {
						t.Fatal(err)
					}
				}()
			} else {
				if err := os.WriteFile(extra, []byte("package scimgate.extra\n\n"+tc.rego+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(extra)
			}
			err := caddy.Load(r.cfgJSON, true)
			if err == nil {
				t.Fatal("the reload succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("reload error does not contain %q:\n%v", w, err)
				}
			}
			r.client.CloseIdleConnections()
			name := "breakglass-" + strconv.Itoa(i+10) + "@contoso.example"
			id, _ := r.create(t, "/Users", policyUser(name, ""))
			r.do(t, http.MethodDelete, "/Users/"+id, "").expect(t, http.StatusForbidden)
		})
	}
}

// TestPolicyFailClosedModes: through the handler, every way a policy can fail to decide
// changes nothing and reaches no app: a policy that errs answers 403 with a reason (fail
// closed); a decision not made in time answers 503 with Retry-After and is journaled as
// failed, not denied (no one said no; Entra retries it).
func TestPolicyFailClosedModes(t *testing.T) {
	cases := []struct {
		name, rego, detail string
		status             int
		outcome            change.Outcome
	}{
		{"undefined", `decision := {"allow": true} if input.resource_type == "Group"`, "undefined", 403, change.Denied},
		{"runtime error", `decision := {"allow": regex.match(input.resource.userName, "x")}`, "policy error", 403, change.Denied},
		// Decisions of a type known only per request ("yes" or {"allow": "true"} written
		// literally is refused at load).
		{"wrong type", `decision := input.resource.userName`, "policy error", 403, change.Denied},
		{"allow not a boolean", `decision := {"allow": input.resource.userName}`, "policy error", 403, change.Denied},
		{"timeout", `decision := {"allow": count([x | some x in numbers.range(1, 100000000)]) > 0}`, "not decided in time", 503, change.Failed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package scimgate\n\n"+tc.rego+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			g := newTestGateway(t, func(g *Handler) {
				g.Policy = &PolicyConfig{Dir: dir, Timeout: caddy.Duration(50 * time.Millisecond)}
			})
			start := time.Now()
			// "(" is not a valid regular expression: the runtime-error policy fails on it.
			w := serve(t, g, http.MethodPost, "/scim/v2/Users", map[string]any{"userName": "("})
			if w.Code != tc.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, tc.status)
			}
			if tc.status == 503 && w.Header().Get("Retry-After") == "" {
				t.Error("a 503 without Retry-After")
			}
			if d, _ := decodeJSON(t, w)["detail"].(string); !strings.Contains(d, tc.detail) {
				t.Errorf("detail %q, want it to contain %q", d, tc.detail)
			}
			if r := lastRecord(t, g); r.Outcome != tc.outcome {
				t.Errorf("journaled as %s, want %s", r.Outcome, tc.outcome)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the request took %s", took)
			}
			if n := userCount(t, g); n != 0 {
				t.Errorf("%d users in the directory after a denied create", n)
			}
		})
	}
}

// TestCatchUpMemberships: a group kept out of the app (skipped) while it gained members
// gets them all when a later change lets it in and its team is created.
func TestCatchUpMemberships(t *testing.T) {
	dir := t.TempDir()
	rego := `package scimgate

default decision := {"allow": true}

decision := {"allow": true, "skip": true, "reasons": ["held back until renamed"]} if {
	input.resource_type == "Group"
	startswith(input.resource.displayName, "later-")
}
`
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(rego), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startPolicyRig(t, dir)
	u1, _ := r.create(t, "/Users", policyUser("u1@contoso.example", ""))
	u2, _ := r.create(t, "/Users", policyUser("u2@contoso.example", ""))
	gid, _ := r.create(t, "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"later-team"}`)
	r.do(t, http.MethodPatch, "/Groups/"+gid, itPatchBody(`{"op":"Add","path":"members","value":[{"value":"`+u1+`"},{"value":"`+u2+`"}]}`)).expect(t, http.StatusNoContent)
	if tm, _ := r.team(t, "later-team"); tm != nil {
		t.Fatal("a skipped group reached the app")
	}
	r.do(t, http.MethodPatch, "/Groups/"+gid, itPatchBody(`{"op":"Replace","path":"displayName","value":"team-now"}`)).expect(t, http.StatusNoContent)
	tm, members := r.team(t, "team-now")
	if tm == nil || !slices.Equal(members, []string{"u1@contoso.example", "u2@contoso.example"}) {
		t.Fatalf("team %+v members %v, want both members it already had", tm, members)
	}
	rec := r.lastRecord(t, gid)
	if rec.Decision == nil || !strings.Contains(strings.Join(rec.Decision.Reasons, " "), "memberships it already had sent") {
		t.Errorf("journal decision %+v", rec.Decision)
	}
}

// TestBrakeCountsSurviveReloadAndRestart: the brake's counts of the last hour are kept
// across a reload (shared by the configs on the open store, not re-read), rebuilt from the
// journal at a restart, and rebuilt again after a config without a policy (which does not
// count) let changes through.
func TestBrakeCountsSurviveReloadAndRestart(t *testing.T) {
	dir := copyShippedPolicies(t, `{"defaults": {"mass_deprovision": {"max_per_hour": 4}}}`)
	r := startPolicyRig(t, dir)
	var ids []string
	for i := range 8 {
		id, _ := r.create(t, "/Users", policyUser(fmt.Sprintf("brake%d@contoso.example", i), ""))
		ids = append(ids, id)
	}
	del := func(i, want int) {
		t.Helper()
		resp := r.do(t, http.MethodDelete, "/Users/"+ids[i], "")
		if resp.status != want {
			t.Fatalf("delete %d: status %d, want %d: %s", i, resp.status, want, resp.body)
		}
		if want == http.StatusForbidden && !strings.Contains(string(resp.body), "brake") {
			t.Fatalf("delete %d denied without the brake's reason: %s", i, resp.body)
		}
	}
	// Each load is tagged, and the next request waits until the new config answers: the
	// old one may still accept a connection for a moment after caddy.Load returns.
	load := func(cfg []byte, what string) {
		t.Helper()
		tag := strings.ReplaceAll(what, " ", "-")
		if err := caddy.Load(tagConfig(t, cfg, tag), true); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		itWaitConfig(t, r.itServer, tag)
	}
	del(0, http.StatusNoContent)
	del(1, http.StatusNoContent)

	// A reload keeps the two deletions.
	load(r.cfgJSON, "reload")
	del(2, http.StatusNoContent)

	// A restart reads them back from the journal: three of four used.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	load(r.cfgJSON, "restart")
	// The demo app restarted empty with Caddy: deleting an account it no longer has is
	// done (404 on delete), so what is tested here is only the gateway's counting.
	del(3, http.StatusNoContent)
	del(4, http.StatusForbidden)

	// Without a policy nothing is counted or braked; the next config with a policy counts
	// that deletion from the journal too: five used, a limit of 5 refuses the next.
	noPolicy := withoutPolicy(t, r.cfgJSON)
	load(noPolicy, "reload without a policy")
	del(5, http.StatusNoContent)
	writePolicyConfig(t, dir, `{"defaults": {"mass_deprovision": {"max_per_hour": 5}}}`)
	load(r.cfgJSON, "reload with the policy")
	del(6, http.StatusForbidden)
	var applied int
	for _, rec := range r.records(t) {
		if rec.Action == "delete" && rec.Outcome == change.Applied {
			applied++
		}
	}
	if applied != 5 {
		t.Errorf("%d deletions applied in the journal, want 5", applied)
	}
}

// withoutPolicy is a Caddy JSON config with the policy taken out of every scim_gateway
// handler.
func withoutPolicy(t *testing.T, cfg []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(cfg, &v); err != nil {
		t.Fatal(err)
	}
	found := false
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			if x["handler"] == "scim_gateway" {
				if _, ok := x["policy"]; ok {
					delete(x, "policy")
					found = true
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
	if !found {
		t.Fatal("no scim_gateway handler with a policy in the config")
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBrakeCountsPolicyDeactivations: a deactivation the policy asks for instead of the
// change (scoping's on_exit: a user leaving scope) is a deprovisioning like any other. It
// counts in the brake's last hour, so a scoping mistake in Entra cannot lock every account
// past max_per_hour; the journal says the decision deactivated; and a restart, which
// rebuilds the counts from the journal, still counts it.
func TestBrakeCountsPolicyDeactivations(t *testing.T) {
	dir := copyShippedPolicies(t, `{"defaults": {"mass_deprovision": {"max_per_hour": 2},
		"scoping": {"domains": ["contoso.example"], "on_exit": "deactivate"}}}`)
	r := startPolicyRig(t, dir)
	var ids []string
	for i := range 4 {
		id, _ := r.create(t, "/Users", policyUser(fmt.Sprintf("scope%d@contoso.example", i), ""))
		ids = append(ids, id)
	}
	leave := func(i, want int) {
		t.Helper()
		resp := r.do(t, http.MethodPatch, "/Users/"+ids[i], itPatchBody(fmt.Sprintf(`{"op":"Replace","path":"userName","value":"scope%d@fabrikam.example"}`, i)))
		if resp.status != want {
			t.Fatalf("user %d leaving scope: status %d, want %d: %s", i, resp.status, want, resp.body)
		}
		if want == http.StatusForbidden && !strings.Contains(string(resp.body), "mass-deprovision brake: 2 deactivations") {
			t.Fatalf("user %d leaving scope denied without the brake's reason: %s", i, resp.body)
		}
	}
	leave(0, http.StatusOK)
	leave(1, http.StatusOK)
	leave(2, http.StatusForbidden)
	for i, want := range []bool{true, true, false, false} {
		if a := r.account(t, fmt.Sprintf("scope%d@contoso.example", i)); a == nil || a.Locked != want {
			t.Errorf("account %d: %+v, want locked %v", i, a, want)
		}
	}
	if rec := r.lastRecord(t, ids[0]); rec.Decision == nil || !rec.Decision.Deactivate || rec.Outcome != change.Applied {
		t.Errorf("the journal does not say the policy deactivated user 0: %+v", rec.Decision)
	}
	if rec := r.lastRecord(t, ids[3]); rec.Decision == nil || rec.Decision.Deactivate {
		t.Errorf("the create of user 3 is journaled as a deactivation: %+v", rec.Decision)
	}

	// A restart rebuilds the counts from the journal: both deactivations still count.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(tagConfig(t, r.cfgJSON, "restart"), true); err != nil {
		t.Fatal(err)
	}
	itWaitConfig(t, r.itServer, "restart")
	leave(3, http.StatusForbidden)
}
