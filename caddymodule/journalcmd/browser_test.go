package journalcmd_test

// The browser test of `journal watch`: headless Chromium (Debian's chromium, installed by
// .ci/run) opens the URL the command prints, SCIM requests go through the gateway, and the
// rows must appear as they commit.
//
// The test is skipped when Chromium is missing, unless SCIMGATE_REQUIRE_BROWSER=1 (as in
// CI), where a missing browser fails it.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
)

// TestBrowserWatchCommand opens the URL that `journal watch` prints the way a person does:
// a plain navigation with no referrer, which the admin endpoint itself refuses. The page
// must load, connect its stream through watch, and show records as they commit.
func TestBrowserWatchCommand(t *testing.T) {
	ctx := journaltest.Browser(t)
	e := journaltest.Start(t)
	e.CreateUser(t, "before@example.com")
	base := journaltest.WatchStart(t, e.Admin)

	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := chromedp.Run(wctx, chromedp.NavigateResponse(base))
	if err != nil {
		t.Fatalf("opening %s: %v", base, err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("opening %s: status %d (%s)", base, resp.Status, resp.URL)
	}
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(`#status[data-state="connected"]`))); err != nil {
		t.Fatalf("the page did not connect its stream: %v", err)
	}
	loc, err := chromedp.Run(wctx, chromedp.Location())
	if want := strings.TrimSuffix(base, "/") + journaladmin.JournalPath(journaltest.JournalName, "watch"); err != nil || loc != want {
		t.Errorf("location %q, %v; want %q", loc, err, want)
	}
	if title, err := chromedp.Run(wctx, chromedp.Title()); err != nil || title != "scimgate journal "+journaltest.JournalName {
		t.Errorf("title %q, %v", title, err)
	}
	journaltest.WaitRows(t, ctx, "the backlog row", func(rows []journaltest.Row) bool {
		return journaltest.FindRow(rows, "before@example.com", "applied") != nil
	})

	e.CreateUser(t, "alice@example.com")
	if status, body := e.SCIMDo(t, http.MethodPost, "/Users", journaltest.UserBody("alice@example.com")); status != http.StatusConflict {
		t.Fatalf("duplicate: %d %s", status, body)
	}
	rows := journaltest.WaitRows(t, ctx, "the new rows", func(rows []journaltest.Row) bool {
		return journaltest.FindRow(rows, "alice@example.com", "applied") != nil && journaltest.FindRow(rows, "alice@example.com", "rejected") != nil
	})
	if rows[0].Subject != "alice@example.com" || rows[0].Outcome != "rejected" || rows[0].Status != "409" {
		t.Errorf("the newest row is %+v, want alice's rejected duplicate", rows[0])
	}
}
