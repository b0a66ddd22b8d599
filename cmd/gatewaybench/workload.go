package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// The SCIM URIs Entra writes, spelled out as cmd/entrasim does (entra-wire.md §2).
const (
	userSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	groupSchema      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	adGroupSchema    = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
	enterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	patchOpSchema    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	scimContentType  = "application/scim+json; charset=utf-8"
	teamDescription  = "Provisioned from Microsoft Entra ID by scimgate" // the mapping's default
)

// ref is a user or group one side created: its natural key and the id that side assigned
// (a SCIM id on the gateway, the app's integer id on the proxy).
type ref struct {
	name string
	id   string
}

// benchUser is one generated source user; the same (level, i) gives the same user on both
// sides, so both demo apps end up with equal accounts.
type benchUser struct {
	userName, given, family, display, mail, dept, title, employeeNo string
}

func userAt(level, i int) benchUser {
	given, family := fmt.Sprintf("Given%d", i), fmt.Sprintf("Family%d", level)
	return benchUser{
		userName:   fmt.Sprintf("c%d-u%06d@bench.example", level, i),
		given:      given,
		family:     family,
		display:    given + " " + family,
		mail:       fmt.Sprintf("c%d-u%06d@mail.bench.example", level, i),
		dept:       fmt.Sprintf("Dept %d", i%7),
		title:      "Engineer",
		employeeNo: fmt.Sprintf("E%d-%d", level, i),
	}
}

func groupName(level, i int) string { return fmt.Sprintf("c%d-team%03d", level, i) }

// request is one HTTP request of a cell and what a correct answer looks like. check, when
// set, validates the body of a wanted status (and may record what it carries, e.g. an id).
type request struct {
	method, path string
	body         []byte
	want         []int
	check        func(body []byte) error
}

// api builds one side's requests for each kind of the workload.
type api interface {
	createUser(u benchUser) request
	lookup(u ref) request
	get(u ref) request
	update(u ref, title string) request
	unchanged(u ref) request
	disable(u ref) request
	createGroup(name string) request
	addMember(group, user ref) request
	headers(h http.Header, withBody bool)
}

// scimAPI speaks to the gateway as Entra does (default dialect).
type scimAPI struct{ token string }

func (a scimAPI) headers(h http.Header, withBody bool) {
	h.Set("Authorization", "Bearer "+a.token)
	if withBody {
		h.Set("Content-Type", scimContentType)
	}
}

func (scimAPI) createUser(u benchUser) request {
	return request{method: http.MethodPost, path: "/Users", want: []int{http.StatusCreated}, body: mustJSON(map[string]any{
		"schemas":     []string{userSchema, enterpriseSchema},
		"userName":    u.userName,
		"active":      true,
		"displayName": u.display,
		"title":       u.title,
		"emails":      []any{map[string]any{"primary": true, "type": "work", "value": u.mail}},
		"name":        map[string]any{"formatted": u.display, "givenName": u.given, "familyName": u.family},
		"meta":        map[string]any{"resourceType": "User"},
		"roles":       []any{},
		enterpriseSchema: map[string]any{
			"department":     u.dept,
			"employeeNumber": u.employeeNo,
		},
	})}
}

func (scimAPI) lookup(u ref) request {
	q := "filter=" + url.QueryEscape(`userName eq "`+u.name+`"`)
	return request{method: http.MethodGet, path: "/Users?" + q, want: []int{http.StatusOK}, check: func(b []byte) error {
		var lr struct {
			TotalResults int `json:"totalResults"`
			Resources    []struct {
				ID string `json:"id"`
			} `json:"Resources"`
		}
		if err := json.Unmarshal(b, &lr); err != nil {
			return fmt.Errorf("not a ListResponse: %w", err)
		}
		if lr.TotalResults != 1 || len(lr.Resources) != 1 || lr.Resources[0].ID != u.id {
			return fmt.Errorf("want exactly user %s, got totalResults %d", u.id, lr.TotalResults)
		}
		return nil
	}}
}

func (scimAPI) get(u ref) request {
	return request{method: http.MethodGet, path: "/Users/" + url.PathEscape(u.id), want: []int{http.StatusOK}, check: wantID(u.id)}
}

func (scimAPI) update(u ref, title string) request {
	return request{method: http.MethodPatch, path: "/Users/" + url.PathEscape(u.id), want: []int{http.StatusOK, http.StatusNoContent},
		body: patch(map[string]any{"op": "Replace", "path": "title", "value": title})}
}

// unchanged is Entra's periodic re-send of a value the user already holds: "active" to an
// active user. The gateway answers it from a read; nothing goes to the app.
func (scimAPI) unchanged(u ref) request {
	return request{method: http.MethodPatch, path: "/Users/" + url.PathEscape(u.id), want: []int{http.StatusOK, http.StatusNoContent},
		body: patch(map[string]any{"op": "Replace", "path": "active", "value": "True"}), check: wantID(u.id)}
}

