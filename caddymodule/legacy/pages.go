package legacy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// PagingKind says how an app's list answers lead to the next page.
type PagingKind string

// Paging kinds.
const (
	// PageCursor: the answer's body holds the next page's cursor (at CursorPath), sent
	// back in the query parameter Param; no cursor (absent, null or "") is the last page.
	PageCursor PagingKind = "cursor"
	// PageNumber: the query parameter Param counts pages from Start; an answer with no
	// items (or fewer than Size, once a page of Size items came) is the last page.
	PageNumber PagingKind = "page"
	// PageOffset: the query parameter Param is the number of items already read; an
	// answer with no items (or fewer than Size, once a page of Size items came) is the
	// last page.
	PageOffset PagingKind = "offset"
	// PageLink: the answer's Link header (RFC 8288) names the next page with rel="next";
	// it must be under the client's base URL. No such link is the last page.
	PageLink PagingKind = "link"
)

// Page bounds.
const (
	DefaultMaxPages = 100
	MaxMaxPages     = 100_000
)

// ErrTooManyPages ends a listing that did not reach its last page within MaxPages.
var ErrTooManyPages = errors.New("legacy: the listing has more pages than its max_pages")

// Paging is how a list call follows pages.
type Paging struct {
	Kind PagingKind
	// Param is the query parameter that carries the cursor, page number or offset.
	Param string
	// CursorPath is the gjson path of the next cursor in the body (PageCursor).
	CursorPath string
	// ItemsPath is the gjson path of the page's list of items: an empty list ends
	// page-number and offset paging, and an offset advances by its length. A page
	// without the list there ends the listing with an error.
	ItemsPath string
	// Start is the first page's number (PageNumber; default 1).
	Start int
	// Size, SizeParam: the page size, sent in SizeParam when set; a page with fewer items
	// is the last once a page of Size items came (0: only an empty page is). Before that a
	// short page may be the app's own cap on its page size, and the next page is read.
	Size      int
	SizeParam string
	// MaxPages bounds the pages read (default 100).
	MaxPages int
	// TotalPath, when set, is the gjson path of the app's count of every item of the
	// listing (a totalResults), which each page must hold: a total that changes from page
	// to page (the app changed while it was read: offset pages shift, and an item can be
	// skipped) or pages whose items do not add up to it end the listing with an error, so
	// that a listing which ends is known complete. Needs ItemsPath.
	TotalPath string
}

// Validate checks the paging's settings.
func (p *Paging) Validate() error {
	switch p.Kind {
	case PageCursor:
		if p.CursorPath == "" || p.Param == "" {
			return errors.New("cursor paging needs the cursor's path in the answer and the query parameter that sends it back")
		}
	case PageNumber, PageOffset:
		if p.Param == "" || p.ItemsPath == "" {
			return fmt.Errorf("%s paging needs the query parameter and the path of the page's items", p.Kind)
		}
	case PageLink:
	default:
		return fmt.Errorf("unknown paging %q; use cursor, page, offset or link", p.Kind)
	}
	switch {
	case p.MaxPages < 0 || p.MaxPages > MaxMaxPages:
		return fmt.Errorf("max_pages must be between 1 and %d", MaxMaxPages)
	case p.Size < 0 || p.Start < 0:
		return errors.New("size and start must not be negative")
	case p.SizeParam != "" && p.Size == 0:
		return errors.New("a size parameter needs the size")
	case p.TotalPath != "" && p.ItemsPath == "":
		return errors.New("a total is compared with the items the pages list: it needs the path of the page's items")
	}
	return nil
}

// PageError is a listing's failure at one of its pages: the call failed, or its answer
// cannot lead on (a page without its list, a next page read before, too many pages).
type PageError struct {
	Page int // the page's number in the walk, 1 for the first
	Err  error
}

func (e *PageError) Error() string { return fmt.Sprintf("page %d: %v", e.Page, e.Err) }
func (e *PageError) Unwrap() error { return e.Err }

// walk is where a listing is in its pages.
type walk struct {
	page, offset int
	// full: a page held Size items (or more), so the app honours the size asked for and a
	// page with fewer is the last. Until then a short page may be the app's own cap.
	full bool
	// probe: the page being read follows a short page before any full one: it is read
	// only to tell the app's cap from the end, and an app that refuses a page past its
	// last (pastEnd) has said the short page was the last.
	probe bool
	// items is the hash of the previous page's list of items (page and offset paging;
	// listed: there was one).
	items  uint64
	listed bool
	// total is the app's count of all items, as the first page gave it (TotalPath), and
	// read the number of items the pages have listed.
	total, read int64
}

