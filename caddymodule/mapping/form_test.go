package mapping

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestFormEncoding: the same body rules, flattened as the mapping says, with the
// Content-Type set by the encoding.
func TestFormEncoding(t *testing.T) {
	body := `"body": {
		"login": "userName",
		"person.first": "name.givenName",
		"person.last": "name.familyName",
		"mails": "emails.value",
		"active": "active",
		"kind": {"value": 3}
	}`
	u := resource(t, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"s1","userName":"ada&co=1",
		"name":{"givenName":"Ada","familyName":"Lovelace"},"active":true,
		"emails":[{"value":"a@x.example"},{"value":"b@x.example"}]}`)
	cases := []struct{ keys, want string }{
		{"", "login=ada%26co%3D1&person%5Bfirst%5D=Ada&person%5Blast%5D=Lovelace&mails%5B%5D=a%40x.example&mails%5B%5D=b%40x.example&active=true&kind=3"},
		{`, "form_keys": "brackets"`, "login=ada%26co%3D1&person%5Bfirst%5D=Ada&person%5Blast%5D=Lovelace&mails%5B%5D=a%40x.example&mails%5B%5D=b%40x.example&active=true&kind=3"},
		{`, "form_keys": "dots"`, "login=ada%26co%3D1&person.first=Ada&person.last=Lovelace&mails=a%40x.example&mails=b%40x.example&active=true&kind=3"},
	}
	for _, c := range cases {
		m := mustParse(t, userCreate(`{"method": "POST", "path": "/u", "id": "id", "encoding": "form"`+c.keys+`, `+body+`}`))
		req := oneRequest(t, m, Input{ResourceType: scim.UserType, Event: change.Create, Resource: u})
		if string(req.Body) != c.want {
			t.Errorf("form_keys%s:\n got %s\nwant %s", c.keys, req.Body, c.want)
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			t.Errorf("Content-Type %q", ct)
		}
	}
}

// TestFormClearsWithEmptyValue: an update that clears an attribute sends it empty.
func TestFormClearsWithEmptyValue(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"events": {
		"create": {"method": "POST", "path": "/u", "id": "id", "body": {"login": "userName"}},
		"update": {"method": "POST", "path": "/u/{id}", "encoding": "form", "body": {"title": "title", "login": "userName"}}}}}`)
	u := resource(t, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"s1","userName":"ada"}`)
	req := oneRequest(t, m, Input{ResourceType: scim.UserType, Event: change.Update, Resource: u, NativeID: "7", Changed: []string{"title"}})
	if string(req.Body) != "title=" {
		t.Fatalf("body %q, want title=", req.Body)
	}
}

func TestFormListOfObjectsIsADataError(t *testing.T) {
	m := mustParse(t, userCreate(`{"method": "POST", "path": "/u", "encoding": "form", "body": {"login": "userName", "mails": "emails"}}`))
	u := resource(t, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"s1","userName":"ada","emails":[{"value":"a@x.example"}]}`)
	_, err := m.Requests(Input{ResourceType: scim.UserType, Event: change.Create, Resource: u})
	se, ok := err.(*scim.Error)
	if !ok || se.Status != http.StatusBadRequest || !strings.Contains(se.Detail, `users.events.create.body`) || !strings.Contains(se.Detail, "form encoding") {
		t.Fatalf("error %v, want a 400 naming the rule", err)
	}
}

