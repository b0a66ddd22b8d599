package provision

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/scim"
)

// TestLongReasonsFitTheJournal: a policy whose reasons are long (a 2 MB sentence, a
// thousand long ones: a policy echoing data into them) still has its decision carried out
// and journaled: the record keeps the reasons up to a bound and says how much it left
// out. (The record used to exceed the journal's record size, so every such change, even a
// denial, answered 503 "storage error" for as long as Entra retried it.)
func TestLongReasonsFitTheJournal(t *testing.T) {
	pol := writePolicy(t, `package scimgate

default decision := {"allow": true}

_chunk := "`+strings.Repeat("0123456789", 100)+`"

_long := concat("", [_chunk | some _ in numbers.range(1, 2000)])

_chunk5 := concat("", [_chunk | some _ in numbers.range(1, 5)])

decision := {"allow": true, "reasons": [_long]} if input.resource.userName == "long@contoso.example"

decision := {"allow": false, "reasons": [_long]} if input.resource.userName == "denied@contoso.example"

decision := {"allow": true, "reasons": [sprintf("%d %s", [i, _chunk5]) | some i in numbers.range(1, 1000)]} if input.resource.userName == "many@contoso.example"
`)
	_, srv := newNativeApp(t)
	r := newRig(t, rigOptions{target: newTarget(t, srv.URL, false), policy: pol})
	for _, tt := range []struct {
		user    string
		status  int
		outcome change.Outcome
	}{
		{"long@contoso.example", http.StatusCreated, change.Applied},
		{"denied@contoso.example", http.StatusForbidden, change.Denied},
		{"many@contoso.example", http.StatusCreated, change.Applied},
	} {
		res := r.create(scim.UserType, user(tt.user))
		if res.Status != tt.status {
			t.Fatalf("%s: status %d (%v), want %d", tt.user, res.Status, res.Err, tt.status)
		}
		rec := r.last()
		if rec.Outcome != tt.outcome || rec.Decision == nil || len(rec.Decision.Reasons) == 0 {
			t.Fatalf("%s: journaled %s with %+v", tt.user, rec.Outcome, rec.Decision)
		}
		total := 0
		for _, s := range rec.Decision.Reasons {
			total += len(s)
		}
		if total > maxJournaledReasons+maxJournaledReason {
			t.Errorf("%s: %d bytes of reasons journaled, more than the bound", tt.user, total)
		}
		last := rec.Decision.Reasons[len(rec.Decision.Reasons)-1]
		if !strings.Contains(strings.Join(rec.Decision.Reasons, " "), "left out of the journal") {
			t.Errorf("%s: the record does not say reasons were cut: ...%s", tt.user, last[max(0, len(last)-200):])
		}
		if tt.status == http.StatusForbidden && (res.Err == nil || len(res.Err.Detail) > 3000) {
			t.Errorf("%s: 403 detail of %d bytes", tt.user, len(fmt.Sprint(res.Err)))
		}
	}
}
