package mapping

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

// expectMapping updates names, mail and a manager (send: changed), and carries the state
// in the create only (locked from active, through not).
const expectMapping = `{"version": 1, "users": {
	"list": {"method": "GET", "path": "/u", "items": "items", "id": "id"},
	"events": {
		"create": {"method": "POST", "path": "/u", "id": "id", "body": {
			"login": "userName",
			"person.first": {"from": "name.givenName", "transforms": ["trim"]},
			"mail": {"from": "emails[type eq \"work\"].value", "transforms": ["lower", {"default": ""}]},
			"manager_id": {"from": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "transforms": ["to_int"]},
			"locked": {"from": "active", "transforms": ["not"]}}},
		"update": {"method": "PATCH", "path": "/u/{id}", "body": {
			"login": "userName",
			"person.first": {"from": "name.givenName", "transforms": ["trim"]},
			"mail": {"from": "emails[type eq \"work\"].value", "transforms": ["lower", {"default": ""}]},
			"manager_id": {"from": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "transforms": ["to_int"]}}}}}}`

// TestExpectCompare: the expectation of a listed account is the update's fields after the
// transforms plus the create's state field; the comparison treats absent, null and "" as
// one, numbers by value, and names only the fields that differ.
func TestExpectCompare(t *testing.T) {
	m := mustParse(t, expectMapping)
	doc := scim.Resource{"id": "s1", "userName": "ann", "active": false,
		"name":   map[string]any{"givenName": " Ann "},
		"emails": []any{map[string]any{"type": "work", "value": "Ann@X.example"}},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"manager": map[string]any{"value": "boss"}}}
	refs := func(id string) (string, RefState) {
		if id == "boss" {
			return "12", RefLinked
		}
		return "", RefGone
	}
	x := m.Expect(scim.UserType, doc, refs)
	tests := []struct {
		name, item string
		want       []string // native fields that differ
	}{
		{"equal", `{"id": 1, "login": "ann", "person": {"first": "Ann"}, "mail": "ann@x.example", "manager_id": 12, "locked": true}`, nil},
		{"number as float and string", `{"id": 1, "login": "ann", "person": {"first": "Ann"}, "mail": "ann@x.example", "manager_id": 12.0, "locked": true}`, nil},
		{"drift and state", `{"id": 1, "login": "ann", "person": {"first": "Anne"}, "mail": "ann@x.example", "manager_id": 13, "locked": false}`,
			[]string{"person.first", "manager_id", "locked"}},
		{"absent fields", `{"id": 1, "login": "ann"}`, []string{"person.first", "mail", "manager_id", "locked"}},
	}
	for _, tc := range tests {
		var got []string
		for _, d := range x.Compare([]byte(tc.item)) {
			got = append(got, d.Native)
			if d.State != (d.Native == "locked") {
				t.Errorf("%s: %s state %v", tc.name, d.Native, d.State)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: differences %v, want %v", tc.name, got, tc.want)
		}
	}
	// Without a mail, the mapping sends "" and the app's null or absent field is equal.
	delete(doc, "emails")
	delete(doc, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
	x = m.Expect(scim.UserType, doc, refs)
	if d := x.Compare([]byte(`{"login": "ann", "person": {"first": "Ann"}, "mail": null, "locked": true}`)); len(d) != 0 {
		t.Errorf("absent values: %+v", d)
	}
	d := x.Compare([]byte(`{"login": "ann", "person": {"first": "Ann"}, "mail": "old@x.example", "locked": true}`))
	if len(d) != 1 || d[0].Native != "mail" || string(d[0].App) != `"old@x.example"` || string(d[0].Want) != `""` {
		t.Errorf("a mail the directory no longer has: %+v", d)
	}
	// A manager without an account yet cannot be expected: not compared.
	doc["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = map[string]any{"manager": map[string]any{"value": "pending"}}
	x = m.Expect(scim.UserType, doc, func(string) (string, RefState) { return "", RefPending })
	if len(x.Unknown) != 1 || x.Unknown[0] != "manager_id" {
		t.Errorf("unknown %v", x.Unknown)
	}
	if s := m.Subject(scim.UserType, []byte(`{"login": "ann"}`)); s != "ann" {
		t.Errorf("subject %q", s)
	}
	out, _ := json.Marshal(d)
	if !strings.Contains(string(out), `"field":"mail"`) {
		t.Errorf("a difference's JSON: %s", out)
	}
}

// TestExpectCompareBigIntegers: numbers beyond 2^53 (a manager's native id through
// to_int) are compared by their digits, not rounded to the same float64; other numbers
// by value.
func TestExpectCompareBigIntegers(t *testing.T) {
	m := mustParse(t, expectMapping)
	doc := scim.Resource{"id": "s1", "userName": "ann", "active": true,
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"manager": map[string]any{"value": "boss"}}}
	x := m.Expect(scim.UserType, doc, func(string) (string, RefState) { return "9007199254740993", RefLinked })
	for item, want := range map[string]string{
		`{"login": "ann", "manager_id": 9007199254740993, "locked": false}`:   "",
		`{"login": "ann", "manager_id": "9007199254740993", "locked": false}`: "",
		`{"login": "ann", "manager_id": 9007199254740992, "locked": false}`:   "manager_id",
		`{"login": "ann", "manager_id": 9007199254740994, "locked": false}`:   "manager_id",
	} {
		var got []string
		for _, d := range x.Compare([]byte(item)) {
			got = append(got, d.Native)
		}
		if strings.Join(got, ",") != want {
			t.Errorf("%s: differences %v, want %q", item, got, want)
		}
	}
	for _, c := range []struct {
		a, b string
		same bool
	}{{"12", "12.0", true}, {"100", "1e2", true}, {"-0", "0", true}, {"12345678901234567890", "12345678901234567891", false}, {"1.5", "1.50", true}} {
		if got := sameNumber(c.a, c.b, gjsonNum(c.a), gjsonNum(c.b)); got != c.same {
			t.Errorf("sameNumber(%s, %s) = %v", c.a, c.b, got)
		}
	}
}

func gjsonNum(raw string) float64 {
	var f float64
	_ = json.Unmarshal([]byte(raw), &f)
	return f
}

// TestExpectReadsWhereTheListHoldsFields: an app that takes its writes wrapped
// ({"person": {"login": ...}}) and lists its accounts flat, under other names, is compared
// through the list's "read": each field is read where the item holds it, the account's
// name included (Subject); a field not named in read is read at its own native path.
func TestExpectReadsWhereTheListHoldsFields(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {
		"list": {"method": "GET", "path": "/people", "items": "data.users", "id": "uid",
			"read": {"person.login": "login", "person.job": "profile.job\\.title"}},
		"events": {
			"create": {"method": "POST", "path": "/people", "id": "data.user.uid", "body": {
				"person.login": "userName", "person.job": "title", "person.disabled": {"from": "active", "transforms": ["not"]}}},
			"update": {"method": "PUT", "path": "/people/{id}", "send": "all", "body": {
				"person.login": "userName", "person.job": "title"}}}}}`)
	doc := scim.Resource{"id": "s1", "userName": "ann", "title": "Engineer", "active": true}
	x := m.Expect(scim.UserType, doc, nil)
	for _, tc := range []struct {
		name, item string
		want       []string
	}{
		{"equal", `{"uid": "usr_1", "login": "ann", "profile": {"job.title": "Engineer"}, "person": {"disabled": false}}`, nil},
		{"drift", `{"uid": "usr_1", "login": "ann", "profile": {"job.title": "Hacker"}, "person": {"disabled": true}}`, []string{"person.job", "person.disabled"}},
		{"wrapped item, as written, is not where the list holds it", `{"uid": "usr_1", "person": {"login": "ann", "job": "Engineer", "disabled": false}}`,
			[]string{"person.login", "person.job"}},
	} {
		var got []string
		for _, d := range x.Compare([]byte(tc.item)) {
			got = append(got, d.Native)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: differences %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := m.Subject(scim.UserType, []byte(`{"uid": "usr_1", "login": "ann"}`)); got != "ann" {
		t.Errorf("subject %q, want ann", got)
	}
}

// TestListMembersLoad: groups.list_members reads one group's members by its native id.
func TestListMembersLoad(t *testing.T) {
	ok := `{"version": 1, "groups": {"events": {"create": {"method": "POST", "path": "/g", "id": "id", "body": {"name": "displayName"}}},
		"list": {"method": "GET", "path": "/g", "items": "items", "id": "id"},
		"list_members": {"method": "GET", "path": "/g/{id}/members?limit=50", "items": "items", "id": "account_id",
			"paging": {"type": "cursor", "cursor": "next_cursor", "param": "cursor"}}}}`
	m := mustParse(t, ok)
	if !m.CanListMembers() || !m.CanList(scim.GroupType) || m.CanList(scim.UserType) {
		t.Error("CanList/CanListMembers")
	}
	req, err := m.listMembersRequest("7")
	if err != nil || req.Path != "/g/7/members?limit=50" || req.IDPath != "account_id" || req.Paging == nil {
		t.Errorf("request %+v %v", req, err)
	}
	for name, tc := range map[string]struct{ file, want string }{
		"on users": {`{"version": 1, "users": {"events": {}, "list_members": {"method": "GET", "path": "/u/{id}", "items": "items", "id": "id"}}}`,
			`demo.json: users.list_members: members are listed per group: write it as groups.list_members`},
		"without the group": {`{"version": 1, "groups": {"events": {}, "list_members": {"method": "GET", "path": "/g/members", "items": "items", "id": "id"}}}`,
			`demo.json: groups.list_members: a member list reads the members of one group: its path has the group's native id, {id}, as its only placeholder, and it has no body`},
		"another placeholder": {`{"version": 1, "groups": {"events": {}, "list_members": {"method": "GET", "path": "/g/{id}/{displayName}", "items": "items", "id": "id"}}}`,
			`demo.json: groups.list_members: a member list reads the members of one group: its path has the group's native id, {id}, as its only placeholder, and it has no body`},
		"without items": {`{"version": 1, "groups": {"events": {}, "list_members": {"method": "GET", "path": "/g/{id}", "id": "id"}}}`,
			`demo.json: groups.list_members.items: missing: a list needs the gjson path of each page's list of accounts (e.g. "items")`},
	} {
		_, err := Parse("demo.json", []byte(tc.file), testResolve)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got: %v\nwant: %s", name, err, tc.want)
		}
	}
}