// checkTotal checks a page against the listing's total (TotalPath): the page's total is
// the first page's, and after the last page (more false) the pages' items add up to it.
// Page and offset paging end at once when the items add up to the total (last).
func (p *Paging) checkTotal(w *walk, page int, body []byte, count int, more bool) (last bool, err error) {
	if p.TotalPath == "" {
		return false, nil
	}
	v := gjson.GetBytes(body, p.TotalPath)
	n, err := strconv.ParseInt(v.Raw, 10, 64)
	if v.Type == gjson.String {
		n, err = strconv.ParseInt(v.Str, 10, 64)
	}
	if !v.Exists() || err != nil || n < 0 {
		return false, fmt.Errorf("legacy: the page has no count of all items at %q (a whole number): the listing cannot be known complete", p.TotalPath)
	}
	if page == 1 {
		w.total = n
	} else if n != w.total {
		return false, fmt.Errorf("legacy: the app's count of all items went from %d (page 1) to %d: it changed while it was listed, and an item may have been skipped or listed twice; read it again", w.total, n)
	}
	w.read += int64(count)
	switch {
	case w.read > w.total:
		return false, fmt.Errorf("legacy: the pages have listed %d items where the app counts %d: an item was listed twice, or the count is not of this listing", w.read, w.total)
	case !more && w.read != w.total:
		return false, fmt.Errorf("legacy: it is the last, but the pages listed %d items where the app counts %d: the listing is not complete", w.read, w.total)
	}
	return more && w.read == w.total && (p.Kind == PageNumber || p.Kind == PageOffset), nil
}

// Pages makes r and then the call of each following page, yielding each answer in turn
// (so a listing of any length holds one page in memory). It ends after the last page, at
// the first error (a *PageError naming the page), or with ErrTooManyPages after MaxPages.
// A page that leads back to a page read before (a cursor or link that comes back, a page
// that lists what the one before it listed) ends the listing with an error rather than
// looping: such a listing proves nothing about the accounts it did not reach.
func (c *Client) Pages(ctx context.Context, r Request, p Paging) iter.Seq2[*Response, error] {
	return func(yield func(*Response, error) bool) {
		if err := p.Validate(); err != nil {
			yield(nil, fmt.Errorf("legacy: %w", err))
			return
		}
		maxPages := orDefault(p.MaxPages, DefaultMaxPages)
		w := &walk{page: orDefault(p.Start, 1)}
		req := r
		req.Path = p.firstPath(r.Path, w.page)
		seed := maphash.MakeSeed()
		read := map[uint64]int{maphash.String(seed, req.Path): 1} // each page's request, by hash: its number
		for n := 1; ; n++ {
			resp, err := c.Do(ctx, req)
			if err != nil && w.probe && pastEnd(resp, err) && p.TotalPath == "" {
				return // the short page before it was the last (with a total, the count tells)
			}
			if err != nil {
				yield(resp, &PageError{Page: n, Err: err})
				return
			}
			if !yield(resp, nil) {
				return
			}
			next, more, count, err := c.nextPath(p, req.Path, resp, w)
			if err == nil {
				var last bool
				if last, err = p.checkTotal(w, n, resp.Body, count, more); last {
					more = false // every item the app counts is read
				}
			}
			if err == nil && more {
				if k, ok := read[maphash.String(seed, next)]; ok {
					err = fmt.Errorf("legacy: its next page is page %d again: the app's paging leads back instead of on", k)
				} else if n >= maxPages {
					err = fmt.Errorf("%w (%d)", ErrTooManyPages, maxPages)
				}
			}
			switch {
			case err != nil:
				yield(nil, &PageError{Page: n, Err: err})
				return
			case !more:
				return
			}
			read[maphash.String(seed, next)] = n + 1
			req.Path = next
		}
	}
}

// firstPath adds the first page's parameters.
func (p *Paging) firstPath(path string, page int) string {
	set := map[string]string{}
	if p.SizeParam != "" {
		set[p.SizeParam] = strconv.Itoa(p.Size)
	}
	switch p.Kind {
	case PageNumber:
		set[p.Param] = strconv.Itoa(page)
	case PageOffset:
		set[p.Param] = "0"
	}
	return withQuery(path, set)
}

