package journal

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// Query selects records for export. Zero fields do not filter; all set fields must match.
type Query struct {
	// FromTime (inclusive) and ToTime (exclusive) bound the record time.
	FromTime, ToTime time.Time
	// FromSeq and ToSeq bound the sequence number, both inclusive.
	FromSeq, ToSeq uint64
	// SCIMID matches exactly; Subject (userName or displayName) case-insensitively;
	// Outcome exactly.
	SCIMID, Subject string
	Outcome         change.Outcome
}

// filtered reports whether the query can leave gaps in the sequence numbers it selects
// (a time range can, when clocks stepped back).
func (q Query) filtered() bool {
	return !q.FromTime.IsZero() || !q.ToTime.IsZero() || q.SCIMID != "" || q.Subject != "" || q.Outcome != ""
}

// matches applies the field filters to a stored record.
func (q Query) matches(raw []byte) bool {
	if !q.filtered() {
		return true
	}
	if !q.FromTime.IsZero() || !q.ToTime.IsZero() {
		t, err := time.Parse(time.RFC3339Nano, gjson.GetBytes(raw, "time").Str)
		if err != nil || !q.FromTime.IsZero() && t.Before(q.FromTime) || !q.ToTime.IsZero() && !t.Before(q.ToTime) {
			return false
		}
	}
	if q.SCIMID == "" && q.Subject == "" && q.Outcome == "" {
		return true // a time range only: no need to look further into the record
	}
	f := gjson.GetManyBytes(raw, "scim_id", "subject", "outcome")
	return (q.SCIMID == "" || f[0].Str == q.SCIMID) &&
		(q.Subject == "" || strings.EqualFold(f[1].Str, q.Subject)) &&
		(q.Outcome == "" || f[2].Str == string(q.Outcome))
}

// Format is an export format.
type Format string

// Export formats (see doc.go).
const (
	// FormatJSONL is the native, verifiable form: VerifyJSONL re-verifies it.
	FormatJSONL Format = "jsonl"
	// FormatCSV is one row per record for spreadsheets.
	FormatCSV Format = "csv"
	// FormatOCSF is one OCSF 1.1.0 event per line for SIEMs.
	FormatOCSF Format = "ocsf"
)

// ParseFormat accepts a format name, case-insensitively.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatJSONL, FormatCSV, FormatOCSF:
		return f, nil
	}
	return "", fmt.Errorf("unknown export format %q: want jsonl, csv or ocsf", truncate(s, 40))
}

// ContentType is the MIME type of an export in format f.
func (f Format) ContentType() string {
	switch f {
	case FormatCSV:
		return "text/csv; charset=utf-8"
	default:
		return "application/x-ndjson"
	}
}

// JSONLFormatName is the "format" of a JSONL export's header line.
const JSONLFormatName = "scimgate-journal"

// exportPage and exportPageBytes bound one read transaction of an export; the page is
// written to w only after the transaction ends, so a slow reader never holds one open.
const (
	exportPage      = 10000
	exportPageBytes = 4 << 20
)

// Export streams the records q selects to w in format f and returns how many it wrote. It
// reads in short transactions, resuming with a cursor Seek, so a long export never blocks
// writers; records appended after it started are not included.
func (j *Journal) Export(ctx context.Context, w io.Writer, q Query, f Format) (uint64, error) {
	j.pruneMu.RLock()
	defer j.pruneMu.RUnlock()
	return exportDB(ctx, j.db, j.name, w, q, f)
}

// ExportFileJournal exports journal name (the only one when empty) of a bbolt file (a
// backup), opened read-only.
func ExportFileJournal(ctx context.Context, path, name string, w io.Writer, q Query, f Format) (uint64, error) {
	db, jn, err := fileJournal(path, name)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return exportDB(ctx, db, jn, w, q, f)
}

// encoder writes one export format into a page buffer.
type encoder interface {
	begin(buf *bytes.Buffer, anchor *jsonlAnchor) error
	record(buf *bytes.Buffer, seq uint64, h [32]byte, raw []byte) error
	checkpoint(buf *bytes.Buffer, cp Checkpoint) error
	end(buf *bytes.Buffer, t jsonlEnd) error
}