// TestExpectCompareBooleansAsTheAppListsThem: an app that takes a JSON boolean and lists
// it as 0/1 (a MySQL tinyint through PHP) or as "True"/"False" (a .NET or Python
// string) holds the same state: no drift, and no state finding for every account. A
// boolean against another number or text is still drift.
func TestExpectCompareBooleansAsTheAppListsThem(t *testing.T) {
	m := mustParse(t, expectMapping)
	active := m.Expect(scim.UserType, scim.Resource{"id": "s1", "userName": "ann", "active": true}, nil)
	inactive := m.Expect(scim.UserType, scim.Resource{"id": "s1", "userName": "ann", "active": false}, nil)
	for _, c := range []struct {
		x      Expected
		locked string
		drift  bool
	}{
		{active, `false`, false}, {active, `0`, false}, {active, `"0"`, false}, {active, `"False"`, false}, {active, `"false"`, false},
		{inactive, `true`, false}, {inactive, `1`, false}, {inactive, `"1"`, false}, {inactive, `"True"`, false}, {inactive, `"TRUE"`, false},
		{active, `1`, true}, {active, `"True"`, true}, {inactive, `0`, true}, {inactive, `2`, true}, {inactive, `"yes"`, true}, {active, `1.5`, true},
	} {
		d := c.x.Compare([]byte(`{"login": "ann", "locked": ` + c.locked + `}`))
		if got := len(d) > 0; got != c.drift {
			t.Errorf("locked %s where the mapping sends %v: drift %v, want %v", c.locked, c.x.Fields[len(c.x.Fields)-1].Value, got, c.drift)
		}
	}
}
