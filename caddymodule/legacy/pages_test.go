package legacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// pagedServer serves ids 1..total, size per page, by cursor, page, offset or Link.
func pagedServer(t *testing.T, total, size int) string {
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		start := 0
		switch {
		case q.Get("cursor") != "":
			start, _ = strconv.Atoi(strings.TrimPrefix(q.Get("cursor"), "c"))
		case q.Get("page") != "":
			p, _ := strconv.Atoi(q.Get("page"))
			start = (p - 1) * size
		case q.Get("offset") != "":
			start, _ = strconv.Atoi(q.Get("offset"))
		}
		items := []map[string]int{}
		for i := start; i < total && i < start+size; i++ {
			items = append(items, map[string]int{"id": i + 1})
		}
		body := map[string]any{"data": items, "meta": map[string]any{"next": nil}}
		if start+size < total {
			body["meta"] = map[string]any{"next": fmt.Sprintf("c%d", start+size)}
			w.Header().Add("Link", fmt.Sprintf(`<https://elsewhere.example/x>; rel="prev", </base/items?link=%d&offset=%d>; rel="next"`, start, start+size))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	})
	return srv.URL
}

func collect(t *testing.T, c *Client, path string, p Paging) ([]int, int, error) {
	t.Helper()
	var ids []int
	pages := 0
	for resp, err := range c.Pages(context.Background(), Request{Path: path}, p) {
		if err != nil {
			return ids, pages, err
		}
		pages++
		var body struct {
			Data []struct{ ID int } `json:"data"`
		}
		if err := json.Unmarshal(resp.Body, &body); err != nil {
			t.Fatal(err)
		}
		for _, d := range body.Data {
			ids = append(ids, d.ID)
		}
	}
	return ids, pages, nil
}

// TestPages: every kind of paging reads every item once, in bounded pages.
func TestPages(t *testing.T) {
	base := pagedServer(t, 7, 3)
	c := newTestClient(t, base+"/base", Options{})
	kinds := []Paging{
		{Kind: PageCursor, Param: "cursor", CursorPath: "meta.next"},
		{Kind: PageNumber, Param: "page", ItemsPath: "data", Size: 3},
		{Kind: PageNumber, Param: "page", ItemsPath: "data"}, // ends on the empty page
		{Kind: PageOffset, Param: "offset", ItemsPath: "data", Size: 3, SizeParam: "limit"},
		{Kind: PageLink},
	}
	for _, p := range kinds {
		ids, pages, err := collect(t, c, "/items?filter=x", p)
		want := 3
		if p.Size == 0 && p.Kind == PageNumber {
			want = 4
		}
		if err != nil || fmt.Sprint(ids) != "[1 2 3 4 5 6 7]" || pages != want {
			t.Errorf("%s: ids %v in %d pages (%v), want 1..7 in %d", p.Kind, ids, pages, err, want)
		}
	}
	// The bound on pages: an error, never a silent truncation.
	_, pages, err := collect(t, c, "/items", Paging{Kind: PageLink, MaxPages: 2})
	if !errors.Is(err, ErrTooManyPages) || pages != 2 {
		t.Errorf("max_pages 2: %d pages, %v", pages, err)
	}
}

func TestPagesRefuseLoopsAndForeignLinks(t *testing.T) {
	srv, hits := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("foreign") != "" {
			w.Header().Set("Link", `<http://169.254.169.254/latest>; rel="next"`)
		} else {
			w.Header().Set("Link", `<`+r.URL.String()+`>; rel="next"`) // itself
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data":[{"id":1}],"next":"same"}`))
	})
	c := newTestClient(t, srv.URL, Options{})
	if _, pages, err := collect(t, c, "/items", Paging{Kind: PageLink}); err == nil || pages != 1 {
		t.Errorf("a link to the same page: %d pages, %v", pages, err)
	}
	if _, _, err := collect(t, c, "/items?foreign=1", Paging{Kind: PageLink}); err == nil || !strings.Contains(err.Error(), "outside the app's base URL") {
		t.Errorf("a link elsewhere: %v", err)
	}
	if _, pages, err := collect(t, c, "/items", Paging{Kind: PageCursor, Param: "cursor", CursorPath: "next"}); err == nil || pages != 2 {
		t.Errorf("a cursor that does not advance: %d pages, %v", pages, err)
	}
	if n := hits.hits.Load(); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
	for _, bad := range []Paging{{Kind: "scroll"}, {Kind: PageCursor, Param: "c"}, {Kind: PageNumber, Param: "p"}, {Kind: PageLink, MaxPages: -1}} {
		if _, _, err := collect(t, c, "/items", bad); err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
}

