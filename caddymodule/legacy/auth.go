package legacy

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
)

// Auth puts the gateway's credentials on every call to the app. Implementations hold the
// secrets and never reveal them: not in errors, not in String, not in logs.
type Auth interface {
	// Apply sets the credential on req. renew, when not nil, is called when the app
	// answered 401 to that credential: it drops it and reports whether a fresh one may be
	// fetched, so the call is sent once more (a 401 means the app did not act on it). An
	// error is a failure to obtain the credential (a token endpoint that failed); the call
	// is not sent.
	Apply(ctx context.Context, req *http.Request) (renew func() bool, err error)
}

// BasicAuth sends HTTP basic credentials (RFC 7617), encoded by the gateway.
type BasicAuth struct {
	username, password string
}

// NewBasicAuth returns basic credentials. A username with a colon cannot be encoded.
func NewBasicAuth(username, password string) (*BasicAuth, error) {
	if username == "" {
		return nil, errors.New("legacy: basic auth needs a username")
	}
	for _, r := range username {
		if r == ':' || r < 0x20 || r == 0x7f {
			return nil, errors.New("legacy: a basic auth username cannot hold a colon or a control character")
		}
	}
	if password == "" {
		return nil, errors.New("legacy: basic auth needs a password")
	}
	return &BasicAuth{username: username, password: password}, nil
}

// Apply sets the Authorization header.
func (a *BasicAuth) Apply(_ context.Context, req *http.Request) (func() bool, error) {
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.username+":"+a.password)))
	return nil, nil
}

// String names the kind only.
func (a *BasicAuth) String() string { return "basic auth (user " + a.username + ")" }

// APIKey sends a static key in a header or a query parameter.
type APIKey struct {
	header, query, key string
}

// NewAPIKey returns a key sent in the header (e.g. X-Api-Key) or, when header is empty, in
// the query parameter query (e.g. api_key).
func NewAPIKey(header, query, key string) (*APIKey, error) {
	switch {
	case key == "":
		return nil, errors.New("legacy: an API key needs a value")
	case (header == "") == (query == ""):
		return nil, errors.New("legacy: an API key goes either in a header or in a query parameter")
	case header != "" && !validHeaderName(header):
		return nil, errors.New("legacy: the API key header name is not an HTTP token")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return nil, errors.New("legacy: the API key holds a control character")
		}
	}
	return &APIKey{header: header, query: query, key: key}, nil
}

// Apply sets the header or adds the query parameter (replacing one the path carried).
func (a *APIKey) Apply(_ context.Context, req *http.Request) (func() bool, error) {
	if a.header != "" {
		req.Header.Set(a.header, a.key)
		return nil, nil
	}
	q := req.URL.Query()
	q.Set(a.query, a.key)
	req.URL.RawQuery = q.Encode()
	return nil, nil
}

// String names where the key goes, never the key.
func (a *APIKey) String() string {
	if a.header != "" {
		return "api key in header " + a.header
	}
	return "api key in query parameter " + a.query
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch <= ' ' || ch >= 0x7f || ch == ':' || ch == '"' || ch == '(' || ch == ')' || ch == ',' ||
			ch == '/' || ch == ';' || ch == '<' || ch == '=' || ch == '>' || ch == '?' || ch == '@' ||
			ch == '[' || ch == '\\' || ch == ']' || ch == '{' || ch == '}' {
			return false
		}
	}
	return true
}
