package legacy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Body says what an answer's body must be.
type Body string

// Body rules.
const (
	// BodyAny: anything but an HTML page, and valid JSON when it says it is JSON (the
	// default for successes and errors).
	BodyAny Body = "any"
	// BodyJSONOrEmpty: no body, or a JSON one.
	BodyJSONOrEmpty Body = "json_or_empty"
	// BodyJSON: a JSON body (the default for an "already gone" 404).
	BodyJSON Body = "json"
	// BodyEmpty: no body at all.
	BodyEmpty Body = "empty"
)

// Shape is what an answer must look like: its body, the gjson paths it must hold, and the
// values it must hold at some paths (each path: the JSON values allowed there).
type Shape struct {
	Body   Body
	Has    []string
	Equals map[string][]json.RawMessage
}

// Expect is what an answer must look like to prove that the app did what the call asked,
// and which failures are the app's own answers. An answer that proves nothing (a sign-in
// page answered 200, a proxy's 404 for every path, a WAF's 400 page) is an outage, never a
// success and never the app's rejection.
type Expect struct {
	// Status lists the statuses that mean success; empty: any 2xx.
	Status []int
	// Success is the shape of a successful answer. Zero: anything but an HTML page.
	Success Shape
	// Errors is the shape of the app's own error answers (4xx other than 408 and 429):
	// one that does not match did not come from the app. Zero: anything but an HTML page.
	Errors Shape
	// NotFound is the shape of the app's own "no such object" answer (404 or 410), which a
	// delete and a member removal take as done. Nil: the Errors shape with a JSON body.
	NotFound *Shape
}

// unproven is an answer that does not prove what it seems to.
func unproven(status int, format string, args ...any) *Error {
	return &Error{Kind: KindUnproven, Status: status, Err: fmt.Errorf(format, args...), sent: true}
}

// Unproven is the error of an answer that met its call's expectation but proves nothing
// to the caller who reads it (a lookup's answer without the list it names): why, with the
// answer's media type and size, never its content.
func Unproven(resp *Response, why error) *Error {
	return unproven(resp.Status, "%w: %s", why, describe(mediaType(resp.Header.Get("Content-Type")), len(resp.Body)))
}

// checkAnswer decides what an answer means under x (nil x: the defaults).
func checkAnswer(x *Expect, resp *Response, now time.Time) *Error {
	if x == nil {
		x = &Expect{}
	}
	s := resp.Status
	success := s >= 200 && s <= 299
	if len(x.Status) > 0 {
		success = slices.Contains(x.Status, s)
	}
	if success {
		if why := x.Success.mismatch(resp, BodyAny); why != "" {
			return unproven(s, "a %d answer that does not prove the call worked: %s", s, why)
		}
		return nil
	}
	if s >= 200 && s <= 299 {
		return unproven(s, "HTTP %d is not one of the statuses that mean success (%s)", s, joinInts(x.Status))
	}
	if s >= 300 && s <= 399 {
		// Not followed (checkRedirect: it would have turned the call into a GET of another
		// page, a sign-in page typically): whether the app acted is unknown.
		return unproven(s, "a redirect (HTTP %d) instead of the application's answer; the gateway follows a redirect only when it keeps the call's method", s)
	}
	e := statusError(s, resp.Header, resp.Body, now)
	if s < 400 || s > 499 || s == http.StatusRequestTimeout || s == http.StatusTooManyRequests {
		return e // an outage whoever answered
	}
	if why := x.Errors.mismatch(resp, BodyAny); why != "" {
		return unproven(s, "a %d answer that is not the application's own (%s)", s, why)
	}
	if (s == http.StatusNotFound || s == http.StatusGone) && !resp.Redirected {
		// "Already gone" acknowledges a deprovisioning: only the application's own answer,
		// JSON unless the mapping says otherwise, counts, and only from the URL called (a
		// redirect may lead anywhere in the app: its not-found says nothing of the object).
		nf := x.NotFound
		if nf == nil {
			nf = &x.Errors
		}
		e.NotFound = nf.mismatch(resp, BodyJSON) == ""
	}
	return e
}

// mismatch says why resp does not have shape sh ("" when it does); def is the body rule
// when sh sets none. An HTML page is never an API's answer.
func (sh *Shape) mismatch(resp *Response, def Body) string {
	rule := sh.Body
	if rule == "" {
		rule = def
	}
	body := bytes.TrimSpace(resp.Body)
	ct := mediaType(resp.Header.Get("Content-Type"))
	if ct == "text/html" || ct == "application/xhtml+xml" || (len(body) > 0 && body[0] == '<' && !strings.Contains(ct, "json")) {
		return describe(ct, len(resp.Body)) + ", an HTML page, not the application's API"
	}
	isJSON := len(body) > 0 && utf8.Valid(body) && json.Valid(body)
	switch {
	case rule == BodyEmpty && len(body) > 0:
		return describe(ct, len(resp.Body)) + " where no body was expected"
	case rule == BodyJSON && len(body) == 0:
		return "an empty answer where JSON was expected"
	case (rule == BodyJSON || rule == BodyJSONOrEmpty) && len(body) > 0 && !isJSON:
		return describe(ct, len(resp.Body)) + ", not JSON"
	case rule == BodyAny && len(body) > 0 && strings.Contains(ct, "json") && !isJSON:
		return describe(ct, len(resp.Body)) + " that is not valid JSON"
	}
	if len(sh.Has) == 0 && len(sh.Equals) == 0 {
		return ""
	}
	if !isJSON {
		return "an answer without JSON where " + sh.wanted() + " was expected"
	}
	return sh.paths(body)
}

// paths checks Has and Equals on a JSON body.
func (sh *Shape) paths(body []byte) string {
	for _, p := range sh.Has {
		if v := gjson.GetBytes(body, p); !v.Exists() || v.Type == gjson.Null {
			return fmt.Sprintf("the answer has no %q", p)
		}
	}
	for _, p := range sortedPaths(sh.Equals) {
		v := gjson.GetBytes(body, p)
		if !v.Exists() {
			return fmt.Sprintf("the answer has no %q", p)
		}
		if !slices.ContainsFunc(sh.Equals[p], func(want json.RawMessage) bool { return jsonEqual(want, []byte(v.Raw)) }) {
			return fmt.Sprintf("the answer's %q is not %s", p, oneOf(sh.Equals[p]))
		}
	}
	return ""
}

func (sh *Shape) wanted() string {
	var parts []string
	for _, p := range sh.Has {
		parts = append(parts, fmt.Sprintf("%q", p))
	}
	for _, p := range sortedPaths(sh.Equals) {
		parts = append(parts, fmt.Sprintf("%q", p))
	}
	return strings.Join(parts, ", ")
}

func sortedPaths(m map[string][]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// jsonEqual compares two JSON values by meaning (1.0 equals 1, key order does not count).
func jsonEqual(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

func oneOf(vals []json.RawMessage) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = string(v)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "one of " + strings.Join(parts, ", ")
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}

func mediaType(ct string) string {
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	}
	return mt
}

// describe names an answer for the journal and the logs: its media type and size, never
// its content (it may hold personal data, or a page's markup).
func describe(ct string, n int) string {
	if ct == "" {
		ct = "no Content-Type"
	}
	return fmt.Sprintf("%s (%d bytes)", ct, n)
}
