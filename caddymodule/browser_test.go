package caddymodule

// The browser test of the journal's watch page: headless Chromium (Debian's chromium,
// installed by .ci/run) opens the page on a real admin endpoint, SCIM requests go through
// the gateway, and the rows must appear with their outcome and obey the filters.
//
// The test is skipped when Chromium is missing, unless SCIMGATE_REQUIRE_BROWSER=1 (as in
// CI), where a missing browser fails it.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

const liveBrowserPath = "/usr/bin/chromium"

// liveBrowserRow is one table row as the page shows it.
type liveBrowserRow struct {
	Seq          string `json:"seq"`
	Subject      string `json:"subject"`
	ResourceType string `json:"type"`
	Outcome      string `json:"outcome"`
	OutcomeClass string `json:"outcomeClass"`
	Status       string `json:"status"`
	Hidden       bool   `json:"hidden"`
}

// liveBrowserRowsJS reads the table, top to bottom.
const liveBrowserRowsJS = `Array.from(document.querySelectorAll('#rows tr')).map(r => ({
	seq: r.dataset.seq,
	subject: r.querySelector('.subject').textContent,
	type: r.querySelector('.resource-type').textContent,
	outcome: r.querySelector('.outcome').textContent,
	outcomeClass: r.querySelector('.outcome').className,
	status: r.querySelector('.http-status').textContent,
	hidden: r.hidden,
}))`

// liveBrowserStart starts Chromium with a fresh profile and returns a tab's context.
func liveBrowserStart(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(liveBrowserPath); err != nil {
		if os.Getenv("SCIMGATE_REQUIRE_BROWSER") == "1" {
			t.Fatalf("SCIMGATE_REQUIRE_BROWSER=1 but %s is missing: apt-get install chromium", liveBrowserPath)
		}
		t.Skipf("%s is missing (apt-get install chromium); set SCIMGATE_REQUIRE_BROWSER=1 to fail instead", liveBrowserPath)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(liveBrowserPath),
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
		t.Fatalf("starting %s: %v", liveBrowserPath, err)
	}
	return ctx
}

// liveBrowserOpen navigates to url with a same-origin referrer, as following a link on the admin
// endpoint does. Caddy's admin endpoint refuses browser requests (they carry Sec-Fetch-Mode)
// that have neither an allowed Origin nor Referer, which includes a URL typed into the
// address bar; `journal watch` is how a person opens it (TestBrowserWatchCommand).
func liveBrowserOpen(url, referrer string) chromedp.Action[chromedp.Void] {
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

// liveBrowserRows reads the table.
func liveBrowserRows(t *testing.T, ctx context.Context) []liveBrowserRow {
	t.Helper()
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]liveBrowserRow](liveBrowserRowsJS))
	if err != nil {
		t.Fatalf("reading the rows: %v", err)
	}
	return rows
}

