package demoapp

import (
	"net/http"
	"strconv"
	"strings"
)

// basePath prefixes every endpoint of the app.
const basePath = "/api/v1"

// maxBatchIDs bounds the ids of one members:batch call (add and remove together).
const maxBatchIDs = 10000

// params are the ids taken from the path.
type params struct {
	team, account int64
}

// reply is a successful response: a status, a JSON body (nil for none) and, for creations,
// the Location of the new resource.
type reply struct {
	status   int
	body     any
	location string
}

type endpoint func(a *App, w http.ResponseWriter, r *http.Request, p params) (reply, *apiError)

// route is one endpoint. Path segments are relative to basePath; "{account}" and "{team}"
// match a positive integer id.
type route struct {
	method string
	path   []string
	call   endpoint
}

var routes = []route{
	{http.MethodGet, []string{"accounts"}, listAccounts},
	{http.MethodPost, []string{"accounts"}, createAccount},
	{http.MethodPost, []string{"accounts:batch"}, batchCreateAccounts},
	{http.MethodGet, []string{"accounts", "{account}"}, getAccount},
	{http.MethodPut, []string{"accounts", "{account}"}, replaceAccount},
	{http.MethodPatch, []string{"accounts", "{account}"}, patchAccount},
	{http.MethodDelete, []string{"accounts", "{account}"}, deleteAccount},
	{http.MethodPost, []string{"accounts", "{account}", "lock"}, lockAccount},
	{http.MethodPost, []string{"accounts", "{account}", "unlock"}, unlockAccount},
	{http.MethodGet, []string{"teams"}, listTeams},
	{http.MethodPost, []string{"teams"}, createTeam},
	{http.MethodPost, []string{"teams:batch"}, batchCreateTeams},
	{http.MethodGet, []string{"teams", "{team}"}, getTeam},
	{http.MethodPut, []string{"teams", "{team}"}, replaceTeam},
	{http.MethodPatch, []string{"teams", "{team}"}, patchTeam},
	{http.MethodDelete, []string{"teams", "{team}"}, deleteTeam},
	{http.MethodGet, []string{"teams", "{team}", "members"}, listMembers},
	{http.MethodPut, []string{"teams", "{team}", "members", "{account}"}, addMember},
	{http.MethodDelete, []string{"teams", "{team}", "members", "{account}"}, removeMember},
	{http.MethodPost, []string{"teams", "{team}", "members:batch"}, batchMembers},
	{http.MethodGet, []string{"_state"}, dumpState},
	{http.MethodPost, []string{"_reset"}, resetState},
}

// owns says whether a request path belongs to the app; others go to the next handler.
func owns(path string) bool {
	return path == basePath || strings.HasPrefix(path, basePath+"/")
}

// inspection says whether a request path is one of the test hooks (_state, _reset), which
// are not counted as the app's calls.
func inspection(path string) bool {
	return path == basePath+"/_state" || path == basePath+"/_reset"
}

// dispatch finds the endpoint for a request and runs it. A path that exists with another
// method is a 405 with Allow; a path id that is not a positive integer is a 404 of that
// resource (no record can have that id).
func (a *App) dispatch(w http.ResponseWriter, r *http.Request) (reply, *apiError) {
	segs := strings.Split(strings.TrimPrefix(r.URL.Path, basePath+"/"), "/")
	var allowed []string
	for _, rt := range routes {
		if !shapeMatches(rt.path, segs) {
			continue
		}
		if rt.method != r.Method {
			allowed = append(allowed, rt.method)
			continue
		}
		p, err := parseParams(rt.path, segs)
		if err != nil {
			return reply{}, err
		}
		return rt.call(a, w, r, p)
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		return reply{}, errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s is not allowed here; allowed: %s", r.Method, strings.Join(allowed, ", "))
	}
	return reply{}, errorf(http.StatusNotFound, CodeRouteNotFound, "no endpoint %s %s", r.Method, truncate(r.URL.Path, 200))
}

func shapeMatches(pattern, segs []string) bool {
	if len(pattern) != len(segs) {
		return false
	}
	for i, p := range pattern {
		if !strings.HasPrefix(p, "{") && p != segs[i] {
			return false
		}
	}
	return true
}

