package demoapp

import (
	"net/http"
	"strings"
	"testing"
)

// TestEndpointStatuses runs every endpoint against the seed fixture, successes and
// errors, and checks the status and (for errors) the app's own error code.
func TestEndpointStatuses(t *testing.T) {
	big := `{"login":"x@y.z","person":{"display":"` + strings.Repeat("a", maxBodyBytes) + `"}}`
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
	}{
		// authentication
		{name: "no key", method: "GET", path: "/api/v1/accounts", headers: []string{"X-Api-Key", ""}, status: 401, code: CodeUnauthorized},
		{name: "wrong key", method: "GET", path: "/api/v1/accounts/1", headers: []string{"X-Api-Key", "nope"}, status: 401, code: CodeUnauthorized},
		{name: "key prefix", method: "GET", path: "/api/v1/_state", headers: []string{"X-Api-Key", testKey[:5]}, status: 401, code: CodeUnauthorized},
		{name: "bearer is not the key", method: "GET", path: "/api/v1/accounts", headers: []string{"X-Api-Key", "", "Authorization", "Bearer " + testKey}, status: 401, code: CodeUnauthorized},
		{name: "unknown route needs key", method: "GET", path: "/api/v1/nope", headers: []string{"X-Api-Key", ""}, status: 401, code: CodeUnauthorized},

		// routing
		{name: "unknown route", method: "GET", path: "/api/v1/users", status: 404, code: CodeRouteNotFound},
		{name: "base path", method: "GET", path: "/api/v1", status: 404, code: CodeRouteNotFound},
		{name: "trailing slash", method: "GET", path: "/api/v1/accounts/", status: 404, code: CodeAccountNotFound},
		{name: "method not allowed", method: "DELETE", path: "/api/v1/accounts", status: 405, code: CodeMethodNotAllowed},
		{name: "lock with GET", method: "GET", path: "/api/v1/accounts/1/lock", status: 405, code: CodeMethodNotAllowed},
		{name: "non-integer account id", method: "GET", path: "/api/v1/accounts/abc", status: 404, code: CodeAccountNotFound},
		{name: "zero account id", method: "GET", path: "/api/v1/accounts/0", status: 404, code: CodeAccountNotFound},
		{name: "negative team id", method: "GET", path: "/api/v1/teams/-1", status: 404, code: CodeTeamNotFound},
		{name: "overflowing id", method: "GET", path: "/api/v1/teams/99999999999999999999", status: 404, code: CodeTeamNotFound},

		// accounts: create
		{name: "create", method: "POST", path: "/api/v1/accounts", body: `{"login":"new@contoso.example"}`, status: 201},
		{name: "create locked", method: "POST", path: "/api/v1/accounts", body: `{"login":"new@contoso.example","locked":true}`, status: 201},
		{name: "create duplicate login", method: "POST", path: "/api/v1/accounts", body: `{"login":"ada@contoso.example"}`, status: 409, code: CodeDuplicateLogin},
		{name: "create duplicate login other case", method: "POST", path: "/api/v1/accounts", body: `{"login":"ADA@Contoso.Example"}`, status: 409, code: CodeDuplicateLogin},
		{name: "create without login", method: "POST", path: "/api/v1/accounts", body: `{"person":{"first":"X"}}`, status: 400, code: CodeValidationFailed},
		{name: "create null login", method: "POST", path: "/api/v1/accounts", body: `{"login":null}`, status: 400, code: CodeValidationFailed},
		{name: "create login with space", method: "POST", path: "/api/v1/accounts", body: `{"login":"a b"}`, status: 400, code: CodeValidationFailed},
		{name: "create login too long", method: "POST", path: "/api/v1/accounts", body: `{"login":"` + strings.Repeat("a", 257) + `"}`, status: 400, code: CodeValidationFailed},
		{name: "create control char", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b","person":{"first":"A\u0007"}}`, status: 400, code: CodeValidationFailed},
		{name: "create bad mail", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b","contact":{"mail":"not-mail"}}`, status: 400, code: CodeValidationFailed},
		{name: "create wrong type", method: "POST", path: "/api/v1/accounts", body: `{"login":5}`, status: 400, code: CodeValidationFailed},
		{name: "create nested wrong type", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b","person":"Ada"}`, status: 400, code: CodeValidationFailed},
		{name: "create unknown field", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b","userName":"a@b"}`, status: 400, code: CodeValidationFailed},
		{name: "create unknown nested field", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b","person":{"given":"A"}}`, status: 400, code: CodeValidationFailed},
		{name: "create with id", method: "POST", path: "/api/v1/accounts", body: `{"id":7,"login":"a@b"}`, status: 400, code: CodeReadOnlyField},
		{name: "create with created_at", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b","created_at":"x"}`, status: 400, code: CodeReadOnlyField},
		{name: "create fractional manager", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b","org":{"manager_id":1.5}}`, status: 400, code: CodeValidationFailed},
		{name: "create zero manager", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b","org":{"manager_id":0}}`, status: 400, code: CodeValidationFailed},
		{name: "create unknown manager", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b","org":{"manager_id":99}}`, status: 422, code: CodeUnknownManager},
		{name: "create empty body", method: "POST", path: "/api/v1/accounts", status: 400, code: CodeInvalidJSON},
		{name: "create invalid json", method: "POST", path: "/api/v1/accounts", body: `{"login":`, status: 400, code: CodeInvalidJSON},
		{name: "create two objects", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b"} {}`, status: 400, code: CodeInvalidJSON},
		{name: "create array", method: "POST", path: "/api/v1/accounts", body: `[{"login":"a@b"}]`, status: 400, code: CodeInvalidJSON},
		{name: "create form type", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b"}`, headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, code: CodeUnsupportedMediaType},
		{name: "create scim+json type", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b"}`, headers: []string{"Content-Type", "application/scim+json; charset=utf-8"}, status: 201},
		{name: "create no content type", method: "POST", path: "/api/v1/accounts", body: `{"login":"a@b"}`, headers: []string{"Content-Type", ""}, status: 201},
		{name: "create oversized body", method: "POST", path: "/api/v1/accounts", body: big, status: 413, code: CodePayloadTooLarge},

		// accounts: read, update, delete, lock
		{name: "get", method: "GET", path: "/api/v1/accounts/1", status: 200},
		{name: "get unknown", method: "GET", path: "/api/v1/accounts/99", status: 404, code: CodeAccountNotFound},
		{name: "patch", method: "PATCH", path: "/api/v1/accounts/1", body: `{"contact":{"mail":"ada@contoso.example"}}`, status: 200},
		{name: "patch unknown", method: "PATCH", path: "/api/v1/accounts/99", body: `{"contact":{"mail":"ada@contoso.example"}}`, status: 404, code: CodeAccountNotFound},
		{name: "patch to taken login", method: "PATCH", path: "/api/v1/accounts/1", body: `{"login":"Grace@contoso.example"}`, status: 409, code: CodeDuplicateLogin},
		{name: "patch own login other case", method: "PATCH", path: "/api/v1/accounts/1", body: `{"login":"ADA@contoso.example"}`, status: 200},
		{name: "patch remove login", method: "PATCH", path: "/api/v1/accounts/1", body: `{"login":null}`, status: 400, code: CodeValidationFailed},
		{name: "patch locked", method: "PATCH", path: "/api/v1/accounts/1", body: `{"locked":true}`, status: 400, code: CodeReadOnlyField},
		{name: "patch id", method: "PATCH", path: "/api/v1/accounts/1", body: `{"id":1}`, status: 400, code: CodeReadOnlyField},
		{name: "patch unknown field", method: "PATCH", path: "/api/v1/accounts/1", body: `{"active":false}`, status: 400, code: CodeValidationFailed},
		{name: "patch self manager", method: "PATCH", path: "/api/v1/accounts/1", body: `{"org":{"manager_id":1}}`, status: 422, code: CodeInvalidManager},
		{name: "patch unknown manager", method: "PATCH", path: "/api/v1/accounts/1", body: `{"org":{"manager_id":42}}`, status: 422, code: CodeUnknownManager},
		{name: "patch wrong nested type", method: "PATCH", path: "/api/v1/accounts/1", body: `{"org":{"dept":["R&D"]}}`, status: 400, code: CodeValidationFailed},
		{name: "patch not an object", method: "PATCH", path: "/api/v1/accounts/1", body: `"x"`, status: 400, code: CodeInvalidJSON},
		{name: "put", method: "PUT", path: "/api/v1/accounts/2", body: `{"login":"grace@contoso.example"}`, status: 200},
		{name: "put without login", method: "PUT", path: "/api/v1/accounts/2", body: `{}`, status: 400, code: CodeValidationFailed},
		{name: "put unknown", method: "PUT", path: "/api/v1/accounts/9", body: `{"login":"x@y"}`, status: 404, code: CodeAccountNotFound},
		{name: "delete", method: "DELETE", path: "/api/v1/accounts/2", status: 204},
		{name: "delete unknown", method: "DELETE", path: "/api/v1/accounts/99", status: 404, code: CodeAccountNotFound},
		{name: "lock", method: "POST", path: "/api/v1/accounts/1/lock", status: 200},
		{name: "unlock", method: "POST", path: "/api/v1/accounts/1/unlock", status: 200},
		{name: "lock unknown", method: "POST", path: "/api/v1/accounts/99/lock", status: 404, code: CodeAccountNotFound},
		{name: "list", method: "GET", path: "/api/v1/accounts", status: 200},
		{name: "list bad limit", method: "GET", path: "/api/v1/accounts?limit=0", status: 400, code: CodeValidationFailed},
		{name: "list limit too high", method: "GET", path: "/api/v1/accounts?limit=201", status: 400, code: CodeValidationFailed},
		{name: "list limit not a number", method: "GET", path: "/api/v1/accounts?limit=ten", status: 400, code: CodeValidationFailed},
		{name: "list bad cursor", method: "GET", path: "/api/v1/accounts?cursor=!!!", status: 400, code: CodeInvalidCursor},
		{name: "list team cursor", method: "GET", path: "/api/v1/accounts?cursor=" + encodeCursor("teams", 1), status: 400, code: CodeInvalidCursor},

		// teams
		{name: "create team", method: "POST", path: "/api/v1/teams", body: `{"name":"Ops","description":"on call"}`, status: 201},
		{name: "create team duplicate", method: "POST", path: "/api/v1/teams", body: `{"name":"engineering"}`, status: 409, code: CodeDuplicateTeamName},
		{name: "create team blank", method: "POST", path: "/api/v1/teams", body: `{"name":"  "}`, status: 400, code: CodeValidationFailed},
		{name: "create team long description", method: "POST", path: "/api/v1/teams", body: `{"name":"X","description":"` + strings.Repeat("d", 1025) + `"}`, status: 400, code: CodeValidationFailed},
		{name: "create team with members", method: "POST", path: "/api/v1/teams", body: `{"name":"X","members":[1]}`, status: 400, code: CodeReadOnlyField},
		{name: "create team unknown field", method: "POST", path: "/api/v1/teams", body: `{"displayName":"X"}`, status: 400, code: CodeValidationFailed},
		{name: "get team", method: "GET", path: "/api/v1/teams/1", status: 200},
		{name: "get team unknown", method: "GET", path: "/api/v1/teams/9", status: 404, code: CodeTeamNotFound},
		{name: "rename team", method: "PATCH", path: "/api/v1/teams/1", body: `{"name":"R&D"}`, status: 200},
		{name: "rename team to taken", method: "PATCH", path: "/api/v1/teams/1", body: `{"name":"SALES"}`, status: 409, code: CodeDuplicateTeamName},
		{name: "patch team unknown", method: "PATCH", path: "/api/v1/teams/9", body: `{"name":"X"}`, status: 404, code: CodeTeamNotFound},
		{name: "put team", method: "PUT", path: "/api/v1/teams/2", body: `{"name":"Sales EU"}`, status: 200},
		{name: "delete team", method: "DELETE", path: "/api/v1/teams/1", status: 204},
		{name: "delete team unknown", method: "DELETE", path: "/api/v1/teams/9", status: 404, code: CodeTeamNotFound},
		{name: "list teams", method: "GET", path: "/api/v1/teams?name=sales", status: 200},

		// members
		{name: "add member", method: "PUT", path: "/api/v1/teams/2/members/1", status: 204},
		{name: "add member again", method: "PUT", path: "/api/v1/teams/1/members/1", status: 204},
		{name: "add unknown account", method: "PUT", path: "/api/v1/teams/1/members/99", status: 422, code: CodeUnknownAccount},
		{name: "add to unknown team", method: "PUT", path: "/api/v1/teams/9/members/1", status: 404, code: CodeTeamNotFound},
		{name: "remove member", method: "DELETE", path: "/api/v1/teams/1/members/1", status: 204},
		{name: "remove non-member", method: "DELETE", path: "/api/v1/teams/1/members/2", status: 404, code: CodeNotAMember},
		{name: "remove from unknown team", method: "DELETE", path: "/api/v1/teams/9/members/1", status: 404, code: CodeTeamNotFound},
		{name: "list members", method: "GET", path: "/api/v1/teams/1/members", status: 200},
		{name: "list members unknown team", method: "GET", path: "/api/v1/teams/9/members", status: 404, code: CodeTeamNotFound},
		{name: "list members other team cursor", method: "GET", path: "/api/v1/teams/1/members?cursor=" + encodeCursor("members2", 1), status: 400, code: CodeInvalidCursor},
		{name: "batch", method: "POST", path: "/api/v1/teams/2/members:batch", body: `{"add":[1,2],"remove":[]}`, status: 200},
		{name: "batch unknown account", method: "POST", path: "/api/v1/teams/2/members:batch", body: `{"add":[1,77,78]}`, status: 422, code: CodeUnknownAccount},
		{name: "batch unknown team", method: "POST", path: "/api/v1/teams/9/members:batch", body: `{"add":[1]}`, status: 404, code: CodeTeamNotFound},
		{name: "batch add and remove same", method: "POST", path: "/api/v1/teams/1/members:batch", body: `{"add":[2],"remove":[2]}`, status: 400, code: CodeValidationFailed},
		{name: "batch bad id", method: "POST", path: "/api/v1/teams/1/members:batch", body: `{"remove":[0]}`, status: 400, code: CodeValidationFailed},
		{name: "batch string ids", method: "POST", path: "/api/v1/teams/1/members:batch", body: `{"add":["1"]}`, status: 400, code: CodeValidationFailed},
		{name: "batch unknown field", method: "POST", path: "/api/v1/teams/1/members:batch", body: `{"members":[1]}`, status: 400, code: CodeValidationFailed},
		{name: "batch too many", method: "POST", path: "/api/v1/teams/1/members:batch", body: `{"remove":[` + strings.TrimSuffix(strings.Repeat("3,", maxBatchIDs+1), ",") + `]}`, status: 400, code: CodeValidationFailed},

		// inspection
		{name: "state", method: "GET", path: "/api/v1/_state", status: 200},
		{name: "reset", method: "POST", path: "/api/v1/_reset", status: 204},
		{name: "reset with GET", method: "GET", path: "/api/v1/_reset", status: 405, code: CodeMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestApp(t)
			seed(t, a)
			rec := do(t, a, tc.method, tc.path, tc.body, tc.headers...)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code != "" {
				if got := errorCode(t, rec); got != tc.code {
					t.Errorf("code %s, want %s", got, tc.code)
				}
			}
			if rec.Code != http.StatusNoContent {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			} else if rec.Body.Len() != 0 {
				t.Errorf("204 with a body: %s", rec.Body)
			}
		})
	}
}

func TestMethodNotAllowedListsMethods(t *testing.T) {
	a := newTestApp(t)
	rec := do(t, a, "POST", "/api/v1/accounts/1", "{}")
	if rec.Code != 405 || rec.Header().Get("Allow") != "GET, PUT, PATCH, DELETE" {
		t.Errorf("status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestOtherPathsPassThrough(t *testing.T) {
	a := newTestApp(t)
	for _, p := range []string{"/", "/scim/v2/Users", "/api/v10/accounts", "/api"} {
		rec := do(t, a, "GET", p, "", "X-Api-Key", "")
		if rec.Code != http.StatusTeapot {
			t.Errorf("%s: status %d, want the next handler's 418", p, rec.Code)
		}
	}
}
