package demoapp

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func withStateFile(path string) func(*App) { return func(a *App) { a.StateFile = path } }

// dump returns the app's _state without the call count, which counts this process's calls.
func dump(t *testing.T, a *App) Snapshot {
	t.Helper()
	snap := decode[Snapshot](t, must(t, a, http.StatusOK, "GET", "/api/v1/_state", ""))
	snap.Calls = 0
	return snap
}

// TestStateFileKeepsStateAcrossRestarts: an app with a state_file holds after a restart
// (the last handler gone, a new one provisioned) exactly what it held, locks, managers,
// teams and memberships included, and goes on with the next ids: an id freed by a delete is
// not given again.
func TestStateFileKeepsStateAcrossRestarts(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sub", "demoapp-state.json") // its directory is created
	a, err := provisionApp(t, withStateFile(file))
	if err != nil {
		t.Fatal(err)
	}
	seed(t, a)
	must(t, a, http.StatusCreated, "POST", "/api/v1/accounts", `{"login":"gone@contoso.example"}`)
	must(t, a, http.StatusOK, "POST", "/api/v1/accounts/2/lock", "")
	must(t, a, http.StatusNoContent, "PUT", "/api/v1/teams/1/members/2", "")
	must(t, a, http.StatusNoContent, "DELETE", "/api/v1/accounts/3", "")
	must(t, a, http.StatusCreated, "POST", "/api/v1/teams", `{"name":"R&D <lab>"}`)
	before := dump(t, a)
	if err := a.Cleanup(); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("state file: %v, mode %v (want readable by its owner only)", err, fi.Mode())
	}

	b, err := provisionApp(t, withStateFile(file))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer b.Cleanup()
	after := dump(t, b)
	got, _ := json.Marshal(after)
	want, _ := json.Marshal(before)
	if string(got) != string(want) {
		t.Fatalf("after the restart the app holds\n%s\nwant\n%s", got, want)
	}
	acc := decode[Account](t, must(t, b, http.StatusCreated, "POST", "/api/v1/accounts", `{"login":"new@contoso.example"}`))
	team := decode[Team](t, must(t, b, http.StatusCreated, "POST", "/api/v1/teams", `{"name":"New"}`))
	if acc.ID != 4 || team.ID != 4 {
		t.Errorf("new ids %d and %d after the restart, want 4 and 4 (never reused)", acc.ID, team.ID)
	}
	// The app's own checks hold on the restored state.
	if code := errorCode(t, must(t, b, http.StatusConflict, "POST", "/api/v1/accounts", `{"login":"ADA@contoso.example"}`)); code != CodeDuplicateLogin {
		t.Errorf("duplicate login after the restart: %s", code)
	}
	if code := errorCode(t, must(t, b, http.StatusNotFound, "DELETE", "/api/v1/teams/2/members/1", "")); code != CodeNotAMember {
		t.Errorf("removing a non-member after the restart: %s", code)
	}
	must(t, b, http.StatusNoContent, "DELETE", "/api/v1/accounts/1", "") // the manager of 2, member of team 1
	if m := decode[Account](t, must(t, b, http.StatusOK, "GET", "/api/v1/accounts/2", "")).Org.ManagerID; m != nil {
		t.Errorf("deleting a restored manager left manager_id %d", *m)
	}
}

// TestStateFileSavedWhileRunning: a change reaches the file shortly after it is answered,
// without waiting for the app to stop (a process killed later keeps it), and a reset
// empties the file's state too.
func TestStateFileSavedWhileRunning(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.json")
	a, err := provisionApp(t, withStateFile(file))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Cleanup()
	must(t, a, http.StatusCreated, "POST", "/api/v1/accounts", `{"login":"ada@contoso.example"}`)
	waitSaved(t, file, func(s savedState) bool { return len(s.Accounts) == 1 && s.Accounts[0].Login == "ada@contoso.example" })
	must(t, a, http.StatusNoContent, "POST", "/api/v1/_reset", "")
	waitSaved(t, file, func(s savedState) bool { return len(s.Accounts) == 0 && s.NextAccount == 1 })
}