func TestNextLink(t *testing.T) {
	cases := map[string]string{
		`</a?page=2>; rel="next"`:                       "/a?page=2",
		`</a?x=1,2>; rel="prev", </b>; rel="next last"`: "/b",
		`<https://h/a>; rel=next; title="a, b"`:         "https://h/a",
		`</a>; rel="prev"`:                              "",
		`garbage`:                                       "",
		`</a>; title="rel=next", </c>; REL="Next"`:      "/c",
	}
	for in, want := range cases {
		if got := nextLink([]string{in}); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

// TestPagesFollowRelativeLinks: a next link is a URI reference relative to the page that
// gave it (RFC 8288 §3.2, RFC 3986 §5), not to the target's base URL: "?page=2" is the
// same list's page 2, and "items?page=2" a sibling of the page's path.
func TestPagesFollowRelativeLinks(t *testing.T) {
	for _, link := range []string{`<?page=%d>`, `<items?page=%d>`, `<./items?page=%d>`, `<../v1/items?page=%d>`} {
		srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/v1/items" {
				http.NotFound(w, r)
				return
			}
			p, _ := strconv.Atoi(r.URL.Query().Get("page"))
			if p == 0 {
				p = 1
			}
			if p < 3 {
				w.Header().Set("Link", fmt.Sprintf(link, p+1)+`; rel="next"`)
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"data":[{"id":%d}]}`, p)
		})
		c := newTestClient(t, srv.URL+"/api", Options{})
		ids, pages, err := collect(t, c, "/v1/items", Paging{Kind: PageLink})
		if err != nil || fmt.Sprint(ids) != "[1 2 3]" || pages != 3 {
			t.Errorf("link %s: ids %v in %d pages (%v), want 1..3 in 3", link, ids, pages, err)
		}
	}
}

// TestPagesKeepTheCallsQuery: the paging parameters are set in the list call's query and
// the rest of it goes as the mapping wrote it, byte for byte: a ";" in a value (which
// Go's query parser refuses) or a "%20" the app reads literally.
func TestPagesKeepTheCallsQuery(t *testing.T) {
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.RawQuery, "fields=id;login&filter=name%20sw%20a&") {
			http.Error(w, "query "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		var items []string
		for i := off; i < 5 && i < off+2; i++ {
			items = append(items, fmt.Sprintf(`{"id":%d}`, i+1))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"data":[%s]}`, strings.Join(items, ","))
	})
	c := newTestClient(t, srv.URL, Options{})
	ids, pages, err := collect(t, c, "/items?fields=id;login&filter=name%20sw%20a&offset=9", Paging{Kind: PageOffset, Param: "offset", ItemsPath: "data", Size: 2, SizeParam: "limit"})
	if err != nil || fmt.Sprint(ids) != "[1 2 3 4 5]" || pages != 3 {
		t.Errorf("ids %v in %d pages (%v), want 1..5 in 3", ids, pages, err)
	}
}

// TestPagesTrustNoShortPageUntilAFullOne: an app that caps its pages below the size asked
// for (3 asked, 2 given) is read to its empty page; once a page of the size asked for came,
// a shorter one is the last. A page-number app that answers its last page again for a page
// past the end (it clamps the number) ends the listing with an error naming the page.
func TestPagesTrustNoShortPageUntilAFullOne(t *testing.T) {
	capped := pagedServer(t, 7, 2)
	c := newTestClient(t, capped+"/base", Options{})
	for _, p := range []Paging{
		{Kind: PageNumber, Param: "page", ItemsPath: "data", Size: 3, SizeParam: "per_page"},
		{Kind: PageOffset, Param: "offset", ItemsPath: "data", Size: 3, SizeParam: "limit"},
	} {
		ids, pages, err := collect(t, c, "/items", p)
		if err != nil || fmt.Sprint(ids) != "[1 2 3 4 5 6 7]" || pages != 5 {
			t.Errorf("%s, capped at 2: ids %v in %d pages (%v), want 1..7 in 5", p.Kind, ids, pages, err)
		}
	}
	honoured := pagedServer(t, 7, 3)
	c = newTestClient(t, honoured+"/base", Options{})
	if ids, pages, err := collect(t, c, "/items", Paging{Kind: PageNumber, Param: "page", ItemsPath: "data", Size: 3}); err != nil || len(ids) != 7 || pages != 3 {
		t.Errorf("size honoured: ids %v in %d pages (%v), want 7 in 3", ids, pages, err)
	}
	clamps, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		p, _ := strconv.Atoi(r.URL.Query().Get("page"))
		w.Header().Set("Content-Type", "application/json")
		if p >= 2 {
			_, _ = w.Write([]byte(`{"data":[{"id":3}]}`)) // page 2, and every page past it
			return
		}
		_, _ = w.Write([]byte(`{"data":[{"id":1},{"id":2}]}`))
	})
	c = newTestClient(t, clamps.URL, Options{})
	_, pages, err := collect(t, c, "/items", Paging{Kind: PageNumber, Param: "page", ItemsPath: "data", Size: 5})
	var pe *PageError
	if !errors.As(err, &pe) || pe.Page != 3 || !strings.Contains(err.Error(), "the very items of the page before it") || pages != 3 {
		t.Errorf("a clamped page number: %d pages, %v", pages, err)
	}
}

