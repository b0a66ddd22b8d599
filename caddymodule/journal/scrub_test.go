package journal

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// TestRecordTextHoldsNoRedactedValue: a record's error (an app's message that echoes the
// request it got) and a policy's reasons never hold a value the journal redacts: the
// password, a configured path, inside an object, JSON-escaped, or cut short at the end of
// a bounded message. Scrub gives Entra's error the same treatment.
func TestRecordTextHoldsNoRedactedValue(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{Redact: []string{"phoneNumbers"}})
	const pw, phone = `pw-"Secret"-0042`, "+15550001234"
	changes := []Change{
		{Path: "password", Op: "add", Value: json.RawMessage(`"pw-\"Secret\"-0042"`)},
		{Path: "", Op: "add", Value: json.RawMessage(`{"phoneNumbers":[{"type":"work","value":"+15550001234"}],"title":"Boss"}`)},
		{Path: "userName", Op: "add", Value: json.RawMessage(`"ada@example.com"`)},
	}
	echo := `the target application rejected the create request: invalid user {"login":"ada@example.com","password":"pw-\"Secret\"-0042","phone":"+15550001234","title":"Boss"}`
	cut := `the target application rejected the create request: weak password pw-"Secr…`
	rec := sampleRecord(1)
	rec.Changes = changes
	rec.Error = echo
	rec.Decision = &Decision{Allow: false, Reasons: []string{"phone " + phone + " is not allowed", "title Boss"}}
	shared := rec.Decision
	if err := db.Update(func(tx kv.Tx) error { return j.Append(tx, rec) }); err != nil {
		t.Fatal(err)
	}
	entries := allEntries(t, db, j.opts.Name)
	stored := string(entries[len(entries)-1].Raw)
	for _, secret := range []string{"Secret", phone} {
		if strings.Contains(stored, secret) {
			t.Errorf("the stored record holds %q: %s", secret, stored)
		}
	}
	for _, kept := range []string{"ada@example.com", "title Boss", `\"title\":\"Boss\"`, "[REDACTED]"} {
		if !strings.Contains(stored, kept) {
			t.Errorf("the stored record lost %q: %s", kept, stored)
		}
	}
	if shared.Reasons[0] != "phone "+phone+" is not allowed" {
		t.Errorf("the caller's decision was changed: %v", shared.Reasons)
	}
	for in, want := range map[string]string{
		echo:                           `the target application rejected the create request: invalid user {"login":"ada@example.com","password":"[REDACTED]","phone":"[REDACTED]","title":"Boss"}`,
		cut:                            `the target application rejected the create request: weak password [REDACTED]…`,
		"pw " + pw + " phone " + phone: "pw [REDACTED] phone [REDACTED]",
	} {
		if got := j.Scrub(changes, in); got != want {
			t.Errorf("Scrub(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}
