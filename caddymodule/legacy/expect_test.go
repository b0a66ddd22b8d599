package legacy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCheckAnswer: what an answer proves, under the defaults and under expectations, for
// the impostors a gateway meets (a sign-in page with 200, a proxy's {} or 404 page, a WAF's
// 400 page) and for the application's own answers.
func TestCheckAnswer(t *testing.T) {
	raw := func(vals ...string) []json.RawMessage {
		var out []json.RawMessage
		for _, v := range vals {
			out = append(out, json.RawMessage(v))
		}
		return out
	}
	signIn := `<!DOCTYPE html><html><body><form action="/login">Sign in</form></body></html>`
	appErr := `{"error":{"code":"ACCOUNT_NOT_FOUND","message":"no account 7"}}`
	strict := &Expect{
		Status:   []int{200},
		Success:  Shape{Has: []string{"id"}, Equals: map[string][]json.RawMessage{"status": raw(`"disabled"`, `"locked"`)}},
		Errors:   Shape{Has: []string{"error.code"}},
		NotFound: &Shape{Equals: map[string][]json.RawMessage{"error.code": raw(`"ACCOUNT_NOT_FOUND"`)}},
	}
	cases := []struct {
		name     string
		x        *Expect
		status   int
		ct, body string
		kind     Kind // "" for success
		notFound bool
		why      string
	}{
		{"204 empty", nil, 204, "", "", "", false, ""},
		{"200 JSON", nil, 200, "application/json", `{"id":1}`, "", false, ""},
		{"200 JSON without a Content-Type", nil, 200, "", `{"id":1}`, "", false, ""},
		{"200 sign-in page", nil, 200, "text/html; charset=utf-8", signIn, KindUnproven, false, "HTML page"},
		{"200 markup labelled text/plain", nil, 200, "text/plain", signIn, KindUnproven, false, "HTML page"},
		{"200 plain OK by default", nil, 200, "text/plain", "OK", "", false, ""},
		{"200 plain OK where JSON is expected", &Expect{Success: Shape{Body: BodyJSON}}, 200, "text/plain", "OK", KindUnproven, false, "not JSON"},
		{"200 JSON sniffed as text/plain", &Expect{Success: Shape{Body: BodyJSON}}, 200, "text/plain; charset=utf-8", `{"id":1}`, "", false, ""},
		{"200 body where none is expected", &Expect{Success: Shape{Body: BodyEmpty}}, 200, "application/json", `{}`, KindUnproven, false, "no body was expected"},
		{"200 broken JSON", nil, 200, "application/json", `{"id":`, KindUnproven, false, "not valid JSON"},
		{"400 plain text app error", nil, 400, "text/plain", "email is invalid", KindStatus, false, ""},
		{"200 {} from a proxy", strict, 200, "application/json", `{}`, KindUnproven, false, `no "id"`},
		{"200 without the echo", strict, 200, "application/json", `{"id":7,"status":"active"}`, KindUnproven, false, `"status" is not one of`},
		{"200 with the echo", strict, 200, "application/json", `{"id":7,"status":"locked"}`, "", false, ""},
		{"201 where 200 is success", strict, 201, "application/json", `{"id":7,"status":"locked"}`, KindUnproven, false, "not one of the statuses"},
		{"400 WAF page", nil, 400, "text/html", `<html><body>Request blocked</body></html>`, KindUnproven, false, "HTML page"},
		{"400 app error", nil, 400, "application/json", `{"error":{"message":"bad email"}}`, KindStatus, false, ""},
		{"400 app error without the app's shape", strict, 400, "application/json", `{"message":"bad"}`, KindUnproven, false, "not the application's own"},
		{"404 proxy page", nil, 404, "text/html", `<html>404 Not Found</html>`, KindUnproven, false, "HTML page"},
		{"404 empty is not the app's not-found", nil, 404, "", "", KindStatus, false, ""},
		{"404 plain text is not the app's not-found", nil, 404, "text/plain", "404 page not found", KindStatus, false, ""},
		{"404 app not-found (default shape)", nil, 404, "application/json", appErr, KindStatus, true, ""},
		{"404 app not-found (configured)", strict, 404, "application/json", appErr, KindStatus, true, ""},
		{"404 app route-not-found (configured)", strict, 404, "application/json", `{"error":{"code":"ROUTE_NOT_FOUND"}}`, KindStatus, false, ""},
		{"500 HTML is an outage anyway", nil, 500, "text/html", `<html>oops</html>`, KindStatus, false, ""},
		{"429", nil, 429, "text/html", `<html>slow</html>`, KindRateLimited, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.ct != "" {
				h.Set("Content-Type", c.ct)
			}
			e := checkAnswer(c.x, &Response{Status: c.status, Header: h, Body: []byte(c.body)}, time.Now())
			if c.kind == "" {
				if e != nil {
					t.Fatalf("got %v, want success", e)
				}
				return
			}
			if e == nil || e.Kind != c.kind || e.Status != c.status || e.NotFound != c.notFound || !strings.Contains(e.Error(), c.why) {
				t.Fatalf("got %+v (%v), want kind %s, not found %v, %q", e, e, c.kind, c.notFound, c.why)
			}
			if strings.Contains(e.Error(), "Sign in") || strings.Contains(e.Error(), "Request blocked") {
				t.Fatalf("the error repeats the page: %v", e)
			}
		})
	}
}

// FuzzCheckAnswer: any answer, under any of a few expectations, is judged without a panic,
// and an HTML page is never a success.
func FuzzCheckAnswer(f *testing.F) {
	f.Add(200, "application/json", `{"user":{"id":"u1","state":"suspended"}}`)
	f.Add(404, "application/json", `{"code":"user_not_found"}`)
	f.Add(200, "text/html", `<html>Sign in</html>`)
	f.Add(400, "", `  <!DOCTYPE html>`)
	f.Add(204, "", ``)
	expects := []*Expect{nil,
		{Status: []int{200}, Success: Shape{Body: BodyJSON, Has: []string{"user.id"}, Equals: map[string][]json.RawMessage{"user.state": {json.RawMessage(`"suspended"`)}}}},
		{Success: Shape{Body: BodyEmpty}, Errors: Shape{Has: []string{"code"}}, NotFound: &Shape{Equals: map[string][]json.RawMessage{"code": {json.RawMessage(`"user_not_found"`)}}}},
	}
	f.Fuzz(func(t *testing.T, status int, ct, body string) {
		if status < 100 || status > 599 {
			return
		}
		h := http.Header{}
		h.Set("Content-Type", ct)
		for _, x := range expects {
			e := checkAnswer(x, &Response{Status: status, Header: h, Body: []byte(body)}, time.Now())
			if e == nil && (mediaType(ct) == "text/html" || strings.HasPrefix(strings.TrimSpace(body), "<") && !strings.Contains(mediaType(ct), "json")) {
				t.Fatalf("an HTML answer (%d %q %q) counted as a success", status, ct, body)
			}
		}
	})
}
