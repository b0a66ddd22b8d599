package scim

import (
	"fmt"
	"net/http"
	"strconv"
)

// ErrorSchema is the schema URN of a SCIM Error response (RFC 7644 §3.12).
const ErrorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"

// scimType values from RFC 7644 §3.12, table 9.
const (
	TypeInvalidFilter = "invalidFilter"
	TypeTooMany       = "tooMany"
	TypeUniqueness    = "uniqueness"
	TypeMutability    = "mutability"
	TypeInvalidSyntax = "invalidSyntax"
	TypeInvalidPath   = "invalidPath"
	TypeNoTarget      = "noTarget"
	TypeInvalidValue  = "invalidValue"
	TypeInvalidVers   = "invalidVers"
	TypeSensitive     = "sensitive"
)

// Error is a SCIM protocol error. It is both a Go error and the wire body of an error
// response: Status is the HTTP status, ScimType the RFC 7644 keyword (empty where the RFC
// has none) and Detail a sentence a person can act on.
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *Error) Error() string {
	if e.ScimType != "" {
		return fmt.Sprintf("scim %d %s: %s", e.Status, e.ScimType, e.Detail)
	}
	return fmt.Sprintf("scim %d: %s", e.Status, e.Detail)
}

// Body returns the SCIM Error object, with status as a string as RFC 7644 requires.
func (e *Error) Body() map[string]any {
	b := map[string]any{
		"schemas": []string{ErrorSchema},
		"status":  strconv.Itoa(e.Status),
	}
	if e.ScimType != "" {
		b["scimType"] = e.ScimType
	}
	if e.Detail != "" {
		b["detail"] = e.Detail
	}
	return b
}

// Errorf builds an Error with a formatted detail.
func Errorf(status int, scimType, format string, args ...any) *Error {
	return &Error{Status: status, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

// BadRequest is a 400 with the given scimType.
func BadRequest(scimType, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, scimType, format, args...)
}

// NotFound is a 404 without scimType.
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "", format, args...)
}

// Conflict is a 409 uniqueness error.
func Conflict(format string, args ...any) *Error {
	return Errorf(http.StatusConflict, TypeUniqueness, format, args...)
}
