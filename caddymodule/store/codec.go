package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// recordEncoding is the first byte of every stored record, so the layout can evolve per value.
const recordEncoding byte = 1

// Index entry flags, stored as the index key's value.
const flagUnique byte = 1

// sep separates the components of composite keys. Types, ids and attribute names may not
// contain it; index values may, and are escaped (see escapeValue).
const sep = 0

// encodeRecord lays out a record as: encoding byte, created (varint seconds, uvarint nanos),
// lastModified (same), version (uvarint), index entry count (uvarint), each entry as
// (uvarint length, attr, uvarint length, value, flags byte), then the document verbatim.
// Type and ID are not stored: they are the record's bucket and key.
func encodeRecord(rec *Record) []byte {
	n := 1 + 4*binary.MaxVarintLen64 + binary.MaxVarintLen64*2 + len(rec.Doc)
	for _, e := range rec.Index {
		n += 2*binary.MaxVarintLen64 + len(e.Attr) + len(e.Value) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, recordEncoding)
	b = appendTime(b, rec.Created)
	b = appendTime(b, rec.LastModified)
	b = binary.AppendUvarint(b, rec.Version)
	b = binary.AppendUvarint(b, uint64(len(rec.Index)))
	for _, e := range rec.Index {
		b = appendString(b, e.Attr)
		b = appendString(b, e.Value)
		var flags byte
		if e.Unique {
			flags = flagUnique
		}
		b = append(b, flags)
	}
	return append(b, rec.Doc...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads an encoded value, remembering the first error so decode functions read
// straight through and check once. Every read is bounds-checked: a corrupt file yields an
// error, never a panic.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or malformed %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte(what string) byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// string copies a length-prefixed string out of the (possibly mmapped) buffer.
func (d *decoder) string(what string) string {
	n := d.uvarint(what)
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail(what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) time(what string) time.Time {
	sec := d.varint(what)
	nsec := d.uvarint(what)
	if nsec >= uint64(time.Second) {
		d.fail(what)
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// decodeRecord decodes a stored record into a fresh Record whose slices and strings are
// copies, safe to keep after the transaction ends.
func decodeRecord(typ, id string, v []byte) (*Record, error) {
	d := decoder{b: v}
	if enc := d.byte("record encoding"); d.err == nil && enc != recordEncoding {
		return nil, fmt.Errorf("%w: %s %s has record encoding %d", ErrCorrupt, typ, id, enc)
	}
	rec := &Record{Type: typ, ID: id}
	rec.Created = d.time("created")
	rec.LastModified = d.time("lastModified")
	rec.Version = d.uvarint("version")
	n := d.uvarint("index count")
	// Each entry takes at least three bytes, which bounds the allocation by the value size.
	if d.err == nil && n > uint64(len(d.b))/3 {
		d.fail("index count")
	}
	if n > 0 && d.err == nil {
		rec.Index = make([]IndexEntry, 0, n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		e := IndexEntry{Attr: d.string("index attr"), Value: d.string("index value")}
		e.Unique = d.byte("index flags")&flagUnique != 0
		rec.Index = append(rec.Index, e)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decoding %s %s: %w", typ, id, d.err)
	}
	rec.Doc = bytes.Clone(d.b)
	if rec.Doc == nil {
		rec.Doc = []byte{}
	}
	return rec, nil
}

// encodeMember stores a member edge's value: (uvarint length, type, display).
func encodeMember(m Member) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(m.Type)+len(m.Display))
	b = appendString(b, m.Type)
	return append(b, m.Display...)
}

// memberEncoded reports whether v is encodeMember(m), without encoding m.
func memberEncoded(v []byte, m Member) bool {
	n, k := binary.Uvarint(v)
	return k > 0 && n == uint64(len(m.Type)) && uint64(len(v)-k) == n+uint64(len(m.Display)) &&
		string(v[k:k+len(m.Type)]) == m.Type && string(v[k+len(m.Type):]) == m.Display
}

func decodeMember(id string, v []byte) (Member, error) {
	d := decoder{b: v}
	m := Member{ID: id, Type: d.string("member type")}
	if d.err != nil {
		return Member{}, fmt.Errorf("decoding member %s: %w", id, d.err)
	}
	m.Display = string(d.b)
	return m, nil
}

func encodeUint64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

// checkName rejects what cannot be a key component: empty names and names containing the
// separator. what names the component in the error.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalidKey, what)
	}
	if strings.IndexByte(s, sep) >= 0 {
		return fmt.Errorf("%w: %s %q contains a NUL byte", ErrInvalidKey, what, s)
	}
	if len(s) > kv.MaxKeySize/4 {
		return fmt.Errorf("%w: %s is %d bytes long (at most %d)", ErrInvalidKey, what, len(s), kv.MaxKeySize/4)
	}
	return nil
}

// joinKey concatenates key components with the separator.
func joinKey(parts ...string) []byte {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, sep)
		}
		b = append(b, p...)
	}
	return b
}

// indexPrefix is the key prefix shared by all ids holding (typ, attr, value): the value is
// folded and escaped, and the prefix ends with the separator so that the id follows it.
func indexPrefix(typ, attr, value string) []byte {
	b := joinKey(typ, attr, escapeValue(fold(value)))
	return append(b, sep)
}

// indexKey is the full index key of one entry of record id.
func indexKey(typ, attr, value, id string) []byte {
	return append(indexPrefix(typ, attr, value), id...)
}

// escapeValue removes NUL bytes from an index value so a value can never be confused with the
// separator that precedes the id: 0x00 becomes 0x01 0x01 and 0x01 becomes 0x01 0x02. The
// mapping is injective, so distinct values keep distinct keys.
func escapeValue(s string) string {
	if strings.IndexByte(s, 0) < 0 && strings.IndexByte(s, 1) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b.WriteString("\x01\x01")
		case 1:
			b.WriteString("\x01\x02")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FoldName is the key under which the uniqueness index files a userName or a group's
// displayName: two names share it exactly when strings.EqualFold says they are equal. The
// engine locks names by it, so that the names it serialises are those the index equates.
func FoldName(s string) string { return fold(s) }

// fold case-folds s for case-insensitive index keys, agreeing with strings.EqualFold. It keeps
// invalid UTF-8 bytes as they are, so two different invalid values never fold to the same
// key (strings.ToLower would turn both into U+FFFD).
func fold(s string) string {
	if isFoldedASCII(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteByte(s[i])
		} else {
			b.WriteRune(foldRune(r))
		}
		i += size
	}
	return b.String()
}

// foldRune maps r to the smallest rune of its simple case-folding orbit, so two runes get
// the same key exactly when strings.EqualFold says they are equal ("s", "S" and the long
// "ſ" share one key; the dotted "İ" keeps its own, as EqualFold does not equate it with
// "i"). Filters compare with EqualFold, so the index must agree with them.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf { // an upper-case ASCII letter is the minimum of its orbit
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < m {
			m = f
		}
	}
	return m
}

// isFoldedASCII reports whether s is ASCII without lower-case letters: already its own fold.
func isFoldedASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || ('a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