// nextPath computes the next page's path from an answer; more is false after the last.
func (c *Client) nextPath(p Paging, path string, resp *Response, w *walk) (next string, more bool, count int, err error) {
	count = -1
	var items gjson.Result
	if p.ItemsPath != "" {
		items = gjson.GetBytes(resp.Body, p.ItemsPath)
		if !gjson.ValidBytes(resp.Body) || !items.IsArray() {
			// A page without its list (a proxy's {}) is no empty last page: it proves nothing.
			return "", false, count, fmt.Errorf("legacy: the page's items at %q are not a list", p.ItemsPath)
		}
		count = len(items.Array())
	}
	switch p.Kind {
	case PageCursor:
		if !gjson.ValidBytes(resp.Body) {
			return "", false, count, errors.New("legacy: a cursor page's answer is not JSON")
		}
		cur := gjson.GetBytes(resp.Body, p.CursorPath)
		if !cur.Exists() || cur.Type == gjson.Null || cur.String() == "" || (cur.IsObject() || cur.IsArray()) {
			return "", false, count, nil
		}
		return withQuery(path, map[string]string{p.Param: cur.String()}), true, count, nil
	case PageNumber, PageOffset:
		if count == 0 {
			return "", false, count, nil
		}
		if p.Size > 0 && count < p.Size && w.full {
			return "", false, count, nil // the app gives size items a page: fewer is the last
		}
		// A short page before any full one may be the app's cap on its page size (it asks
		// for 100 and gets 50 a page): the next page tells, and only an empty one ends (or
		// the app's refusal of a page past its last: pastEnd).
		w.probe = p.Size > 0 && count < p.Size && !w.full
		w.full = w.full || (p.Size > 0 && count >= p.Size)
		h := maphash.String(listSeed, items.Raw)
		if w.listed && w.items == h {
			return "", false, count, errors.New("legacy: it lists the very items of the page before it: the app's paging does not advance (an app that does not page at all answers every page alike: take \"paging\" out of its list call)")
		}
		w.items, w.listed = h, true
		if p.Kind == PageNumber {
			w.page++
			return withQuery(path, map[string]string{p.Param: strconv.Itoa(w.page)}), true, count, nil
		}
		w.offset += count
		return withQuery(path, map[string]string{p.Param: strconv.Itoa(w.offset)}), true, count, nil
	}
	link := nextLink(resp.Header.Values("Link"))
	if link == "" {
		return "", false, count, nil
	}
	next, err = c.relativePath(path, link)
	return next, err == nil, count, err
}

// listSeed hashes pages' lists of items (compared with the page before only).
var listSeed = maphash.MakeSeed()

// relativePath turns a next link into a path under the base URL. A relative link is
// relative to the page that gave it (from, the path of that page's call), as RFC 8288
// says of a Link's target: "?page=2" is the same list's next page.
func (c *Client) relativePath(from, link string) (string, error) {
	page, err := url.Parse(c.baseStr + "/" + strings.TrimPrefix(from, "/"))
	if err != nil {
		return "", errors.New("legacy: the page's own URL does not parse")
	}
	u, err := page.Parse(link)
	if err != nil || !sameOrigin(u, c.base) || !strings.HasPrefix(u.EscapedPath(), c.base.EscapedPath()+"/") {
		return "", errors.New("legacy: the next page's link leads outside the app's base URL")
	}
	p := strings.TrimPrefix(u.EscapedPath(), c.base.EscapedPath())
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p, nil
}

// withQuery sets query parameters of a path: a parameter of set replaces the path's own
// of that name, added at the end; the rest of the query is kept as written (parsing and
// encoding it again would change it: Go's parser refuses a ";", and "%20" would become
// "+", which not every app reads as a space).
func withQuery(path string, set map[string]string) string {
	if len(set) == 0 {
		return path
	}
	base, raw, _ := strings.Cut(path, "?")
	var parts []string
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, _, _ := strings.Cut(part, "=")
		if name, err := url.QueryUnescape(k); err == nil {
			if _, replaced := set[name]; replaced {
				continue
			}
		}
		parts = append(parts, part)
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(set[k]))
	}
	return base + "?" + strings.Join(parts, "&")
}

// nextLink finds the target of rel="next" in Link headers (RFC 8288).
func nextLink(values []string) string {
	for _, v := range values {
		for _, part := range splitLinks(v) {
			part = strings.TrimSpace(part)
			if !strings.HasPrefix(part, "<") {
				continue
			}
			end := strings.IndexByte(part, '>')
			if end < 0 {
				continue
			}
			for _, param := range strings.Split(part[end+1:], ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(param), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
					continue
				}
				for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(val), `"`)) {
					if strings.EqualFold(rel, "next") {
						return part[1:end]
					}
				}
			}
		}
	}
	return ""
}

// splitLinks splits a Link header at the commas between links (not those inside <...>
// or quoted strings).
func splitLinks(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '<':
			if !quoted {
				depth++
			}
		case '>':
			if !quoted && depth > 0 {
				depth--
			}
		case '"':
			quoted = !quoted
		case ',':
			if depth == 0 && !quoted {
				out = append(out, v[start:i])
				start = i + 1
			}
		}
	}
	return append(out, v[start:])
}

// pastEnd reports whether err is an app's own refusal of a page past its last: 404, 400,
// 410, 416 or 422, answered in JSON or with no body (APIs that answer an out-of-range page
// so rather than with an empty list; a proxy's HTML 404 is not one). Pages takes it for
// the end only for a page read to tell a cap from the end: anywhere else a refused page is
// a failed listing.
func pastEnd(resp *Response, err error) bool {
	var le *Error
	if !errors.As(err, &le) || le.Kind != KindStatus || resp == nil {
		return false
	}
	switch le.Status {
	case 400, 404, 410, 416, 422:
	default:
		return false
	}
	body := bytes.TrimSpace(resp.Body)
	return len(body) == 0 || ((body[0] == '{' || body[0] == '[') && gjson.ValidBytes(body))
}