// waitSaved waits up to 5 s for the file to hold a state ok accepts.
func waitSaved(t *testing.T, file string, ok func(savedState) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var s savedState
		data, err := os.ReadFile(file)
		if err == nil && json.Unmarshal(data, &s) == nil && ok(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the state file does not hold the expected state after 5 s: %v %s", err, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStateFileRefused: a state file the app could not have written is refused at
// provisioning with an error that names the file and says what is wrong, and is left as
// it is; so is a file another state keeps, and a second file for a state already kept.
func TestStateFileRefused(t *testing.T) {
	const ts = `"created_at":"2025-03-01T12:00:00.000Z","updated_at":"2025-03-01T12:00:00.000Z"`
	acc := func(id int, login, extra string) string {
		return `{"id":` + itoa(id) + `,"login":"` + login + `","person":{"first":"","last":"","display":""},"contact":{"mail":"","phone":""},"org":{"dept":"","title":"","employee_no":"","manager_id":` + extra + `},"locked":false,` + ts + `}`
	}
	team := func(id int, name string) string {
		return `{"id":` + itoa(id) + `,"name":"` + name + `","description":"","member_count":0,` + ts + `}`
	}
	file := func(next int, accounts, teams, members string) string {
		return `{"format":1,"next_account":` + itoa(next) + `,"next_team":` + itoa(next) + `,"accounts":[` + accounts + `],"teams":[` + teams + `],"memberships":[` + members + `]}`
	}
	cases := []struct{ name, content, want string }{
		{"not json", "<html>", "is not a demo app state"},
		{"unknown field", `{"format":1,"users":[]}`, `unknown field "users"`},
		{"other format", `{"format":2}`, "format 2, want 1"},
		{"duplicate login", file(3, acc(1, "a@x.example", "null")+","+acc(2, "A@x.example", "null"), "", ""), `login "A@x.example" is also account 1's`},
		{"unknown manager", file(3, acc(1, "a@x.example", "7"), "", ""), "manager 7 is not another account"},
		{"own manager", file(3, acc(1, "a@x.example", "1"), "", ""), "manager 1 is not another account"},
		{"ids out of order", file(3, acc(2, "a@x.example", "null")+","+acc(1, "b@x.example", "null"), "", ""), "ids must ascend"},
		{"id at next", file(2, acc(2, "a@x.example", "null"), "", ""), "below next_account 2"},
		{"bad login", file(3, acc(1, "a b", "null"), "", ""), "account 1: login"},
		{"bad timestamp", strings.Replace(file(3, acc(1, "a@x.example", "null"), "", ""), "2025-03-01T12:00:00.000Z", "yesterday", 1), `timestamp "yesterday"`},
		{"duplicate team", file(3, "", team(1, "Eng")+","+team(2, "eng"), ""), `name "eng" is also team 1's`},
		{"member of no team", file(3, acc(1, "a@x.example", "null"), "", `{"team_id":9,"account_id":1}`), "no such team"},
		{"member no account", file(3, "", team(1, "Eng"), `{"team_id":1,"account_id":9}`), "no such account"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := provisionApp(t, withStateFile(path))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error = %v, want one naming %s and saying %q", err, path, tc.want)
			}
			if data, _ := os.ReadFile(path); string(data) != tc.content {
				t.Errorf("the refused file was changed to %s", data)
			}
			// Its name and file are free again: a good file provisions.
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			a, err := provisionApp(t, withStateFile(path))
			if err != nil {
				t.Fatalf("after the refusal: %v", err)
			}
			if err := a.Cleanup(); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("one file, two states", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		a, err := provisionApp(t, withStateFile(path))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Cleanup()
		_, err = provisionApp(t, withStateFile(path), func(a *App) { a.Name = "other" })
		if err == nil || !strings.Contains(err.Error(), "is already the state file of another demo app state") {
			t.Fatalf("a second state in one file: %v", err)
		}
	})
	t.Run("one state, another file", func(t *testing.T) {
		dir := t.TempDir()
		a, err := provisionApp(t, withStateFile(filepath.Join(dir, "one.json")))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Cleanup()
		for _, other := range []string{filepath.Join(dir, "two.json"), ""} {
			_, err = provisionApp(t, withStateFile(other))
			if err == nil || !strings.Contains(err.Error(), "is already kept in "+filepath.Join(dir, "one.json")) {
				t.Fatalf("the state in another file (%q): %v", other, err)
			}
		}
		// The refusals released what they acquired: the state is still kept, and goes
		// with its last handler.
		must(t, a, http.StatusCreated, "POST", "/api/v1/accounts", `{"login":"ada@contoso.example"}`)
	})
	t.Run("placeholder empty", func(t *testing.T) {
		t.Setenv("DEMOAPP_NO_FILE", "")
		_, err := provisionApp(t, withStateFile("{env.DEMOAPP_NO_FILE}"))
		if err == nil || !strings.Contains(err.Error(), "state_file is empty") {
			t.Fatalf("error = %v", err)
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }
