package journaladmin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/caddymodule/outbox"
)

// changes GETs the changes route with q and decodes its page.
func changes(t *testing.T, e *journaltest.Env, q url.Values) journaladmin.ChangesPage {
	t.Helper()
	resp, body := e.Do(t, http.MethodGet, journaladmin.JournalPath(journaltest.JournalName, "changes")+"?"+q.Encode())
	journaltest.WantStatus(t, resp, body, http.StatusOK)
	var p journaladmin.ChangesPage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestChangesRoute: the watch page's table on the server. A change's intent (pending) and
// outcome are one row in its current state with both records; filters apply to the whole
// journal, counted; pages go back in time by cursor; bad parameters are 400s naming them.
func TestChangesRoute(t *testing.T) {
	e := journaltest.StartTarget(t)
	ids := map[string]string{}
	for i := range 7 {
		name := fmt.Sprintf("u%d@example.com", i)
		ids[name] = e.CreateUser(t, name)
	}
	if status, body := e.SCIMDo(t, http.MethodPost, "/Users", journaltest.UserBody("fail-1@example.com")); status < 500 {
		t.Fatalf("a create the app refuses: %d %s", status, body)
	}
	if status, body := e.SCIMDo(t, http.MethodPost, "/Users", journaltest.UserBody("u1@example.com")); status != http.StatusConflict {
		t.Fatalf("duplicate: %d %s", status, body)
	}
	if status, body := e.SCIMDo(t, http.MethodDelete, "/Users/"+ids["u2@example.com"], ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, body)
	}

	// 7 creates, a failed create, a refused duplicate and a delete: 10 changes, from 19
	// records (each change that reached the app has an intent).
	all := changes(t, e, url.Values{"limit": {"500"}})
	if all.Matched != 10 || len(all.Changes) != 10 || all.Head != 19 || all.Scanned != 19 || all.Partial || all.NextBefore != 0 {
		t.Fatalf("all changes: matched %d, %d rows, head %d, scanned %d, partial %v, next %d", all.Matched, len(all.Changes), all.Head, all.Scanned, all.Partial, all.NextBefore)
	}
	for i, c := range all.Changes {
		last := c.Records[len(c.Records)-1]
		if c.Seq != last.Seq || c.State != last.Outcome || (i > 0 && c.Seq >= all.Changes[i-1].Seq) {
			t.Errorf("row %d: seq %d state %s, newest record %d %s (rows newest first)", i, c.Seq, c.State, last.Seq, last.Outcome)
		}
		if c.State == change.Applied || c.State == change.Failed {
			if len(c.Records) != 2 || c.Records[0].Outcome != change.Pending || c.Records[0].RequestID != last.RequestID {
				t.Errorf("row %d (%s %s) does not hold its intent and outcome: %+v", i, c.State, last.Subject, c.Records)
			}
		}
	}
	if top := all.Changes[0]; top.State != change.Applied || !change.Has(top.Records[1].Events, change.Delete) || len(top.Records[1].Calls) != 1 || top.Records[1].Calls[0].Status != http.StatusNoContent {
		t.Errorf("the newest change is not the delete with its native call: %+v", top)
	}

	// Filters, over the whole journal, with a count.
	for _, tc := range []struct {
		q    url.Values
		want []string // subjects, newest first
	}{
		{url.Values{"outcome": {"failed"}}, []string{"fail-1@example.com"}},
		{url.Values{"outcome": {"rejected"}}, []string{"u1@example.com"}},
		{url.Values{"user_name": {"U3@EXAMPLE.COM"}}, []string{"u3@example.com"}},
		{url.Values{"scim_id": {ids["u2@example.com"]}}, []string{"u2@example.com", "u2@example.com"}},
		{url.Values{"event": {"delete"}}, []string{"u2@example.com"}},
		{url.Values{"client": {"entra"}, "resource_type": {"user"}, "outcome": {"pending"}}, nil},
		{url.Values{"client": {"someone-else"}}, nil},
	} {
		p := changes(t, e, tc.q)
		var got []string
		for _, c := range p.Changes {
			got = append(got, c.Records[len(c.Records)-1].Subject)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") || p.Matched != len(tc.want) {
			t.Errorf("%s: %v (matched %d), want %v", tc.q.Encode(), got, p.Matched, tc.want)
		}
	}

	// Paging back: 3 at a time, every change once, in order.
	var seen []uint64
	q := url.Values{"limit": {"3"}}
	for range 10 {
		p := changes(t, e, q)
		if p.Matched != 10 {
			t.Fatalf("matched %d on a later page, want the whole count", p.Matched)
		}
		for _, c := range p.Changes {
			seen = append(seen, c.Seq)
		}
		if p.NextBefore == 0 {
			break
		}
		q.Set("before", fmt.Sprint(p.NextBefore))
	}
	var want []uint64
	for _, c := range all.Changes {
		want = append(want, c.Seq)
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("paging back by 3 gave %v, want %v", seen, want)
	}

	for _, tc := range []struct{ q, param string }{
		{"event=deleted", "event"},
		{"outcome=aplied", "outcome"},
		{"limit=0", "limit"},
		{"limit=501", "limit"},
		{"before=x", "before"},
		{"from=yesterday", "from"},
		{"user=x", "user"},
	} {
		resp, body := e.Do(t, http.MethodGet, journaladmin.JournalPath(journaltest.JournalName, "changes")+"?"+tc.q)
		journaltest.WantStatus(t, resp, body, http.StatusBadRequest)
		if !strings.Contains(string(body), "parameter "+tc.param) {
			t.Errorf("%s: %s, want it to name parameter %s", tc.q, body, tc.param)
		}
	}
}

