package legacy

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/scim"
)

func TestToSCIM(t *testing.T) {
	st := func(code int, msg string) error { return &Error{Kind: KindStatus, Status: code, Message: msg} }
	tests := []struct {
		name       string
		event      string
		err        error
		wantStatus int // 0: nil error (done)
		wantType   string
		wantDetail string // substring
		wantRA     time.Duration
	}{
		{"success", EventCreate, nil, 0, "", "", 0},
		{"409 uniqueness", EventCreate, st(409, "login exists"), 409, scim.TypeUniqueness, "login exists", 0},
		{"409 on update", EventUpdate, st(409, ""), 409, scim.TypeUniqueness, "conflict", 0},
		{"400 invalid value", EventCreate, st(400, "email is invalid"), 400, scim.TypeInvalidValue, "email is invalid", 0},
		{"422 invalid value", EventUpdate, st(422, "name too long"), 400, scim.TypeInvalidValue, "name too long", 0},
		{"404 on delete is done", EventDelete, st(404, ""), 0, "", "", 0},
		{"410 on delete is done", EventDelete, st(410, ""), 0, "", "", 0},
		{"404 on remove_members is done", EventRemoveMembers, st(404, ""), 0, "", "", 0},
		{"404 on update", EventUpdate, st(404, "no account 7"), 404, "", "no account 7", 0},
		{"404 on deactivate", EventDeactivate, st(404, ""), 404, "", "does not exist", 0},
		{"404 on reactivate", EventReactivate, st(404, ""), 404, "", "does not exist", 0},
		{"404 on rename", EventRename, st(404, ""), 404, "", "does not exist", 0},
		{"404 on add_members", EventAddMembers, st(404, ""), 404, "", "does not exist", 0},
		{"404 on create is an outage", EventCreate, st(404, ""), 503, "", "mapping", DefaultOutageRetryAfter},
		{"401 is an outage", EventUpdate, st(401, "bad key"), 503, "", "credentials", DefaultOutageRetryAfter},
		{"403 is an outage", EventDelete, st(403, ""), 503, "", "credentials", DefaultOutageRetryAfter},
		{"500", EventCreate, st(500, "stack trace"), 503, "", "HTTP 500", DefaultOutageRetryAfter},
		{"503 with Retry-After", EventCreate, &Error{Kind: KindStatus, Status: 503, RetryAfter: 120 * time.Second}, 503, "", "HTTP 503", 120 * time.Second},
		{"408", EventUpdate, st(408, ""), 503, "", "HTTP 408", DefaultOutageRetryAfter},
		{"unexpected 304", EventUpdate, st(304, ""), 503, "", "HTTP 304", DefaultOutageRetryAfter},
		{"other 4xx", EventUpdate, st(405, "method not allowed"), 400, scim.TypeInvalidValue, "HTTP 405: method not allowed", 0},
		{"timeout", EventCreate, &Error{Kind: KindTimeout}, 503, "", "in time", DefaultOutageRetryAfter},
		{"refused", EventDelete, &Error{Kind: KindRefused}, 503, "", "unreachable", DefaultOutageRetryAfter},
		{"circuit open", EventUpdate, &Error{Kind: KindCircuitOpen, RetryAfter: 12500 * time.Millisecond}, 503, "", "paused", 13 * time.Second},
		{"rate limited", EventCreate, &Error{Kind: KindRateLimited, Status: 429, RetryAfter: 60 * time.Second}, 503, "", "rate limiting", 60 * time.Second},
		{"too large", EventCreate, &Error{Kind: KindTooLarge}, 503, "", "size limit", DefaultOutageRetryAfter},
		{"invalid response", EventCreate, &Error{Kind: KindInvalidResponse}, 503, "", "cannot read", DefaultOutageRetryAfter},
		{"bad redirect", EventDelete, &Error{Kind: KindBadRedirect}, 503, "", "redirected", DefaultOutageRetryAfter},
		{"canceled", EventUpdate, &Error{Kind: KindCanceled}, 503, "", "canceled", DefaultOutageRetryAfter},
		{"wrapped", EventCreate, fmt.Errorf("calling app: %w", st(409, "")), 409, scim.TypeUniqueness, "conflict", 0},
		{"not a backend error", EventCreate, errors.New("bad path"), 500, "", "gateway", 0},
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
	events := []string{EventCreate, EventUpdate, EventDeactivate, EventReactivate, EventDelete, EventAddMembers, EventRemoveMembers, EventRename}
	for code := 300; code < 600; code++ {
		for _, ev := range events {
			got, ra := ToSCIM(ev, nil, &Error{Kind: KindStatus, Status: code})
			if got == nil {
				continue
			}
			switch {
			case got.Status == 401 || got.Status == 403:
				t.Errorf("%s %d → %d", ev, code, got.Status)
			case got.Status == 404 && (ev == EventCreate || code != 404 && code != 410):
				t.Errorf("%s %d → 404", ev, code)
			case got.Status == 503 && ra < time.Second:
				t.Errorf("%s %d → 503 without Retry-After", ev, code)
			}
		}
	}
}
