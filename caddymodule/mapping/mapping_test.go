package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

func mustParse(t testing.TB, file string) *Mapping {
	t.Helper()
	m, err := Parse("test.json", []byte(file), testResolve)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func resource(t testing.TB, s string) scim.Resource {
	t.Helper()
	v, err := scim.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

func oneRequest(t *testing.T, m *Mapping, in Input) Request {
	t.Helper()
	reqs, err := m.Requests(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

// TestURLEscaping checks that native ids and SCIM attributes cannot change the shape of
// the URL: path placeholders are path-escaped, query placeholders query-escaped, and
// values that would climb or empty the path are refused.
func TestURLEscaping(t *testing.T) {
	m := mustParse(t, `{"version": 1,
	  "users": {
	    "lookup": {"method": "GET", "path": "/u?login={userName}&ext={urn:ietf:params:scim:schemas:extension:Contoso:2.0:User:code}", "id": "id"},
	    "events": {
	      "create": {"method": "POST", "path": "/u", "id": "id"},
	      "update": {"method": "PUT", "path": "/u/{id}/by-name/{userName}", "send": "all"}}}}`)
	tests := []struct {
		nativeID, userName string
		want, wantErr      string
	}{
		{"42", "ada", "/u/42/by-name/ada", ""},
		{"a/b", "x?y#z", "/u/a%2Fb/by-name/x%3Fy%23z", ""},
		{"a b", "ü%20", "/u/a%20b/by-name/%C3%BC%2520", ""},
		{"..", "ada", "", "{id} resolves to \"..\""},
		{"42", ".", "", "{userName} resolves to \".\""},
		{"", "ada", "", "{id} is empty: the gateway passed no native id"},
		{"42", "", "", "{userName} is needed in the URL but is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.nativeID+"|"+tc.userName, func(t *testing.T) {
			doc := scim.Resource{"userName": tc.userName}
			reqs, err := m.Requests(Input{ResourceType: "User", Event: "update", Resource: doc, NativeID: tc.nativeID})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if reqs[0].Path != tc.want {
				t.Errorf("path = %s, want %s", reqs[0].Path, tc.want)
			}
		})
	}
	req, ok, err := m.LookupRequest("User", resource(t, `{"userName": "a&b=c+d e", "urn:ietf:params:scim:schemas:extension:Contoso:2.0:User": {"code": "x/y"}}`))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if want := "/u?login=a%26b%3Dc%2Bd+e&ext=x%2Fy"; req.Path != want {
		t.Errorf("lookup path = %s, want %s", req.Path, want)
	}
	_, _, err = m.LookupRequest("User", scim.Resource{})
	var se *scim.Error
	if !errors.As(err, &se) || !strings.Contains(se.Detail, "users.lookup.path: {userName} is needed in the URL but is not set") {
		t.Errorf("lookup without a key: %v", err)
	}
}

// TestPlaceholderTransforms checks placeholders that pass their value through transforms:
// applied before escaping, with the file's tables, and a result that cannot stand in the
// URL failing the request with 400 invalidValue without quoting the value.
func TestPlaceholderTransforms(t *testing.T) {
	const file = `{"version": 1,
	  "tables": {"divisions": {"Retail": "RT", "R&D": "r/d", "Void": null}},
	  "users": {"events": {"create": {"method": "POST", "path": %q, "id": "id"}}}}`
	const division = "/divisions/{urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division|lookup:[\"divisions\", \"OTHER\"]}/accounts"
	withDivision := func(d string) string {
		return `{"userName": "ada", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"division": "` + d + `"}}`
	}
	tests := []struct {
		name, path, doc string
		want, wantErr   string // wantErr: the whole detail after "users.events.create.path: "
	}{
		{"table", division, withDivision("Retail"), "/divisions/RT/accounts", ""},
		{"table value escaped", division, withDivision("R&D"), "/divisions/r%2Fd/accounts", ""},
		{"table default", division, withDivision("Legal"), "/divisions/OTHER/accounts", ""},
		{"table, absent key", division, `{"userName": "ada"}`, "",
			`{urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division|lookup:["divisions", "OTHER"]} is needed in the URL but is not set`},
		{"table without default", `/d/{division|lookup:"divisions"}`, withDivision("Legal"), "",
			`{division|lookup:"divisions"}: transform lookup: the value is not in the table "divisions", which has no default`},
		{"table gives null", `/d/{division|lookup:"divisions"}`, withDivision("Void"), "", `{division|lookup:"divisions"} is needed in the URL but is not set`},
		{"pipeline", "/a/{ userName | trim | lower }", `{"userName": "  Ada Lovelace "}`, "/a/ada%20lovelace", ""},
		{"quoted | in a filter", `/a?m={emails[type eq "home|work"].value|upper}`, `{"emails": [{"type": "home|work", "value": "a+b@x"}]}`, "/a?m=A%2BB%40X", ""},
		{"default on absent", `/a/{nickName|default:"none"}`, `{}`, "/a/none", ""},
		{"inline table with braces", `/a/{userName|lookup:{"ada": "}{"}}`, `{"userName": "ada"}`, "/a/%7D%7B", ""},
		{"result is a list", "/a/{emails.value|lower}", `{"emails": [{"value": "A@x"}, {"value": "B@x"}]}`, "", "{emails.value|lower} is needed in the URL but is not a single value"},
		{"result is an object", "/a/{name|trim}", `{"name": {"givenName": "Ada"}}`, "", "{name|trim} is needed in the URL but is not a single value"},
		{"result is empty", `/a/{userName|regex_replace:["^.*$", ""]}`, `{"userName": "ada"}`, "", `{userName|regex_replace:["^.*$", ""]} is needed in the URL but is empty`},
		{"result climbs", `/a/{userName|lookup:[{}, ".."]}`, `{"userName": "ada"}`, "", `{userName|lookup:[{}, ".."]} resolves to "..", which cannot stand in a URL path`},
		{"transform fails", "/a/{userName|to_int}", `{"userName": "SECRET"}`, "", "{userName|to_int}: transform to_int: needs an integer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, fmt.Sprintf(file, tc.path))
			reqs, err := m.Requests(Input{ResourceType: "User", Event: "create", Resource: resource(t, tc.doc)})
			if tc.wantErr != "" {
				var se *scim.Error
				if !errors.As(err, &se) || se.Status != 400 || se.ScimType != scim.TypeInvalidValue {
					t.Fatalf("error = %v, want a 400 invalidValue", err)
				}
				if want := "users.events.create.path: " + tc.wantErr; se.Detail != want {
					t.Errorf("detail = %s\nwant     %s", se.Detail, want)
				}
				for _, secret := range []string{"Legal", "SECRET", "A@x"} {
					if strings.Contains(se.Detail, secret) {
						t.Errorf("the detail quotes the value %q", secret)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if reqs[0].Path != tc.want {
				t.Errorf("path = %s, want %s", reqs[0].Path, tc.want)
			}
		})
	}
}

// TestPlaceholderTransformsElsewhere checks transforms in a lookup's query, on gateway
// values, and in the template transform, including what send: changed learns from them.
func TestPlaceholderTransformsElsewhere(t *testing.T) {
	m := mustParse(t, `{"version": 1,
	  "tables": {"divisions": {"Retail": "RT"}},
	  "users": {
	    "lookup": {"method": "GET", "path": "/accounts?email={emails[type eq \"work\"].value|lower}", "id": "items.0.id"},
	    "events": {
	      "create": {"method": "POST", "path": "/accounts", "id": "id", "body": {
	        "key": {"transforms": [{"template": "{userName|trim|lower}@{division|lookup:[\"divisions\", \"OTHER\"]}"}]}}},
	      "update": {"method": "PATCH", "path": "/accounts/{id|upper}/{scim_id|upper}", "body": {
	        "who": {"transforms": [{"template": "{nickName|first_non_empty:\"displayName\"|upper}"}]}}}}}}`)
	doc := resource(t, `{"id": "5c1e-ab", "userName": " Ada@Contoso.example ", "displayName": "Ada",
	  "emails": [{"type": "home", "value": "ada@home.example"}, {"type": "work", "value": "Ada.Lovelace+Test@Contoso.example"}],
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"division": "Retail"}}`)

	req, ok, err := m.LookupRequest("User", doc)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if want := "/accounts?email=ada.lovelace%2Btest%40contoso.example"; req.Path != want {
		t.Errorf("lookup path = %s, want %s", req.Path, want)
	}

	create := oneRequest(t, m, Input{ResourceType: "User", Event: "create", Resource: doc})
	if want := `{"key":"ada@contoso.example@RT"}`; string(create.Body) != want {
		t.Errorf("create body = %s, want %s", create.Body, want)
	}

	update := func(changed ...string) []Request {
		t.Helper()
		reqs, err := m.Requests(Input{ResourceType: "User", Event: "update", Resource: doc, Previous: doc, Changed: changed, NativeID: "ab-7"})
		if err != nil {
			t.Fatal(err)
		}
		return reqs
	}
	reqs := update("displayName")
	if len(reqs) != 1 || reqs[0].Path != "/accounts/AB-7/5C1E-AB" || string(reqs[0].Body) != `{"who":"ADA"}` {
		t.Errorf("update of displayName = %+v, want PATCH /accounts/AB-7/5C1E-AB {\"who\":\"ADA\"}", reqs)
	}
	if reqs := update("title"); reqs != nil {
		t.Errorf("an update of an attribute no field reads sent %+v", reqs)
	}
}

// TestSecretsInHeaders checks that header placeholders are resolved once at load, that
// outer headers are inherited and overridden, and that each request gets its own copy.
func TestSecretsInHeaders(t *testing.T) {
	calls := 0
	resolve := func(s string) (string, error) {
		calls++
		return strings.ReplaceAll(s, "{env.KEY}", "s3cr3t"), nil
	}
	m, err := Parse("h.json", []byte(`{"version": 1,
	  "headers": {"X-Api-Key": "{env.KEY}", "X-Trace": "on", "Accept": "application/json"},
	  "users": {"headers": {"X-Trace": ""}, "events": {
	    "create": {"method": "POST", "path": "/u", "id": "id", "headers": {"Accept": "application/vnd.app+json"}, "body": {"login": "userName"}},
	    "delete": {"method": "DELETE", "path": "/u/{id}", "headers": {"Authorization": "Key {env.KEY}"}}}}}`), resolve)
	if err != nil {
		t.Fatal(err)
	}
	loadCalls := calls
	in := Input{ResourceType: "User", Event: "create", Resource: scim.Resource{"userName": "a"}}
	r1 := oneRequest(t, m, in)
	want := http.Header{"X-Api-Key": {"s3cr3t"}, "Accept": {"application/vnd.app+json"}, "Content-Type": {"application/json"}}
	if !reflect.DeepEqual(r1.Header, want) {
		t.Errorf("create headers = %v, want %v", r1.Header, want)
	}
	r1.Header.Set("X-Api-Key", "changed by the caller")
	if r2 := oneRequest(t, m, in); r2.Header.Get("X-Api-Key") != "s3cr3t" {
		t.Error("a caller's change to one request's headers leaked into the next")
	}
	del := oneRequest(t, m, Input{ResourceType: "User", Event: "delete", Previous: scim.Resource{}, NativeID: "1"})
	if del.Header.Get("Authorization") != "Key s3cr3t" || del.Header.Get("Content-Type") != "" || del.Body != nil {
		t.Errorf("delete request = %+v", del)
	}
	if calls != loadCalls {
		t.Errorf("resolve ran %d times while building requests; it must run only at load", calls-loadCalls)
	}
}

const sendMapping = `{"version": 1, "users": {"events": {
  "create": {"method": "POST", "path": "/u", "id": "id"},
  "update": {"method": "PATCH", "path": "/u/{id}", "send": %q, "body": {
    "login": {"from": "userName", "required": true},
    "first": "name.givenName",
    "full": {"transforms": [{"template": "{name.givenName} {name.familyName}"}]},
    "mail": "emails[type eq \"work\"].value",
    "dept": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "kind": {"value": "person"}}}}}}`

// TestSendChangedVsAll checks what an update sends in each mode.
func TestSendChangedVsAll(t *testing.T) {
	doc := resource(t, `{"userName": "ada", "name": {"givenName": "Ada", "familyName": "L"}, "emails": [{"type": "work", "value": "a@x"}]}`)
	tests := []struct {
		send    string
		changed []string
		want    string // body; "" for no request
	}{
		{"all", nil, `{"login":"ada","first":"Ada","full":"Ada L","mail":"a@x","kind":"person"}`},
		{"all", []string{"name.givenName"}, `{"login":"ada","first":"Ada","full":"Ada L","mail":"a@x","kind":"person"}`},
		{"changed", []string{"name.givenName"}, `{"first":"Ada","full":"Ada L"}`},
		{"changed", []string{"NAME"}, `{"first":"Ada","full":"Ada L"}`},
		{"changed", []string{"name.familyName"}, `{"full":"Ada L"}`},
		{"changed", []string{"emails"}, `{"mail":"a@x"}`},
		{"changed", []string{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}, `{"dept":null}`},
		{"changed", []string{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}, `{"dept":null}`},
		{"changed", []string{"department"}, `{"dept":null}`},
		{"changed", []string{"urn:ietf:params:scim:schemas:core:2.0:User:userName"}, `{"login":"ada"}`},
		{"changed", []string{"nickName"}, ""},
		{"changed", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.send+"|"+strings.Join(tc.changed, ","), func(t *testing.T) {
			m := mustParse(t, fmt.Sprintf(sendMapping, tc.send))
			reqs, err := m.Requests(Input{ResourceType: "User", Event: "update", Resource: doc, Previous: doc, Changed: tc.changed, NativeID: "1"})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == "" && reqs != nil:
				t.Errorf("got %d requests, want none", len(reqs))
			case tc.want != "" && (len(reqs) != 1 || string(reqs[0].Body) != tc.want):
				t.Errorf("got %v, want body %s", reqs, tc.want)
			}
		})
	}
	m := mustParse(t, fmt.Sprintf(sendMapping, "changed"))
	_, err := m.Requests(Input{ResourceType: "User", Event: "update", Resource: scim.Resource{}, Changed: []string{"userName"}, NativeID: "1"})
	var se *scim.Error
	if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Detail, `users.events.update.body["login"] is required by the app, but userName is empty`) {
		t.Errorf("a cleared required attribute: %v", err)
	}
}

// TestEntraAttributes maps a user exactly as Entra writes it: the enterprise extension,
// a custom extension URN that is not in schemas[], attributes in another case, and the
// manager as a reference resolved to the manager's native id.
func TestEntraAttributes(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "id": "id", "body": {
	  "dept": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
	  "dept_bare": "department",
	  "emp": "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:employeeNumber",
	  "tag": "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag",
	  "mgr": {"from": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "transforms": ["to_int"]},
	  "mgr_bare": "manager",
	  "mgr_value": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
	  "mgr_name": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName",
	  "core_urn": "urn:ietf:params:scim:schemas:core:2.0:User:userName",
	  "given": "NAME.GIVENNAME",
	  "work": "emails[type eq \"work\"].value",
	  "roles": "roles.value"}}}}}`)
	doc := resource(t, `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "id": "u-1", "UserName": "ada@contoso.example", "name": {"givenName": "Ada"},
	  "emails": [{"type": "Work", "value": "ada@contoso.example", "primary": "True"}],
	  "roles": [{"primary": "True", "type": "WindowsAzureActiveDirectoryRole", "value": "Admin"}],
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "R&D", "employeeNumber": "07", "manager": {"value": "m-1", "displayName": "Grace"}},
	  "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User": {"tag": "blue"}}`)
	req := oneRequest(t, m, Input{ResourceType: "User", Event: "create", Resource: doc,
		NativeIDOf: func(id string) (string, RefState) {
			if id == "m-1" {
				return "9001", RefLinked
			}
			return "", RefPending
		}})
	want := `{"dept":"R&D","dept_bare":"R&D","emp":"07","tag":"blue","mgr":9001,"mgr_bare":"9001","mgr_value":"9001","mgr_name":"Grace","core_urn":"ada@contoso.example","given":"Ada","work":"ada@contoso.example","roles":["Admin"]}`
	var got, exp any
	if err := json.Unmarshal(req.Body, &got); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(want), &exp)
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("body:\n got %s\nwant %s", req.Body, want)
	}
	_, err := m.Requests(Input{ResourceType: "User", Event: "create", Resource: doc})
	if !errors.Is(err, errNoIDMap) {
		t.Errorf("a manager without an id map: %v", err)
	}
}

// TestRequestDataErrors checks that data a transform cannot convert fails the request
// with a 400 that names the rule and the source but not the value.
func TestRequestDataErrors(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "body": {
	  "emp": {"from": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "transforms": ["trim", "to_int"]}}}}}}`)
	doc := resource(t, `{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "SECRET-7"}}`)
	_, err := m.Requests(Input{ResourceType: "User", Event: "create", Resource: doc})
	var se *scim.Error
	if !errors.As(err, &se) || se.Status != 400 || se.ScimType != scim.TypeInvalidValue {
		t.Fatalf("error = %v, want a 400 invalidValue", err)
	}
	want := `users.events.create.body["emp"] (from urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber): transform to_int: needs an integer`
	if se.Detail != want {
		t.Errorf("detail = %s\nwant     %s", se.Detail, want)
	}
	if strings.Contains(se.Detail, "SECRET") {
		t.Error("the error detail quotes the attribute's value")
	}
	if _, err := m.Requests(Input{ResourceType: "User", Event: "rename"}); err == nil {
		t.Error("an event that does not exist was accepted")
	}
	if _, err := m.Requests(Input{ResourceType: "Device", Event: "create"}); err == nil {
		t.Error("a resource type that does not exist was accepted")
	}
	if reqs, err := m.Requests(Input{ResourceType: "Group", Event: "create"}); reqs != nil || err != nil {
		t.Errorf("an unmapped resource type: %v, %v; want a skip", reqs, err)
	}
}