// liveBrowserWait polls the page until cond holds for its rows, or fails after 10 s.
func liveBrowserWait(t *testing.T, ctx context.Context, what string, cond func([]liveBrowserRow) bool) []liveBrowserRow {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows := liveBrowserRows(t, ctx)
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

func liveBrowserFind(rows []liveBrowserRow, subject, outcome string) *liveBrowserRow {
	for i := range rows {
		if rows[i].Subject == subject && rows[i].Outcome == outcome {
			return &rows[i]
		}
	}
	return nil
}

// liveBrowserVisible lists the subjects and outcomes of the rows shown.
func liveBrowserVisible(rows []liveBrowserRow) []string {
	var out []string
	for _, r := range rows {
		if !r.Hidden {
			out = append(out, r.Subject+"/"+r.Outcome)
		}
	}
	return out
}

func TestBrowserWatchPage(t *testing.T) {
	ctx := liveBrowserStart(t)
	e := admStart(t)
	e.createUser(t, "before@example.com") // written before the page opens: the backlog shows it

	origin := "http://" + e.admin
	err := chromedp.Do(ctx,
		liveBrowserOpen(origin+liveWatchURL(admJournalName), origin+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-state="connected"]`)),
	)
	if err != nil {
		t.Fatalf("opening the watch page: %v", err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || title != "scimgate journal "+admJournalName {
		t.Errorf("title %q, %v", title, err)
	}
	liveBrowserWait(t, ctx, "the backlog row", func(rows []liveBrowserRow) bool {
		return liveBrowserFind(rows, "before@example.com", "applied") != nil
	})

	// Records written now appear as they commit, with their outcome, newest on top.
	xss := `<img src=x onerror="document.title='owned'">@example.com`
	e.createUser(t, "alice@example.com")
	if status, body := e.scimDo(t, http.MethodPost, "/Users", admUserBody("alice@example.com")); status != http.StatusConflict {
		t.Fatalf("duplicate: %d %s", status, body)
	}
	if status, body := e.scimDo(t, http.MethodPost, "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Admins"}`); status != http.StatusCreated {
		t.Fatalf("group: %d %s", status, body)
	}
	e.createUser(t, xss)
	rows := liveBrowserWait(t, ctx, "the new rows", func(rows []liveBrowserRow) bool {
		return liveBrowserFind(rows, xss, "applied") != nil
	})
	applied, rejected := liveBrowserFind(rows, "alice@example.com", "applied"), liveBrowserFind(rows, "alice@example.com", "rejected")
	switch {
	case applied == nil || rejected == nil:
		t.Fatalf("alice's create and rejected duplicate are not both shown: %+v", rows)
	case !strings.Contains(applied.OutcomeClass, "good") || !strings.Contains(rejected.OutcomeClass, "bad"):
		t.Errorf("outcome colours: applied %q, rejected %q", applied.OutcomeClass, rejected.OutcomeClass)
	case applied.Status != "201" || rejected.Status != "409":
		t.Errorf("statuses: applied %q, rejected %q", applied.Status, rejected.Status)
	}
	if group := liveBrowserFind(rows, "Admins", "applied"); group == nil || group.ResourceType != "Group" {
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
	rows = liveBrowserWait(t, ctx, "the outcome filter", func(rows []liveBrowserRow) bool { return len(liveBrowserVisible(rows)) == 1 })
	if got := liveBrowserVisible(rows); got[0] != "alice@example.com/rejected" {
		t.Errorf("outcome=rejected shows %v", got)
	}
	e.createUser(t, "zoe@example.com")
	rows = liveBrowserWait(t, ctx, "zoe's row", func(rows []liveBrowserRow) bool { return liveBrowserFind(rows, "zoe@example.com", "applied") != nil })
	if !liveBrowserFind(rows, "zoe@example.com", "applied").Hidden {
		t.Error("a new row that does not match the filter is shown")
	}

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("clear-filters")),
		chromedp.SendKeys(chromedp.ID("filter-resource-type"), "group"),
	)
	if err != nil {
		t.Fatal(err)
	}
	rows = liveBrowserWait(t, ctx, "the resource type filter", func(rows []liveBrowserRow) bool { return len(liveBrowserVisible(rows)) == 1 })
	if got := liveBrowserVisible(rows); got[0] != "Admins/applied" {
		t.Errorf("resource type Group shows %v", got)
	}

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("clear-filters")),
		chromedp.SendKeys(chromedp.ID("filter-user-name"), "ALICE"),
	)
	if err != nil {
		t.Fatal(err)
	}
	rows = liveBrowserWait(t, ctx, "the userName filter", func(rows []liveBrowserRow) bool { return len(liveBrowserVisible(rows)) == 2 })
	for _, s := range liveBrowserVisible(rows) {
		if !strings.HasPrefix(s, "alice@example.com/") {
			t.Errorf("userName ALICE shows %s", s)
		}
	}
}

// TestBrowserWatchCommand opens the URL that `journal watch` prints the way a person does:
// a plain navigation with no referrer, which the admin endpoint itself refuses. The page
// must load, connect its stream through watch, and show records as they commit.
func TestBrowserWatchCommand(t *testing.T) {
	ctx := liveBrowserStart(t)
	e := admStart(t)
	e.createUser(t, "before@example.com")
	base := cliWatchStart(t, e.admin)

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
	if want := strings.TrimSuffix(base, "/") + liveWatchURL(admJournalName); err != nil || loc != want {
		t.Errorf("location %q, %v; want %q", loc, err, want)
	}
	if title, err := chromedp.Run(wctx, chromedp.Title()); err != nil || title != "scimgate journal "+admJournalName {
		t.Errorf("title %q, %v", title, err)
	}
	liveBrowserWait(t, ctx, "the backlog row", func(rows []liveBrowserRow) bool {
		return liveBrowserFind(rows, "before@example.com", "applied") != nil
	})

	e.createUser(t, "alice@example.com")
	if status, body := e.scimDo(t, http.MethodPost, "/Users", admUserBody("alice@example.com")); status != http.StatusConflict {
		t.Fatalf("duplicate: %d %s", status, body)
	}
	rows := liveBrowserWait(t, ctx, "the new rows", func(rows []liveBrowserRow) bool {
		return liveBrowserFind(rows, "alice@example.com", "applied") != nil && liveBrowserFind(rows, "alice@example.com", "rejected") != nil
	})
	if rows[0].Subject != "alice@example.com" || rows[0].Outcome != "rejected" || rows[0].Status != "409" {
		t.Errorf("the newest row is %+v, want alice's rejected duplicate", rows[0])
	}
}
