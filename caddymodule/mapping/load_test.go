package mapping

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// userCreate wraps a users.events.create call in a minimal file.
func userCreate(call string) string {
	return `{"version": 1, "users": {"events": {"create": ` + call + `}}}`
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		want string // the whole message: file, rule, problem
	}{
		{"not JSON", `{"version": 1,`, `demo.json: invalid JSON: the document ends too early`},
		{"syntax error", `{"version": 1,, }`, `demo.json: invalid JSON at line 1, column 15: invalid character ',' looking for beginning of object key string`},
		{"syntax error on a later line", "{\n  \"version\": 1,\n  \"nom\": \"é\",,\n}", `demo.json: invalid JSON at line 3, column 14: invalid character ',' looking for beginning of object key string`},
		{"unknown top-level key", `{"version": 1, "user": {}}`, `demo.json: unknown field "user" (want version, headers, tables, users, groups or expect)`},
		{"unknown key of a call", userCreate(`{"method": "POST", "path": "/a", "bdy": {}}`),
			`demo.json: users.events.create: unknown field "bdy" (want method, path, headers, body, send, id, encoding, form_keys, items, match, paging, read, members, batch_size, member_types, idempotent, when or expect)`},
		{"empty file", "", `demo.json: the file is empty: a mapping is a JSON object such as {"version": 1, "users": {...}}`},
		{"blank file", " \n\n", `demo.json: the file is empty: a mapping is a JSON object such as {"version": 1, "users": {...}}`},
		{"a call that is a string", `{"version": 1, "users": {"lookup": "GET /a"}}`, `demo.json: users.lookup: expected an object, got a JSON string`},
		{"a section that is a list", `{"version": 1, "users": []}`, `demo.json: users: expected an object, got a JSON array`},
		{"a method that is a number", userCreate(`{"method": 5, "path": "/a"}`), `demo.json: users.events.create: "method": expected a string, got a JSON number`},
		{"a batch size that is a string", `{"version": 1, "users": {"create_batch": {"method": "POST", "path": "/b", "batch_size": "10"}}}`, `demo.json: users.create_batch: "batch_size": expected a whole number, got a JSON string`},
		{"version", `{"version": 2, "users": {}}`, `demo.json: version: unsupported version 2; this gateway reads version 1 (write "version": 1)`},
		{"no sections", `{"version": 1}`, `demo.json: the mapping has neither "users" nor "groups"`},
		{"unknown transform", userCreate(`{"method": "POST", "path": "/a", "body": {"person.first": {"from": "name.givenName", "transforms": ["lowr"]}}}`),
			`demo.json: users.events.create.body["person.first"]: unknown transform "lowr" (known: bool, constant, date, default, first, first_non_empty, join, lookup, lower, not, regex_replace, split, template, to_int, to_string, trim, upper)`},
		{"transform with two keys", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"from": "userName", "transforms": [{"join": ",", "split": ","}]}}}`),
			`demo.json: users.events.create.body["x"]: a transform with arguments is an object with exactly one key, its name, e.g. {"default": "n/a"}; got 2 keys`},
		{"bad arity", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"from": "active", "transforms": [{"bool": ["yes"]}]}}}`),
			`demo.json: users.events.create.body["x"]: transform "bool": takes two values, for true and for false, got 1 argument(s)`},
		{"bad regex", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"from": "userName", "transforms": [{"regex_replace": ["(a", ""]}]}}}`),
			"demo.json: users.events.create.body[\"x\"]: transform \"regex_replace\": bad pattern: error parsing regexp: missing closing ): `(a`"},
		{"unknown table", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"from": "userName", "transforms": [{"lookup": "depts"}]}}}`),
			`demo.json: users.events.create.body["x"]: transform "lookup": no table "depts" in "tables" (the file defines none)`},
		{"bad date layout", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"from": "meta.created", "transforms": [{"date": "yyyy-mm-dd"}]}}}`),
			`demo.json: users.events.create.body["x"]: transform "date": layout "yyyy-mm-dd" is neither a named layout (rfc3339, date, datetime, unix, unix_ms) nor a Go time layout such as "02.01.2006"`},
		{"empty split separator", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"from": "userName", "transforms": [{"split": ""}]}}}`),
			`demo.json: users.events.create.body["x"]: transform "split": the separator must not be empty`},
		{"bad SCIM path", userCreate(`{"method": "POST", "path": "/a", "body": {"x": "emails[type eq ].value"}}`),
			`demo.json: users.events.create.body["x"]: bad SCIM path "emails[type eq ].value": `},
		{"unknown SCIM attribute", userCreate(`{"method": "POST", "path": "/a", "body": {"x": "name.givenNme"}}`),
			`demo.json: users.events.create.body["x"]: name has no sub-attribute "givenNme"`},
		{"unknown core attribute", userCreate(`{"method": "POST", "path": "/a", "body": {"x": "badge"}}`),
			`demo.json: users.events.create.body["x"]: unknown attribute "badge" of user resources (custom attributes need their extension URN, e.g. urn:ietf:params:scim:schemas:extension:MyApp:2.0:User:badge)`},
		{"filter on single-valued", userCreate(`{"method": "POST", "path": "/a", "body": {"x": "name[givenName eq \"a\"]"}}`),
			`demo.json: users.events.create.body["x"]: name is not multi-valued; a [filter] selects elements of a multi-valued attribute`},
		{"enterprise URN on groups", `{"version": 1, "groups": {"events": {"create": {"method": "POST", "path": "/g", "body": {"x": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}}}}}`,
			`demo.json: groups.events.create.body["x"]: urn:ietf:params:scim:schemas:extension:enterprise:2.0:User is not an extension of group resources`},
		{"unknown gateway value", userCreate(`{"method": "POST", "path": "/a", "body": {"x": "$native"}}`),
			`demo.json: users.events.create.body["x"]: unknown gateway value "$native"; use $id, $scim_id, $member_id, $member_ids, $role_ids, $answer.N.path or $header.N.Name`},
		{"expect: not a success status", userCreate(`{"method": "POST", "path": "/a", "id": "id", "expect": {"status": [404]}}`),
			`demo.json: users.events.create.expect.status: 404 is not a success status (200-299)`},
		{"expect: unknown body rule", userCreate(`{"method": "POST", "path": "/a", "expect": {"body": "xml"}}`),
			`demo.json: users.events.create.expect.body: "xml" is not one of "any", "json", "json_or_empty", "empty"`},
		{"expect: empty list of values", userCreate(`{"method": "POST", "path": "/a", "expect": {"equals": {"state": []}}}`),
			`demo.json: users.events.create.expect.equals["state"]: an empty list allows no value`},
		{"expect: empty body holding paths", userCreate(`{"method": "POST", "path": "/a", "expect": {"body": "empty", "has": ["id"]}}`),
			`demo.json: users.events.create.expect: an empty answer cannot hold "has" or "equals"`},
		{"expect: unknown key", userCreate(`{"method": "POST", "path": "/a", "expect": {"statuses": [200]}}`),
			`demo.json: users.events.create: unknown field "statuses" (want method, path, headers, body, send, id, encoding, form_keys, items, match, paging, read, members, batch_size, member_types, idempotent, when or expect)`},
		{"expect: bad not_found body", `{"version": 1, "expect": {"not_found": {"body": "html"}}, "users": {"events": {"create": {"method": "POST", "path": "/a"}}}}`,
			`demo.json: users.events.create.expect.not_found.body: "html" is not one of "any", "json", "json_or_empty", "empty"`},
		{"flow: empty", userCreate(`[]`), `demo.json: users.events.create: an empty list of calls: write null to map no call`},
		{"flow: {id} before the id is known", userCreate(`[{"method": "POST", "path": "/a/{id}"}, {"method": "POST", "path": "/b", "id": "id"}]`),
			`demo.json: users.events.create[0].path: uses the native id ({id} or $id), which does not exist yet in a create`},
		{"flow: two ids", userCreate(`[{"method": "POST", "path": "/a", "id": "id"}, {"method": "POST", "path": "/b/{id}", "id": "x"}]`),
			`demo.json: users.events.create[1].id: an earlier call of the flow already gives the native id`},
		{"flow: empty condition", userCreate(`[{"method": "POST", "path": "/a", "id": "id"}, {"method": "POST", "path": "/b/{id}", "when": {}}]`),
			`demo.json: users.events.create[1].when: an empty condition: give changed, present, absent or equals`},
		{"flow: bad condition path", userCreate(`[{"method": "POST", "path": "/a", "id": "id"}, {"method": "POST", "path": "/b/{id}", "when": {"equals": {"actve": false}}}]`),
			`demo.json: users.events.create[1].when.equals["actve"]: unknown attribute "actve" of user resources (custom attributes need their extension URN, e.g. urn:ietf:params:scim:schemas:extension:MyApp:2.0:User:actve)`},
		{"flow: unknown condition key", userCreate(`[{"method": "POST", "path": "/a", "id": "id", "when": {"if": ["active"]}}]`),
			`demo.json: users.events.create[0]: unknown field "if" (want method, path, headers, body, send, id, encoding, form_keys, items, match, paging, read, members, batch_size, member_types, idempotent, when or expect)`},
		{"bad native path", userCreate(`{"method": "POST", "path": "/a", "body": {"person..first": "userName"}}`),
			`demo.json: users.events.create.body["person..first"]: the native path "person..first" has an empty component`},
		{"overlapping native paths", userCreate(`{"method": "POST", "path": "/a", "body": {"person": "displayName", "person.first": "name.givenName"}}`),
			`demo.json: users.events.create.body["person.first"]: overlaps the field "person": one native path cannot hold both a value and fields inside it`},
		{"duplicate native path", userCreate(`{"method": "POST", "path": "/a", "body": {"login": "userName", "login": "externalId"}}`),
			`demo.json: users.events.create: the native path "login" is written twice`},
		{"field without value", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"transforms": ["lower"]}}}`),
			`demo.json: users.events.create.body["x"]: never has a value: give "from" (a SCIM path), "value", or start the transforms with constant, default, template or first_non_empty`},
		{"from and value", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"from": "userName", "value": 1}}}`),
			`demo.json: users.events.create.body["x"]: has both "from" and "value"; a field takes its value from one`},
		{"unknown field option", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"form": "userName"}}}`),
			`demo.json: users.events.create.body["x"]: a field is a SCIM path or an object with "from" or "value" and "transforms": unknown field "form" (want from, value, transforms or required)`},
		{"unknown event", `{"version": 1, "users": {"events": {"lock": {"method": "POST", "path": "/l"}}}}`,
			`demo.json: users.events.lock: unknown event "lock"; users have create, update, deactivate, reactivate, delete`},
		{"rename event", `{"version": 1, "groups": {"events": {"rename": {"method": "PATCH", "path": "/g"}}}}`,
			`demo.json: groups.events.rename: unknown event "rename"; groups have create, update, delete, add_members, remove_members (a rename is an update of displayName: map it under "update")`},
		{"misspelt call option", userCreate(`{"metod": "POST", "path": "/a"}`), `demo.json: users.events.create: unknown field "metod" (want method, path, headers, body, send, id, encoding, form_keys, items, match, paging, read, members, batch_size, member_types, idempotent, when or expect)`},
		{"missing method", userCreate(`{"path": "/a"}`), `demo.json: users.events.create.method: missing: write one of GET, POST, PUT, PATCH, DELETE`},
		{"bad method", userCreate(`{"method": "FETCH", "path": "/a"}`), `demo.json: users.events.create.method: unsupported method "FETCH"; use one of GET, POST, PUT, PATCH, DELETE`},
		{"missing path", userCreate(`{"method": "POST"}`), `demo.json: users.events.create.path: missing: every call needs a URL path template`},
		{"absolute URL", userCreate(`{"method": "POST", "path": "https://evil.example/a"}`),
			`demo.json: users.events.create.path: must start with a single "/" (it is appended to the target's base URL)`},
		{"unclosed placeholder", userCreate(`{"method": "POST", "path": "/a/{userName"}`),
			`demo.json: users.events.create.path: unclosed "{" at byte 3 (write "{{" for a literal brace)`},
		{"space in URL", userCreate(`{"method": "POST", "path": "/a b"}`),
			`demo.json: users.events.create.path: literal text holds ' ', which is not allowed in a URL path or query`},
		{"id on create", userCreate(`{"method": "PUT", "path": "/a/{id}"}`),
			`demo.json: users.events.create.path: uses the native id ({id} or $id), which does not exist yet in a create`},
		{"bad id path", userCreate(`{"method": "POST", "path": "/a", "id": "data..id"}`),
			`demo.json: users.events.create.id: "data..id" has an empty component`},
		{"id on update", `{"version": 1, "users": {"events": {"update": {"method": "PATCH", "path": "/a", "id": "id"}}}}`,
			`demo.json: users.events.update.id: only create and lookup responses carry the native id`},
		{"send on create", userCreate(`{"method": "POST", "path": "/a", "send": "all"}`),
			`demo.json: users.events.create.send: only an update chooses what to send`},
		{"bad send", `{"version": 1, "users": {"events": {"update": {"method": "PATCH", "path": "/a", "send": "diff"}}}}`,
			`demo.json: users.events.update.send: "diff" is neither "changed" nor "all"`},
		{"update id without source", `{"version": 1, "users": {"events": {"update": {"method": "PATCH", "path": "/a/{id}"}}}}`,
			`demo.json: users.events.update.path: uses {id}, but neither users.events.create nor users.lookup says where the native id is (add "id")`},
		{"lookup without id", `{"version": 1, "users": {"lookup": {"method": "GET", "path": "/a?q={userName}"}}}`,
			`demo.json: users.lookup.id: missing: a lookup needs the gjson path of the native id in its response (e.g. "items.0.id")`},
		{"lookup not GET", `{"version": 1, "users": {"lookup": {"method": "POST", "path": "/a", "id": "id"}}}`,
			`demo.json: users.lookup.method: a lookup reads: its method is GET, not POST`},
		{"members without member id", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id"}}}, "groups": {"events": {"create": {"method": "POST", "path": "/g", "id": "id"}, "add_members": {"method": "POST", "path": "/g/{id}/members"}}}}`,
			`demo.json: groups.events.add_members: has no source for the member's native id: put {member_id} in the path or "from": "$member_id" in the body`},
		{"batch without ids", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id"}}}, "groups": {"events": {"create": {"method": "POST", "path": "/g", "id": "id"}, "add_members": {"method": "POST", "path": "/g/{id}/members", "members": "batch"}}}}`,
			`demo.json: groups.events.add_members: has no source for the members' native ids: a batch call needs a body field with "from": "$member_ids"`},
		{"member ids without users ids", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u"}}}, "groups": {"events": {"create": {"method": "POST", "path": "/g", "id": "id"}, "add_members": {"method": "PUT", "path": "/g/{id}/m/{member_id}"}}}}`,
			`demo.json: groups.events.add_members: members are sent by native id, but users have no create "id" or lookup to learn it from`},
		{"member events without groups ids", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id"}}}, "groups": {"events": {"create": {"method": "POST", "path": "/g"}, "add_members": {"method": "POST", "path": "/members", "body": {"team": "displayName", "user": "$member_id"}}}}}`,
			`demo.json: groups.events.add_members: groups never get native ids (no create with "id" and no lookup), so this call can never be made; add one, or remove the member events`},
		{"member id outside members", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u/{member_id}"}}}}`,
			`demo.json: users.events.create.path: uses a member's native id ({member_id} or $member_id), which exists only in add_members and remove_members with "members": "each"`},
		{"member options on create", userCreate(`{"method": "POST", "path": "/a", "members": "batch"}`),
			`demo.json: users.events.create: members, batch_size and member_types apply to add_members and remove_members only`},
		{"bad members mode", `{"version": 1, "groups": {"events": {"create": {"method": "POST", "path": "/g", "id": "id"}, "remove_members": {"method": "DELETE", "path": "/g/{id}/{member_id}", "members": "all"}}}}`,
			`demo.json: groups.events.remove_members.members: "all" is neither "each" (one call per member) nor "batch" (one call with the list)`},
		{"bad member type", `{"version": 1, "groups": {"events": {"create": {"method": "POST", "path": "/g", "id": "id"}, "remove_members": {"method": "DELETE", "path": "/g/{id}/{member_id}", "member_types": ["Device"]}}}}`,
			`demo.json: groups.events.remove_members.member_types: unknown member type "Device"; use "User" and/or "Group"`},
		{"bad batch size", `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id"}}}, "groups": {"events": {"create": {"method": "POST", "path": "/g", "id": "id"}, "add_members": {"method": "POST", "path": "/g/{id}", "members": "batch", "batch_size": 0.5, "body": {"ids": "$member_ids"}}}}}`,
			`demo.json: groups.events.add_members: "batch_size": expected a whole number, got a JSON number 0.5`},
		{"bad header name", `{"version": 1, "headers": {"X Key": "a"}, "users": {}}`, `demo.json: headers["X Key"]: "X Key" is not a valid header name`},
		{"header placeholder fails", `{"version": 1, "users": {"headers": {"X-Api-Key": "{env.NOPE}"}}}`,
			`demo.json: users.headers["X-Api-Key"]: resolving the value: environment variable NOPE is not set`},
		{"header injection", `{"version": 1, "users": {"events": {"delete": {"method": "DELETE", "path": "/u", "headers": {"X-Api-Key": "{env.CRLF}"}}}}}`,
			`demo.json: users.events.delete.headers["X-Api-Key"]: the value (after placeholders were resolved) holds a control character such as a line break`},
		{"template placeholder with $", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"transforms": [{"template": "{$scim_id}"}]}}}`),
			`demo.json: users.events.create.body["x"]: transform "template": placeholder {$scim_id}: templates name gateway values without "$" ({id}, {scim_id}, {member_id})`},
		{"unknown transform in a placeholder", userCreate(`{"method": "POST", "path": "/a/{userName|trim|lowr}"}`),
			`demo.json: users.events.create.path: placeholder {userName|trim|lowr}: unknown transform "lowr" (known: bool, constant, date, default, first, first_non_empty, join, lookup, lower, not, regex_replace, split, template, to_int, to_string, trim, upper)`},
		{"placeholder arguments not JSON", userCreate(`{"method": "POST", "path": "/a/{userName|default:none}"}`),
			`demo.json: users.events.create.path: placeholder {userName|default:none}: transform "default": the arguments after ":" are not one JSON value (write them as in {"default": ...}): invalid character 'o' in literal null (expecting 'u')`},
		{"placeholder arguments not one JSON value", userCreate(`{"method": "POST", "path": "/a/{userName|lookup:{\"a\": \"b\"}, \"c\"}"}`),
			`demo.json: users.events.create.path: placeholder {userName|lookup:{"a": "b"}, "c"}: transform "lookup": the arguments after ":" are not one JSON value (write them as in {"lookup": ...}): invalid character ',' after top-level value`},
		{"placeholder with bad arity", userCreate(`{"method": "POST", "path": "/a/{active|bool:[\"y\"]}"}`),
			`demo.json: users.events.create.path: placeholder {active|bool:["y"]}: transform "bool": takes two values, for true and for false, got 1 argument(s)`},
		{"unknown table in a placeholder", `{"version": 1, "tables": {"depts": {}}, "users": {"lookup": {"method": "GET", "path": "/a?d={division|lookup:[\"divisions\", \"OTHER\"]}", "id": "id"}}}`,
			`demo.json: users.lookup.path: placeholder {division|lookup:["divisions", "OTHER"]}: transform "lookup": no table "divisions" in "tables" (defined: depts)`},
		{"unknown table in a template placeholder", userCreate(`{"method": "POST", "path": "/a", "body": {"x": {"transforms": [{"template": "{userName|lookup:\"logins\"}"}]}}}`),
			`demo.json: users.events.create.body["x"]: transform "template": placeholder {userName|lookup:"logins"}: transform "lookup": no table "logins" in "tables" (the file defines none)`},
		{"unterminated placeholder arguments", userCreate(`{"method": "POST", "path": "/a/{userName|lookup:[\"t\"}"}`),
			`demo.json: users.events.create.path: unclosed "{" at byte 3 (write "{{" for a literal brace)`},
		{"unterminated placeholder string", userCreate(`{"method": "POST", "path": "/a/{userName|default:\"n/a}"}`),
			`demo.json: users.events.create.path: unclosed "{" at byte 3 (write "{{" for a literal brace)`},
		{"empty transform", userCreate(`{"method": "POST", "path": "/a/{userName||lower}"}`),
			`demo.json: users.events.create.path: placeholder {userName||lower}: empty transform after "|"`},
		{"transforms without a source", userCreate(`{"method": "POST", "path": "/a/{|constant:\"x\"}"}`),
			`demo.json: users.events.create.path: placeholder {|constant:"x"}: names no SCIM path or gateway value before the "|"`},
		{"gateway value with $ and transforms", userCreate(`{"method": "POST", "path": "/a/{$id|upper}"}`),
			`demo.json: users.events.create.path: placeholder {$id|upper}: templates name gateway values without "$" ({id}, {scim_id}, {member_id})`},
		{"id on create, through a transform", userCreate(`{"method": "POST", "path": "/a/{userName|first_non_empty:\"$id\"}"}`),
			`demo.json: users.events.create.path: uses the native id ({id} or $id), which does not exist yet in a create`},
	}
	resolve := func(s string) (string, error) {
		if s == "{env.CRLF}" {
			return "secret\r\nX-Injected: 1", nil
		}
		return testResolve(s)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("demo.json", []byte(tc.file), resolve)
			if err == nil {
				t.Fatal("no error")
			}
			var le *LoadError
			if !errors.As(err, &le) || le.File != "demo.json" {
				t.Fatalf("error %v is not a *LoadError for demo.json", err)
			}
			if got := err.Error(); got != tc.want && !(strings.HasSuffix(tc.want, ": ") && strings.HasPrefix(got, tc.want)) {
				t.Errorf("error:\n got: %s\nwant: %s", got, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error leaks a resolved header value: %s", err)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json"), nil); err == nil || !strings.HasPrefix(err.Error(), "missing.json: reading the mapping: ") {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, []byte(`{"version": 1, "users": {}, "x": "`+strings.Repeat("a", MaxFileSize)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big, nil); err == nil || !strings.Contains(err.Error(), "big.json: the mapping is larger than") {
		t.Errorf("oversized file: %v", err)
	}
}