// TestNativeIDSources: the id from the body, a header, or the Location header.
func TestNativeIDSources(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		id      string
		header  http.Header
		body    string
		want    string
		wantErr string
	}{
		{`"user.id"`, nil, `{"user":{"id":42}}`, "42", ""},
		{`{"header": "x-account-id"}`, hdr("X-Account-Id", " A-17 "), ``, "A-17", ""},
		{`{"header": "X-Account-Id"}`, hdr(), ``, "", "the answer has no X-Account-Id header"},
		{`{"location": "last_segment"}`, hdr("Location", "https://app.example/api/users/1001"), ``, "1001", ""},
		{`{"location": "last_segment"}`, hdr("Location", "/api/users/u%20x/"), ``, "u x", ""},
		{`{"location": "last_segment"}`, hdr("Location", "https://app.example/"), ``, "", "has no path segment"},
		{`{"location": "last_segment"}`, hdr(), `{"id": 5}`, "", "the answer has no Location header"},
		{`{"location": "/users/([0-9]+)/profile$"}`, hdr("Location", "/v2/users/77/profile"), ``, "77", ""},
		{`{"location": "/users/([0-9]+)/profile$"}`, hdr("Location", "/v2/users/x/profile"), ``, "", "does not match the pattern"},
		{`{"header": "X-Ref", "pattern": "^acct:(.+)$"}`, hdr("X-Ref", "acct:z9"), ``, "z9", ""},
	}
	for _, c := range cases {
		m := mustParse(t, `{"version": 1, "users": {"lookup": {"method": "GET", "path": "/u?login={userName}", "id": "items.0.id"},
			"events": {"create": {"method": "POST", "path": "/u", "id": `+c.id+`, "body": {"login": "userName"}}}}}`)
		u := resource(t, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"s1","userName":"ada"}`)
		req := oneRequest(t, m, Input{ResourceType: scim.UserType, Event: change.Create, Resource: u})
		got, err := req.ID.Extract(c.header, []byte(c.body))
		switch {
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("id %s: error %v, want %q", c.id, err, c.wantErr)
		case c.wantErr == "" && (err != nil || got != c.want):
			t.Errorf("id %s: got %q, %v; want %q", c.id, got, err, c.want)
		}
		if m.IDStep(scim.UserType) != 0 {
			t.Errorf("id %s: IDStep %d", c.id, m.IDStep(scim.UserType))
		}
	}
}

func TestEncodingAndIDLoadErrors(t *testing.T) {
	lookup := `"lookup": {"method": "GET", "path": "/u?login={userName}", "id": "items.0.id"}, `
	tests := []struct{ name, file, want string }{
		{"unknown encoding", userCreate(`{"method": "POST", "path": "/u", "encoding": "xml", "body": {"a": "userName"}}`),
			`demo.json: users.events.create.encoding: "xml" is neither "json" (the default) nor "form" (application/x-www-form-urlencoded)`},
		{"form without body", userCreate(`{"method": "POST", "path": "/u", "encoding": "form"}`),
			`demo.json: users.events.create.encoding: "form" encodes a body, and this call has none`},
		{"form_keys without form", userCreate(`{"method": "POST", "path": "/u", "form_keys": "dots", "body": {"a": "userName"}}`),
			`demo.json: users.events.create.form_keys: applies to "encoding": "form" only`},
		{"bad form_keys", userCreate(`{"method": "POST", "path": "/u", "encoding": "form", "form_keys": "php", "body": {"a": "userName"}}`),
			`demo.json: users.events.create.form_keys: "php" is neither "brackets" (person[first], ids[]) nor "dots" (person.first, repeated ids)`},
		{"form with a JSON content type", userCreate(`{"method": "POST", "path": "/u", "encoding": "form", "headers": {"Content-Type": "application/json"}, "body": {"a": "userName"}}`),
			`demo.json: users.events.create.headers: Content-Type "application/json" contradicts "encoding": "form" (which sends application/x-www-form-urlencoded)`},
		{"form with a constant object", userCreate(`{"method": "POST", "path": "/u", "encoding": "form", "body": {"a": {"value": {"b": 1}}}}`),
			`demo.json: users.events.create.body["a"]: a constant object, or a list of lists or objects, cannot be form-encoded; set its fields one native path each`},
		{"id header and location", userCreate(`{"method": "POST", "path": "/u", "id": {"header": "X-Id", "location": "last_segment"}}`),
			`demo.json: users.events.create.id: give header or location, not both`},
		{"id pattern without group", userCreate(`{"method": "POST", "path": "/u", "id": {"location": "/users/[0-9]+"}}`),
			`demo.json: users.events.create.id: the pattern "/users/[0-9]+" must have exactly one group, the id: e.g. "/users/([^/]+)$"`},
		{"id object empty", userCreate(`{"method": "POST", "path": "/u", "id": {}}`),
			`demo.json: users.events.create.id: says neither header nor location`},
		{"id header without lookup", userCreate(`{"method": "POST", "path": "/u", "id": {"location": "last_segment"}}`),
			`demo.json: users.events.create.id: the native id comes from the last path segment of the Location header, so a create answered without it must be found again: add users.lookup`},
		{"lookup id from a header", `{"version": 1, "users": {"lookup": {"method": "GET", "path": "/u", "id": {"header": "X-Id"}}, "events": {}}}`,
			`demo.json: users.lookup.id: a lookup finds the native id in its JSON body: give a gjson path such as "items.0.id"`},
		{"id header name", `{"version": 1, "users": {` + lookup + `"events": {"create": {"method": "POST", "path": "/u", "id": {"header": "X Id"}}}}}`,
			`demo.json: users.events.create.id.header: "X Id" is not an HTTP header name`},
	}
	for _, tc := range tests {
		_, err := Parse("demo.json", []byte(tc.file), testResolve)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got: %v\nwant: %s", tc.name, err, tc.want)
		}
	}
}

// BenchmarkFormBody builds a create's body as JSON and as a form from the same rules, in
// the same run: the form's cost is the JSON body's plus its flattening.
func BenchmarkFormBody(b *testing.B) {
	body := `"body": {"login": "userName", "person.first": "name.givenName", "person.last": "name.familyName", "mails": "emails.value", "active": "active"}`
	doc := entraUser(b)
	for _, enc := range []string{"json", "form"} {
		m := mustParse(b, userCreate(`{"method": "POST", "path": "/u", "id": "id", "encoding": "`+enc+`", `+body+`}`))
		in := Input{ResourceType: scim.UserType, Event: change.Create, Resource: doc, NativeIDOf: idMap}
		b.Run(enc, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Requests(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLocationIDIsUnescapedOnce: an id read from the Location header is the segment as the
// app escaped it, unescaped once, so that the URLs that escape it again name the same
// account: "a%2Fb" is the account "a/b", not "b", and "ada%20x" (cut by a pattern) is
// "ada x", not "ada%20x" that the next call would send as "ada%2520x".
func TestLocationIDIsUnescapedOnce(t *testing.T) {
	cases := []struct{ id, location, want, wantErr string }{
		{`{"location": "last_segment"}`, "https://app.example/api/users/a%2Fb", "a/b", ""},
		{`{"location": "last_segment"}`, "/api/users/team%2F7/", "team/7", ""},
		{`{"location": "last_segment"}`, "/api/users/50%25off", "50%off", ""},
		{`{"location": "/users/([^/]+)$"}`, "/v2/users/ada%20x", "ada x", ""},
		{`{"location": "/users/([^/]+)$"}`, "/v2/users/a%2Fb", "a/b", ""},
		{`{"location": "/users/([^/]+)$"}`, "/v2/users/a%zz", "", "not validly URL-escaped"},
		{`{"header": "X-Ref", "pattern": "^acct:(.+)$"}`, "acct:a%20b", "a%20b", ""}, // not a URL: as it is
	}
	for _, c := range cases {
		m := mustParse(t, `{"version": 1, "users": {"lookup": {"method": "GET", "path": "/u?login={userName}", "id": "items.0.id"},
			"events": {"create": {"method": "POST", "path": "/u", "id": `+c.id+`, "body": {"login": "userName"}},
			"update": {"method": "PUT", "path": "/u/{id}", "send": "all", "body": {"login": "userName"}}}}}`)
		u := resource(t, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"s1","userName":"ada"}`)
		req := oneRequest(t, m, Input{ResourceType: scim.UserType, Event: change.Create, Resource: u})
		h := http.Header{}
		h.Set("Location", c.location)
		h.Set("X-Ref", c.location)
		got, err := req.ID.Extract(h, nil)
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s on %q: %q, %v; want an error %q", c.id, c.location, got, err, c.wantErr)
			}
			continue
		case err != nil || got != c.want:
			t.Errorf("%s on %q: %q, %v; want %q", c.id, c.location, got, err, c.want)
			continue
		}
		// The next call names the account as the app's Location did.
		upd := oneRequest(t, m, Input{ResourceType: scim.UserType, Event: change.Update, Resource: u, NativeID: got})
		if want := "/u/" + url.PathEscape(c.want); upd.Path != want {
			t.Errorf("%q: the update goes to %s, want %s", c.location, upd.Path, want)
		}
	}
}