func (scimAPI) disable(u ref) request {
	return request{method: http.MethodPatch, path: "/Users/" + url.PathEscape(u.id), want: []int{http.StatusOK, http.StatusNoContent},
		body: patch(map[string]any{"op": "Replace", "path": "active", "value": "False"})}
}

func (scimAPI) createGroup(name string) request {
	return request{method: http.MethodPost, path: "/Groups", want: []int{http.StatusCreated}, body: mustJSON(map[string]any{
		"schemas":     []string{groupSchema, adGroupSchema},
		"displayName": name,
		"meta":        map[string]any{"resourceType": "Group"},
	})}
}

func (scimAPI) addMember(g, u ref) request {
	return request{method: http.MethodPatch, path: "/Groups/" + url.PathEscape(g.id), want: []int{http.StatusOK, http.StatusNoContent},
		body: patch(map[string]any{"op": "Add", "path": "members", "value": []any{map[string]any{"$ref": nil, "value": u.id}}})}
}

// nativeAPI sends, through the proxy, the demo app calls mappings/demoapp.json makes for
// the same changes.
type nativeAPI struct{ apiKey string }

func (a nativeAPI) headers(h http.Header, withBody bool) {
	h.Set("X-Api-Key", a.apiKey)
	h.Set("Accept", "application/json")
	if withBody {
		h.Set("Content-Type", "application/json")
	}
}

func (nativeAPI) createUser(u benchUser) request {
	return request{method: http.MethodPost, path: "/api/v1/accounts", want: []int{http.StatusCreated}, body: mustJSON(map[string]any{
		"login":   u.userName,
		"person":  map[string]any{"first": u.given, "last": u.family, "display": u.display},
		"contact": map[string]any{"mail": u.mail, "phone": ""},
		"org":     map[string]any{"dept": u.dept, "title": u.title, "employee_no": u.employeeNo},
		"locked":  false,
	})}
}

func (nativeAPI) lookup(u ref) request {
	return request{method: http.MethodGet, path: "/api/v1/accounts?login=" + url.QueryEscape(u.name), want: []int{http.StatusOK}, check: func(b []byte) error {
		var page struct {
			Items []struct {
				ID json.Number `json:"id"`
			} `json:"items"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return fmt.Errorf("not a page: %w", err)
		}
		if len(page.Items) != 1 || page.Items[0].ID.String() != u.id {
			return fmt.Errorf("want exactly account %s, got %d items", u.id, len(page.Items))
		}
		return nil
	}}
}

func (nativeAPI) get(u ref) request {
	return request{method: http.MethodGet, path: "/api/v1/accounts/" + u.id, want: []int{http.StatusOK}, check: wantID(u.id)}
}

func (nativeAPI) update(u ref, title string) request {
	return request{method: http.MethodPatch, path: "/api/v1/accounts/" + u.id, want: []int{http.StatusOK},
		body: mustJSON(map[string]any{"org": map[string]any{"title": title}})}
}

// unchanged, through the proxy, reads the account: the gateway sends the app nothing for
// such a change, so the app's cheapest call is the comparison; the kind's target is the
// gateway's own GET by id (see report.go).
func (a nativeAPI) unchanged(u ref) request { return a.get(u) }

func (nativeAPI) disable(u ref) request {
	return request{method: http.MethodPost, path: "/api/v1/accounts/" + u.id + "/lock", want: []int{http.StatusOK}}
}

func (nativeAPI) createGroup(name string) request {
	return request{method: http.MethodPost, path: "/api/v1/teams", want: []int{http.StatusCreated},
		body: mustJSON(map[string]any{"name": name, "description": teamDescription})}
}

func (nativeAPI) addMember(g, u ref) request {
	return request{method: http.MethodPost, path: "/api/v1/teams/" + g.id + "/members:batch", want: []int{http.StatusOK},
		body: []byte(`{"add":[` + u.id + `]}`)}
}

// idOf reads the id of a created or fetched resource: a SCIM string or the app's integer.
func idOf(body []byte) (string, error) {
	var r struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("the resource is not JSON: %w", err)
	}
	var s string
	if err := json.Unmarshal(r.ID, &s); err == nil && s != "" {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(r.ID, &n); err == nil && n != "" {
		return n.String(), nil
	}
	return "", errors.New("the resource has no id")
}

// wantID checks that a GET answered the resource asked for.
func wantID(id string) func([]byte) error {
	return func(b []byte) error {
		got, err := idOf(b)
		if err != nil {
			return err
		}
		if got != id {
			return fmt.Errorf("asked for %s, got %s", id, got)
		}
		return nil
	}
}

func patch(ops ...map[string]any) []byte {
	return mustJSON(map[string]any{"schemas": []string{patchOpSchema}, "Operations": ops})
}

// mustJSON encodes values built in this file from strings, numbers, maps and slices,
// which cannot fail to encode.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("gatewaybench: encoding a request body: %v", err))
	}
	return b
}