func parseParams(pattern, segs []string) (params, *apiError) {
	var p params
	for i, name := range pattern {
		if !strings.HasPrefix(name, "{") {
			continue
		}
		id, err := strconv.ParseInt(segs[i], 10, 64)
		valid := err == nil && id > 0
		switch name {
		case "{account}":
			if !valid {
				return p, errorf(http.StatusNotFound, CodeAccountNotFound, "no account with id %q", truncate(segs[i], 64))
			}
			p.account = id
		case "{team}":
			if !valid {
				return p, errorf(http.StatusNotFound, CodeTeamNotFound, "no team with id %q", truncate(segs[i], 64))
			}
			p.team = id
		}
	}
	return p, nil
}

// ---- accounts ----

// accountReadOnly lists the account fields no write may set, with a hint for each.
var accountReadOnly = map[string]string{
	"id":         " (it is assigned by the app)",
	"created_at": "",
	"updated_at": "",
}

// accountUpdateReadOnly adds locked: after creation it changes only through the lock and
// unlock endpoints.
var accountUpdateReadOnly = map[string]string{
	"id":         " (it is assigned by the app)",
	"created_at": "",
	"updated_at": "",
	"locked":     "; use POST /api/v1/accounts/{id}/lock or /unlock",
}

func listAccounts(a *App, _ http.ResponseWriter, r *http.Request, _ params) (reply, *apiError) {
	q := r.URL.Query()
	pg, err := parsePage(q, "accounts")
	if err != nil {
		return reply{}, err
	}
	items, more := a.state.listAccounts(q.Get("login"), pg.after, pg.limit)
	return ok(newPage(items, more, "accounts", func(x Account) int64 { return x.ID })), nil
}

func createAccount(a *App, w http.ResponseWriter, r *http.Request, _ params) (reply, *apiError) {
	in, err := decodeFields[accountCreate](w, r, accountReadOnly)
	if err != nil {
		return reply{}, err
	}
	acc, err := a.state.createAccount(in, a.limits)
	if err != nil {
		return reply{}, err
	}
	return reply{status: http.StatusCreated, body: acc, location: basePath + "/accounts/" + strconv.FormatInt(acc.ID, 10)}, nil
}

func getAccount(a *App, _ http.ResponseWriter, _ *http.Request, p params) (reply, *apiError) {
	return okOrErr(a.state.getAccount(p.account))
}

// replaceAccount (PUT) sets every writable field; those missing from the body become empty.
func replaceAccount(a *App, w http.ResponseWriter, r *http.Request, p params) (reply, *apiError) {
	in, err := decodeFields[accountFields](w, r, accountUpdateReadOnly)
	if err != nil {
		return reply{}, err
	}
	return okOrErr(a.state.updateAccount(p.account, func(accountFields) (accountFields, *apiError) { return in, nil }))
}

// patchAccount merges a JSON merge patch (RFC 7396) into the account.
func patchAccount(a *App, w http.ResponseWriter, r *http.Request, p params) (reply, *apiError) {
	body, err := readFields(w, r, accountUpdateReadOnly)
	if err != nil {
		return reply{}, err
	}
	return okOrErr(a.state.updateAccount(p.account, func(cur accountFields) (accountFields, *apiError) {
		return mergePatch(cur, body)
	}))
}

func deleteAccount(a *App, _ http.ResponseWriter, _ *http.Request, p params) (reply, *apiError) {
	if err := a.state.deleteAccount(p.account); err != nil {
		return reply{}, err
	}
	return reply{status: http.StatusNoContent}, nil
}

func lockAccount(a *App, _ http.ResponseWriter, _ *http.Request, p params) (reply, *apiError) {
	return okOrErr(a.state.setLocked(p.account, true))
}

func unlockAccount(a *App, _ http.ResponseWriter, _ *http.Request, p params) (reply, *apiError) {
	return okOrErr(a.state.setLocked(p.account, false))
}

// ---- teams ----

var teamReadOnly = map[string]string{
	"id":           " (it is assigned by the app)",
	"member_count": "; change members through /api/v1/teams/{id}/members",
	"members":      "; change members through /api/v1/teams/{id}/members",
	"created_at":   "",
	"updated_at":   "",
}

func listTeams(a *App, _ http.ResponseWriter, r *http.Request, _ params) (reply, *apiError) {
	q := r.URL.Query()
	pg, err := parsePage(q, "teams")
	if err != nil {
		return reply{}, err
	}
	items, more := a.state.listTeams(q.Get("name"), pg.after, pg.limit)
	return ok(newPage(items, more, "teams", func(x Team) int64 { return x.ID })), nil
}

