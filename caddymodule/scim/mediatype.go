package scim

import (
	"mime"
	"net/http"
	"strings"
)

// CheckContentType accepts the media type of a request body: application/scim+json or
// application/json, any parameters, in UTF-8 (RFC 8259 §8.1: JSON exchanged between
// systems is UTF-8): no charset, or charset utf-8 (also "utf8") or us-ascii, its subset.
// A body without Content-Type is taken as JSON. Anything else is 415: a body declared in
// another charset would be read as UTF-8 and stored as other characters than the client
// meant.
func CheckContentType(ct string) error {
	switch ct {
	case "", "application/scim+json; charset=utf-8", "application/scim+json", "application/json; charset=utf-8", "application/json":
		return nil // Entra's and the usual ones, accepted as the parse below would
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/scim+json" && mt != "application/json") {
		return Errorf(http.StatusUnsupportedMediaType, "", "Content-Type %s is not supported; send application/scim+json or application/json", quoteFilterSnippet(ct))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") && !strings.EqualFold(cs, "us-ascii") {
		return Errorf(http.StatusUnsupportedMediaType, "", "Content-Type %s declares charset %s; SCIM bodies are JSON, which is UTF-8 (RFC 8259 §8.1): send the body in UTF-8 with charset=utf-8 or no charset", quoteFilterSnippet(ct), quoteFilterSnippet(cs))
	}
	return nil
}