// TestMembers checks member selection, batching and members without a native id.
func TestMembers(t *testing.T) {
	m, err := Load("testdata/alt-mapping.json", testResolve)
	if err != nil {
		t.Fatal(err)
	}
	members := func(n int) []Member {
		var out []Member
		for i := range n {
			out = append(out, Member{SCIMID: fmt.Sprint("s", i), NativeID: fmt.Sprint("n", i), Type: "User"})
		}
		return out
	}
	for n, wantCalls := range map[int]int{0: 0, 1: 1, 2: 1, 3: 2, 5: 3} {
		reqs, err := m.Requests(Input{ResourceType: "Group", Event: "remove_members", NativeID: "g", Members: members(n)})
		if err != nil || len(reqs) != wantCalls {
			t.Errorf("%d members: %d calls (%v), want %d", n, len(reqs), err, wantCalls)
		}
	}
	_, err = m.Requests(Input{ResourceType: "Group", Event: "add_members", NativeID: "g", Members: []Member{{SCIMID: "s1", Type: "User"}}})
	var se *scim.Error
	if !errors.As(err, &se) || !strings.Contains(se.Detail, `the member "s1" has no account in the app yet`) {
		t.Errorf("a member without a native id: %v", err)
	}
}

func TestExtractID(t *testing.T) {
	tests := []struct {
		body, path, want, wantErr string
	}{
		{`{"id": 42}`, "id", "42", ""},
		{`{"id": "abc"}`, "id", "abc", ""},
		{`{"id": 12345678901234567890}`, "id", "12345678901234567890", ""},
		{`{"id": 1e3}`, "id", "1000", ""},
		{`{"data": {"uuid": "u-1"}}`, "data.uuid", "u-1", ""},
		{`{"items": [{"id": 7}]}`, "items.0.id", "7", ""},
		{`{"items": [{"k": "a", "id": 1}, {"k": "b", "id": 2}]}`, `items.#(k=="b").id`, "2", ""},
		{`{"items": []}`, "items.0.id", "", `no native id at "items.0.id"`},
		{`{"id": 1.5}`, "id", "", "1.5 is not an integer"},
		// Exactly, never through float64: an id the app writes as a decimal or with an
		// exponent keeps its digits.
		{`{"id": 9007199254740993.0}`, "id", "9007199254740993", ""},
		{`{"id": 1.8446744073709551615e19}`, "id", "18446744073709551615", ""},
		{`{"id": 9007199254740993.5}`, "id", "", "is not an integer"},
		{`{"id": 1e20}`, "id", "", "out of the range"},
		{`{"id": 1e999999999}`, "id", "", "not an integer"},
		{`{"id": -0}`, "id", "0", ""},
		{`{"id": null}`, "id", "", "is null"},
		{`{"id": {"v": 1}}`, "id", "", "is an object"},
		{`{"id": true}`, "id", "", "is a boolean"},
		{`{"id": "  "}`, "id", "", "is empty"},
		{`{"id": 42`, "id", "", "not valid JSON"},
		{`<html>`, "id", "", "not valid JSON"},
		{`{"id": "` + strings.Repeat("x", maxNativeIDLen+1) + `"}`, "id", "", "longer than"},
		{`{"id": "a\u0000b"}`, "id", "", "holds a control character"},
		{`{"id": "a\nb"}`, "id", "", "holds a control character"},
		{`{"items": [{"id": "\u007f"}]}`, "items.0.id", "", "holds a control character"},
		{`{"id": "a\tb"}`, "id", "", "holds a control character"},
	}
	for _, tc := range tests {
		got, err := ExtractID([]byte(tc.body), tc.path)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ExtractID(%.40s, %s) error = %v, want %q", tc.body, tc.path, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ExtractID(%s, %s) = %q, %v; want %q", tc.body, tc.path, got, err, tc.want)
		}
	}
}

