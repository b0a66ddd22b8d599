package journaltest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Headless Chromium (Debian's chromium, installed by .ci/run) for the browser tests of the
// journal's watch page. A test that calls Browser is skipped when Chromium is missing,
// unless SCIMGATE_REQUIRE_BROWSER=1 (as in CI), where a missing browser fails it.

// BrowserPath is where the browser tests expect Chromium.
const BrowserPath = "/usr/bin/chromium"

// Row is one table row as the page shows it.
type Row struct {
	Seq          string `json:"seq"`
	Subject      string `json:"subject"`
	ResourceType string `json:"type"`
	Outcome      string `json:"outcome"`
	OutcomeClass string `json:"outcomeClass"`
	Status       string `json:"status"`
	Hidden       bool   `json:"hidden"`
}

// rowsJS reads the table's changes, top to bottom.
const rowsJS = `Array.from(document.querySelectorAll('#rows tr.change')).map(r => ({
	seq: r.dataset.seq,
	subject: r.querySelector('.subject').textContent,
	type: r.querySelector('.resource-type').textContent,
	outcome: r.querySelector('.outcome .state').textContent,
	outcomeClass: r.querySelector('.outcome').className,
	status: r.querySelector('.http-status').textContent,
	hidden: r.hidden,
}))`

// Browser starts Chromium with a fresh profile and returns a tab's context.
func Browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(BrowserPath); err != nil {
		if os.Getenv("SCIMGATE_REQUIRE_BROWSER") == "1" {
			t.Fatalf("SCIMGATE_REQUIRE_BROWSER=1 but %s is missing: apt-get install chromium", BrowserPath)
		}
		t.Skipf("%s is missing (apt-get install chromium); set SCIMGATE_REQUIRE_BROWSER=1 to fail instead", BrowserPath)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(BrowserPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	// The first Run starts the browser, which lives as long as ctx: no timeout on it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", BrowserPath, err)
	}
	return ctx
}

// Open navigates to url with referrer, as following a link on that page does. Caddy's
// admin endpoint refuses browser requests (they carry Sec-Fetch-Mode) that have neither an
// allowed Origin nor Referer, which includes a URL typed into the address bar; `journal
// watch` is how a person opens it (TestBrowserWatchCommand in journalcmd).
func Open(url, referrer string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, page.Navigate, page.NavigateParams{URL: url, Referrer: referrer})
		if err != nil {
			return err
		}
		if res.ErrorText != "" {
			return fmt.Errorf("navigating to %s: %s", url, res.ErrorText)
		}
		return nil
	})
}

// Rows reads the table.
func Rows(t *testing.T, ctx context.Context) []Row {
	t.Helper()
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]Row](rowsJS))
	if err != nil {
		t.Fatalf("reading the rows: %v", err)
	}
	return rows
}

// WaitRows polls the page until cond holds for its rows, or fails after 10 s.
func WaitRows(t *testing.T, ctx context.Context, what string, cond func([]Row) bool) []Row {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows := Rows(t, ctx)
		if cond(rows) {
			return rows
		}
		if time.Now().After(deadline) {
			dump, _ := json.MarshalIndent(rows, "", "  ")
			t.Fatalf("timed out waiting for %s; rows:\n%s", what, dump)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FindRow returns the row of subject with outcome, or nil.
func FindRow(rows []Row, subject, outcome string) *Row {
	for i := range rows {
		if rows[i].Subject == subject && rows[i].Outcome == outcome {
			return &rows[i]
		}
	}
	return nil
}

// Visible lists the subjects and outcomes of the rows shown.
func Visible(rows []Row) []string {
	var out []string
	for _, r := range rows {
		if !r.Hidden {
			out = append(out, r.Subject+"/"+r.Outcome)
		}
	}
	return out
}
