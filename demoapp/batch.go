package demoapp

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// maxBatchCreate bounds the items of one accounts:batch or teams:batch call.
const maxBatchCreate = 1000

// The bulk create endpoints, POST /api/v1/accounts:batch with {"accounts": [...]} and POST
// /api/v1/teams:batch with {"teams": [...]}: each item is what POST /accounts (or /teams)
// takes, and each is created or refused on its own, in order. The answer (200) lists one
// result per item, in the order sent:
//
//	{"results": [{"id": 17, "login": "ada@contoso.example"},
//	             {"login": "bob@contoso.example", "error": {"code": "DUPLICATE_LOGIN", "message": "..."}}]}
//
// (teams: "name" instead of "login"). An item the app refuses (a field that fails
// validation, a login or name taken, by another account or an earlier item of the batch, an
// unknown manager) has "error" in the app's error format instead of "id"; the others are
// created. A body that is not such a list, with no item or more than 1000, is a 400; a
// batch that would pass max_accounts (max_teams) creates nothing and is a 507.

// batchResult is one item's result of a bulk create.
type batchItemResult struct {
	ID    int64        `json:"id,omitempty"`
	Login string       `json:"login,omitempty"`
	Name  string       `json:"name,omitempty"`
	Error *errorDetail `json:"error,omitempty"`
}

type batchResults struct {
	Results []batchItemResult `json:"results"`
}

// readBatch reads a bulk create's body: an object whose only field, key, is a list of 1 to
// maxBatchCreate items.
func readBatch(w http.ResponseWriter, r *http.Request, key string) ([]json.RawMessage, *apiError) {
	body, err := readObject(w, r)
	if err != nil {
		return nil, err
	}
	var in map[string][]json.RawMessage
	if err := decodeStrict(body, &in); err != nil {
		return nil, err
	}
	items, ok := in[key]
	switch {
	case len(in) != 1 || !ok:
		return nil, invalid("the body is {%q: [...]}, a list of the items to create", key)
	case len(items) == 0:
		return nil, invalid("%s: give at least one item", key)
	case len(items) > maxBatchCreate:
		return nil, invalid("%s: a batch holds at most %d items, not %d", key, maxBatchCreate, len(items))
	}
	return items, nil
}

// decodeItem decodes one item of a bulk create like the body of a single create.
func decodeItem[T any](raw json.RawMessage, readOnly map[string]string) (T, *apiError) {
	var in T
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return in, invalid("an item is a JSON object")
	}
	if err := rejectReadOnly(raw, readOnly); err != nil {
		return in, err
	}
	if err := decodeStrict(raw, &in); err != nil {
		return in, err
	}
	return in, nil
}

// echo reads the login and name of an item that did not decode, as far as it can.
func echo(raw json.RawMessage) (e struct{ Login, Name string }) {
	var v struct {
		Login any `json:"login"`
		Name  any `json:"name"`
	}
	if json.Unmarshal(raw, &v) == nil {
		e.Login, _ = v.Login.(string)
		e.Name, _ = v.Name.(string)
	}
	return e
}

func batchCreateAccounts(a *App, w http.ResponseWriter, r *http.Request, _ params) (reply, *apiError) {
	items, err := readBatch(w, r, "accounts")
	if err != nil {
		return reply{}, err
	}
	ins := make([]accountCreate, len(items))
	errs := make([]*apiError, len(items))
	for i, raw := range items {
		if ins[i], errs[i] = decodeItem[accountCreate](raw, accountReadOnly); errs[i] != nil {
			ins[i].Login = echo(raw).Login // a refused item's result still names it
		}
	}
	out, err := a.state.createAccounts(ins, errs, a.limits)
	if err != nil {
		return reply{}, err
	}
	return ok(batchResults{Results: out}), nil
}

func batchCreateTeams(a *App, w http.ResponseWriter, r *http.Request, _ params) (reply, *apiError) {
	items, err := readBatch(w, r, "teams")
	if err != nil {
		return reply{}, err
	}
	ins := make([]teamFields, len(items))
	errs := make([]*apiError, len(items))
	for i, raw := range items {
		if ins[i], errs[i] = decodeItem[teamFields](raw, teamReadOnly); errs[i] != nil {
			ins[i].Name = echo(raw).Name
		}
	}
	out, err := a.state.createTeams(ins, errs, a.limits)
	if err != nil {
		return reply{}, err
	}
	return ok(batchResults{Results: out}), nil
}

// createAccounts creates the accounts of a bulk create in order, under one lock: those
// that decoded (errs[i] nil) and pass the checks; the others get their error.
func (s *state) createAccounts(ins []accountCreate, errs []*apiError, lim limits) ([]batchItemResult, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.accounts)+len(ins) > lim.accounts {
		return nil, limitReached("accounts", lim.accounts)
	}
	out := make([]batchItemResult, len(ins))
	for i := range ins {
		out[i].Login = ins[i].Login
		err := errs[i]
		if err == nil {
			var acc Account
			if acc, err = s.createAccountLocked(ins[i]); err == nil {
				out[i].ID = acc.ID
				continue
			}
		}
		d := err.body().Error
		out[i].Error = &d
	}
	return out, nil
}

// createTeams is createAccounts for teams.
func (s *state) createTeams(ins []teamFields, errs []*apiError, lim limits) ([]batchItemResult, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.teams)+len(ins) > lim.teams {
		return nil, limitReached("teams", lim.teams)
	}
	out := make([]batchItemResult, len(ins))
	for i := range ins {
		out[i].Name = ins[i].Name
		err := errs[i]
		if err == nil {
			var t Team
			if t, err = s.createTeamLocked(ins[i]); err == nil {
				out[i].ID = t.ID
				continue
			}
		}
		d := err.body().Error
		out[i].Error = &d
	}
	return out, nil
}
