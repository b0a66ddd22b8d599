package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGenerateDeterministic(t *testing.T) {
	a, b := generate(42, 300, 30), generate(42, 300, 30)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed generated different datasets")
	}
	if reflect.DeepEqual(a, generate(43, 300, 30)) {
		t.Fatal("different seeds generated the same dataset")
	}
	if err := a.validate(); err != nil {
		t.Fatalf("the generated dataset is invalid: %v", err)
	}
	var managers, inactive, nested int
	for i, u := range a.Users {
		if u.Manager != "" {
			managers++
			if idx := indexOf(a.Users, u.Manager); idx >= i {
				t.Errorf("user %d's manager is user %d, not an earlier one", i, idx)
			}
		}
		if !u.IsActive() {
			inactive++
		}
	}
	for _, g := range a.Groups {
		if len(g.Members) > maxMembersGen {
			t.Errorf("group %s has %d members, more than %d", g.DisplayName, len(g.Members), maxMembersGen)
		}
		nested += len(g.MemberGroups)
	}
	if managers == 0 || inactive == 0 || nested == 0 {
		t.Errorf("managers %d, inactive %d, nested groups %d: want some of each", managers, inactive, nested)
	}

	p1, p2 := planChanges(42, a, 80), planChanges(42, a, 80)
	if !reflect.DeepEqual(p1, p2) || len(p1) != 80 {
		t.Fatalf("plans differ or are short (%d changes)", len(p1))
	}
	seen := map[changeKind]int{}
	targets := map[int]bool{}
	for _, c := range p1 {
		seen[c.Kind]++
		if c.Kind == chRemove {
			continue
		}
		if targets[c.User] {
			t.Errorf("user %d is the target of two changes", c.User)
		}
		targets[c.User] = true
	}
	for _, k := range []changeKind{chUpdate, chDisable, chEnable, chRemove, chDelete} {
		if seen[k] == 0 {
			t.Errorf("no %s change in 80", k)
		}
	}
}

func indexOf(users []User, name string) int {
	for i, u := range users {
		if u.UserName == name {
			return i
		}
	}
	return -1
}

func TestPlanRunsOutOfTargets(t *testing.T) {
	ds := generate(1, 3, 0)
	if got := planChanges(1, ds, 1000); len(got) > 3 {
		t.Fatalf("%d changes for 3 users and no groups, want at most 3", len(got))
	}
}

