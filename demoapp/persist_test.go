package demoapp

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	if after := dump(t, b); !sameState(after, before) {
		t.Fatalf("after the restart the app holds\n%+v\nwant\n%+v", after, before)
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

// crashCopy copies the state file's directory as a process killed at this instant leaves
// it (every answered change is synced: the page cache is what the disk will hold) and
// returns the state file's path in the copy. Temporary snapshots are left out: a crash
// leaves them, and nothing reads them.
func crashCopy(t *testing.T, file string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(filepath.Dir(file), e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // a log a compaction removed after the listing: the snapshot has it
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, filepath.Base(file))
}

// reopen provisions an app of its own on the state file at path and returns its _state.
func reopen(t *testing.T, path string) (Snapshot, error) {
	t.Helper()
	b, err := provisionApp(t, withStateFile(path), func(a *App) { a.Name = t.Name() + "-" + path })
	if err != nil {
		return Snapshot{}, err
	}
	defer b.Cleanup()
	return dump(t, b), nil
}

// changes are the requests the crash tests make, each answered with success (status).
var changes = []struct {
	status             int
	method, path, body string
}{
	{201, "POST", "/api/v1/accounts", `{"login":"ada@contoso.example","person":{"first":"Ada"}}`},
	{201, "POST", "/api/v1/accounts", `{"login":"grace@contoso.example","org":{"manager_id":1}}`},
	{201, "POST", "/api/v1/teams", `{"name":"Engineering"}`},
	{204, "PUT", "/api/v1/teams/1/members/1", ""},
	{204, "PUT", "/api/v1/teams/1/members/2", ""},
	{200, "POST", "/api/v1/accounts/2/lock", ""},
	{200, "PATCH", "/api/v1/accounts/1", `{"org":{"title":"Analyst"}}`},
	{200, "POST", "/api/v1/accounts:batch", `{"accounts":[{"login":"a@x.example"},{"login":"ADA@contoso.example"},{"login":"b@x.example"}]}`},
	{200, "POST", "/api/v1/teams/1/members:batch", `{"add":[3,4],"remove":[1]}`},
	{204, "DELETE", "/api/v1/accounts/1", ""},
	{200, "PUT", "/api/v1/teams/1", `{"name":"R&D","description":"<lab>"}`},
	{200, "POST", "/api/v1/accounts/2/unlock", ""},
	{204, "DELETE", "/api/v1/teams/1/members/3", ""},
	{200, "POST", "/api/v1/teams:batch", `{"teams":[{"name":"Sales"},{"name":"r&d"}]}`},
	{204, "POST", "/api/v1/_reset", ""},
	{201, "POST", "/api/v1/accounts", `{"login":"after-reset@contoso.example"}`},
}

// TestStateFileSurvivesACrash: a process killed right after the app answered finds every
// change it answered (the log is synced before the answer), with the same ids and
// timestamps, however the files were left: between two changes, with a last record cut
// short (never answered), or in the middle of a compaction (a new log started and no
// snapshot naming it yet, or the snapshot renamed and the older logs not yet removed).
func TestStateFileSurvivesACrash(t *testing.T) {
	t.Run("between changes", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "state.json")
		a, err := provisionApp(t, withStateFile(file))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Cleanup()
		for i, c := range changes {
			must(t, a, c.status, c.method, c.path, c.body)
			want := dump(t, a)
			got, err := reopen(t, crashCopy(t, file))
			if err != nil {
				t.Fatalf("after change %d: %v", i, err)
			}
			if !sameState(got, want) {
				t.Fatalf("after change %d (%s %s) the crashed app holds\n%+v\nwant\n%+v", i, c.method, c.path, got, want)
			}
		}
		// A record cut short by the crash is left out; one in the middle of a log is not.
		cp := crashCopy(t, file)
		logs, err := listLogs(cp)
		if err != nil || len(logs) == 0 {
			t.Fatalf("logs %v %v", logs, err)
		}
		newest := logPath(cp, logs[len(logs)-1])
		f, err := os.OpenFile(newest, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.WriteString(`{"time":"2026-01-01T00:00:00Z","method":"POST","path":"/api/v1/acc`)
		f.Close()
		if got, err := reopen(t, cp); err != nil || !sameState(got, dump(t, a)) {
			t.Fatalf("a torn last record: %v, %+v", err, got)
		}
		cp = crashCopy(t, file)
		data, _ := os.ReadFile(logPath(cp, logs[len(logs)-1]))
		if err := os.WriteFile(logPath(cp, logs[len(logs)-1]), append([]byte("{not json}\n"), data...), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := reopen(t, cp); err == nil || !strings.Contains(err.Error(), "record 1 is not a change of the app") || !strings.Contains(err.Error(), cp) {
			t.Fatalf("a broken record in the middle of the log: %v", err)
		}
	})

	t.Run("during compactions", func(t *testing.T) {
		old, oldSpacing := minCompactBytes, compactSpacing
		minCompactBytes, compactSpacing = 1, 0 // compact after every change
		file := filepath.Join(t.TempDir(), "state.json")
		var (
			mu     sync.Mutex
			copies []string
		)
		testHookCompact = func(string) {
			mu.Lock()
			copies = append(copies, crashCopy(t, file))
			mu.Unlock()
		}
		t.Cleanup(func() { testHookCompact, minCompactBytes, compactSpacing = nil, old, oldSpacing })
		a, err := provisionApp(t, withStateFile(file))
		if err != nil {
			t.Fatal(err)
		}
		states := []Snapshot{dump(t, a)}
		for _, c := range changes {
			must(t, a, c.status, c.method, c.path, c.body)
			states = append(states, dump(t, a))
			time.Sleep(5 * time.Millisecond) // let the compaction of this change run beside the next
		}
		if err := a.Cleanup(); err != nil {
			t.Fatal(err)
		}
		testHookCompact = nil
		mu.Lock()
		defer mu.Unlock()
		if len(copies) < 4 {
			t.Fatalf("only %d copies taken in compactions", len(copies))
		}
		t.Logf("%d copies taken in compactions", len(copies))
		// Each copy holds the state after some change, whole: none lost, none half made.
		last := 0
		for i, cp := range copies {
			got, err := reopen(t, cp)
			if err != nil {
				t.Fatalf("copy %d: %v", i, err)
			}
			j := slices.IndexFunc(states, func(s Snapshot) bool { return sameState(s, got) })
			if j < 0 {
				t.Fatalf("copy %d holds a state the app never answered:\n%+v", i, got)
			}
			if j < last {
				t.Fatalf("copy %d holds the state after change %d, an earlier copy the one after %d", i, j, last)
			}
			last = j
		}
		if last != len(changes) {
			t.Errorf("the last compaction's copy holds the state after change %d of %d", last, len(changes))
		}
	})
}

// sameState compares two dumps.
func sameState(a, b Snapshot) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
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

// TestStateFileUnwritable: a change whose record cannot be written is answered 503 in the
// app's error format (the client sends it again), and so is every later change, since the
// file would no longer hold what the app answered; reads go on.
func TestStateFileUnwritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.json")
	a, err := provisionApp(t, withStateFile(file))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Cleanup()
	must(t, a, http.StatusCreated, "POST", "/api/v1/accounts", `{"login":"ada@contoso.example"}`)
	p := a.state.persist
	p.mu.Lock()
	_ = p.log.Close() // every later write of the log fails
	p.mu.Unlock()
	for _, login := range []string{"grace", "linus"} {
		rec := must(t, a, http.StatusServiceUnavailable, "POST", "/api/v1/accounts", `{"login":"`+login+`@contoso.example"}`)
		if code := errorCode(t, rec); code != CodeStorage {
			t.Errorf("%s: code %s", login, code)
		}
	}
	if n := len(dump(t, a).Accounts); n != 2 {
		t.Errorf("%d accounts: want ada and grace (made, not kept), not linus (refused)", n)
	}
}
