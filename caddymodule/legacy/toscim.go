package legacy

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// ToSCIM maps the outcome of Do for a semantic event to the SCIM error Entra should get,
// and the Retry-After to send with it (0 for none). A nil error means the event is done.
//
// The mapping protects the provisioning job: Entra quarantines a job that sees 401s or
// 404s, so a backend outage or a credential problem of the gateway is always 503 with a
// Retry-After, never passed through. Only answers about the object itself reach Entra as
// such: 409 uniqueness, 400 invalidValue with the native message, and 404 on update-like
// events (the engine takes the app's own not-found there as an account gone from the app,
// and creates it again rather than answering 404). 404 on delete and remove_members is success:
// what Entra wants gone is gone. resp is accepted so a call site can pass Do's results as
// they are; everything ToSCIM needs (status, native message, Retry-After) is in the error.
func ToSCIM(event change.Event, resp *Response, err error) (*scim.Error, time.Duration) {
	if err == nil {
		return nil, 0
	}
	var e *Error
	if !errors.As(err, &e) {
		// Not a backend failure: a bad request built by the gateway itself.
		return scim.Errorf(http.StatusInternalServerError, "", "the gateway could not build the call to the target application"), 0
	}
	if e.Kind == KindUnproven {
		return outage(e, "the answer to the gateway's call did not come from the target application, or does not show that it acted ("+e.Err.Error()+"); nothing was recorded; retry later")
	}
	if e.Kind == KindCircuitOpen && e.Err != nil {
		return outage(e, strings.TrimSuffix(outageDetail(e.Kind), "; retry later")+" ("+e.Err.Error()+"); retry later")
	}
	if e.Kind == KindAuth && e.Err != nil {
		return outage(e, "the gateway could not obtain its credentials for the target application ("+e.Err.Error()+"); retry later")
	}
	if e.Kind != KindStatus {
		return outage(e, outageDetail(e.Kind))
	}
	return statusToSCIM(event, e)
}

// statusToSCIM maps a native non-2xx status (other than 429).
func statusToSCIM(event change.Event, e *Error) (*scim.Error, time.Duration) {
	s := e.Status
	switch {
	case s == http.StatusConflict:
		return scim.Conflict("the target application reports a conflict%s", suffix(e.Message)), 0
	case s == http.StatusBadRequest || s == http.StatusUnprocessableEntity:
		return scim.BadRequest(scim.TypeInvalidValue, "the target application rejected the %s%s", eventNoun(event), suffix(e.Message)), 0
	case s == http.StatusNotFound || s == http.StatusGone:
		return notFoundToSCIM(event, e)
	case s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusProxyAuthRequired:
		return outage(e, fmt.Sprintf("the target application rejected the gateway's credentials (HTTP %d); check the gateway's configuration for this application", s))
	case s == http.StatusPreconditionFailed:
		// Only a precondition the call sent (an If-Match from the mapping) gives a 412: the
		// account changed since it was read, the app did nothing, and the retry reads it again.
		return outage(e, "the target application refused the "+eventNoun(event)+" because the object changed since the gateway read it (HTTP 412, its If-Match precondition failed); nothing was changed; retry later"+suffix(e.Message))
	case s == http.StatusPreconditionRequired:
		// The app wants a conditional write (If-Match) the mapping does not send: nothing in
		// Entra's change is wrong, and nothing was done.
		return outage(e, "the target application requires a precondition (If-Match, HTTP 428) on the "+eventNoun(event)+" that the gateway's mapping does not send: read the object first in a flow and send its ETag (\"headers\": {\"If-Match\": {\"from\": \"$header.0.ETag\"}}); retry later"+suffix(e.Message))
	case s == http.StatusRequestTimeout || s >= 500 || s < 400:
		return outage(e, fmt.Sprintf("the target application failed with HTTP %d; retry later", s))
	}
	return scim.BadRequest(scim.TypeInvalidValue, "the target application rejected the %s with HTTP %d%s", eventNoun(event), s, suffix(e.Message)), 0
}

// notFoundToSCIM: gone is done for removals; for a create it means the configured endpoint
// does not exist, which Entra cannot fix, so it is an outage rather than a 404 that would
// count towards quarantine.
func notFoundToSCIM(event change.Event, e *Error) (*scim.Error, time.Duration) {
	switch {
	case !e.NotFound:
		// A 404 in the application's error shape that is not its "no such object": a
		// missing route, a wrong mapping. Nothing says the object is gone.
		return outage(e, fmt.Sprintf("the target application answered HTTP %d that is not its own \"no such object\" answer; check the mapping's URL and expect.not_found", e.Status))
	case event == change.Delete || event == change.RemoveMembers:
		return nil, 0
	case event == change.Create:
		return outage(e, fmt.Sprintf("the target application answered HTTP %d to a create; check the URL in the gateway's mapping", e.Status))
	case event == change.AddMembers:
		// The group exists in the directory: a 404 would tell Entra otherwise (and count
		// towards quarantine). The app lacks the group's account or a member's.
		return outage(e, `the target application answered its own "no such object" to a member add: the group's account, or a member's, is gone from it; the directory is unchanged. A reconcile with --fix makes the missing accounts (scimgate reconcile); retry later`+suffix(e.Message))
	}
	return scim.NotFound("the object does not exist in the target application%s", suffix(e.Message)), 0
}

// outage is a 503 with the backend's Retry-After when it gave one, else the default,
// rounded up to whole seconds because the header carries seconds.
func outage(e *Error, detail string) (*scim.Error, time.Duration) {
	return scim.Errorf(http.StatusServiceUnavailable, "", "%s", detail), OutageRetryAfter(e)
}

// OutageRetryAfter is the Retry-After Entra gets for an outage that err caused: the app's
// own when it gave one (a *Error's RetryAfter), else DefaultOutageRetryAfter, rounded up
// to whole seconds because the header carries seconds.
func OutageRetryAfter(err error) time.Duration {
	ra := DefaultOutageRetryAfter
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		ra = e.RetryAfter
	}
	return (ra + time.Second - 1).Truncate(time.Second)
}

func outageDetail(k Kind) string {
	switch k {
	case KindRefused:
		return "the target application is unreachable (connection refused or dropped); retry later"
	case KindTimeout:
		return "the target application did not answer in time; retry later"
	case KindCircuitOpen:
		return "calls to the target application are paused after repeated failures; retry later"
	case KindRateLimited:
		return "the target application is rate limiting the gateway; retry later"
	case KindTooLarge:
		return "the target application's response exceeded the gateway's size limit"
	case KindBadRedirect:
		return "the target application redirected to another host or too often; the gateway does not follow such redirects"
	case KindCanceled:
		return "the call to the target application was canceled; retry later"
	}
	return "the target application returned a response the gateway cannot read"
}

func eventNoun(event change.Event) string {
	if event == "" {
		return "request"
	}
	return string(event) + " request"
}

// suffix appends the native message, when there is one, as ": message".
func suffix(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}