// TestDemoMapping checks the mapping shipped for the demo app: it loads, and maps every
// event of both resource types.
func TestDemoMapping(t *testing.T) {
	m, err := Load("testdata/demo-mapping.json", testResolve)
	if err != nil {
		t.Fatal(err)
	}
	for rt, events := range eventsOf {
		for _, ev := range events {
			if !m.Has(rt, ev) {
				t.Errorf("the demo mapping has no call for %s %s", rt, ev)
			}
		}
	}
	if m.Has("User", "rename") || m.Has("Device", "create") {
		t.Error("Has reports events that do not exist")
	}
	if _, ok, _ := m.LookupRequest("Group", nil); ok {
		t.Error("groups have no lookup in the demo mapping (the app has no name filter on teams)")
	}
}

// TestLoadRefusesRepeatedKeys: a key written twice in any object of the file fails the
// load naming where (encoding/json would keep the last one and drop the first silently: a
// second "create" would replace the first, a second "path" the first).
func TestLoadRefusesRepeatedKeys(t *testing.T) {
	tests := []struct{ file, want string }{
		{`{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/a"}, "create": {"method": "PUT", "path": "/b"}}}}`,
			`demo.json: users.events: the key "create" is written twice (only one would count)`},
		{`{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/a", "path": "/b"}}}}`,
			`demo.json: users.events.create: the key "path" is written twice (only one would count)`},
		{`{"version": 1, "users": {"events": {"create": [{"method": "POST", "path": "/a", "id": "id"}, {"method": "PUT", "path": "/a/{id}", "headers": {"X-A": "1", "X-A": "2"}}]}}}`,
			`demo.json: users.events.create[1].headers: the key "X-A" is written twice (only one would count)`},
		{`{"version": 1, "tables": {"depts": {"sales": "S", "sales": "X"}}, "users": {"events": {"create": {"method": "POST", "path": "/a"}}}}`,
			`demo.json: tables["depts"]: the key "sales" is written twice (only one would count)`},
		{`{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/a", "body": {"x": {"from": "userName", "from": "title"}}}}}}`,
			`demo.json: users.events.create.body["x"]: the key "from" is written twice (only one would count)`},
		{`{"version": 1, "users": {"lookup": {"method": "GET", "path": "/a", "id": "id", "items": "i", "match": {"login": "{userName}", "login": "{title}"}}, "events": {"create": {"method": "POST", "path": "/a"}}}}`,
			`demo.json: users.lookup.match: the key "login" is written twice (only one would count)`},
		{`{"version": 1, "version": 1, "users": {"events": {"create": {"method": "POST", "path": "/a"}}}}`,
			`demo.json: the key "version" is written twice (only one would count)`},
		{`{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/a", "body": {"login": "userName", "login": "title"}}}}}`,
			`demo.json: users.events.create: the native path "login" is written twice`},
	}
	for _, tc := range tests {
		_, err := Parse("demo.json", []byte(tc.file), testResolve)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s\n  error %v\n  want  %s", tc.file, err, tc.want)
		}
	}
	// Keys that differ in case are different keys (native paths, table values).
	if _, err := Parse("demo.json", []byte(`{"version": 1, "tables": {"t": {"a": 1, "A": 2}}, "users": {"events": {"create": {"method": "POST", "path": "/a", "body": {"login": "userName", "Login": "title"}}}}}`), testResolve); err != nil {
		t.Errorf("keys differing in case: %v", err)
	}
}

