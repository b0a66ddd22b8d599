package demoapp

import (
	"net/http"
	"strings"
	"testing"
)

// TestBatchCreateAccounts: each item is created or refused on its own, in order, with its
// result at its position; a malformed batch is refused whole.
func TestBatchCreateAccounts(t *testing.T) {
	a := newTestApp(t)
	seed(t, a)
	rec := must(t, a, http.StatusOK, "POST", "/api/v1/accounts:batch", `{"accounts": [
		{"login": "new1@contoso.example", "org": {"manager_id": 1}},
		{"login": "ADA@contoso.example"},
		{"login": "new2@contoso.example", "org": {"manager_id": 99}},
		{"login": "NEW1@contoso.example"},
		{"login": "new3@contoso.example", "id": 5},
		{"login": "new4@contoso.example", "locked": true},
		[1]
	]}`)
	res := decode[batchResults](t, rec).Results
	want := []struct {
		id    int64
		login string
		code  string
	}{
		{3, "new1@contoso.example", ""},
		{0, "ADA@contoso.example", CodeDuplicateLogin},
		{0, "new2@contoso.example", CodeUnknownManager},
		{0, "NEW1@contoso.example", CodeDuplicateLogin},
		{0, "new3@contoso.example", CodeReadOnlyField},
		{4, "new4@contoso.example", ""},
		{0, "", CodeValidationFailed},
	}
	if len(res) != len(want) {
		t.Fatalf("%d results for %d items: %s", len(res), len(want), rec.Body)
	}
	for i, w := range want {
		r := res[i]
		code := ""
		if r.Error != nil {
			code = r.Error.Code
			if r.Error.Message == "" {
				t.Errorf("item %d: an error without a message", i)
			}
		}
		if r.ID != w.id || r.Login != w.login || code != w.code {
			t.Errorf("item %d: %+v (error %s), want id %d login %q error %q", i, r, code, w.id, w.login, w.code)
		}
	}
	acc := decode[Account](t, must(t, a, http.StatusOK, "GET", "/api/v1/accounts/4", ""))
	if !acc.Locked || acc.Login != "new4@contoso.example" {
		t.Errorf("account 4: %+v", acc)
	}
	if s := a.state.snapshot(); len(s.Accounts) != 4 {
		t.Errorf("%d accounts, want 4", len(s.Accounts))
	}

	for _, tc := range []struct{ name, body, code string }{
		{"empty list", `{"accounts": []}`, CodeValidationFailed},
		{"other key", `{"users": [{"login": "x@y"}]}`, CodeValidationFailed},
		{"two keys", `{"accounts": [{"login": "x@y"}], "teams": []}`, CodeValidationFailed},
		{"not a list", `{"accounts": {"login": "x@y"}}`, CodeValidationFailed},
		{"bare list", `[{"login": "x@y"}]`, CodeInvalidJSON},
		{"too many", `{"accounts": [` + strings.Repeat(`{"login": "x@y"},`, maxBatchCreate) + `{"login": "z@y"}]}`, CodeValidationFailed},
	} {
		rec := do(t, a, "POST", "/api/v1/accounts:batch", tc.body)
		if rec.Code != http.StatusBadRequest || errorCode(t, rec) != tc.code {
			t.Errorf("%s: %d %s, want 400 %s", tc.name, rec.Code, rec.Body, tc.code)
		}
	}
	if s := a.state.snapshot(); len(s.Accounts) != 4 {
		t.Errorf("refused batches created accounts: %d, want 4", len(s.Accounts))
	}
}

// TestBatchCreateLimits: a batch that would pass max_accounts creates nothing (507).
func TestBatchCreateLimits(t *testing.T) {
	a := newTestApp(t, func(a *App) { a.MaxAccounts = 3; a.MaxTeams = 1 })
	rec := do(t, a, "POST", "/api/v1/accounts:batch", `{"accounts": [{"login": "a@b"}, {"login": "c@d"}, {"login": "e@f"}, {"login": "g@h"}]}`)
	if rec.Code != http.StatusInsufficientStorage || errorCode(t, rec) != CodeLimitReached {
		t.Errorf("over the limit: %d %s", rec.Code, rec.Body)
	}
	must(t, a, http.StatusOK, "POST", "/api/v1/accounts:batch", `{"accounts": [{"login": "a@b"}, {"login": "c@d"}, {"login": "e@f"}]}`)
	rec = do(t, a, "POST", "/api/v1/teams:batch", `{"teams": [{"name": "A"}, {"name": "B"}]}`)
	if rec.Code != http.StatusInsufficientStorage {
		t.Errorf("teams over the limit: %d %s", rec.Code, rec.Body)
	}
}

// TestBatchCreateTeams: teams in one call, a name taken refused on its own.
func TestBatchCreateTeams(t *testing.T) {
	a := newTestApp(t)
	seed(t, a)
	rec := must(t, a, http.StatusOK, "POST", "/api/v1/teams:batch", `{"teams": [{"name": "Ops", "description": "d"}, {"name": "sales"}, {"name": ""}]}`)
	res := decode[batchResults](t, rec).Results
	if len(res) != 3 || res[0].ID != 3 || res[0].Name != "Ops" || res[1].Error == nil || res[1].Error.Code != CodeDuplicateTeamName ||
		res[2].Error == nil || res[2].Error.Code != CodeValidationFailed {
		t.Errorf("results %s", rec.Body)
	}
	team := decode[Team](t, must(t, a, http.StatusOK, "GET", "/api/v1/teams/3", ""))
	if team.Name != "Ops" || team.Description != "d" {
		t.Errorf("team 3: %+v", team)
	}
}
