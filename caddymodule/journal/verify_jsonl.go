package journal

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/tidwall/gjson"
)

// maxJSONLLine bounds one line of a JSONL export: a record line is at most a record
// (MaxRecordBytes) plus its envelope.
const maxJSONLLine = MaxRecordBytes + 4096

// VerifyJSONL re-verifies a JSONL export: it recomputes the hash chain from the header's
// anchor over the embedded record bytes, checks the checkpoint lines (and their signatures,
// each made by one of keys, when any is given) and the end line, and names the first bad
// sequence number. For a filtered export (header "filtered": true) gaps are allowed: each
// record is still checked against its hash, and Report.Partial says the links across gaps
// could not be.
func VerifyJSONL(ctx context.Context, r io.Reader, keys ...ed25519.PublicKey) (*Report, error) {
	lr := newLineReader(r)
	first, err := lr.next()
	if err != nil {
		return nil, fmt.Errorf("reading the header line: %w", err)
	}
	var hdr jsonlHeader
	if err := json.Unmarshal(first, &hdr); err != nil || hdr.Format != JSONLFormatName {
		return nil, fmt.Errorf("not a scimgate journal JSONL export: the first line is not its header")
	}
	if hdr.Version > FormatVersion {
		return nil, fmt.Errorf("export format %d is newer than this binary's %d", hdr.Version, FormatVersion)
	}
	v := &jsonlVerifier{lr: lr, filtered: hdr.Filtered}
	var anchorPrev [32]byte
	anchorSeq := uint64(1)
	missingPrev := false
	if hdr.Anchor != nil {
		anchorSeq = hdr.Anchor.Seq
		// An empty prev_hash is the exporter's: the journal lacked the record before the
		// export's first (see anchorOf).
		missingPrev = hdr.Anchor.PrevHash == "" && anchorSeq > 1
		if anchorPrev, err = decodeHash(hdr.Anchor.PrevHash); err != nil && !missingPrev {
			return nil, fmt.Errorf("header anchor: %w", err)
		}
	}
	v.c = newChain(hdr.Journal, keys, anchorSeq, anchorPrev)
	if missingPrev {
		v.c.fail(anchorSeq-1, KindDeleted,
			"the export starts at record %d, but the journal it came from had no record %d to continue from", anchorSeq, anchorSeq-1)
		return v.c.finish(), nil
	}
	if err := v.run(ctx); err != nil {
		return nil, err
	}
	return v.c.finish(), nil
}

// jsonlVerifier walks the lines after the header.
type jsonlVerifier struct {
	lr       *lineReader
	c        *chain
	filtered bool
	lines    uint64 // record lines seen
	lastSeq  uint64
}

func (v *jsonlVerifier) run(ctx context.Context) error {
	for v.c.rep.FirstBad == nil {
		if v.lines%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line, err := v.lr.next()
		if err == io.EOF {
			v.c.fail(v.c.next, KindTruncated, "the export ends without its end line")
			return nil
		}
		if err != nil {
			return err
		}
		if !gjson.ValidBytes(line) {
			v.c.fail(v.c.next, KindMalformed, "a line after record %d is not JSON", v.lastSeq)
			return nil
		}
		f := gjson.GetManyBytes(line, "record", "checkpoint", "end")
		switch {
		case f[0].Exists():
			v.record(line, f[0])
		case f[1].Exists():
			v.checkpoint(f[1])
		case f[2].Exists():
			v.end(f[2])
			return nil
		default:
			v.c.fail(v.c.next, KindMalformed, "a line after record %d is neither a record, a checkpoint nor the end", v.lastSeq)
		}
	}
	return nil
}

func (v *jsonlVerifier) record(line []byte, rec gjson.Result) {
	f := gjson.GetManyBytes(line, "seq", "hash")
	seq := f[0].Uint()
	h, err := decodeHash(f[1].Str)
	if seq == 0 || err != nil || rec.Type != gjson.JSON {
		v.c.fail(v.c.next, KindMalformed, "the record line after record %d lacks its seq, hash or record", v.lastSeq)
		return
	}
	raw := []byte(rec.Raw)
	v.lines++
	if !v.inSequence(seq, raw) {
		return
	}
	v.lastSeq = seq
	v.c.record(seq, h, raw)
}

