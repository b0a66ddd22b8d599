package legacy

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

func TestToSCIM(t *testing.T) {
	st := func(code int, msg string) error {
		return &Error{Kind: KindStatus, Status: code, Message: msg, NotFound: code == 404 || code == 410}
	}
	foreign404 := &Error{Kind: KindStatus, Status: 404, Message: "route not found"}
	tests := []struct {
		name       string
		event      change.Event
		err        error
		wantStatus int // 0: nil error (done)
		wantType   string
		wantDetail string // substring
		wantRA     time.Duration
	}{
		{"success", change.Create, nil, 0, "", "", 0},
		{"409 uniqueness", change.Create, st(409, "login exists"), 409, scim.TypeUniqueness, "login exists", 0},
		{"409 on update", change.Update, st(409, ""), 409, scim.TypeUniqueness, "conflict", 0},
		{"400 invalid value", change.Create, st(400, "email is invalid"), 400, scim.TypeInvalidValue, "email is invalid", 0},
		{"422 invalid value", change.Update, st(422, "name too long"), 400, scim.TypeInvalidValue, "name too long", 0},
		{"404 on delete is done", change.Delete, st(404, ""), 0, "", "", 0},
		{"410 on delete is done", change.Delete, st(410, ""), 0, "", "", 0},
		{"404 on remove_members is done", change.RemoveMembers, st(404, ""), 0, "", "", 0},
		{"404 on update", change.Update, st(404, "no account 7"), 404, "", "no account 7", 0},
		{"404 on deactivate", change.Deactivate, st(404, ""), 404, "", "does not exist", 0},
		{"404 on reactivate", change.Reactivate, st(404, ""), 404, "", "does not exist", 0},
		{"404 on rename", change.Rename, st(404, ""), 404, "", "does not exist", 0},
		{"404 on add_members is an outage", change.AddMembers, st(404, "no team 7"), 503, "", "member add: the group's account, or a member's, is gone", DefaultOutageRetryAfter},
		{"404 on create is an outage", change.Create, st(404, ""), 503, "", "mapping", DefaultOutageRetryAfter},
		{"404 that is not the app's not-found on delete", change.Delete, foreign404, 503, "", "not its own", DefaultOutageRetryAfter},
		{"404 that is not the app's not-found on update", change.Update, foreign404, 503, "", "not its own", DefaultOutageRetryAfter},
		{"unproven success", change.Deactivate, &Error{Kind: KindUnproven, Status: 200, Err: errors.New("text/html (120 bytes), an HTML page")}, 503, "", "HTML page", DefaultOutageRetryAfter},
		{"401 is an outage", change.Update, st(401, "bad key"), 503, "", "credentials", DefaultOutageRetryAfter},
		{"403 is an outage", change.Delete, st(403, ""), 503, "", "credentials", DefaultOutageRetryAfter},
		{"500", change.Create, st(500, "stack trace"), 503, "", "HTTP 500", DefaultOutageRetryAfter},
		{"503 with Retry-After", change.Create, &Error{Kind: KindStatus, Status: 503, RetryAfter: 120 * time.Second}, 503, "", "HTTP 503", 120 * time.Second},
		{"408", change.Update, st(408, ""), 503, "", "HTTP 408", DefaultOutageRetryAfter},
		{"unexpected 304", change.Update, st(304, ""), 503, "", "HTTP 304", DefaultOutageRetryAfter},
		{"412 is an outage: the object changed since it was read", change.Update, st(412, "stale"), 503, "", "changed since the gateway read it", DefaultOutageRetryAfter},
		{"428 is an outage: the mapping lacks If-Match", change.Deactivate, st(428, ""), 503, "", "If-Match", DefaultOutageRetryAfter},
		{"other 4xx", change.Update, st(405, "method not allowed"), 400, scim.TypeInvalidValue, "HTTP 405: method not allowed", 0},
		{"timeout", change.Create, &Error{Kind: KindTimeout}, 503, "", "in time", DefaultOutageRetryAfter},
		{"refused", change.Delete, &Error{Kind: KindRefused}, 503, "", "unreachable", DefaultOutageRetryAfter},
		{"circuit open", change.Update, &Error{Kind: KindCircuitOpen, RetryAfter: 12500 * time.Millisecond}, 503, "", "paused", 13 * time.Second},
		{"rate limited", change.Create, &Error{Kind: KindRateLimited, Status: 429, RetryAfter: 60 * time.Second}, 503, "", "rate limiting", 60 * time.Second},
		{"too large", change.Create, &Error{Kind: KindTooLarge}, 503, "", "size limit", DefaultOutageRetryAfter},
		{"invalid response", change.Create, &Error{Kind: KindInvalidResponse}, 503, "", "cannot read", DefaultOutageRetryAfter},
		{"bad redirect", change.Delete, &Error{Kind: KindBadRedirect}, 503, "", "redirected", DefaultOutageRetryAfter},
		{"canceled", change.Update, &Error{Kind: KindCanceled}, 503, "", "canceled", DefaultOutageRetryAfter},
		{"wrapped", change.Create, fmt.Errorf("calling app: %w", st(409, "")), 409, scim.TypeUniqueness, "conflict", 0},
		{"not a backend error", change.Create, errors.New("bad path"), 500, "", "gateway", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ra := ToSCIM(tt.event, nil, tt.err)
			if tt.wantStatus == 0 {
				if got != nil || ra != 0 {
					t.Fatalf("ToSCIM = %v, %v; want done", got, ra)
				}
				return
			}
			if got == nil {
				t.Fatalf("ToSCIM = nil, want %d", tt.wantStatus)
			}
			if got.Status != tt.wantStatus || got.ScimType != tt.wantType || !strings.Contains(got.Detail, tt.wantDetail) || ra != tt.wantRA {
				t.Errorf("ToSCIM = %+v, retry-after %v; want %d %q detail ~%q retry-after %v", got, ra, tt.wantStatus, tt.wantType, tt.wantDetail, tt.wantRA)
			}
			if got.Status == http.StatusUnauthorized || (got.Status == http.StatusNotFound && tt.wantStatus != 404) {
				t.Errorf("an outage reached Entra as %d", got.Status)
			}
		})
	}
}

// TestToSCIMNeverQuarantines: no backend status whatsoever reaches Entra as 401 or 403,
// and 404 only for update-like events.
func TestToSCIMNeverQuarantines(t *testing.T) {
	events := []change.Event{change.Create, change.Update, change.Deactivate, change.Reactivate, change.Delete, change.AddMembers, change.RemoveMembers, change.Rename}
	for code := 300; code < 600; code++ {
		for _, ev := range events {
			got, ra := ToSCIM(ev, nil, &Error{Kind: KindStatus, Status: code})
			if got == nil {
				continue
			}
			switch {
			case got.Status == 401 || got.Status == 403:
				t.Errorf("%s %d → %d", ev, code, got.Status)
			case got.Status == 404 && (ev == change.Create || code != 404 && code != 410):
				t.Errorf("%s %d → 404", ev, code)
			case got.Status == 503 && ra < time.Second:
				t.Errorf("%s %d → 503 without Retry-After", ev, code)
			}
		}
	}
}