func TestLoadDataset(t *testing.T) {
	ds, err := loadDataset(filepath.Join("testdata", "example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Users) != 3 || len(ds.Groups) != 2 || ds.Users[2].IsActive() {
		t.Fatalf("unexpected dataset: %+v", ds)
	}
	for _, tc := range []struct{ name, json, want string }{
		{"duplicate user", `{"users":[{"userName":"a"},{"userName":"A"}]}`, "appears twice"},
		{"unknown manager", `{"users":[{"userName":"a","manager":"b"}]}`, "not a user"},
		{"own manager", `{"users":[{"userName":"a","manager":"a"}]}`, "its own manager"},
		{"no userName", `{"users":[{"displayName":"x"}]}`, "required"},
		{"unknown member", `{"users":[{"userName":"a"}],"groups":[{"displayName":"g","members":["b"]}]}`, "not a user"},
		{"self nesting", `{"groups":[{"displayName":"g","memberGroups":["g"]}]}`, "not another group"},
		{"duplicate group", `{"groups":[{"displayName":"g"},{"displayName":"G"}]}`, "appears twice"},
		{"unknown field", `{"users":[{"userName":"a","mail":"x"}]}`, "unknown field"},
		{"not json", `{"users":`, "decoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.json")
			if err := os.WriteFile(path, []byte(tc.json), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadDataset(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWireBodies pins the exact bodies of each dialect (entra-wire.md §2-3).
func TestWireBodies(t *testing.T) {
	changes := []attrChange{
		{path: workEmailPath, value: "a@b.example"},
		{path: "name.familyName", value: "Foo"},
		{path: departmentPath, value: "Retail", wasNone: true},
	}
	const p = `{"Operations":`
	const s = `,"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}`
	for _, tc := range []struct {
		name string
		body any
		want string
	}{
		{"attrs default", dialectDefault.attrPatch(changes), p + `[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"a@b.example"},{"op":"Replace","path":"name.familyName","value":"Foo"},{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Retail"}]` + s},
		{"attrs flag", dialectFlag.attrPatch(changes), p + `[{"op":"replace","path":"emails[type eq \"work\"].value","value":"a@b.example"},{"op":"replace","value":{"name.familyName":"Foo","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"Retail"}}]` + s},
		{"disable default", dialectDefault.activePatch(false), p + `[{"op":"Replace","path":"active","value":"False"}]` + s},
		{"disable flag", dialectFlag.activePatch(false), p + `[{"op":"replace","path":"active","value":false}]` + s},
		{"enable default", dialectDefault.activePatch(true), p + `[{"op":"Replace","path":"active","value":"True"}]` + s},
		{"manager default", dialectDefault.managerPatch("m1", false), p + `[{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"m1"}]` + s},
		{"manager flag replace", dialectFlag.managerPatch("m1", true), p + `[{"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"m1"}]` + s},
		{"add members", dialectDefault.addMembersPatch([]string{"u1", "u2"}), p + `[{"op":"Add","path":"members","value":[{"$ref":null,"value":"u1"},{"$ref":null,"value":"u2"}]}]` + s},
		{"remove members default", dialectDefault.removeMembersPatch([]string{"u1"}), p + `[{"op":"Remove","path":"members","value":[{"$ref":null,"value":"u1"}]}]` + s},
		{"remove members flag", dialectFlag.removeMembersPatch([]string{"u1"}), p + `[{"op":"remove","path":"members[value eq \"u1\"]"}]` + s},
		{"group create", groupCreateBody(&Group{DisplayName: "G", ExternalID: "e"}), `{"displayName":"G","externalId":"e","meta":{"resourceType":"Group"},"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"]}`},
		{"user create", userCreateBody(&User{UserName: "u", Email: "e", Active: new(bool)}), `{"active":false,"emails":[{"primary":true,"type":"work","value":"e"}],"meta":{"resourceType":"User"},"roles":[],"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"userName":"u"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := jsonOf(t, tc.body); got != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
	if got, want := filterQuery("displayName", `a b"c`, true), "excludedAttributes=members&filter=displayName+eq+%22a+b%22c%22"; got != want {
		t.Errorf("filterQuery = %s, want %s", got, want)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    string
		want time.Duration
	}{
		{"2", 2 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"3600", maxRetryAfter},
		{"", defaultRetryWait},
		{"soon", defaultRetryWait},
		{now.Add(4 * time.Second).Format(http.TimeFormat), 4 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(tc.h, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

// TestRetries checks the bounded retry on 429/503 against a server that refuses the
// first n attempts of every request.
func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		refusals  int64
		status    int
		wantCalls int64
		wantOK    bool
	}{
		{"429 then success", 1, http.StatusTooManyRequests, 2, true},
		{"503 twice then success", 2, http.StatusServiceUnavailable, 3, true},
		{"503 always: three tries", 100, http.StatusServiceUnavailable, 3, false},
		{"500 is not retried", 100, http.StatusInternalServerError, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer tok" {
					t.Errorf("Authorization %q", r.Header.Get("Authorization"))
				}
				if calls.Add(1) <= tc.refusals {
					w.Header().Set("Retry-After", "0")
					w.Header().Set("Content-Type", "application/scim+json")
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"503","detail":"busy"}`))
					return
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			rec := newRecorder()
			c := newClient(srv.URL, "tok", false, rec)
			_, ok := c.call(context.Background(), "delete", http.MethodDelete, "/Users/1", nil, http.StatusNoContent)
			if ok != tc.wantOK || calls.Load() != tc.wantCalls {
				t.Fatalf("ok %v after %d calls, want %v after %d", ok, calls.Load(), tc.wantOK, tc.wantCalls)
			}
			if !tc.wantOK && (rec.unexp != 1 || !strings.Contains(rec.samples[0], "busy")) {
				t.Errorf("unexpected outcome not recorded with its detail: %v", rec.samples)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	env := func(k string) string {
		if k == "SCIM_TOKEN" {
			return "from-env"
		}
		return ""
	}
	cfg, err := parseFlags([]string{"-url", "http://127.0.0.1:1/scim/v2", "-dialect", "aadOptscim062020"}, env, &bytes.Buffer{})
	if err != nil || cfg.Token != "from-env" || cfg.Dialect != dialectFlag || cfg.Users != 100 || cfg.Groups != 10 || cfg.Concurrency != 8 || cfg.Phase != phaseAll {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "-url is required"},
		{[]string{"-url", "ftp://x/scim"}, "http or https"},
		{[]string{"-url", "http://x/scim/v2?aadOptscim062020"}, "drop the query"},
		{[]string{"-url", "http://x/scim", "-dialect", "2017"}, "unknown dialect"},
		{[]string{"-url", "http://x/scim", "-users", "-1"}, "-users"},
		{[]string{"-url", "http://x/scim", "-concurrency", "0"}, "-concurrency"},
		{[]string{"-url", "http://x/scim", "-phase", "delta"}, "-phase"},
		{[]string{"-url", "http://x/scim", "extra"}, "unexpected arguments"},
	} {
		_, err := parseFlags(tc.args, env, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q): %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	_, err = parseFlags([]string{"-url", "http://x/scim"}, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("no token: %v", err)
	}
	if _, err := parseFlags([]string{"-h"}, env, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