// TestChangesRouteQueued: a queued change is one row from Entra's request to the app: its
// delivery's records (action deliver, the same request) join it, and its state follows
// them: queued, then delivered, or dead when the app refuses it.
func TestChangesRouteQueued(t *testing.T) {
	e := journaltest.StartQueuedTarget(t)
	w := e.Outbox(t)
	if err := w.Pause("test"); err != nil {
		t.Fatal(err)
	}
	id := e.CreateUser(t, "q@example.com")
	rejected := e.CreateUser(t, "reject-q@example.com")
	rowOf := func(p journaladmin.ChangesPage, scimID string) []journaladmin.ChangeRow {
		var out []journaladmin.ChangeRow
		for _, c := range p.Changes {
			if c.Records[0].SCIMID == scimID {
				out = append(out, c)
			}
		}
		return out
	}
	if rows := rowOf(changes(t, e, url.Values{}), id); len(rows) != 1 || rows[0].State != change.Queued {
		t.Fatalf("a queued change: %+v", rows)
	}
	if err := w.Resume("test"); err != nil {
		t.Fatal(err)
	}
	var p journaladmin.ChangesPage
	for range 400 {
		if s := w.Stats(); s.Pending == 0 && s.InFlight == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p = changes(t, e, url.Values{})
	rows := rowOf(p, id)
	if len(rows) != 1 || rows[0].State != change.Delivered {
		t.Fatalf("the delivered change is not one row, delivered: %+v", rows)
	}
	var trail []string
	for _, r := range rows[0].Records {
		trail = append(trail, string(r.Action)+":"+string(r.Outcome))
	}
	if strings.Join(trail, " ") != "create:queued deliver:pending deliver:delivered" {
		t.Errorf("the delivered change's records: %v", trail)
	}
	if dead := rowOf(p, rejected); len(dead) != 1 || dead[0].State != change.Dead || dead[0].Records[0].Outcome != change.Queued {
		t.Errorf("the refused change is not one row, dead: %+v", dead)
	}
	if p.Matched != 4 {
		t.Errorf("matched %d changes, want 4 (the two changes, the pause and the resume)", p.Matched)
	}
	if got := changes(t, e, url.Values{"outcome": {"dead"}}); len(got.Changes) != 1 || got.Changes[0].Records[0].SCIMID != rejected {
		t.Errorf("the dead filter: %+v", got.Changes)
	}
}

// TestChangesRouteNoMatchIsEmptyList: a filter that matches no change of a journal that has
// records answers "changes": [] (never null), as it does for an empty journal: the watch
// page iterates the list, and a null stopped it before it connected to the live stream.
func TestChangesRouteNoMatchIsEmptyList(t *testing.T) {
	e := journaltest.StartTarget(t)
	e.CreateUser(t, "ada@example.com")
	for _, q := range []string{"user_name=nobody%40example.com", "resource_type=Group", "before=1"} {
		resp, body := e.Do(t, http.MethodGet, journaladmin.JournalPath(journaltest.JournalName, "changes")+"?"+q)
		journaltest.WantStatus(t, resp, body, http.StatusOK)
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(raw["changes"])); got != "[]" {
			t.Errorf("%s: changes = %s, want []", q, got)
		}
	}
}

// TestChangesRouteOperatorActions: an operator's retry and drop of a dead letter are
// records of that change (its request, resource type and SCIM id), as the live page joins
// them: they belong to its row, and a drop ends it. The table showed a dropped change as
// dead for ever (the dead filter listed letters the outbox no longer held), beside rows of
// their own for the retry and the drop, unlike the live page it had just been showing.
func TestChangesRouteOperatorActions(t *testing.T) {
	e := journaltest.StartQueuedTarget(t)
	w := e.Outbox(t)
	rejected := e.CreateUser(t, "reject-op@example.com")
	deadTask := func() uint64 {
		for range 400 {
			views, err := w.List(outbox.Filter{State: "dead"})
			if err != nil {
				t.Fatal(err)
			}
			if len(views) == 1 && w.Stats().InFlight == 0 {
				return views[0].Seq
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("no dead letter")
		return 0
	}
	seq := deadTask()
	if err := w.Retry(seq, "alice"); err != nil {
		t.Fatal(err)
	}
	seq = deadTask()
	if err := w.Drop(seq, "bob"); err != nil {
		t.Fatal(err)
	}
	p := changes(t, e, url.Values{"scim_id": {rejected}})
	if len(p.Changes) != 1 {
		t.Fatalf("%d rows for one change: %+v", len(p.Changes), p.Changes)
	}
	var trail []string
	for _, r := range p.Changes[0].Records {
		trail = append(trail, string(r.Action)+":"+string(r.Outcome))
	}
	want := "create:queued deliver:pending deliver:dead retry:applied deliver:pending deliver:dead drop:applied"
	if got := strings.Join(trail, " "); got != want {
		t.Errorf("the change's records: %s, want %s", got, want)
	}
	if got := changes(t, e, url.Values{"outcome": {"dead"}}); len(got.Changes) != 0 {
		t.Errorf("the dead filter lists a dropped change: %+v", got.Changes)
	}
}
