package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// IDSource says where a call's answer gives the native id: a gjson path in its JSON body
// ("id": "user.id"), a response header ("id": {"header": "X-Account-Id"}), or the Location
// header ("id": {"location": "last_segment"}, or a pattern whose one group is the id). The
// zero IDSource gives no id.
type IDSource struct {
	// Path is the gjson path in the JSON body ("" for a header).
	Path string
	// Header is the response header holding the id ("" for the body).
	Header string
	// Pattern, for a header, is matched against its value; its one group is the id. Nil:
	// the whole value (a header) or its URL's last path segment (Location).
	Pattern *regexp.Regexp
	// LastSegment takes the last path segment of the header's URL value (Location).
	LastSegment bool
}

// IsSet reports whether the call's answer gives an id.
func (s IDSource) IsSet() bool { return s.Path != "" || s.Header != "" }

// String describes the source for errors and the journal.
func (s IDSource) String() string {
	switch {
	case s.Path != "":
		return fmt.Sprintf("the JSON body at %q", s.Path)
	case s.LastSegment:
		return "the last path segment of the " + s.Header + " header"
	case s.Pattern != nil:
		return fmt.Sprintf("the %s header (pattern %q)", s.Header, s.Pattern.String())
	case s.Header != "":
		return "the " + s.Header + " header"
	}
	return "nowhere"
}

// Extract reads the native id from an answer. An answer without one is an error that
// says where the id was expected (never the body or the header's value).
func (s IDSource) Extract(h http.Header, body []byte) (string, error) {
	if s.Path != "" {
		return ExtractID(body, s.Path)
	}
	if s.Header == "" {
		return "", errors.New("the call gives no native id")
	}
	v := strings.TrimSpace(h.Get(s.Header))
	if v == "" {
		return "", fmt.Errorf("the answer has no %s header", s.Header)
	}
	id := v
	switch {
	case s.Pattern != nil:
		m := s.Pattern.FindStringSubmatch(v)
		if m == nil {
			return "", fmt.Errorf("the %s header does not match the pattern %q", s.Header, s.Pattern.String())
		}
		id = m[1]
		if s.Header == "Location" {
			// A URL's text: the id is what its escapes stand for ("ada%20x" is "ada x"), as
			// every URL that names it escapes it again.
			var err error
			if id, err = url.PathUnescape(id); err != nil {
				return "", fmt.Errorf("the native id in %s is not validly URL-escaped", s)
			}
		}
	case s.LastSegment:
		u, err := url.Parse(v)
		if err != nil {
			return "", fmt.Errorf("the %s header is not a URL", s.Header)
		}
		// The last segment is cut from the escaped path, then unescaped: an id holding
		// "/" arrives as "a%2Fb", whose decoded path's last segment would be "b".
		p := strings.TrimRight(u.EscapedPath(), "/")
		if p == "" {
			return "", fmt.Errorf("the %s header's URL has no path segment", s.Header)
		}
		if id, err = url.PathUnescape(p[strings.LastIndexByte(p, '/')+1:]); err != nil {
			return "", fmt.Errorf("the %s header is not a URL", s.Header)
		}
	}
	if strings.TrimSpace(id) == "" || id == "." || id == ".." {
		return "", fmt.Errorf("the native id in %s is empty", s)
	}
	if len(id) > maxNativeIDLen {
		return "", fmt.Errorf("the native id in %s is longer than %d bytes", s, maxNativeIDLen)
	}
	if hasControl(id) {
		return "", fmt.Errorf("the native id in %s holds a control character", s)
	}
	return id, nil
}

// fileID is a call's "id" as written: a gjson path, or an object naming a header.
type fileID struct {
	Header   string `json:"header"`
	Location string `json:"location"`
	Pattern  string `json:"pattern"`
}

// compileIDSource reads "id": a string (a gjson path in the body) or
// {"header": "X-Id"[, "pattern": "..."]} or {"location": "last_segment" | "<pattern>"}.
func (c *compiler) compileIDSource(rule string, raw json.RawMessage) (IDSource, error) {
	var s IDSource
	if isNull(raw) {
		return s, nil
	}
	var p string
	if json.Unmarshal(raw, &p) == nil {
		if p == "" {
			return s, nil
		}
		if err := compileGJSONPath(p); err != nil {
			return s, c.wrap(rule, err)
		}
		s.Path = p
		return s, nil
	}
	var f fileID
	if err := decodeStrict(raw, &f); err != nil {
		return s, c.wrap(rule, fmt.Errorf("the native id is a gjson path in the body, {\"header\": name} or {\"location\": \"last_segment\" or a pattern}: %w", err))
	}
	pattern := f.Pattern
	switch {
	case f.Header != "" && f.Location != "":
		return s, c.errf(rule, "give header or location, not both")
	case f.Location != "":
		if f.Pattern != "" {
			return s, c.errf(rule+".pattern", "a location's pattern is the value of \"location\"")
		}
		s.Header = "Location"
		if f.Location == "last_segment" {
			s.LastSegment = true
		} else {
			pattern = f.Location
		}
	case f.Header != "":
		if !validHeaderName(f.Header) {
			return s, c.errf(rule+".header", "%q is not an HTTP header name", f.Header)
		}
		s.Header = http.CanonicalHeaderKey(f.Header)
	default:
		return s, c.errf(rule, "says neither header nor location")
	}
	if pattern != "" {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return s, c.errf(rule, "the pattern does not compile: %v", err)
		}
		if re.NumSubexp() != 1 {
			return s, c.errf(rule, "the pattern %q must have exactly one group, the id: e.g. \"/users/([^/]+)$\"", pattern)
		}
		s.Pattern = re
	}
	return s, nil
}
