package scim

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// MaxIDBytes bounds the resource ids the gateway accepts, in a URL, a filter or a member
// reference. Its own ids are UUIDs (36 bytes); 256 leaves room for ids minted elsewhere (a
// directory migrated with its ids, a longer format later) and is still far below what the
// store can key (8 KiB), so no id the store would refuse, with a storage error, reaches it.
const MaxIDBytes = 256

// IDProblem returns why id cannot name a resource, or "" when it can: an id is non-empty,
// at most MaxIDBytes long, valid UTF-8, and free of control characters (NUL included).
// The length is checked first, so a huge id costs nothing more.
func IDProblem(id string) string {
	switch {
	case id == "":
		return "an id cannot be empty"
	case len(id) > MaxIDBytes:
		return fmt.Sprintf("ids are at most %d bytes, this one has %d", MaxIDBytes, len(id))
	case !utf8.ValidString(id):
		return "ids are UTF-8 text, this one is not"
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Sprintf("ids hold no control characters, this one holds U+%04X", r)
		}
	}
	return ""
}

// QuoteForDetail quotes s Go style (control characters and invalid UTF-8 escaped), cut to
// 64 bytes with an ellipsis, so that any client-chosen string is safe to put in an error
// detail, a log or a journal record.
func QuoteForDetail(s string) string { return quoteCut(s, 64) }

// quoteCut quotes s Go style, cut to limit bytes (at a rune boundary) with an ellipsis.
func quoteCut(s string, limit int) string {
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}
