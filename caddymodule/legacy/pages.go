package legacy

import (
	"context"
	"errors"
	"fmt"
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
	// items (or fewer than Size) is the last page.
	PageNumber PagingKind = "page"
	// PageOffset: the query parameter Param is the number of items already read; an
	// answer with no items (or fewer than Size) is the last page.
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
	// is the last (0: only an empty page is).
	Size      int
	SizeParam string
	// MaxPages bounds the pages read (default 100).
	MaxPages int
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
	}
	return nil
}

// Pages makes r and then the call of each following page, yielding each answer in turn
// (so a listing of any length holds one page in memory). It ends after the last page, at
// the first error, or with ErrTooManyPages after MaxPages. A page that leads back to the
// same request ends the listing with an error rather than looping.
func (c *Client) Pages(ctx context.Context, r Request, p Paging) iter.Seq2[*Response, error] {
	return func(yield func(*Response, error) bool) {
		if err := p.Validate(); err != nil {
			yield(nil, fmt.Errorf("legacy: %w", err))
			return
		}
		maxPages := orDefault(p.MaxPages, DefaultMaxPages)
		page, offset := orDefault(p.Start, 1), 0
		req := r
		req.Path = p.firstPath(r.Path, page)
		for n := 1; ; n++ {
			resp, err := c.Do(ctx, req)
			if !yield(resp, err) || err != nil {
				return
			}
			next, more, err := c.nextPath(p, req.Path, resp, &page, &offset)
			switch {
			case err != nil:
				yield(nil, err)
				return
			case !more:
				return
			case next == req.Path:
				yield(nil, errors.New("legacy: the next page is the page just read; the app's paging does not advance"))
				return
			case n >= maxPages:
				yield(nil, ErrTooManyPages)
				return
			}
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
func (c *Client) nextPath(p Paging, path string, resp *Response, page, offset *int) (string, bool, error) {
	count := -1
	if p.ItemsPath != "" {
		items := gjson.GetBytes(resp.Body, p.ItemsPath)
		if !gjson.ValidBytes(resp.Body) || !items.IsArray() {
			// A page without its list (a proxy's {}) is no empty last page: it proves nothing.
			return "", false, fmt.Errorf("legacy: the page's items at %q are not a list", p.ItemsPath)
		}
		count = len(items.Array())
	}
	lastBySize := count == 0 || (p.Size > 0 && count >= 0 && count < p.Size)
	switch p.Kind {
	case PageCursor:
		if !gjson.ValidBytes(resp.Body) {
			return "", false, errors.New("legacy: a cursor page's answer is not JSON")
		}
		cur := gjson.GetBytes(resp.Body, p.CursorPath)
		if !cur.Exists() || cur.Type == gjson.Null || cur.String() == "" || (cur.IsObject() || cur.IsArray()) {
			return "", false, nil
		}
		return withQuery(path, map[string]string{p.Param: cur.String()}), true, nil
	case PageNumber:
		if lastBySize {
			return "", false, nil
		}
		*page++
		return withQuery(path, map[string]string{p.Param: strconv.Itoa(*page)}), true, nil
	case PageOffset:
		if lastBySize {
			return "", false, nil
		}
		*offset += count
		return withQuery(path, map[string]string{p.Param: strconv.Itoa(*offset)}), true, nil
	}
	link := nextLink(resp.Header.Values("Link"))
	if link == "" {
		return "", false, nil
	}
	next, err := c.relativePath(path, link)
	return next, err == nil, err
}

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
