package scim

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// queryParams are the query parameters of RFC 7644 (§3.4.2 and §3.9), as the RFC spells
// them.
var queryParams = []string{"filter", "startIndex", "count", "attributes", "excludedAttributes", "sortBy", "sortOrder"}

// NormalizeQuery reads a request's raw query string as a SCIM server must, and returns it
// encoded again so that net/url reads the same thing: the parameters of RFC 7644 under
// their RFC spelling, whatever case the client wrote them in (Filter=, startindex=), and
// every other parameter as it was (Entra's tenant URL may carry flags such as
// ?aadOptscim062020). A ";" is part of the value it stands in, as in WHATWG URL parsing:
// it separates nothing.
//
// net/url skips a pair it cannot decode (a "%" not followed by two hex digits, a ";") and
// matches names case-sensitively, so without this a filter the client did send is not
// seen, and the client is answered the whole unfiltered list; an Entra-like client takes
// its first resource for the match and changes the wrong account. Instead, a pair that
// cannot be decoded, and an RFC 7644 parameter given more than once, is 400: invalidFilter
// for the filter, invalidValue for the others.
func NormalizeQuery(raw string) (string, error) {
	out := url.Values{}
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, keyErr := url.QueryUnescape(rawKey)
		name := canonicalQueryParam(key)
		if keyErr != nil {
			return "", queryError(name, "the query parameter name %s is not valid percent-encoding: %s; encode \"%%\" as %%25", quoteFilterSnippet(rawKey), escapeProblem(rawKey))
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return "", queryError(name, "the value of the query parameter %s is not valid percent-encoding: %s; encode \"%%\" as %%25 (and \"&\" as %%26, \"+\" as %%2B)", quoteFilterSnippet(key), escapeProblem(rawValue))
		}
		if isQueryParam(name) && out.Has(name) {
			return "", queryError(name, "the query parameter %s is given more than once (its name matches in any case); send it once", name)
		}
		out.Add(name, value)
	}
	return out.Encode(), nil
}

// canonicalQueryParam is the RFC spelling of an RFC 7644 parameter name in any case, and
// any other name as it is.
func canonicalQueryParam(name string) string {
	for _, p := range queryParams {
		if strings.EqualFold(name, p) {
			return p
		}
	}
	return name
}

func isQueryParam(name string) bool {
	for _, p := range queryParams {
		if name == p {
			return true
		}
	}
	return false
}

// queryError is the 400 for a problem with the query parameter name (canonical).
func queryError(name, format string, args ...any) *Error {
	scimType := TypeInvalidValue
	if name == "filter" {
		scimType = TypeInvalidFilter
	}
	return BadRequest(scimType, format, args...)
}

// escapeProblem names the first "%" of s that does not start a valid escape.
func escapeProblem(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			end := min(i+3, len(s))
			return fmt.Sprintf("%s at byte %d is not \"%%\" and two hex digits", strconv.Quote(s[i:end]), i+1)
		}
		i += 2
	}
	return "it is malformed"
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}
