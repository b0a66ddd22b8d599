package journal

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// TestOCSFOperatorActions: an operator's retry or drop of a queued change carries the
// change's events, but it creates, disables or deletes nothing: in OCSF it is an Other
// activity named after the action. A drop of a queued create came out as Account Change
// "Create", success, by the operator: a SIEM saw an account created that the app never got.
func TestOCSFOperatorActions(t *testing.T) {
	j := exportJournal(t, 0)
	recs := []*Record{
		{Action: change.ActionDrop, Client: "bob", ResourceType: "User", Events: []change.Event{change.Create}, Outcome: change.Applied, Subject: "a"},
		{Action: change.ActionRetry, Client: "alice", ResourceType: "Group", Events: []change.Event{change.Delete}, Outcome: change.Applied, Subject: "g"},
		{Action: change.ActionPause, Client: "carol", Outcome: change.Applied},
		{Action: change.ActionDeliver, Client: "entra", ResourceType: "User", Events: []change.Event{change.Create}, Outcome: change.Delivered, Subject: "a"},
	}
	for _, r := range recs {
		if err := j.db.Update(func(tx kv.Tx) error { return j.Append(tx, r) }); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := export(t, j, Query{}, FormatOCSF)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	want := []struct {
		class, activity int
		name            string
	}{{3001, 99, "drop"}, {3006, 99, "retry"}, {0, 99, "pause"}, {3001, 1, "Create"}}
	if len(lines) != len(want) {
		t.Fatalf("%d lines", len(lines))
	}
	for i, w := range want {
		var e struct {
			ClassUID     int    `json:"class_uid"`
			ActivityID   int    `json:"activity_id"`
			ActivityName string `json:"activity_name"`
			TypeUID      int    `json:"type_uid"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &e); err != nil {
			t.Fatal(err)
		}
		if e.ClassUID != w.class || e.ActivityID != w.activity || e.ActivityName != w.name || e.TypeUID != w.class*100+w.activity {
			t.Errorf("%s record: class %d activity %d %q", w.name, e.ClassUID, e.ActivityID, e.ActivityName)
		}
	}
}