func newEncoder(f Format, name string, q Query) (encoder, error) {
	switch f {
	case FormatJSONL:
		return &jsonlEncoder{name: name, q: q}, nil
	case FormatCSV:
		return &csvEncoder{}, nil
	case FormatOCSF:
		return &ocsfEncoder{}, nil
	}
	_, err := ParseFormat(string(f))
	return nil, err
}

// exportState carries an export across its page transactions.
type exportState struct {
	q       Query
	enc     encoder
	from    uint64 // first sequence number of the span
	next    uint64 // next sequence number to read
	to      uint64 // last sequence number to read
	n       uint64 // records written
	begun   bool
	lastSeq uint64
	last    [32]byte
}

func exportDB(ctx context.Context, db kv.DB, name []byte, w io.Writer, q Query, f Format) (uint64, error) {
	enc, err := newEncoder(f, string(name), q)
	if err != nil {
		return 0, err
	}
	s, err := readSnapshot(db, name)
	if err != nil {
		return 0, fmt.Errorf("exporting journal %s: %w", name, err)
	}
	st := &exportState{q: q, enc: enc}
	st.from, st.to = s.span(q)
	st.next = st.from
	var buf bytes.Buffer
	for st.next <= st.to {
		if err := ctx.Err(); err != nil {
			return st.n, err
		}
		buf.Reset()
		more, err := exportPageTx(db, name, st, &buf, s)
		if err != nil {
			return st.n, fmt.Errorf("exporting journal %s: %w", name, err)
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return st.n, err
		}
		if !more {
			break
		}
	}
	buf.Reset()
	end := jsonlEnd{Records: st.n, LastSeq: st.lastSeq, LastHash: hashHexIf(st.n > 0, st.last)}
	var trailing *Checkpoint
	if !q.filtered() && st.from <= st.to {
		if trailing, err = st.damage(db, name, s, &end); err != nil {
			return st.n, fmt.Errorf("exporting journal %s: %w", name, err)
		}
	}
	if !st.begun {
		if err := enc.begin(&buf, nil); err != nil {
			return st.n, err
		}
	}
	if trailing != nil {
		if err := enc.checkpoint(&buf, *trailing); err != nil {
			return st.n, err
		}
	}
	if err := enc.end(&buf, end); err != nil {
		return st.n, err
	}
	_, err = w.Write(buf.Bytes())
	return st.n, err
}

// damage carries into an unfiltered export what the journal says about where its records
// end, so that an export of a damaged journal does not verify either: when the records
// stop short of the span's end (the tail was deleted), or the head's hash is not the last
// record's, the end line names the record and hash the journal promised (VerifyJSONL
// reports truncated or head_mismatch); and when the export reaches the head, the first
// checkpoint of a record it does not hold follows the records (VerifyJSONL reports
// truncated, as Verify does of the file).
func (st *exportState) damage(db kv.DB, name []byte, s snapshot, end *jsonlEnd) (*Checkpoint, error) {
	switch {
	case st.to == s.head && (st.lastSeq != s.head || st.last != s.headHash):
		end.LastSeq, end.LastHash = s.head, hex.EncodeToString(s.headHash[:])
	case st.lastSeq != st.to:
		end.LastSeq, end.LastHash = st.to, ""
	}
	if st.to != s.head || s.lastCP <= st.lastSeq {
		return nil, nil
	}
	var cp *Checkpoint
	err := db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, name)
		if err != nil {
			return err
		}
		k, v := b.Bucket(bucketCheckpoints).Cursor().Seek(u64(st.lastSeq + 1))
		if k == nil {
			return nil
		}
		seq, _ := keySeq(k)
		c := decodeCheckpoint(seq, v)
		cp = &c
		return nil
	})
	return cp, err
}

func hashHexIf(ok bool, h [32]byte) string {
	if !ok {
		return ""
	}
	return hex.EncodeToString(h[:])
}