func createTeam(a *App, w http.ResponseWriter, r *http.Request, _ params) (reply, *apiError) {
	in, err := decodeFields[teamFields](w, r, teamReadOnly)
	if err != nil {
		return reply{}, err
	}
	t, err := a.state.createTeam(in, a.limits)
	if err != nil {
		return reply{}, err
	}
	return reply{status: http.StatusCreated, body: t, location: basePath + "/teams/" + strconv.FormatInt(t.ID, 10)}, nil
}

func getTeam(a *App, _ http.ResponseWriter, _ *http.Request, p params) (reply, *apiError) {
	return okOrErr(a.state.getTeam(p.team))
}

func replaceTeam(a *App, w http.ResponseWriter, r *http.Request, p params) (reply, *apiError) {
	in, err := decodeFields[teamFields](w, r, teamReadOnly)
	if err != nil {
		return reply{}, err
	}
	return okOrErr(a.state.updateTeam(p.team, func(teamFields) (teamFields, *apiError) { return in, nil }))
}

func patchTeam(a *App, w http.ResponseWriter, r *http.Request, p params) (reply, *apiError) {
	body, err := readFields(w, r, teamReadOnly)
	if err != nil {
		return reply{}, err
	}
	return okOrErr(a.state.updateTeam(p.team, func(cur teamFields) (teamFields, *apiError) {
		return mergePatch(cur, body)
	}))
}

func deleteTeam(a *App, _ http.ResponseWriter, _ *http.Request, p params) (reply, *apiError) {
	if err := a.state.deleteTeam(p.team); err != nil {
		return reply{}, err
	}
	return reply{status: http.StatusNoContent}, nil
}

// ---- members ----

func listMembers(a *App, _ http.ResponseWriter, r *http.Request, p params) (reply, *apiError) {
	scope := "members" + strconv.FormatInt(p.team, 10)
	pg, err := parsePage(r.URL.Query(), scope)
	if err != nil {
		return reply{}, err
	}
	items, more, err := a.state.listMembers(p.team, pg.after, pg.limit)
	if err != nil {
		return reply{}, err
	}
	return ok(newPage(items, more, scope, func(x Member) int64 { return x.AccountID })), nil
}

// addMember (PUT) is idempotent: adding a member again is a success that changes nothing.
func addMember(a *App, _ http.ResponseWriter, _ *http.Request, p params) (reply, *apiError) {
	if _, err := a.state.changeMembers(p.team, []int64{p.account}, nil, a.limits); err != nil {
		return reply{}, err
	}
	return reply{status: http.StatusNoContent}, nil
}

func removeMember(a *App, _ http.ResponseWriter, _ *http.Request, p params) (reply, *apiError) {
	if err := a.state.removeMember(p.team, p.account); err != nil {
		return reply{}, err
	}
	return reply{status: http.StatusNoContent}, nil
}

// batchRequest is the body of POST /api/v1/teams/{id}/members:batch.
type batchRequest struct {
	Add    []int64 `json:"add"`
	Remove []int64 `json:"remove"`
}

func (b *batchRequest) validate() *apiError {
	if len(b.Add)+len(b.Remove) > maxBatchIDs {
		return invalid("a batch holds at most %d account ids", maxBatchIDs)
	}
	adding := make(map[int64]bool, len(b.Add))
	for _, id := range b.Add {
		if id < 1 {
			return invalid("add: %d is not an account id", id)
		}
		adding[id] = true
	}
	for _, id := range b.Remove {
		if id < 1 {
			return invalid("remove: %d is not an account id", id)
		}
		if adding[id] {
			return invalid("account %d is both added and removed", id)
		}
	}
	return nil
}

func batchMembers(a *App, w http.ResponseWriter, r *http.Request, p params) (reply, *apiError) {
	in, err := decodeFields[batchRequest](w, r, nil)
	if err != nil {
		return reply{}, err
	}
	if err := in.validate(); err != nil {
		return reply{}, err
	}
	return okOrErr(a.state.changeMembers(p.team, in.Add, in.Remove, a.limits))
}

// ---- inspection ----

func dumpState(a *App, _ http.ResponseWriter, _ *http.Request, _ params) (reply, *apiError) {
	return ok(a.state.snapshot()), nil
}

func resetState(a *App, _ http.ResponseWriter, _ *http.Request, _ params) (reply, *apiError) {
	a.state.reset()
	return reply{status: http.StatusNoContent}, nil
}

func ok(body any) reply { return reply{status: http.StatusOK, body: body} }

func okOrErr[T any](v T, err *apiError) (reply, *apiError) {
	if err != nil {
		return reply{}, err
	}
	return ok(v), nil
}