// TestNativePaths checks that keys with gjson/sjson syntax characters stay literal.
func TestNativePaths(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "body": {
	  "a\\.b": {"value": 1}, "x.0": {"value": 2}, "x.-1": {"value": 3}, "q*?|#@!": {"value": 4}, ":k": {"value": 5},
	  "urn:x:y": {"value": 6}}}}}}`)
	req := oneRequest(t, m, Input{ResourceType: "User", Event: "create", Resource: scim.Resource{}})
	want := `{"a.b":1,"x":{"0":2,"-1":3},"q*?|#@!":4,":k":5,"urn:x:y":6}`
	if string(req.Body) != want {
		t.Errorf("body = %s, want %s", req.Body, want)
	}
}

// TestStringEscaping checks that values with JSON-significant characters produce valid
// JSON with the value intact.
func TestStringEscaping(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u", "body": {"d": "displayName"}}}}}`)
	for _, s := range []string{`"quoted" \ back`, "line\nbreak\ttab\u0001", "<script>&</script>", "emoji 😀 \u2028"} {
		req := oneRequest(t, m, Input{ResourceType: "User", Event: "create", Resource: scim.Resource{"displayName": s}})
		var got struct{ D string }
		if err := json.Unmarshal(req.Body, &got); err != nil || got.D != s {
			t.Errorf("%q: body %s (%v)", s, req.Body, err)
		}
	}
}