// exportPageTx encodes one page of records into buf in one read transaction.
func exportPageTx(db kv.DB, name []byte, st *exportState, buf *bytes.Buffer, s snapshot) (more bool, err error) {
	err = db.View(func(tx kv.Tx) error {
		b, err := journalBucket(tx, name)
		if err != nil {
			return err
		}
		rb := b.Bucket(bucketRecords)
		cps := readCheckpoints(b.Bucket(bucketCheckpoints), st.next, min(st.to, st.next+exportPage-1))
		more, err = readPage(rb, &st.next, st.to, st.q, func() bool { return buf.Len() >= exportPageBytes },
			func(seq uint64, h [32]byte, raw []byte) error { return st.emit(buf, rb, seq, h, raw, s, &cps) })
		return err
	})
	return more, err
}

// emit writes one selected record (after the header, for the first one) and the checkpoint
// of its sequence number, if any.
func (st *exportState) emit(buf *bytes.Buffer, rb kv.Bucket, seq uint64, h [32]byte, raw []byte, s snapshot, cps *[]Checkpoint) error {
	if !st.begun {
		// An unfiltered export continues from the record before its span, so that a
		// missing first record is a gap after the anchor, not a new start.
		from := seq
		if !st.q.filtered() {
			from = st.from
		}
		if err := st.enc.begin(buf, anchorOf(rb, from, s)); err != nil {
			return err
		}
		st.begun = true
	}
	if err := st.enc.record(buf, seq, h, raw); err != nil {
		return fmt.Errorf("record %d: %w", seq, err)
	}
	st.n++
	st.lastSeq, st.last = seq, h
	for len(*cps) > 0 && (*cps)[0].Seq <= seq {
		cp := (*cps)[0]
		*cps = (*cps)[1:]
		if cp.Seq == seq {
			if err := st.enc.checkpoint(buf, cp); err != nil {
				return err
			}
		}
	}
	return nil
}

// anchorOf is where an export starting at record seq continues the chain from: the
// journal's anchor, or the stored hash of record seq-1 (no hash when that record is
// missing: VerifyJSONL reports it deleted).
func anchorOf(rb kv.Bucket, seq uint64, s snapshot) *jsonlAnchor {
	a := &jsonlAnchor{Seq: seq}
	switch {
	case seq == s.anchorSeq:
		a.PrevHash = hex.EncodeToString(s.anchorPrev[:])
	default:
		if h, _, ok := splitValue(rb.Get(u64(seq - 1))); ok {
			a.PrevHash = hex.EncodeToString(h[:])
		}
	}
	return a
}

// JSONL lines (see doc.go).
type (
	jsonlHeader struct {
		Format     string       `json:"format"`
		Version    int          `json:"version"`
		Journal    string       `json:"journal"`
		ExportedAt time.Time    `json:"exported_at"`
		Filtered   bool         `json:"filtered"`
		Query      *jsonlQuery  `json:"query,omitempty"`
		Anchor     *jsonlAnchor `json:"anchor"`
	}
	jsonlQuery struct {
		FromTime *time.Time `json:"from_time,omitempty"`
		ToTime   *time.Time `json:"to_time,omitempty"`
		FromSeq  uint64     `json:"from_seq,omitempty"`
		ToSeq    uint64     `json:"to_seq,omitempty"`
		SCIMID   string     `json:"scim_id,omitempty"`
		Subject  string     `json:"subject,omitempty"`
		Outcome  string     `json:"outcome,omitempty"`
	}
	jsonlAnchor struct {
		Seq      uint64 `json:"seq"`
		PrevHash string `json:"prev_hash"`
	}
	jsonlEnd struct {
		Records  uint64 `json:"records"`
		LastSeq  uint64 `json:"last_seq,omitempty"`
		LastHash string `json:"last_hash,omitempty"`
	}
)

func queryOf(q Query) *jsonlQuery {
	if q == (Query{}) {
		return nil
	}
	jq := &jsonlQuery{FromSeq: q.FromSeq, ToSeq: q.ToSeq, SCIMID: q.SCIMID, Subject: q.Subject, Outcome: string(q.Outcome)}
	if !q.FromTime.IsZero() {
		t := q.FromTime.UTC()
		jq.FromTime = &t
	}
	if !q.ToTime.IsZero() {
		t := q.ToTime.UTC()
		jq.ToTime = &t
	}
	return jq
}

type jsonlEncoder struct {
	name string
	q    Query
}

