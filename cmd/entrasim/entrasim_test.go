package main

// Integration tests: a real Caddy with the scim_gateway module, started in this process
// from testdata/Caddyfile on a loopback port, driven by run. Caddy's configuration is
// process-global: tests that start it must not call t.Parallel.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/scimgate/scimgate/caddymodule"
	"github.com/scimgate/scimgate/internal/testnet"
)

const itToken = "entrasim-test-token-0123456789abcdef0123456789"

// startGateway runs Caddy with the gateway and returns the Tenant URL; Caddy stops when
// the test ends.
func startGateway(t *testing.T) string {
	t.Helper()
	addr := testnet.FreeAddr(t)
	t.Setenv("ENTRASIM_IT_ADDR", addr)
	runCaddyfile(t, "Caddyfile")
	return "http://" + addr + "/scim/v2"
}

// runCaddyfile adapts testdata/<name> (after the caller set its ENTRASIM_IT_* addresses)
// with a fresh store, Caddy storage and token, and runs it until the test ends.
func runCaddyfile(t *testing.T, name string) {
	t.Helper()
	t.Setenv("ENTRASIM_IT_DATA", t.TempDir())
	t.Setenv("ENTRASIM_IT_STORAGE", t.TempDir())
	t.Setenv("ENTRASIM_IT_TOKEN", itToken)
	src, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": name})
	if err != nil {
		t.Fatalf("adapting %s: %v", name, err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
}

func testConfig(url string, d dialect, seed int64) config {
	return config{
		URL: url, Token: itToken, Users: 200, Groups: 20, Seed: seed, Dialect: d,
		Concurrency: 8, Phase: phaseAll, Changes: 60, Timeout: 60 * time.Second,
	}
}

// TestRunAgainstGateway plays both cycles in each dialect, checks the directory against
// the source after the changes, then plays the initial cycle again from that source and
// checks that it creates and changes nothing.
func TestRunAgainstGateway(t *testing.T) {
	for _, tc := range []struct {
		d    dialect
		seed int64
	}{{dialectDefault, 11}, {dialectFlag, 12}} {
		t.Run(tc.d.String(), func(t *testing.T) {
			base := startGateway(t)
			cfg := testConfig(base, tc.d, tc.seed)
			var out bytes.Buffer
			sum, err := run(context.Background(), cfg, &out)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			for _, kind := range []string{"probe", "create", "patch_manager", "create_group", "patch_members", "update", "disable", "enable", "remove_members", "delete"} {
				if sum.Kinds[kind] == nil || sum.Kinds[kind].Requests == 0 {
					t.Errorf("no %s requests sent:\n%s", kind, out.String())
				}
			}
			if got := sum.Kinds["create"].Statuses["201"]; got != cfg.Users {
				t.Errorf("%d users created, want %d", got, cfg.Users)
			}

			ds := generate(cfg.Seed, cfg.Users, cfg.Groups)
			plan := planChanges(cfg.Seed, ds, cfg.Changes)
			want, deleted := applyPlan(ds, plan)
			v := &verifier{t: t, base: base}
			v.checkDirectory(want, deleted)

			// The initial cycle again, from the source as it now is: nothing to create or change.
			input := filepath.Join(t.TempDir(), "source.json")
			data, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(input, data, 0o600); err != nil {
				t.Fatal(err)
			}
			again := cfg
			again.Input, again.Phase, again.JSON = input, phaseInitial, true
			out.Reset()
			sum2, err := run(context.Background(), again, &out)
			if err != nil {
				t.Fatalf("second run: %v\n%s", err, out.String())
			}
			for _, kind := range []string{"create", "create_group", "patch_attrs", "patch_manager", "patch_group"} {
				if ks := sum2.Kinds[kind]; ks != nil {
					t.Errorf("second initial run sent %d %s requests, want none", ks.Requests, kind)
				}
			}
			if sum2.Unchanged != len(want.Users)+len(want.Groups) {
				t.Errorf("second run: %d unchanged objects, want %d", sum2.Unchanged, len(want.Users)+len(want.Groups))
			}
			var decoded Summary
			if err := json.Unmarshal(out.Bytes(), &decoded); err != nil || decoded.Requests != sum2.Requests {
				t.Errorf("-json output does not decode to the summary (%v): %s", err, out.String())
			}
			v.checkDirectory(want, deleted)
		})
	}
}

// TestRunWrongToken checks that a 401 makes run fail with the gateway's detail, and that
// the probe stops the cycle instead of sending every object into the same error.
func TestRunWrongToken(t *testing.T) {
	base := startGateway(t)
	cfg := testConfig(base, dialectDefault, 1)
	cfg.Token = "not-the-token-0123456789abcdef0123456789"
	var out bytes.Buffer
	sum, err := run(context.Background(), cfg, &out)
	if !errors.Is(err, errUnexpected) {
		t.Fatalf("run with a wrong token: err %v, want %v", err, errUnexpected)
	}
	if !strings.Contains(err.Error(), "401") || !strings.Contains(out.String(), "-> 401: ") {
		t.Errorf("the error does not show the 401 and its detail: %v\n%s", err, out.String())
	}
	if sum.Requests != 4 || sum.Unexpected != 4 {
		t.Errorf("%d requests, %d unexpected; want only the 4 probes (2 per cycle)", sum.Requests, sum.Unexpected)
	}
}

// applyPlan is the source after the incremental changes: what the directory must hold.
// It returns the users deleted (by userName, lower case).
func applyPlan(ds *Dataset, plan []change) (*Dataset, map[string]bool) {
	users := slices.Clone(ds.Users)
	deleted := map[string]bool{}
	removed := map[[2]string]bool{}
	for _, c := range plan {
		u := &users[c.User]
		switch c.Kind {
		case chUpdate:
			*u = *c.Update
		case chDisable:
			u.Active = new(bool)
		case chEnable:
			u.Active = nil
		case chDelete:
			deleted[strings.ToLower(u.UserName)] = true
		case chRemove:
			removed[[2]string{ds.Groups[c.Group].DisplayName, strings.ToLower(u.UserName)}] = true
		}
	}
	out := &Dataset{}
	for _, u := range users {
		if deleted[strings.ToLower(u.UserName)] {
			continue
		}
		if deleted[strings.ToLower(u.Manager)] {
			u.Manager = ""
		}
		out.Users = append(out.Users, u)
	}
	for _, g := range ds.Groups {
		g.Members = slices.DeleteFunc(slices.Clone(g.Members), func(m string) bool {
			return deleted[strings.ToLower(m)] || removed[[2]string{g.DisplayName, strings.ToLower(m)}]
		})
		out.Groups = append(out.Groups, g)
	}
	return out, deleted
}

// verifier reads the directory back through SCIM.
type verifier struct {
	t    *testing.T
	base string
}

func (v *verifier) get(path string) map[string]any {
	v.t.Helper()
	req, err := http.NewRequest(http.MethodGet, v.base+path, nil)
	if err != nil {
		v.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+itToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		v.t.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		v.t.Fatalf("GET %s: %v", path, err)
	}
	return m
}

// find returns the one resource a filter matches, or nil.
func (v *verifier) find(resource, attr, value string) map[string]any {
	v.t.Helper()
	m := v.get("/" + resource + "?" + filterQuery(attr, value, false))
	list, _ := m["Resources"].([]any)
	if len(list) > 1 {
		v.t.Fatalf("%s %s eq %q matched %d resources", resource, attr, value, len(list))
	}
	if len(list) == 0 {
		return nil
	}
	return list[0].(map[string]any)
}

// checkDirectory checks every user's attributes, active flag and manager, that deleted
// users are gone, and that every group has exactly its members.
func (v *verifier) checkDirectory(want *Dataset, deleted map[string]bool) {
	t := v.t
	t.Helper()
	ids := map[string]string{}
	for name := range deleted {
		if v.find("Users", "userName", name) != nil {
			t.Errorf("deleted user %s still exists", name)
		}
	}
	for _, u := range want.Users {
		res := v.find("Users", "userName", u.UserName)
		if res == nil {
			t.Errorf("user %s is missing", u.UserName)
			continue
		}
		ids[strings.ToLower(u.UserName)] = res["id"].(string)
		if diff := userDiff(&u, res, dialectFlag); len(diff) > 0 {
			t.Errorf("user %s differs from the source: %+v", u.UserName, diff)
		}
	}
	for _, u := range want.Users {
		res := v.find("Users", "userName", u.UserName)
		if res == nil {
			continue
		}
		if got, wantID := managerOf(res), ids[strings.ToLower(u.Manager)]; u.Manager != "" && got != wantID {
			t.Errorf("user %s: manager %q, want %q (%s)", u.UserName, got, wantID, u.Manager)
		}
	}
	groupIDs := map[string]string{}
	for _, g := range want.Groups {
		res := v.find("Groups", "displayName", g.DisplayName)
		if res == nil {
			t.Fatalf("group %s is missing", g.DisplayName)
		}
		groupIDs[g.DisplayName] = res["id"].(string)
	}
	for _, g := range want.Groups {
		var wantIDs []string
		for _, m := range g.Members {
			wantIDs = append(wantIDs, ids[strings.ToLower(m)])
		}
		for _, m := range g.MemberGroups {
			wantIDs = append(wantIDs, groupIDs[m])
		}
		var got []string
		members, _ := v.get("/Groups/" + groupIDs[g.DisplayName])["members"].([]any)
		for _, m := range members {
			got = append(got, m.(map[string]any)["value"].(string))
		}
		slices.Sort(got)
		slices.Sort(wantIDs)
		if !slices.Equal(got, wantIDs) {
			t.Errorf("group %s: members %v, want %v", g.DisplayName, got, wantIDs)
		}
	}
}