// TestFormKeysFromTheClientsData: a form body has no structure but its keys, so a key of
// the client's data (a custom extension's complex attribute, stored as Entra sent it)
// holding the encoding's separator would set another field than its own: "a.b" under
// prefs is prefs.a.b, a nested field, to a Spring binder ("class.module..." the
// Spring4Shell path), and "a][role" is prefs[a][role] to PHP. Such a value is a 400; a
// key of the mapping written with the separator is a load error.
func TestFormKeysFromTheClientsData(t *testing.T) {
	const ext = "urn:ietf:params:scim:schemas:extension:MyApp:2.0:User"
	for _, c := range []struct{ keys, bad, good string }{
		{`"dots"`, "class.module.classLoader", "a[0]"},
		{`"brackets"`, "a][role", "a.b"},
	} {
		m := mustParse(t, userCreate(`{"method": "POST", "path": "/u", "encoding": "form", "form_keys": `+c.keys+`, "body": {"prefs": "`+ext+`:prefs"}}`))
		doc := scim.Resource{"userName": "ada", ext: map[string]any{"prefs": map[string]any{c.bad: "x"}}}
		_, err := m.Requests(Input{ResourceType: scim.UserType, Event: change.Create, Resource: doc})
		var se *scim.Error
		if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Detail, "users.events.create.body") {
			t.Errorf("form_keys %s, key %q: %v, want a 400", c.keys, c.bad, err)
		}
		doc = scim.Resource{"userName": "ada", ext: map[string]any{"prefs": map[string]any{c.good: "x"}}}
		if _, err := m.Requests(Input{ResourceType: scim.UserType, Event: change.Create, Resource: doc}); err != nil {
			t.Errorf("form_keys %s, key %q: %v", c.keys, c.good, err)
		}
	}
	_, err := Parse("demo.json", []byte(userCreate(`{"method": "POST", "path": "/u", "encoding": "form", "form_keys": "dots", "body": {"a\\.b": "userName"}}`)), testResolve)
	if err == nil || !strings.Contains(err.Error(), `users.events.create.body["a\\.b"]: the key "a.b" holds a "."`) {
		t.Errorf("a mapping key with the separator: %v", err)
	}
}
