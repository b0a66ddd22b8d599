package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/demoapp"
	"github.com/scimgate/scimgate/internal/testnet"
)

const demoKey = "entrasim-demo-key-0123456789"

// startGatewayWithDemoApp runs the gateway with the demo app as its target (through the
// repository's mappings/demoapp.json) and returns the Tenant URL and the app's base URL.
func startGatewayWithDemoApp(t *testing.T) (tenant, app string) {
	t.Helper()
	a := testnet.FreeAddrs(t, 2)
	addr, demo := a[0], a[1]
	t.Setenv("ENTRASIM_IT_ADDR", addr)
	t.Setenv("ENTRASIM_IT_DEMO_ADDR", demo)
	t.Setenv("ENTRASIM_IT_DEMO_NAME", strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	t.Setenv("ENTRASIM_IT_DEMO_KEY", demoKey)
	runCaddyfile(t, "Caddyfile.demoapp")
	return "http://" + addr + "/scim/v2", "http://" + demo
}

func demoState(t *testing.T, app string) demoapp.Snapshot {
	t.Helper()
	s, err := demoapp.FetchState(http.DefaultClient, app, demoKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRunThroughGatewayToDemoApp plays Entra's initial and incremental cycles, in both
// dialects, through the gateway into the demo app, and checks that the app's accounts, lock
// states, managers, teams and memberships equal the directory exactly.
func TestRunThroughGatewayToDemoApp(t *testing.T) {
	for _, tc := range []struct {
		d    dialect
		seed int64
	}{{dialectDefault, 21}, {dialectFlag, 22}} {
		t.Run(tc.d.String(), func(t *testing.T) {
			tenant, app := startGatewayWithDemoApp(t)
			cfg := testConfig(tenant, tc.d, tc.seed)
			var out bytes.Buffer
			if _, err := run(context.Background(), cfg, &out); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			ds := generate(cfg.Seed, cfg.Users, cfg.Groups)
			want, deleted := applyPlan(ds, planChanges(cfg.Seed, ds, cfg.Changes))
			v := &verifier{t: t, base: tenant}
			v.checkDirectory(want, deleted)
			compareWithApp(t, v, want, deleted, demoState(t, app))
		})
	}
}

// compareWithApp checks the app against the directory (read back through SCIM).
func compareWithApp(t *testing.T, v *verifier, want *Dataset, deleted map[string]bool, s demoapp.Snapshot) {
	t.Helper()
	byLogin := map[string]demoapp.Account{}
	for _, a := range s.Accounts {
		byLogin[strings.ToLower(a.Login)] = a
	}
	if len(s.Accounts) != len(want.Users) {
		t.Errorf("the app has %d accounts, the directory %d users", len(s.Accounts), len(want.Users))
	}
	for name := range deleted {
		if _, ok := byLogin[strings.ToLower(name)]; ok {
			t.Errorf("deleted user %s still has an account", name)
		}
	}
	scimToNative := map[string]int64{}
	for _, u := range want.Users {
		res := v.find("Users", "userName", u.UserName)
		acct, ok := byLogin[strings.ToLower(u.UserName)]
		if res == nil || !ok {
			t.Errorf("user %s: directory %v, account %v", u.UserName, res != nil, ok)
			continue
		}
		scimToNative[res["id"].(string)] = acct.ID
		active, _ := res["active"].(bool)
		name, _ := res["name"].(map[string]any)
		if acct.Locked == active {
			t.Errorf("user %s: active %v but locked %v", u.UserName, active, acct.Locked)
		}
		if name != nil && (acct.Person.First != fmt.Sprint(name["givenName"]) || acct.Person.Last != fmt.Sprint(name["familyName"])) {
			t.Errorf("user %s: name %v, account person %+v", u.UserName, name, acct.Person)
		}
	}
	for _, u := range want.Users {
		res := v.find("Users", "userName", u.UserName)
		if res == nil {
			continue
		}
		acct := byLogin[strings.ToLower(u.UserName)]
		mgr := managerOf(res)
		if _, exists := scimToNative[mgr]; !exists {
			// The manager was deleted: the app cleared the link when the manager's account
			// went (Entra unlinks the reports in its next cycle); the directory keeps the
			// reference Entra wrote until then.
			mgr = ""
		}
		switch {
		case mgr == "" && acct.Org.ManagerID != nil:
			t.Errorf("user %s: no manager in the directory, manager_id %d in the app", u.UserName, *acct.Org.ManagerID)
		case mgr != "" && (acct.Org.ManagerID == nil || *acct.Org.ManagerID != scimToNative[mgr]):
			t.Errorf("user %s: manager %s (account %d), app manager_id %v", u.UserName, mgr, scimToNative[mgr], acct.Org.ManagerID)
		}
	}
	teams := map[string]demoapp.Team{}
	for _, tm := range s.Teams {
		teams[tm.Name] = tm
	}
	if len(s.Teams) != len(want.Groups) {
		t.Errorf("the app has %d teams, the directory %d groups", len(s.Teams), len(want.Groups))
	}
	members := map[int64][]int64{}
	for _, m := range s.Memberships {
		members[m.TeamID] = append(members[m.TeamID], m.AccountID)
	}
	for _, g := range want.Groups {
		tm, ok := teams[g.DisplayName]
		if !ok {
			t.Errorf("group %s has no team", g.DisplayName)
			continue
		}
		res := v.find("Groups", "displayName", g.DisplayName)
		var wantIDs []int64
		list, _ := v.get("/Groups/" + res["id"].(string))["members"].([]any)
		for _, m := range list {
			mm := m.(map[string]any)
			if mm["type"] == "Group" {
				continue // the demo mapping sends user members only
			}
			wantIDs = append(wantIDs, scimToNative[mm["value"].(string)])
		}
		got := members[tm.ID]
		slices.Sort(got)
		slices.Sort(wantIDs)
		if !slices.Equal(got, wantIDs) {
			t.Errorf("team %s: members %v, directory %v", g.DisplayName, got, wantIDs)
		}
	}
}
