package demoapp

import (
	"fmt"
	"net/http"
)

// Error codes of the app's own error format. They are part of the wire format: a mapping
// file may match on them, so they never change meaning.
const (
	CodeInvalidJSON          = "INVALID_JSON"           // 400: the body is not one JSON object
	CodeValidationFailed     = "VALIDATION_FAILED"      // 400: a field is missing, too long or malformed
	CodeReadOnlyField        = "READ_ONLY_FIELD"        // 400: the body sets id, locked (on update) or a timestamp
	CodeInvalidCursor        = "INVALID_CURSOR"         // 400: cursor or limit query parameter is malformed
	CodeUnauthorized         = "UNAUTHORIZED"           // 401: X-Api-Key is missing or wrong
	CodeRouteNotFound        = "ROUTE_NOT_FOUND"        // 404: no endpoint at this path
	CodeAccountNotFound      = "ACCOUNT_NOT_FOUND"      // 404: no account with this id
	CodeTeamNotFound         = "TEAM_NOT_FOUND"         // 404: no team with this id
	CodeNotAMember           = "NOT_A_MEMBER"           // 404: the account is not a member of the team
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED"     // 405: the path exists, the method does not
	CodeDuplicateLogin       = "DUPLICATE_LOGIN"        // 409: login taken (case-insensitively)
	CodeDuplicateTeamName    = "DUPLICATE_TEAM_NAME"    // 409: team name taken (case-insensitively)
	CodePayloadTooLarge      = "PAYLOAD_TOO_LARGE"      // 413: body over 1 MiB
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE" // 415: Content-Type is not JSON
	CodeUnknownAccount       = "UNKNOWN_ACCOUNT"        // 422: a member account does not exist
	CodeUnknownManager       = "UNKNOWN_MANAGER"        // 422: org.manager_id names no account
	CodeInvalidManager       = "INVALID_MANAGER"        // 422: an account cannot manage itself
	CodeLimitReached         = "LIMIT_REACHED"          // 507: max_accounts, max_teams or max_memberships reached
	CodeStorage              = "STORAGE_UNAVAILABLE"    // 503: a change could not be kept in the state_file
)

// apiError is an error answered in the app's own format:
//
//	{"error":{"code":"DUPLICATE_LOGIN","message":"login \"ada@contoso.example\" is taken by account 17"}}
//
// It is deliberately not SCIM's error schema, so that the gateway's error mapping is
// exercised for real.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

// errorBody is the JSON shape of an apiError.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) body() errorBody {
	return errorBody{Error: errorDetail{Code: e.code, Message: e.message}}
}

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, CodeValidationFailed, format, args...)
}

func accountNotFound(id int64) *apiError {
	return errorf(http.StatusNotFound, CodeAccountNotFound, "no account with id %d", id)
}

func teamNotFound(id int64) *apiError {
	return errorf(http.StatusNotFound, CodeTeamNotFound, "no team with id %d", id)
}

func limitReached(what string, limit int) *apiError {
	return errorf(http.StatusInsufficientStorage, CodeLimitReached, "the app holds at most %d %s", limit, what)
}
