package mapping

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/legacy"
)

// batchUsers is a users section with a create, a lookup and the create_batch given.
func batchUsers(batch string) string {
	return `{"version": 1, "users": {
		"lookup": {"method": "GET", "path": "/users?login={userName}", "id": "data.0.uid"},
		"events": {"create": {"method": "POST", "path": "/users", "id": "uid", "body": {"login": "userName", "name.first": "name.givenName"}}},
		"create_batch": ` + batch + `}}`
}

// TestBatchLoadErrors: every malformed create_batch fails the load naming its rule.
func TestBatchLoadErrors(t *testing.T) {
	good := `"method": "POST", "path": "/users:import", "body_items": "users", "items": "results", "id": "uid"`
	tests := []struct {
		name, file, want string
	}{
		{"unknown key", batchUsers(`{` + good + `, "size": 10}`), `test.json: users.create_batch: unknown field "size"`},
		{"no method", batchUsers(`{"path": "/u", "body_items": "", "items": "", "id": "id"}`),
			`test.json: users.create_batch.method: missing: a batch create sends its items in the body: POST, PUT or PATCH`},
		{"GET", batchUsers(`{"method": "GET", "path": "/u", "body_items": "", "items": "", "id": "id"}`),
			`test.json: users.create_batch.method: "GET" sends no body; a batch create sends its items with POST, PUT or PATCH`},
		{"no path", batchUsers(`{"method": "POST", "body_items": "", "items": "", "id": "id"}`),
			`test.json: users.create_batch.path: missing: the URL path of the app's bulk create call`},
		{"placeholder in path", batchUsers(`{"method": "POST", "path": "/u/{userName}", "body_items": "", "items": "", "id": "id"}`),
			`test.json: users.create_batch.path: a batch creates several resources, of none in particular: its path has no placeholders`},
		{"batch_size 0", batchUsers(`{` + good + `, "batch_size": -1}`), `test.json: users.create_batch.batch_size: must be between 1 and 1000`},
		{"batch_size too big", batchUsers(`{` + good + `, "batch_size": 1001}`), `test.json: users.create_batch.batch_size: must be between 1 and 1000`},
		{"no body_items", batchUsers(`{"method": "POST", "path": "/u", "items": "", "id": "id"}`),
			`test.json: users.create_batch.body_items: missing: the native path of the list of items in the request body (e.g. "accounts"), or "" to send the bare list`},
		{"bad body_items", batchUsers(`{"method": "POST", "path": "/u", "body_items": "a..b", "items": "", "id": "id"}`),
			`test.json: users.create_batch.body_items: the native path "a..b" has an empty component`},
		{"no items", batchUsers(`{"method": "POST", "path": "/u", "body_items": "", "id": "id"}`),
			`test.json: users.create_batch.items: missing: the gjson path of the answer's list of results, one per item (e.g. "results"), or "" when the answer is the bare list`},
		{"bad items", batchUsers(`{"method": "POST", "path": "/u", "body_items": "", "items": ".r", "id": "id"}`),
			`test.json: users.create_batch.items: ".r" has an empty component`},
		{"no id", batchUsers(`{"method": "POST", "path": "/u", "body_items": "", "items": ""}`),
			`test.json: users.create_batch.id: missing: the gjson path of the native id in each result (e.g. "id")`},
		{"bad item_error", batchUsers(`{` + good + `, "item_error": "a b"}`), `test.json: users.create_batch.item_error: "a b" holds white space or control characters`},
		{"bad match template", batchUsers(`{` + good + `, "match": {"login": "{userNme}"}}`),
			`test.json: users.create_batch.match["login"]: unknown attribute "userNme" of user resources`},
		{"empty answer", batchUsers(`{` + good + `, "expect": {"body": "empty"}}`),
			`test.json: users.create_batch.expect.body: a batch's answer gives each item's id: it is "json", not "empty"`},
		{"no create", `{"version": 1, "users": {"lookup": {"method": "GET", "path": "/u?l={userName}", "id": "0.id"}, "create_batch": {` + good + `}}}`,
			`test.json: users.create_batch: sends the bodies of users.events.create, which is not mapped`},
		{"create without id", `{"version": 1, "users": {"lookup": {"method": "GET", "path": "/u?l={userName}", "id": "0.id"}, "events": {"create": {"method": "POST", "path": "/u", "body": {"l": "userName"}}}, "create_batch": {` + good + `}}}`,
			`test.json: users.create_batch: takes the place of the call that creates the account, the first of users.events.create, which gives no "id"`},
		{"create with a condition", `{"version": 1, "users": {"lookup": {"method": "GET", "path": "/u?l={userName}", "id": "0.id"}, "events": {"create": [{"method": "POST", "path": "/u", "id": "id", "body": {"l": "userName"}, "when": {"present": ["userName"]}}]}, "create_batch": {` + good + `}}}`,
			`test.json: users.create_batch: sends every item: the first call of users.events.create cannot have a condition ("when")`},
		{"form create", `{"version": 1, "users": {"lookup": {"method": "GET", "path": "/u?l={userName}", "id": "0.id"}, "events": {"create": {"method": "POST", "path": "/u", "id": "id", "encoding": "form", "body": {"l": "userName"}}}, "create_batch": {` + good + `}}}`,
			`test.json: users.create_batch: sends a JSON list: users.events.create must send JSON, not "encoding": "form"`},
		{"no lookup", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id", "body": {"l": "userName"}}}, "create_batch": {` + good + `}}}`,
			`test.json: users.create_batch: needs users.lookup: when a batch's answer is lost, each item is looked up before it is sent again (never created twice)`},
		{"groups as roles", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id"}}}, "groups": {"lookup": {"method": "GET", "path": "/r?n={displayName}", "id": "0.id"}, "roles": {"assign": {"method": "PUT", "path": "/u/{id}/roles", "body": {"roles": "$role_ids"}}}, "create_batch": {` + good + `}}}`,
			`test.json: groups.create_batch: sends the bodies of groups.events.create, which is not mapped`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test.json", []byte(tc.file), testResolve)
			if err == nil {
				t.Fatalf("loaded; want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("got  %q\nwant %q", err, tc.want)
			}
		})
	}
}

