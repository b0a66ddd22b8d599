package demoapp

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Page sizes of the list endpoints.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

// pageRequest is the parsed cursor and limit of a list call.
type pageRequest struct {
	after int64 // the last id of the previous page; 0 for the first page
	limit int
}

// parsePage reads cursor and limit. A cursor is opaque to clients: base64url of
// "<scope>:<last id>", where scope names the list it belongs to, so that a cursor of one
// list handed to another is refused instead of silently skipping records.
func parsePage(q url.Values, scope string) (pageRequest, *apiError) {
	p := pageRequest{limit: defaultPageSize}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return p, invalid("limit must be an integer from 1 to %d, not %q", maxPageSize, v)
		}
		p.limit = n
	}
	if c := q.Get("cursor"); c != "" {
		after, ok := decodeCursor(c, scope)
		if !ok {
			return p, errorf(http.StatusBadRequest, CodeInvalidCursor, "cursor %q is not a cursor of this list; start again without one", truncate(c, 64))
		}
		p.after = after
	}
	return p, nil
}

func encodeCursor(scope string, last int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(scope + ":" + strconv.FormatInt(last, 10)))
}

func decodeCursor(c, scope string) (int64, bool) {
	if len(c) > 128 {
		return 0, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	s, idText, ok := strings.Cut(string(raw), ":")
	if !ok || s != scope {
		return 0, false
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id < 1 {
		return 0, false
	}
	return id, true
}

// newPage wraps items; when more follow, next_cursor points after the last one.
func newPage[T any](items []T, more bool, scope string, idOf func(T) int64) Page[T] {
	p := Page[T]{Items: items}
	if more && len(items) > 0 {
		c := encodeCursor(scope, idOf(items[len(items)-1]))
		p.NextCursor = &c
	}
	return p
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