// inSequence checks seq against the sequence number the chain expects, allowing gaps in a
// filtered export (restarting the chain from the record's own prev_hash).
func (v *jsonlVerifier) inSequence(seq uint64, raw []byte) bool {
	c := v.c
	switch {
	case seq == c.next:
		return true
	case seq < c.next:
		c.fail(seq, KindReordered, "record %d appears after record %d", seq, v.lastSeq)
		return false
	case v.filtered:
		prev, err := decodeHash(gjson.GetBytes(raw, "prev_hash").Str)
		if err != nil {
			c.fail(seq, KindModified, "record %d has no valid prev_hash", seq)
			return false
		}
		c.next, c.prev, c.rep.Partial = seq, prev, true
		return true
	case v.lr.peekSeq() == c.next:
		c.fail(c.next, KindReordered, "record %d comes after record %d", c.next, seq)
		return false
	default:
		c.fail(c.next, KindDeleted, "records %d to %d are missing", c.next, seq-1)
		return false
	}
}

func (v *jsonlVerifier) checkpoint(res gjson.Result) {
	var cp Checkpoint
	if err := json.Unmarshal([]byte(res.Raw), &cp); err != nil {
		v.c.fail(v.c.next, KindMalformed, "the checkpoint line after record %d is not a checkpoint", v.lastSeq)
		return
	}
	if _, err := decodeHash(cp.Hash); err != nil {
		seq := cp.Seq
		if seq == 0 {
			seq = v.c.next
		}
		v.c.fail(seq, KindMalformed, "the checkpoint line after record %d has no valid hash%s", v.lastSeq, errNote(res))
		return
	}
	v.c.checkpoint(cp)
}

// end checks the end line against what the lines delivered, so a cut export is caught.
func (v *jsonlVerifier) end(res gjson.Result) {
	var e jsonlEnd
	if err := json.Unmarshal([]byte(res.Raw), &e); err != nil {
		v.c.fail(v.c.next, KindMalformed, "the end line is malformed")
		return
	}
	lastHash := ""
	if v.lines > 0 {
		lastHash = hex.EncodeToString(v.c.prev[:])
	}
	switch {
	case e.Records == v.lines && e.LastSeq == v.lastSeq && e.LastHash != lastHash && e.LastHash != "" && v.lines > 0:
		// The exporter writes the journal's head here when the records do not reach it.
		v.c.fail(v.lastSeq, KindHeadMismatch,
			"the end line's hash of record %d is not the hash the chain reaches", v.lastSeq)
		return
	case e.LastSeq > v.lastSeq && e.Records == v.lines:
		v.c.fail(v.lastSeq+1, KindTruncated,
			"the end line names record %d as the last, but the records end at %d", e.LastSeq, v.lastSeq)
		return
	case e.Records != v.lines || e.LastSeq != v.lastSeq || e.LastHash != lastHash:
		v.c.fail(v.lastSeq+1, KindTruncated,
			"the end line lists %d records up to %d, the export holds %d up to %d", e.Records, e.LastSeq, v.lines, v.lastSeq)
		return
	}
	if extra, err := v.lr.next(); err != io.EOF && len(bytes.TrimSpace(extra)) > 0 {
		v.c.fail(v.lastSeq+1, KindMalformed, "lines follow the end line")
	}
}

// lineReader reads bounded lines with one line of lookahead.
type lineReader struct {
	sc      *bufio.Scanner
	pending []byte
	hasPend bool
}

func newLineReader(r io.Reader) *lineReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxJSONLLine)
	return &lineReader{sc: sc}
}

// next returns the next line; it is valid until the following call.
func (l *lineReader) next() ([]byte, error) {
	if l.hasPend {
		l.hasPend = false
		return l.pending, nil
	}
	if l.sc.Scan() {
		return l.sc.Bytes(), nil
	}
	if err := l.sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the export: %w", err)
	}
	return nil, io.EOF
}

// peekSeq returns the seq of the next line if it is a record line (0 otherwise), without
// consuming it.
func (l *lineReader) peekSeq() uint64 {
	if !l.hasPend {
		if !l.sc.Scan() {
			return 0
		}
		l.pending = append(l.pending[:0], l.sc.Bytes()...)
		l.hasPend = true
	}
	return gjson.GetBytes(l.pending, "seq").Uint()
}

// errNote quotes the error an exporter wrote into a checkpoint line it could not fill.
func errNote(res gjson.Result) string {
	if e := res.Get("error").Str; e != "" {
		return ": " + truncate(e, 200)
	}
	return ""
}