// TestPagesPastTheEnd: an app with fewer accounts than a page asks for, which refuses the
// page after its last (404 or 400 in JSON, or with no body) rather than answering an empty
// list: the short page was the last, and the listing is complete. The same refusal after
// a full page, a proxy's HTML 404, or a 5xx, is a failed listing; with a total the count
// decides.
func TestPagesPastTheEnd(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		size                    int
		total                   bool
		want                    string // ids, or the error's text
	}{
		{"JSON 404", "application/json", `{"error":"page 2 does not exist"}`, 404, 10, false, "[1 2 3]"},
		{"JSON 400", "application/json", `{"message":"page out of range"}`, 400, 10, false, "[1 2 3]"},
		{"empty 404", "", "", 404, 10, false, "[1 2 3]"},
		{"after a full page", "application/json", `{"error":"no page 2"}`, 404, 3, false, "page 2:"},
		{"proxy HTML 404", "text/html", "<html><body>Not Found</body></html>", 404, 10, false, "page 2:"},
		{"a 500", "application/json", `{"error":"boom"}`, 500, 10, false, "page 2:"},
		{"with a total", "application/json", `{"error":"no page 2"}`, 404, 10, true, "page 2:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("page") != "1" {
					if tc.contentType != "" {
						w.Header().Set("Content-Type", tc.contentType)
					}
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte(tc.body))
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"data":[{"id":1},{"id":2},{"id":3}],"total":4}`))
			})
			c := newTestClient(t, srv.URL, Options{MaxRetries: -1, CircuitFailures: -1})
			p := Paging{Kind: PageNumber, Param: "page", ItemsPath: "data", Size: tc.size}
			if tc.total {
				p.TotalPath = "total"
			}
			ids, _, err := collect(t, c, "/items", p)
			got := fmt.Sprint(ids)
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) || (strings.HasPrefix(tc.want, "[") && err != nil) {
				t.Errorf("got %s (ids %v), want %s", got, ids, tc.want)
			}
		})
	}
}

// TestPagesTotal: with TotalPath, page paging ends as soon as its items add up to the
// app's count (no page past the end is asked for), and a listing that lists more items
// than the count, or whose count is no whole number, ends with an error naming the page.
func TestPagesTotal(t *testing.T) {
	srv, hits := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		p, _ := strconv.Atoi(r.URL.Query().Get("page"))
		total := r.URL.Query().Get("total")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"data":[{"id":%d},{"id":%d}],"total":%s}`, 2*p-1, 2*p, total)
	})
	c := newTestClient(t, srv.URL, Options{})
	p := Paging{Kind: PageNumber, Param: "page", ItemsPath: "data", Size: 5, TotalPath: "total"}
	if ids, pages, err := collect(t, c, "/items?total=6", p); err != nil || len(ids) != 6 || pages != 3 || hits.hits.Load() != 3 {
		t.Errorf("total 6: ids %v in %d pages, %d requests (%v); want 6 in 3", ids, pages, hits.hits.Load(), err)
	}
	var pe *PageError
	if _, _, err := collect(t, c, "/items?total=3", p); !errors.As(err, &pe) || pe.Page != 2 || !strings.Contains(err.Error(), "listed 4 items where the app counts 3") {
		t.Errorf("more than the total: %v", err)
	}
	if _, _, err := collect(t, c, `/items?total="x"`, p); !errors.As(err, &pe) || pe.Page != 1 || !strings.Contains(err.Error(), `no count of all items at "total"`) {
		t.Errorf("a total that is no number: %v", err)
	}
	if err := (&Paging{Kind: PageLink, TotalPath: "total"}).Validate(); err == nil {
		t.Error("a total without the items' path was accepted")
	}
}
