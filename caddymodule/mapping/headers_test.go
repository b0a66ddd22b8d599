package mapping

import (
	"net/http"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestHeaderFromAnEarlierAnswer: a call's header may be computed like a body field, as an
// app with optimistic concurrency needs: the If-Match of an update is the ETag its GET
// answered. A fixed header stays as it was; an absent value leaves the header out.
func TestHeaderFromAnEarlierAnswer(t *testing.T) {
	m := mustParse(t, `{"version": 1, "users": {"lookup": {"method": "GET", "path": "/u?l={userName}", "id": "0.id"}, "events": {
	  "update": [
	    {"method": "GET", "path": "/u/{id}"},
	    {"method": "PATCH", "path": "/u/{id}", "headers": {"If-Match": {"from": "$header.0.ETag"}, "X-Fixed": "yes",
	       "X-Version": {"from": "$answer.0.meta.version", "transforms": ["to_string"]}}, "body": {"title": "title"}}]}}}`)
	in := Input{ResourceType: scim.UserType, Event: change.Update, NativeID: "7", Changed: []string{"title"},
		Resource: resource(t, `{"id": "s1", "userName": "ada", "title": "Eng"}`), Previous: resource(t, `{"id": "s1", "userName": "ada"}`)}
	in.Answers = []Answer{{Header: http.Header{"Etag": {`W/"v3"`}}, Body: []byte(`{"meta": {"version": 9007199254740993}}`)}, {}}
	reqs, err := m.StepRequests(in, 1)
	if err != nil || len(reqs) != 1 {
		t.Fatalf("StepRequests: %v %v", reqs, err)
	}
	h := reqs[0].Header
	if h.Get("If-Match") != `W/"v3"` || h.Get("X-Fixed") != "yes" || h.Get("X-Version") != "9007199254740993" {
		t.Fatalf("headers %v", h)
	}
	in.Answers = []Answer{{Header: http.Header{}, Body: []byte(`{}`)}, {}}
	if reqs, err = m.StepRequests(in, 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := reqs[0].Header["If-Match"]; ok || reqs[0].Header.Get("X-Fixed") != "yes" {
		t.Fatalf("an absent ETag: headers %v", reqs[0].Header)
	}
	in.Answers = []Answer{{Header: http.Header{}, Body: []byte(`{"meta": {"version": {"a": 1}}}`)}, {}}
	if _, err = m.StepRequests(in, 1); err == nil || !strings.Contains(err.Error(), `headers["X-Version"]`) {
		t.Fatalf("an object as a header's value: %v", err)
	}
}

func TestHeaderFieldLoadErrors(t *testing.T) {
	for _, tc := range []struct{ name, call, want string }{
		{"a number", `{"method": "POST", "path": "/a", "headers": {"X-N": 5}}`, `users.events.create.headers["X-N"]: a header's value is a string (fixed) or a field object`},
		{"a bad name", `{"method": "POST", "path": "/a", "headers": {"X N": {"from": "userName"}}}`, `is not a valid header name`},
		{"Authorization", `{"method": "POST", "path": "/a", "headers": {"authorization": {"from": "userName"}}}`, `Authorization is set by the gateway`},
		{"an answer in a single call", `{"method": "POST", "path": "/a", "headers": {"If-Match": {"from": "$header.0.ETag"}}}`, `reads an answer, but no call of the flow is made before this one`},
		{"a field without a value", `{"method": "POST", "path": "/a", "headers": {"X-A": {"transforms": ["lower"]}}}`, `never has a value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("demo.json", []byte(userCreate(tc.call)), testResolve)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
