package journaladmin_test

// The browser test of the journal's watch page: headless Chromium (Debian's chromium,
// installed by .ci/run) opens the page on a real admin endpoint, SCIM requests go through
// the gateway, and the rows must appear with their outcome and obey the filters.
//
// The test is skipped when Chromium is missing, unless SCIMGATE_REQUIRE_BROWSER=1 (as in
// CI), where a missing browser fails it.

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

func TestBrowserWatchPage(t *testing.T) {
	ctx := journaltest.Browser(t)
	e := journaltest.Start(t)
	e.CreateUser(t, "before@example.com") // written before the page opens: the backlog shows it

	origin := "http://" + e.Admin
	err := chromedp.Do(ctx,
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
	journaltest.WaitRows(t, ctx, "the backlog row", func(rows []journaltest.Row) bool {
		return journaltest.FindRow(rows, "before@example.com", "applied") != nil
	})

	// Records written now appear as they commit, with their outcome, newest on top.
	xss := `<img src=x onerror="document.title='owned'">@example.com`
	e.CreateUser(t, "alice@example.com")
	if status, body := e.SCIMDo(t, http.MethodPost, "/Users", journaltest.UserBody("alice@example.com")); status != http.StatusConflict {
		t.Fatalf("duplicate: %d %s", status, body)
	}
	if status, body := e.SCIMDo(t, http.MethodPost, "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Admins"}`); status != http.StatusCreated {
		t.Fatalf("group: %d %s", status, body)
	}
	e.CreateUser(t, xss)
	rows := journaltest.WaitRows(t, ctx, "the new rows", func(rows []journaltest.Row) bool {
		return journaltest.FindRow(rows, xss, "applied") != nil
	})
	applied, rejected := journaltest.FindRow(rows, "alice@example.com", "applied"), journaltest.FindRow(rows, "alice@example.com", "rejected")
	switch {
	case applied == nil || rejected == nil:
		t.Fatalf("alice's create and rejected duplicate are not both shown: %+v", rows)
	case !strings.Contains(applied.OutcomeClass, "good") || !strings.Contains(rejected.OutcomeClass, "bad"):
		t.Errorf("outcome colours: applied %q, rejected %q", applied.OutcomeClass, rejected.OutcomeClass)
	case applied.Status != "201" || rejected.Status != "409":
		t.Errorf("statuses: applied %q, rejected %q", applied.Status, rejected.Status)
	}
	if group := journaltest.FindRow(rows, "Admins", "applied"); group == nil || group.ResourceType != "Group" {
		t.Errorf("the group row is missing or wrong: %+v", group)
	}
	if rows[0].Subject != xss {
		t.Errorf("the newest record is not on top: %+v", rows[0])
	}
	// The hostile userName is shown as text, never parsed as HTML.
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#rows img').length`)); err != nil || n != 0 {
		t.Errorf("the userName became markup: %d img elements, %v", n, err)
	}
	if title, _ := chromedp.Run(ctx, chromedp.Title()); title == "owned" {
		t.Error("the userName ran script")
	}

	// Filters hide the rows that do not match, shown and new alike.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("filter-outcome"), "rejected")); err != nil {
		t.Fatal(err)
	}
	rows = journaltest.WaitRows(t, ctx, "the outcome filter", func(rows []journaltest.Row) bool { return len(journaltest.Visible(rows)) == 1 })
	if got := journaltest.Visible(rows); got[0] != "alice@example.com/rejected" {
		t.Errorf("outcome=rejected shows %v", got)
	}
	e.CreateUser(t, "zoe@example.com")
	rows = journaltest.WaitRows(t, ctx, "zoe's row", func(rows []journaltest.Row) bool {
		return journaltest.FindRow(rows, "zoe@example.com", "applied") != nil
	})
	if !journaltest.FindRow(rows, "zoe@example.com", "applied").Hidden {
		t.Error("a new row that does not match the filter is shown")
	}

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("clear-filters")),
		chromedp.SendKeys(chromedp.ID("filter-resource-type"), "group"),
	)
	if err != nil {
		t.Fatal(err)
	}
	rows = journaltest.WaitRows(t, ctx, "the resource type filter", func(rows []journaltest.Row) bool { return len(journaltest.Visible(rows)) == 1 })
	if got := journaltest.Visible(rows); got[0] != "Admins/applied" {
		t.Errorf("resource type Group shows %v", got)
	}

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("clear-filters")),
		chromedp.SendKeys(chromedp.ID("filter-user-name"), "ALICE"),
	)
	if err != nil {
		t.Fatal(err)
	}
	rows = journaltest.WaitRows(t, ctx, "the userName filter", func(rows []journaltest.Row) bool { return len(journaltest.Visible(rows)) == 2 })
	for _, s := range journaltest.Visible(rows) {
		if !strings.HasPrefix(s, "alice@example.com/") {
			t.Errorf("userName ALICE shows %s", s)
		}
	}
}