// TestLoadRefusesGJSONPathsThatMatchNothing: a response path whose query, multipath or
// object is left open (or that ends in "|") matches nothing in any answer; it fails the
// load naming the rule, instead of making every create an outage "without its id". Paths
// gjson reads fine, odd keys included, still load.
func TestLoadRefusesGJSONPathsThatMatchNothing(t *testing.T) {
	file := func(id string) string {
		b, _ := json.Marshal(id)
		return userCreate(`{"method": "POST", "path": "/a", "id": ` + string(b) + `}`)
	}
	for _, bad := range []string{`items.#(`, `items.#(login=="a"`, `[user.id,id`, `{user.id`, `user.id|`, `items.#(a=="x).id`} {
		_, err := Parse("demo.json", []byte(file(bad)), testResolve)
		if err == nil || !strings.HasPrefix(err.Error(), "demo.json: users.events.create.id: ") {
			t.Errorf("%s: %v, want a load error naming users.events.create.id", bad, err)
		}
	}
	for _, good := range []string{`id`, `user.id`, `items.0.id`, `items.#(login=="a").id`, `items.#(login%"a*").id`, `items.#(nested.#(k=="v")).id`,
		`a(b`, `a[0`, `x.y|@pretty`, `items.#(name=="a[b").id`, `items.#(login=="a)").id`, `[id,user.id].0`, `a\|b`, `a\.b`, `@this.id`} {
		if _, err := Parse("demo.json", []byte(file(good)), testResolve); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
}
