package legacy

import (
	"bytes"
	"mime"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"
)

// utf8BOM is the UTF-8 byte order mark.
var utf8BOM = []byte("\xEF\xBB\xBF")

// asUTF8 is an answer's body as UTF-8 text, which every reader of it (the answer's check,
// gjson, the error message) expects:
//
//   - a body in the charset its Content-Type declares (an older PHP or Java app's
//     ISO-8859-1 or windows-1252, a UTF-16 one) is decoded. An 8-bit charset is decoded
//     only when the body is not valid UTF-8 already: apps often label UTF-8 as
//     ISO-8859-1, and text in ISO-8859-1 beyond ASCII is almost never valid UTF-8. A
//     charset the gateway does not know leaves the body as it is.
//   - a byte order mark is dropped (RFC 8259 §8.1 lets a parser ignore it): apps on some
//     stacks (.NET, PowerShell) put one before their JSON, which would otherwise make
//     every answer "not JSON", an outage without end. A UTF-16 one says the encoding,
//     whatever the label says (as browsers read it).
//
// Decoding at most triples the size (a windows-1252 byte is at most 3 bytes of UTF-8).
func asUTF8(contentType string, body []byte) []byte {
	// A UTF-16 byte order mark says the encoding whatever the label does; a UTF-8 one is
	// dropped, and the label still decides what follows it when that is not UTF-8 (a BOM
	// written before ISO-8859-1 text by an app that writes its body in two steps).
	switch {
	case bytes.HasPrefix(body, utf8BOM):
		body = body[len(utf8BOM):]
	case bytes.HasPrefix(body, []byte{0xFF, 0xFE}):
		contentType = "application/json; charset=utf-16le"
	case bytes.HasPrefix(body, []byte{0xFE, 0xFF}):
		contentType = "application/json; charset=utf-16be"
	}
	if cs := charsetOf(contentType); cs != "" {
		if enc, err := htmlindex.Get(cs); err == nil {
			name, _ := htmlindex.Name(enc)
			wide := strings.HasPrefix(name, "utf-16")
			if name != "utf-8" && (wide || !utf8.Valid(body)) {
				if out, err := enc.NewDecoder().Bytes(body); err == nil {
					body = out
				}
			}
		}
	}
	return bytes.TrimPrefix(body, utf8BOM)
}

// charsetOf is the charset parameter of a Content-Type, lower-cased; "" when there is
// none, or when it names ASCII (often a label for UTF-8, and a subset of it anyway).
func charsetOf(contentType string) string {
	if contentType == "" {
		return ""
	}
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	cs := strings.ToLower(strings.TrimSpace(params["charset"]))
	switch cs {
	case "us-ascii", "ascii", "utf-8", "utf8":
		return ""
	}
	return cs
}

// MaxAnswerDepth bounds the nesting of an answer's JSON. gjson's validation, which the
// mapping runs on a create's answer and a lookup's or a listing's pages, recurses once
// per level: a 4 MiB answer of nested lists would take hundreds of MB of stack, and a
// larger one overflow it, which kills the process.
const MaxAnswerDepth = 512

// jsonDeeperThan reports whether body, read as JSON, nests objects and lists deeper than
// max (brackets inside strings do not count). One pass, no recursion; it does not
// validate the JSON.
func jsonDeeperThan(body []byte, max int) bool {
	depth, inString := 0, false
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case inString && c == '\\':
			i++
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > max {
				return true
			}
		case (c == ']' || c == '}') && depth > 0:
			depth--
		}
	}
	return false
}
