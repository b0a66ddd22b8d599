package journaladmin_test

// The browser test of the journal's watch page: headless Chromium (Debian's chromium,
// installed by .ci/run) opens the page on a real admin endpoint in a 1280 px wide window,
// SCIM requests go through a gateway with a target (a legacy app on loopback), and the page
// must show one row per change in its current state, page back in time, filter on the
// server, explain a change when opened, and fit the window.
//
// The test is skipped when Chromium is missing, unless SCIMGATE_REQUIRE_BROWSER=1 (as in
// CI), where a missing browser fails it.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

// evaluate runs a script on the page and fails the test on an error.
func evaluate[T any](t *testing.T, ctx context.Context, script string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](script))
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return v
}

func TestBrowserWatchPage(t *testing.T) {
	ctx := journaltest.Browser(t)
	e := journaltest.StartTarget(t)
	// More changes than a page holds (50), each journaled as its intent and its outcome,
	// before the page opens: the oldest is found by paging back and by a filter.
	e.CreateUser(t, "first@example.com")
	for i := range 55 {
		e.CreateUser(t, fmt.Sprintf("old-%02d@example.com", i))
	}

	origin := "http://" + e.Admin
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 800),
		journaltest.Open(origin+journaladmin.JournalPath(journaltest.JournalName, "watch"), origin+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-state="connected"]`)),
	)
	if err != nil {
		t.Fatalf("opening the watch page: %v", err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || title != "scimgate journal "+journaltest.JournalName {
		t.Errorf("title %q, %v", title, err)
	}
	rows := journaltest.WaitRows(t, ctx, "the first page", func(rows []journaltest.Row) bool { return len(rows) == 50 })
	for _, r := range rows {
		if r.Outcome != "applied" {
			t.Fatalf("a change shows as %q, want one row per change in its current state (applied): %+v", r.Outcome, r)
		}
	}
	if journaltest.FindRow(rows, "first@example.com", "applied") != nil {
		t.Error("the oldest change is on the first page")
	}
	waitText(t, ctx, "#summary", "56 changes match")

	// Older changes come from the server, with the same filters.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("older"))); err != nil {
		t.Fatal(err)
	}
	rows = journaltest.WaitRows(t, ctx, "the second page", func(rows []journaltest.Row) bool { return len(rows) == 56 })
	if journaltest.FindRow(rows, "first@example.com", "applied") == nil || rows[55].Subject != "first@example.com" {
		t.Errorf("paging back does not end with the oldest change: %+v", rows[55])
	}
	if visible := evaluate[bool](t, ctx, `!document.getElementById('older').hidden`); visible {
		t.Error("the older button is shown after the last page")
	}

	// Live: a change's row goes from pending to its outcome (one row), a refused request
	// and a failed change are rows of their own, a hostile userName stays text.
	xss := `<img src=x onerror="document.title='owned'">@example.com`
	e.CreateUser(t, "alice@example.com")
	if status, body := e.SCIMDo(t, http.MethodPost, "/Users", journaltest.UserBody("alice@example.com")); status != http.StatusConflict {
		t.Fatalf("duplicate: %d %s", status, body)
	}
	if status, body := e.SCIMDo(t, http.MethodPost, "/Users", journaltest.UserBody("fail-bob@example.com")); status < 500 {
		t.Fatalf("a create the app refuses with 500: %d %s", status, body)
	}
	long := strings.Repeat("long-user-name-without-spaces-", 12) + "@example.com"
	e.CreateUser(t, long)
	e.CreateUser(t, xss)
	rows = journaltest.WaitRows(t, ctx, "the new rows", func(rows []journaltest.Row) bool {
		return journaltest.FindRow(rows, xss, "applied") != nil
	})
	applied, rejected := journaltest.FindRow(rows, "alice@example.com", "applied"), journaltest.FindRow(rows, "alice@example.com", "rejected")
	switch {
	case applied == nil || rejected == nil:
		t.Fatalf("alice's create and rejected duplicate are not both shown: %+v", rows)
	case journaltest.FindRow(rows, "alice@example.com", "pending") != nil:
		t.Errorf("alice's create shows its intent as a row of its own: %+v", rows)
	case !strings.Contains(applied.OutcomeClass, "good") || !strings.Contains(rejected.OutcomeClass, "bad"):
		t.Errorf("outcome colours: applied %q, rejected %q", applied.OutcomeClass, rejected.OutcomeClass)
	case applied.Status != "201" || rejected.Status != "409":
		t.Errorf("statuses: applied %q, rejected %q", applied.Status, rejected.Status)
	}
	if failed := journaltest.FindRow(rows, "fail-bob@example.com", "failed"); failed == nil || journaltest.FindRow(rows, "fail-bob@example.com", "pending") != nil {
		t.Errorf("the failed change is not one failed row: %+v", rows[:6])
	}
	if rows[0].Subject != xss {
		t.Errorf("the newest change is not on top: %+v", rows[0])
	}
	if n := evaluate[int](t, ctx, `document.querySelectorAll('#rows img').length`); n != 0 {
		t.Errorf("the userName became markup: %d img elements", n)
	}
	if title, _ := chromedp.Run(ctx, chromedp.Title()); title == "owned" {
		t.Error("the userName ran script")
	}

	// The table fits a 1280 px window: no horizontal scrolling, long values wrapped.
	if w := evaluate[int](t, ctx, `document.documentElement.scrollWidth`); w > 1280 {
		t.Errorf("the page is %d px wide in a 1280 px window", w)
	}

	// A row opens to the change: its attributes, the decision and each native call.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr.change[data-seq="`+applied.Seq+`"] td.time`))); err != nil {
		t.Fatal(err)
	}
	detail := waitText(t, ctx, "tr.detail", "Native calls")
	for _, want := range []string{"Changed attributes", "userName", "Decision", "POST /accounts \u2192 201", "pending", "applied"} {
		if !strings.Contains(detail, want) {
			t.Errorf("the opened change does not show %q:\n%s", want, detail)
		}
	}
	if w := evaluate[int](t, ctx, `document.documentElement.scrollWidth`); w > 1280 {
		t.Errorf("with a change open, the page is %d px wide in a 1280 px window", w)
	}

	// Filters run on the server, over the whole journal.
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("filter-outcome"), "failed"),
		chromedp.Click(chromedp.ID("apply-filters")),
	)
	if err != nil {
		t.Fatal(err)
	}
	journaltest.WaitRows(t, ctx, "the state filter", func(rows []journaltest.Row) bool {
		return len(rows) == 1 && rows[0].Subject == "fail-bob@example.com"
	})
	waitText(t, ctx, "#summary", "1 change matches")
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("clear-filters")),
		chromedp.SendKeys(chromedp.ID("filter-user-name"), "FIRST@example.com"),
		chromedp.Click(chromedp.ID("apply-filters")),
	)
	if err != nil {
		t.Fatal(err)
	}
	journaltest.WaitRows(t, ctx, "the userName filter", func(rows []journaltest.Row) bool {
		return len(rows) == 1 && rows[0].Subject == "first@example.com"
	})

	// A resource's link shows only its changes; a new change of another one stays out.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("clear-filters")),
	)
	if err != nil {
		t.Fatal(err)
	}
	rows = journaltest.WaitRows(t, ctx, "the cleared filters", func(rows []journaltest.Row) bool {
		return journaltest.FindRow(rows, "alice@example.com", "applied") != nil
	})
	applied = journaltest.FindRow(rows, "alice@example.com", "applied")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr.change[data-seq="`+applied.Seq+`"] td.scim-id button`))); err != nil {
		t.Fatal(err)
	}
	journaltest.WaitRows(t, ctx, "alice's changes", func(rows []journaltest.Row) bool {
		return len(rows) == 1 && rows[0].Subject == "alice@example.com" && rows[0].Outcome == "applied"
	})
	if q := evaluate[string](t, ctx, `location.search`); !strings.HasPrefix(q, "?scim_id=") {
		t.Errorf("the filter is not in the page's URL: %q", q)
	}
	e.CreateUser(t, "zoe@example.com")
	e.CreateUser(t, "zed@example.com")
	if status, body := e.SCIMDo(t, http.MethodDelete, "/Users/"+evaluate[string](t, ctx, `new URLSearchParams(location.search).get('scim_id')`), ""); status != http.StatusNoContent {
		t.Fatalf("deleting alice: %d %s", status, body)
	}
	rows = journaltest.WaitRows(t, ctx, "alice's delete", func(rows []journaltest.Row) bool {
		return len(rows) == 2 && rows[0].Outcome == "applied" && rows[0].Status == "204"
	})
	if journaltest.FindRow(rows, "zoe@example.com", "applied") != nil {
		t.Errorf("another resource's change is shown under alice's filter: %+v", rows)
	}
}

// TestBrowserWatchQueued: with queued delivery a change is one row from Entra's request to
// the app: live, it shows as queued while the outbox waits, then the same row turns
// delivered, or dead when the app refuses the change; opened anew (the changes route), the
// page shows the same rows.
func TestBrowserWatchQueued(t *testing.T) {
	ctx := journaltest.Browser(t)
	e := journaltest.StartQueuedTarget(t)
	w := e.Outbox(t)
	origin := "http://" + e.Admin
	page := origin + journaladmin.JournalPath(journaltest.JournalName, "watch")
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 800),
		journaltest.Open(page, origin+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-state="connected"]`)),
	)
	if err != nil {
		t.Fatalf("opening the watch page: %v", err)
	}
	if err := w.Pause("test"); err != nil {
		t.Fatal(err)
	}
	e.CreateUser(t, "queued@example.com")
	e.CreateUser(t, "reject-queued@example.com")
	rows := journaltest.WaitRows(t, ctx, "the queued changes", func(rows []journaltest.Row) bool {
		return journaltest.FindRow(rows, "queued@example.com", "queued") != nil && journaltest.FindRow(rows, "reject-queued@example.com", "queued") != nil
	})
	if q := journaltest.FindRow(rows, "queued@example.com", "queued"); !strings.Contains(q.OutcomeClass, "warn") || q.Status != "201" {
		t.Errorf("the queued change: %+v", q)
	}
	if err := w.Resume("test"); err != nil {
		t.Fatal(err)
	}
	one := func(rows []journaltest.Row, subject string) []journaltest.Row {
		var out []journaltest.Row
		for _, r := range rows {
			if r.Subject == subject {
				out = append(out, r)
			}
		}
		return out
	}
	settled := func(rows []journaltest.Row) bool {
		d, x := one(rows, "queued@example.com"), one(rows, "reject-queued@example.com")
		return len(d) == 1 && d[0].Outcome == "delivered" && len(x) == 1 && x[0].Outcome == "dead"
	}
	rows = journaltest.WaitRows(t, ctx, "the delivered and the dead change, one row each", settled)
	if d, x := one(rows, "queued@example.com")[0], one(rows, "reject-queued@example.com")[0]; !strings.Contains(d.OutcomeClass, "good") || !strings.Contains(x.OutcomeClass, "bad") {
		t.Errorf("outcome colours: delivered %q, dead %q", d.OutcomeClass, x.OutcomeClass)
	}
	opened := func(rows []journaltest.Row) {
		t.Helper()
		delivered := one(rows, "queued@example.com")[0]
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr.change[data-seq="`+delivered.Seq+`"] td.time`))); err != nil {
			t.Fatal(err)
		}
		detail := waitText(t, ctx, "tr.detail", "Native calls")
		for _, want := range []string{"queued", "pending", "delivered", "POST /accounts \u2192 201"} {
			if !strings.Contains(detail, want) {
				t.Errorf("the opened change does not show %q:\n%s", want, detail)
			}
		}
	}
	opened(rows)

	// The page opened anew reads the changes route: the same one row per change, with
	// all its records.
	if err := chromedp.Do(ctx, journaltest.Open(page, origin+"/"), chromedp.WaitVisible(chromedp.CSS(`#status[data-state="connected"]`))); err != nil {
		t.Fatal(err)
	}
	opened(journaltest.WaitRows(t, ctx, "the reloaded page's rows", settled))
}

// waitText polls until the element's text contains want, and returns the text.
func waitText(t *testing.T, ctx context.Context, selector, want string) string {
	t.Helper()
	script := `(() => { const e = document.querySelector(` + fmt.Sprintf("%q", selector) + `); return e ? e.textContent : ''; })()`
	var got string
	for range 200 {
		got = evaluate[string](t, ctx, script)
		if strings.Contains(got, want) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never showed %q; it shows %q", selector, want, got)
	return ""
}