func (e *jsonlEncoder) begin(buf *bytes.Buffer, anchor *jsonlAnchor) error {
	return writeJSONLine(buf, jsonlHeader{
		Format: JSONLFormatName, Version: FormatVersion, Journal: e.name, ExportedAt: time.Now().UTC(),
		Filtered: e.q.filtered(), Query: queryOf(e.q), Anchor: anchor,
	})
}

// record writes {"seq":N,"hash":"...","record":<stored bytes>} with the stored bytes embedded
// verbatim, so the hash can be recomputed from the line.
func (e *jsonlEncoder) record(buf *bytes.Buffer, seq uint64, h [32]byte, raw []byte) error {
	if !gjson.ValidBytes(raw) {
		return fmt.Errorf("%w: record %d is not JSON (run verify)", ErrCorrupt, seq)
	}
	buf.WriteString(`{"seq":`)
	buf.WriteString(strconv.FormatUint(seq, 10))
	buf.WriteString(`,"hash":"`)
	var hx [64]byte
	hex.Encode(hx[:], h[:])
	buf.Write(hx[:])
	buf.WriteString(`","record":`)
	buf.Write(raw)
	buf.WriteString("}\n")
	return nil
}

func (e *jsonlEncoder) checkpoint(buf *bytes.Buffer, cp Checkpoint) error {
	if cp.garbled {
		// What the journal holds there is not a checkpoint: the line says so, without a
		// hash, and VerifyJSONL reports it malformed, as Verify does.
		return writeJSONLine(buf, map[string]any{"checkpoint": map[string]any{
			"seq": cp.Seq, "error": "the journal's stored checkpoint does not decode"}})
	}
	return writeJSONLine(buf, struct {
		Checkpoint Checkpoint `json:"checkpoint"`
	}{cp})
}

func (e *jsonlEncoder) end(buf *bytes.Buffer, t jsonlEnd) error {
	return writeJSONLine(buf, struct {
		End jsonlEnd `json:"end"`
	}{t})
}

func writeJSONLine(buf *bytes.Buffer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf.Write(b)
	buf.WriteByte('\n')
	return nil
}

// CSVHeader is the CSV export's header row.
var CSVHeader = []string{"seq", "time", "client", "action", "resource_type", "scim_id", "subject",
	"outcome", "status", "events", "changed_paths", "error", "hash"}

// csvEncoder keeps one csv.Writer on the page buffer (exportDB reuses one buffer).
type csvEncoder struct {
	buf *bytes.Buffer
	w   *csv.Writer
}

func (e *csvEncoder) writer(buf *bytes.Buffer) *csv.Writer {
	if e.buf != buf {
		e.buf, e.w = buf, csv.NewWriter(buf)
	}
	return e.w
}

func (e *csvEncoder) begin(buf *bytes.Buffer, _ *jsonlAnchor) error {
	return e.row(buf, CSVHeader)
}

func (e *csvEncoder) record(buf *bytes.Buffer, seq uint64, h [32]byte, raw []byte) error {
	r, err := viewRecord(seq, raw)
	if err != nil {
		return err
	}
	status := ""
	if r.status != 0 {
		status = strconv.Itoa(r.status)
	}
	return e.row(buf, []string{
		strconv.FormatUint(seq, 10), r.time, safeCell(r.client),
		safeCell(r.action), safeCell(r.resourceType), safeCell(r.scimID), safeCell(r.subject),
		safeCell(r.outcome), status, safeCell(strings.Join(r.events, ";")),
		safeCell(strings.Join(r.changePaths, ";")), safeCell(r.errorMsg), hex.EncodeToString(h[:]),
	})
}

func (e *csvEncoder) row(buf *bytes.Buffer, row []string) error {
	w := e.writer(buf)
	if err := w.Write(row); err != nil {
		return err
	}
	w.Flush()
	return w.Error()
}

func (*csvEncoder) checkpoint(*bytes.Buffer, Checkpoint) error { return nil }
func (*csvEncoder) end(*bytes.Buffer, jsonlEnd) error          { return nil }

// safeCell defuses spreadsheet formula injection: a cell a client controls (a userName, an
// error text) that starts with a formula character gets a leading apostrophe, which
// spreadsheets display as text. Exact values are in the JSONL export.
func safeCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
