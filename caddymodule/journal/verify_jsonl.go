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

	"github.com/scimgate/scimgate/caddymodule/change"
)

// maxJSONLLine bounds one line of a JSONL export: a record line is at most a record
// (MaxRecordBytes) plus its envelope.
const maxJSONLLine = MaxRecordBytes + 4096

// JSONLOptions is what an auditor expects of a JSONL export.
type JSONLOptions struct {
	// Keys are the public keys trusted to sign checkpoints (none: signatures are not
	// checked, and nothing is said about what they cover).
	Keys []ed25519.PublicKey
	// Subset accepts a filtered export (header "filtered": true, with the query that
	// selected its records): gaps in its sequence numbers are then the records its filter
	// left out. The header is the file's word, which anyone can edit: without Subset a gap
	// is a deleted record, whatever the header says.
	Subset bool
	// Journal, when set, is the journal the export must be of.
	Journal string
}

// VerifyJSONL re-verifies a whole JSONL export: it recomputes the hash chain from the
// header's anchor over the embedded record bytes, checks the checkpoint lines (and their
// signatures, each made by one of keys, when any is given) and the end line, and names the
// first bad sequence number. A gap in the sequence numbers is a deleted record, also in an
// export whose header says it is filtered (see VerifyJSONLWith and JSONLOptions.Subset).
func VerifyJSONL(ctx context.Context, r io.Reader, keys ...ed25519.PublicKey) (*Report, error) {
	return VerifyJSONLWith(ctx, r, JSONLOptions{Keys: keys})
}

// VerifyJSONLWith is VerifyJSONL with options. For a subset (o.Subset and a filtered
// export) gaps are allowed: each record must still match the header's filter and its own
// hash, the records up to a checkpoint are checked against it, and Report.Partial says the
// links across gaps could not be: a subset cannot show that no record was left out.
func VerifyJSONLWith(ctx context.Context, r io.Reader, o JSONLOptions) (*Report, error) {
	lr := newLineReader(r)
	first, err := lr.next()
	if err != nil {
		return nil, fmt.Errorf("reading the header line: %w", err)
	}
	var hdr jsonlHeader
	if err := json.Unmarshal(first, &hdr); err != nil || hdr.Format != JSONLFormatName {
		if gjson.GetBytes(first, "class_uid").Exists() {
			return nil, fmt.Errorf("an OCSF export cannot be verified (it does not carry the stored records and checkpoints): verify a JSONL export or a backup")
		}
		return nil, fmt.Errorf("not a scimgate journal JSONL export: the first line is not its header")
	}
	if hdr.Version > FormatVersion {
		return nil, fmt.Errorf("export format %d is newer than this binary's %d", hdr.Version, FormatVersion)
	}
	if o.Journal != "" && hdr.Journal != o.Journal {
		return nil, fmt.Errorf("the export is of journal %q, not %q", truncate(hdr.Journal, 100), truncate(o.Journal, 100))
	}
	v := &jsonlVerifier{lr: lr, flagged: hdr.Filtered}
	if hdr.Filtered && o.Subset {
		v.subset = true
		v.q = hdr.Query.query()
	}
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
	v.c = newChain(hdr.Journal, o.Keys, anchorSeq, anchorPrev)
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

// query is the filter a filtered export's header says selected its records.
func (jq *jsonlQuery) query() Query {
	if jq == nil {
		return Query{}
	}
	q := Query{FromSeq: jq.FromSeq, ToSeq: jq.ToSeq, SCIMID: jq.SCIMID, Subject: jq.Subject, Outcome: change.Outcome(jq.Outcome)}
	if jq.FromTime != nil {
		q.FromTime = *jq.FromTime
	}
	if jq.ToTime != nil {
		q.ToTime = *jq.ToTime
	}
	return q
}

// jsonlVerifier walks the lines after the header.
type jsonlVerifier struct {
	lr      *lineReader
	c       *chain
	flagged bool   // the header says filtered
	subset  bool   // flagged, and verified as a subset: gaps allowed
	q       Query  // a subset's filter, from its header
	lines   uint64 // record lines seen
	lastSeq uint64
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
	if v.subset && !v.q.filtered() {
		v.c.fail(seq, KindMalformed, "the header says the export is filtered but names no filter")
		return
	}
	if v.subset && (!v.q.matches(raw) || v.q.FromSeq != 0 && seq < v.q.FromSeq || v.q.ToSeq != 0 && seq > v.q.ToSeq) {
		v.c.fail(seq, KindMalformed, "record %d is not one the export's filter selects", seq)
		return
	}
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
	case v.subset:
		prev, err := decodeHash(gjson.GetBytes(raw, "prev_hash").Str)
		if err != nil {
			c.fail(seq, KindModified, "record %d has no valid prev_hash", seq)
			return false
		}
		c.gap()
		c.next, c.prev, c.rep.Partial = seq, prev, true
		return true
	case v.lr.peekSeq() == c.next:
		c.fail(c.next, KindReordered, "record %d comes after record %d", c.next, seq)
		return false
	default:
		note := ""
		if v.flagged {
			note = "; the header says the export is filtered: if you asked for a filtered export, verify it as a subset (--subset), " +
				"which cannot show that no record was left out"
		}
		c.fail(c.next, KindDeleted, "records %d to %d are missing%s", c.next, seq-1, note)
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