// TestConcurrentRequests runs one mapping from many goroutines (go test -race) and checks
// that the stored resource is never modified.
func TestConcurrentRequests(t *testing.T) {
	m, err := Load("testdata/demo-mapping.json", testResolve)
	if err != nil {
		t.Fatal(err)
	}
	doc := entraUser(t)
	before := scim.CloneResource(doc)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := m.Requests(Input{ResourceType: "User", Event: "create", Resource: doc, NativeIDOf: idMap}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if !reflect.DeepEqual(doc, before) {
		t.Error("Requests modified the resource")
	}
}

func idMap(id string) (string, RefState) {
	if id == "m-1" {
		return "17", RefLinked
	}
	return "", RefPending
}

// entraUser is a user as Entra creates it, manager reference included.
func entraUser(t testing.TB) scim.Resource {
	return resource(t, `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "id": "6c5bb468-14b2-4183-baf2-06d523e03bd3", "externalId": "0a21f0f2", "userName": "Test_User_ab6490ee@contoso.example",
	  "active": "True", "displayName": "Ada Lovelace", "title": "Analyst",
	  "name": {"formatted": "Ada Lovelace", "familyName": "Lovelace", "givenName": "Ada"},
	  "emails": [{"primary": true, "type": "work", "value": "Ada.Lovelace@Contoso.example"}],
	  "phoneNumbers": [{"type": "work", "value": "+44 (20) 7946-0018"}],
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "department": "R&D", "manager": {"value": "m-1"}}}`)
}

// BenchmarkRequests maps one Entra user create against the demo mapping, and reports
// the cost of building the body alone (the baseline: encoding the same values with
// encoding/json) in the same run.
func BenchmarkRequests(b *testing.B) {
	m, err := Load("testdata/demo-mapping.json", testResolve)
	if err != nil {
		b.Fatal(err)
	}
	doc := entraUser(b)
	in := Input{ResourceType: "User", Event: "create", Resource: doc, NativeIDOf: idMap}
	b.Run("mapping", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Requests(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline_json_marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			body := map[string]any{"login": doc["userName"], "person": map[string]any{"first": "Ada", "last": "Lovelace", "display": doc["displayName"]},
				"contact": map[string]any{"mail": "ada.lovelace@contoso.example", "phone": "+442079460018"},
				"org":     map[string]any{"dept": "R&D", "title": doc["title"], "employee_no": "701984", "manager_id": 17}, "locked": false}
			if _, err := json.Marshal(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestUnknownManagerOnCreate: a create whose manager has no native account yet is sent
// without the link (Entra's reference pass links managers later, by PATCH).
func TestUnknownManagerOnCreate(t *testing.T) {
	m, err := Load("testdata/demo-mapping.json", func(s string) (string, error) { return "k", nil })
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := m.Requests(Input{ResourceType: "User", Event: change.Create, Resource: map[string]any{
		"id": "u1", "userName": "a@b.c",
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"manager": map[string]any{"value": "nobody"}},
	}, NativeIDOf: func(string) (string, RefState) { return "", RefPending }})
	if err != nil || len(reqs) != 1 {
		t.Fatalf("%d requests, %v", len(reqs), err)
	}
	if strings.Contains(string(reqs[0].Body), "manager_id") {
		t.Fatalf("the unknown manager was sent: %s", reqs[0].Body)
	}
}

func TestCarries(t *testing.T) {
	m, err := Parse("c.json", []byte(`{"version": 1, "users": {"events": {
		"create": {"method": "POST", "path": "/u", "id": "id", "body": {"login": "userName", "status": {"from": "active", "transforms": [{"bool": ["on", "off"]}]}}},
		"update": {"method": "PATCH", "path": "/u/{id}", "body": {"login": "userName"}},
		"deactivate": {"method": "POST", "path": "/u/{id}/suspend"}}}}`), func(s string) (string, error) { return s, nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		event change.Event
		attr  string
		want  bool
	}{
		{change.Create, "active", true},
		{change.Create, "userName", true},
		{change.Create, "title", false},
		{change.Update, "active", false},
		{change.Deactivate, "active", false},
		{change.Delete, "active", false},
	} {
		if got := m.Carries("User", c.event, c.attr); got != c.want {
			t.Errorf("Carries(User, %s, %s) = %v, want %v", c.event, c.attr, got, c.want)
		}
	}
}

// TestReads: the attributes an event's fields are made from, canonical and once each
// (through transforms too); a changed-only update given them sends every field, an absent
// attribute as null.
func TestReads(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"events": {
		"create": {"method": "POST", "path": "/u", "id": "id", "body": {"login": "userName"}},
		"update": [
			{"method": "PATCH", "path": "/u/{id}", "send": "changed", "body": {"login": "userName", "first": "name.givenName", "dept": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}},
			{"method": "PATCH", "path": "/u/{id}/profile", "send": "changed", "body": {"login": "userName", "title": "title"}}
		],
		"deactivate": {"method": "POST", "path": "/u/{id}/suspend"}}}}`)
	want := []string{"name.givenname", "title", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:department", "username"}
	if got := m.Reads("User", change.Update); !slices.Equal(got, want) {
		t.Fatalf("Reads(update) = %v, want %v", got, want)
	}
	if got := m.Reads("User", change.Deactivate); len(got) != 0 {
		t.Fatalf("Reads(deactivate) = %v", got)
	}
	reqs, err := m.StepRequests(Input{ResourceType: "User", Event: change.Update, NativeID: "7",
		Resource: resource(t, `{"userName":"ada","name":{"givenName":"Ada"}}`), Changed: want}, 0)
	if err != nil || len(reqs) != 1 || string(reqs[0].Body) != `{"login":"ada","first":"Ada","dept":null}` {
		t.Fatalf("update with every attribute read: %v %+v", err, reqs)
	}
}

// TestManagerNotInDirectory: a manager the directory does not have (deleted since) is no
// manager: left out of a create and of a "send": "all" body, null in a "send": "changed"
// body when the manager changed; a manager in the directory without an account still
// fails the update.
func TestManagerNotInDirectory(t *testing.T) {
	const create = `"create": {"method": "POST", "path": "/u", "id": "id", "body": {"login": "userName", "mgr": "manager"}}`
	changed := mustParse(t, `{"version": 1, "users": {"events": {`+create+`,
	  "update": {"method": "PATCH", "path": "/u/{id}", "body": {"login": "userName", "mgr": "manager"}}}}}`)
	all := mustParse(t, `{"version": 1, "users": {"events": {`+create+`,
	  "update": {"method": "PUT", "path": "/u/{id}", "send": "all", "body": {"login": "userName", "mgr": "manager", "on": "active"}}}}}`)
	asked := ""
	state := func(s RefState) func(string) (string, RefState) {
		return func(id string) (string, RefState) {
			asked = id
			return "", s
		}
	}
	report := scim.Resource{"id": "r-1", "userName": "rita@contoso.example", "active": false,
		scim.EnterpriseUserSchema: map[string]any{"manager": map[string]any{"value": "m-gone"}}}
	for _, tc := range []struct {
		name string
		m    *Mapping
		in   Input
		want string
	}{
		{"create", changed, Input{Event: change.Create}, `{"login":"rita@contoso.example"}`},
		{"update, send changed", changed, Input{Event: change.Update, NativeID: "7", Changed: []string{"manager"}},
			`{"mgr":null}`},
		{"update, send all", all, Input{Event: change.Update, NativeID: "7", Changed: []string{"active"}},
			`{"login":"rita@contoso.example","on":false}`},
	} {
		asked = ""
		tc.in.ResourceType, tc.in.Resource, tc.in.NativeIDOf = scim.UserType, report, state(RefGone)
		if req := oneRequest(t, tc.m, tc.in); string(req.Body) != tc.want {
			t.Errorf("%s: body %s, want %s", tc.name, req.Body, tc.want)
		}
		if asked != "m-gone" {
			t.Errorf("%s: NativeIDOf was asked for %q", tc.name, asked)
		}
	}
	_, err := all.Requests(Input{ResourceType: scim.UserType, Event: change.Update, Resource: report, NativeID: "7",
		Changed: []string{"active"}, NativeIDOf: state(RefPending)})
	var se *scim.Error
	if !errors.As(err, &se) || se.Status != http.StatusBadRequest || !strings.Contains(se.Detail, `the manager (SCIM id "m-gone") has no account in the app yet`) {
		t.Errorf("a manager without an account yet: %v", err)
	}
}

// TestFlowConditions: a flow's calls are built in order, each only when its condition
// holds for the change (equals with Entra's "False", changed, present, absent; on a create
// an attribute is changed when it has a value).
func TestFlowConditions(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"events": {
	  "create": [
	    {"method": "POST", "path": "/u", "id": "id", "body": {"login": "userName"}},
	    {"method": "POST", "path": "/u/{id}/suspend", "when": {"equals": {"active": false}}},
	    {"method": "PUT", "path": "/u/{id}/title", "when": {"changed": ["title"]}, "body": {"title": "title"}}
	  ],
	  "update": [
	    {"method": "PATCH", "path": "/u/{id}", "body": {"login": "userName"}},
	    {"method": "PUT", "path": "/u/{id}/badge", "when": {"present": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"], "changed": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"]}, "body": {"badge": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"}},
	    {"method": "DELETE", "path": "/u/{id}/badge", "when": {"absent": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"], "changed": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"]}}
	  ]}}}`)
	if n := m.FlowLen("User", change.Create); n != 3 || !m.Carries("User", change.Create, "active") {
		t.Fatalf("FlowLen %d, Carries(active) %v", n, m.Carries("User", change.Create, "active"))
	}
	paths := func(in Input) []string {
		t.Helper()
		var out []string
		for step := range m.FlowLen(in.ResourceType, in.Event) {
			reqs, err := m.StepRequests(in, step)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range reqs {
				out = append(out, r.Method+" "+r.Path)
			}
			in.NativeID = "7" // what the first call's answer gave
		}
		return out
	}
	for _, c := range []struct {
		name string
		in   Input
		want []string
	}{
		{"active create", Input{ResourceType: "User", Event: change.Create, Resource: scim.Resource{"userName": "a", "active": true}},
			[]string{"POST /u"}},
		{"inactive create with a title", Input{ResourceType: "User", Event: change.Create, Resource: scim.Resource{"userName": "a", "active": "False", "title": "CTO"}},
			[]string{"POST /u", "POST /u/7/suspend", "PUT /u/7/title"}},
		{"update without the badge", Input{ResourceType: "User", Event: change.Update, NativeID: "7", Resource: scim.Resource{"userName": "a"}, Changed: []string{"userName"}},
			[]string{"PATCH /u/7"}},
		{"badge set", Input{ResourceType: "User", Event: change.Update, NativeID: "7", Changed: []string{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"},
			Resource: scim.Resource{"userName": "a", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"employeeNumber": "E1"}}},
			[]string{"PUT /u/7/badge"}}, // the PATCH sends changed attributes: none of its own
		{"badge removed", Input{ResourceType: "User", Event: change.Update, NativeID: "7", Changed: []string{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"},
			Resource: scim.Resource{"userName": "a"}},
			[]string{"DELETE /u/7/badge"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := paths(c.in); !slices.Equal(got, c.want) {
				t.Fatalf("calls %v, want %v", got, c.want)
			}
		})
	}
}

// TestURLPathRefusesSlashesFromSCIMValues: a SCIM value in a URL path segment is escaped
// ("a/b" as "a%2Fb"), but many apps decode the path before they route it (every WSGI app:
// Django, Flask; nginx in front of one), so a userName "victim/roles" or "..\admin"
// would reach another endpoint. Such a value is refused in a path (400 naming the
// placeholder); in the query it is only data. Native ids and answers come from the app
// itself and keep their slashes.
func TestURLPathRefusesSlashesFromSCIMValues(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {
	    "lookup": {"method": "GET", "path": "/u?login={userName}", "id": "id"},
	    "events": {
	      "create": {"method": "POST", "path": "/u", "id": "id"},
	      "update": {"method": "PUT", "path": "/u/{id}/by-name/{userName|trim}", "send": "all"}}}}`)
	for _, name := range []string{"victim/roles", "../admin", `..\admin`, "a/../../b"} {
		_, err := m.Requests(Input{ResourceType: "User", Event: "update", Resource: scim.Resource{"userName": name}, NativeID: "7"})
		var se *scim.Error
		if !errors.As(err, &se) || se.Status != http.StatusBadRequest || !strings.Contains(se.Detail, "{userName|trim}") {
			t.Errorf("%q in a path: %v, want a 400 naming the placeholder", name, err)
		}
		req, _, err := m.LookupRequest("User", scim.Resource{"userName": name})
		if err != nil || !strings.HasPrefix(req.Path, "/u?login=") {
			t.Errorf("%q in a query: %v, %v", name, req, err)
		}
	}
	req := oneRequest(t, m, Input{ResourceType: "User", Event: "update", Resource: scim.Resource{"userName": "ann"}, NativeID: "team/7"})
	if req.Path != "/u/team%2F7/by-name/ann" {
		t.Errorf("a native id with a slash: %s", req.Path)
	}
	// A transform that reads another attribute (template, first_non_empty) brings that
	// client value into the path too.
	m = mustParse(t, `{"version": 1, "users": {"events": {"create": {"method": "POST", "path": "/u/{userName|template:\"{title}\"}", "id": "id"}}}}`)
	if _, err := m.Requests(Input{ResourceType: "User", Event: "create", Resource: scim.Resource{"userName": "ann", "title": "victim/roles"}}); err == nil {
		t.Error("a title with a slash reached the path through a template")
	}
}

// TestURLPathEscapesPlus: a "+" in a path value (plus addressing: ann+test@x.example) is
// sent as %2B. RFC 3986 lets it stand as it is, and a compliant app reads either form as
// "+"; but apps that decode their paths as forms (Java's URLDecoder, PHP's urldecode)
// read a bare "+" as a space, another account.
func TestURLPathEscapesPlus(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"events": {
	      "create": {"method": "POST", "path": "/u", "id": "id"},
	      "update": {"method": "PUT", "path": "/u/{id}/by-name/{userName}?login={userName}", "send": "all"}}}}`)
	req := oneRequest(t, m, Input{ResourceType: "User", Event: "update", Resource: scim.Resource{"userName": "ann+test@x.example"}, NativeID: "a+b"})
	if want := "/u/a%2Bb/by-name/ann%2Btest@x.example?login=ann%2Btest%40x.example"; req.Path != want {
		t.Errorf("path %s, want %s", req.Path, want)
	}
}