// TestBatchRequest: the items' bodies are the create's, in a list at body_items (or bare),
// and the call expects JSON with the results' list.
func TestBatchRequest(t *testing.T) {
	m := mustParse(t, batchUsers(`{"method": "POST", "path": "/users:import", "batch_size": 3, "body_items": "data.users", "items": "results", "id": "uid",
		"headers": {"X-Bulk": "1"}, "expect": {"status": [200, 207]}}`))
	if got := m.BatchSize("User"); got != 3 {
		t.Errorf("BatchSize = %d, want 3", got)
	}
	if got := m.BatchSize("Group"); got != 0 {
		t.Errorf("groups BatchSize = %d, want 0", got)
	}
	var items []BatchItem
	for _, name := range []string{"ada", "bob"} {
		in := Input{ResourceType: "User", Event: change.Create, Resource: resource(t, `{"userName": "`+name+`", "name": {"givenName": "`+strings.ToUpper(name)+`"}}`)}
		it, err := m.BatchItem(in)
		if err != nil {
			t.Fatal(err)
		}
		single := oneRequest(t, m, in)
		if string(it.Body) != string(single.Body) {
			t.Errorf("item body %s, want the create's %s", it.Body, single.Body)
		}
		items = append(items, it)
	}
	req, err := m.BatchRequest("User", items)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"data":{"users":[{"login":"ada","name":{"first":"ADA"}},{"login":"bob","name":{"first":"BOB"}}]}}`
	if req.Method != "POST" || req.Path != "/users:import" || string(req.Body) != want {
		t.Errorf("request %s %s %s, want POST /users:import %s", req.Method, req.Path, req.Body, want)
	}
	if req.Header.Get("X-Bulk") != "1" || req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", req.Header)
	}
	if req.Idempotent {
		t.Error("a batch create is not idempotent")
	}
	if req.Expect.Success.Body != legacy.BodyJSON || len(req.Expect.Success.Has) != 1 || req.Expect.Success.Has[0] != "results" || len(req.Expect.Status) != 2 {
		t.Errorf("expectation %+v", req.Expect)
	}
	if _, err := m.BatchRequest("User", append(items, items...)); err == nil {
		t.Error("a batch of 4 items was built with batch_size 3")
	}
	bare := mustParse(t, batchUsers(`{"method": "PUT", "path": "/users", "body_items": "", "items": "", "id": "uid"}`))
	req, err = bare.BatchRequest("User", items[:1])
	if err != nil {
		t.Fatal(err)
	}
	if string(req.Body) != `[{"login":"ada","name":{"first":"ADA"}}]` || req.Method != "PUT" {
		t.Errorf("bare list: %s %s", req.Method, req.Body)
	}
	if _, err := bare.BatchItem(Input{ResourceType: "User", Event: change.Create, Resource: resource(t, `{"name": {"givenName": "x"}}`)}); err != nil {
		t.Errorf("an item without a userName (the create does not require it): %v", err)
	}
}

// TestBatchResults: results by position and by value, refusals, and answers that prove
// nothing for some or every item.
func TestBatchResults(t *testing.T) {
	var items []BatchItem
	for _, l := range []string{"ada", "bob", "cy"} {
		items = append(items, BatchItem{Match: map[string]string{"user.login": l}})
	}
	byPos := mustParse(t, batchUsers(`{"method": "POST", "path": "/i", "body_items": "", "items": "results", "id": "uid", "item_error": "error"}`))
	byVal := mustParse(t, batchUsers(`{"method": "POST", "path": "/i", "body_items": "", "items": "", "id": "user.id", "item_error": "problem.code", "match": {"user.login": "{userName|lower}"}}`))
	tests := []struct {
		name string
		m    *Mapping
		body string
		want []BatchResult
	}{
		{"by position", byPos, `{"results": [{"uid": "u-1"}, {"uid": 42}, {"error": {"code": "DUP", "message": "login taken"}}]}`,
			[]BatchResult{{ID: "u-1"}, {ID: "42"}, {Refused: "login taken"}}},
		{"by position, fewer results", byPos, `{"results": [{"uid": "u-1"}, {"uid": "u-2"}]}`,
			[]BatchResult{{Unproven: "the answer lists 2 results for 3 items: their positions prove nothing"}, {Unproven: "the answer lists 2 results for 3 items: their positions prove nothing"}, {Unproven: "the answer lists 2 results for 3 items: their positions prove nothing"}}},
		{"by position, a result without id", byPos, `{"results": [{"uid": "u-1"}, {"name": "x"}, {"uid": ""}]}`,
			[]BatchResult{{ID: "u-1"}, {Unproven: `its result: the response has no native id at "uid"`}, {Unproven: `its result: the native id at "uid" is empty`}}},
		{"by position, null error is no error", byPos, `{"results": [{"uid": "1", "error": null}, {"uid": "2", "error": false}, {"uid": "3", "error": ""}]}`,
			[]BatchResult{{ID: "1"}, {ID: "2"}, {ID: "3"}}},
		{"no list", byPos, `{"created": 3}`, []BatchResult{{Unproven: `the answer has no list of results at "results"`}, {Unproven: `the answer has no list of results at "results"`}, {Unproven: `the answer has no list of results at "results"`}}},
		{"not JSON", byPos, `<html>`, []BatchResult{{Unproven: "the answer is not valid JSON"}, {Unproven: "the answer is not valid JSON"}, {Unproven: "the answer is not valid JSON"}}},
		{"by value, any order, one missing", byVal, `[{"user": {"login": "CY", "id": "c"}}, {"user": {"login": "ada", "id": "a"}}]`,
			[]BatchResult{{ID: "a"}, {Unproven: "the answer has no result that matches the item"}, {ID: "c"}}},
		{"by value, refusal", byVal, `[{"user": {"login": "bob"}, "problem": {"code": "EXISTS"}}, {"user": {"login": "ada", "id": 7}}, {"user": {"login": "cy", "id": 8}}]`,
			[]BatchResult{{ID: "7"}, {Refused: "EXISTS"}, {ID: "8"}}},
		{"by value, twice", byVal, `[{"user": {"login": "ada", "id": 1}}, {"user": {"login": "ada", "id": 2}}, {"user": {"login": "bob", "id": 3}}]`,
			[]BatchResult{{Unproven: "the answer has several results that match the item"}, {ID: "3"}, {Unproven: "the answer has no result that matches the item"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.m.BatchResults("User", []byte(tc.body), items)
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(tc.want)
			if string(g) != string(w) {
				t.Errorf("got  %s\nwant %s", g, w)
			}
		})
	}
	in := Input{ResourceType: "User", Event: change.Create, Resource: resource(t, `{"userName": "Ada"}`)}
	it, err := byVal.BatchItem(in)
	if err != nil {
		t.Fatal(err)
	}
	if it.Match["user.login"] != "ada" {
		t.Errorf("match values %v", it.Match)
	}
}

// TestShippedDemoMappingBatches: mappings/demoapp.json declares the demo app's bulk creates
// of accounts and teams, 100 a call.
func TestShippedDemoMappingBatches(t *testing.T) {
	m, err := Load("../../mappings/demoapp.json", testResolve)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range []string{"User", "Group"} {
		if got := m.BatchSize(rt); got != 100 {
			t.Errorf("%s: BatchSize %d, want 100", rt, got)
		}
	}
	it, err := m.BatchItem(Input{ResourceType: "User", Event: change.Create, Resource: resource(t, `{"userName": " ada@contoso.example "}`)})
	if err != nil {
		t.Fatal(err)
	}
	if it.Match["login"] != "ada@contoso.example" || !strings.Contains(string(it.Body), `"login":"ada@contoso.example"`) {
		t.Errorf("item %s, match %v", it.Body, it.Match)
	}
}
