package journal

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// exportJournal builds a journal of n records with signed checkpoints every 10.
func exportJournal(t *testing.T, n int) *Journal {
	t.Helper()
	db, _ := openDB(t)
	_, priv := testKey()
	j := openJournal(t, db, Options{SigningKey: priv, KeyID: "k1"})
	for i := 0; i < n; i += 10 {
		appendN(t, j, i, min(10, n-i))
		if _, err := j.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	return j
}

func export(t *testing.T, j *Journal, q Query, f Format) ([]byte, uint64) {
	t.Helper()
	var buf bytes.Buffer
	n, err := j.Export(context.Background(), &buf, q, f)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), n
}

func TestJSONLRoundTrip(t *testing.T) {
	pub, _ := testKey()
	j := exportJournal(t, 35)
	out, n := export(t, j, Query{}, FormatJSONL)
	if n != 35 {
		t.Fatalf("exported %d records", n)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 1+35+4+1 {
		t.Fatalf("%d lines", len(lines))
	}
	hdr := gjson.Parse(lines[0])
	if hdr.Get("format").Str != JSONLFormatName || hdr.Get("journal").Str != "main" ||
		hdr.Get("anchor.seq").Uint() != 1 || hdr.Get("filtered").Bool() {
		t.Fatalf("header %s", lines[0])
	}
	rep, err := VerifyJSONL(context.Background(), bytes.NewReader(out), pub)
	wantOK(t, rep, err)
	if rep.Records != 35 || rep.Checkpoints != 4 || rep.Partial {
		t.Fatalf("report %+v", rep)
	}
	dbRep, _ := j.Verify(context.Background(), pub)
	if dbRep.LastHash != rep.LastHash {
		t.Error("export and database disagree on the head hash")
	}

	recordLine := func(seq int) int { return seq + (seq-1)/10 } // header + checkpoints before
	tamper := []struct {
		name string
		edit func(lines []string) []string
		kind string
		seq  uint64
	}{
		{"modify a record", func(l []string) []string {
			i := recordLine(12)
			l[i] = strings.Replace(l[i], `"outcome":"applied"`, `"outcome":"denied"`, 1)
			return l
		}, KindModified, 12},
		{"modify a line hash", func(l []string) []string {
			i := recordLine(12)
			h := gjson.Get(l[i], "hash").Str
			l[i] = strings.Replace(l[i], h, strings.Repeat("0", 64), 1)
			return l
		}, KindModified, 12},
		{"delete a record", func(l []string) []string {
			return slices.Delete(l, recordLine(5), recordLine(5)+1)
		}, KindDeleted, 5},
		{"swap two records", func(l []string) []string {
			a, b := recordLine(5), recordLine(6)
			l[a], l[b] = l[b], l[a]
			return l
		}, KindReordered, 5},
		{"cut the tail", func(l []string) []string { return l[:recordLine(30)+1] }, KindTruncated, 31},
		{"cut the tail and forge the end", func(l []string) []string {
			return append(l[:recordLine(30)+1], `{"end":{"records":30,"last_seq":30}}`)
		}, KindTruncated, 31},
		{"forge a checkpoint", func(l []string) []string {
			i := recordLine(10) + 1
			l[i] = strings.Replace(l[i], `"seq":10`, `"seq":9`, 1)
			return l
		}, KindBadSignature, 9},
		{"garbage line", func(l []string) []string {
			l[recordLine(3)] = "{"
			return l
		}, KindMalformed, 3},
	}
	for _, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.edit(slices.Clone(lines))
			rep, err := VerifyJSONL(context.Background(), strings.NewReader(strings.Join(l, "\n")+"\n"), pub)
			if err != nil {
				t.Fatal(err)
			}
			wantProblem(t, rep, tt.kind, tt.seq)
		})
	}
	if _, err := VerifyJSONL(context.Background(), strings.NewReader("seq,time\n"), nil); err == nil {
		t.Error("a CSV file verified as JSONL")
	}
}

func TestCSVExport(t *testing.T) {
	j := exportJournal(t, 25)
	r := sampleRecord(26)
	r.Subject = "=HYPERLINK(\"http://evil\")"
	r.Error = "line one,\n\"two\""
	if err := j.db.Update(func(tx kv.Tx) error { return j.Append(tx, r) }); err != nil {
		t.Fatal(err)
	}
	out, n := export(t, j, Query{}, FormatCSV)
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if n != 26 || len(rows) != 27 || !slices.Equal(rows[0], CSVHeader) {
		t.Fatalf("%d records, %d rows, header %v", n, len(rows), rows[0])
	}
	for i, row := range rows[1:] {
		if row[0] != strconv.Itoa(i+1) || len(row[12]) != 64 {
			t.Fatalf("row %d: %v", i+1, row)
		}
	}
	first := rows[1]
	if first[3] != "patch" || first[4] != "User" || first[7] != "applied" || first[8] != "200" ||
		first[9] != "update" || !strings.Contains(first[10], "displayName;emails") {
		t.Errorf("first row %v", first)
	}
	last := rows[26]
	if last[6] != "'"+r.Subject || last[11] != r.Error {
		t.Errorf("last row %q", last)
	}
}

func TestOCSFExport(t *testing.T) {
	j := exportJournal(t, 20)
	extra := []*Record{
		{Action: "post", ResourceType: "User", Events: []change.Event{"create"}, Outcome: change.Applied, Subject: "a"},
		{Action: "patch", ResourceType: "User", Events: []change.Event{"deactivate"}, Outcome: change.Denied},
		{Action: "delete", ResourceType: "Group", Events: []change.Event{"delete"}, Outcome: change.Failed},
		{Action: "patch", ResourceType: "Group", Events: []change.Event{"remove_members"}, Outcome: change.Applied},
		{Action: "list", Outcome: change.Applied},
	}
	for _, r := range extra {
		if err := j.db.Update(func(tx kv.Tx) error { return j.Append(tx, r) }); err != nil {
			t.Fatal(err)
		}
	}
	out, n := export(t, j, Query{}, FormatOCSF)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if n != 25 || len(lines) != 25 {
		t.Fatalf("%d records, %d lines", n, len(lines))
	}
	type ev struct {
		ClassUID    int   `json:"class_uid"`
		CategoryUID int   `json:"category_uid"`
		ActivityID  int   `json:"activity_id"`
		TypeUID     int   `json:"type_uid"`
		StatusID    int   `json:"status_id"`
		SeverityID  int   `json:"severity_id"`
		Time        int64 `json:"time"`
		Metadata    struct{ Version, UID string }
		User, Group *struct{ UID, Name string }
		Actor       *struct{ User struct{ Name string } }
	}
	var evs []ev
	for i, l := range lines {
		var e ev
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if e.Metadata.UID != strconv.Itoa(i+1) || e.Metadata.Version != "1.1.0" || e.TypeUID != e.ClassUID*100+e.ActivityID {
			t.Fatalf("line %d: %s", i+1, l)
		}
		evs = append(evs, e)
	}
	if e := evs[0]; e.ClassUID != 3001 || e.CategoryUID != 3 || e.ActivityID != 99 || e.User == nil ||
		e.User.Name != "user0@contoso.example" || e.Actor.User.Name != "entra" || e.StatusID != 1 ||
		e.Time != baseTime.UnixMilli() {
		t.Errorf("user update: %+v", e)
	}
	if e := evs[1]; e.ClassUID != 3006 || e.ActivityID != 3 || e.Group == nil {
		t.Errorf("group add: %+v", e)
	}
	want := [][3]int{{3001, 1, 1}, {3001, 5, 2}, {3006, 5, 2}, {3006, 4, 1}, {0, 99, 1}}
	for i, w := range want {
		e := evs[20+i]
		if e.ClassUID != w[0] || e.ActivityID != w[1] || e.StatusID != w[2] {
			t.Errorf("record %d: class %d activity %d status %d, want %v", 21+i, e.ClassUID, e.ActivityID, e.StatusID, w)
		}
	}
}

func TestQueryFilters(t *testing.T) {
	pub, _ := testKey()
	j := exportJournal(t, 30)
	r := sampleRecord(4)
	r.Outcome, r.Time = change.Denied, baseTime.Add(time.Hour)
	if err := j.db.Update(func(tx kv.Tx) error { return j.Append(tx, r) }); err != nil {
		t.Fatal(err)
	}
	// Checkpoints follow records 10, 20 and 30: with the key, a subset verifies only when a
	// signed checkpoint covers each of its records (records after the newest one of a
	// stretch without gaps excepted); unvouched is the first record none covers.
	tests := []struct {
		name      string
		q         Query
		want      []uint64
		unvouched uint64
	}{
		{"seq range", Query{FromSeq: 5, ToSeq: 8}, []uint64{5, 6, 7, 8}, 5},
		{"seq from", Query{FromSeq: 29}, []uint64{29, 30, 31}, 0},
		{"time range", Query{FromTime: baseTime.Add(2 * time.Minute), ToTime: baseTime.Add(5 * time.Minute)}, []uint64{3, 4, 5}, 3},
		{"scim id", Query{SCIMID: r.SCIMID}, []uint64{5, 31}, 5},
		{"subject", Query{Subject: "USER4@contoso.example"}, []uint64{5, 31}, 5},
		{"outcome", Query{Outcome: change.Denied}, []uint64{31}, 31},
		{"combined", Query{Subject: "user4@contoso.example", ToSeq: 30}, []uint64{5}, 5},
		{"nothing", Query{SCIMID: "none"}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, n := export(t, j, tt.q, FormatJSONL)
			var got []uint64
			for _, l := range strings.Split(string(out), "\n") {
				if s := gjson.Get(l, "record.seq"); s.Exists() {
					got = append(got, s.Uint())
				}
			}
			if !slices.Equal(got, tt.want) || n != uint64(len(tt.want)) {
				t.Fatalf("got %v (n=%d), want %v", got, n, tt.want)
			}
			rep, err := VerifyJSONLWith(context.Background(), bytes.NewReader(out), JSONLOptions{Subset: true})
			wantOK(t, rep, err)
			if rep.Records != n {
				t.Errorf("verified %d of %d", rep.Records, n)
			}
			rep, err = VerifyJSONLWith(context.Background(), bytes.NewReader(out), JSONLOptions{Subset: true, Keys: []ed25519.PublicKey{pub}})
			if tt.unvouched == 0 {
				wantOK(t, rep, err)
			} else if err != nil {
				t.Fatal(err)
			} else {
				wantProblem(t, rep, KindUnvouched, tt.unvouched)
			}
		})
	}
}

func TestBackupVerifyExportFile(t *testing.T) {
	pub, _ := testKey()
	j := exportJournal(t, 40)
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := j.Backup(f)
	if err != nil || n == 0 {
		t.Fatal(n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFileJournal(context.Background(), path, "", pub)
	wantOK(t, rep, err)
	if rep.Records != 40 || rep.Checkpoints != 4 {
		t.Fatalf("report %+v", rep)
	}
	var buf bytes.Buffer
	if n, err := ExportFileJournal(context.Background(), path, "", &buf, Query{}, FormatJSONL); err != nil || n != 40 {
		t.Fatal(n, err)
	}
	live, _ := export(t, j, Query{}, FormatJSONL)
	if stripExportedAt(buf.String()) != stripExportedAt(string(live)) {
		t.Error("backup export differs from the live export")
	}
	if _, err := VerifyFileJournal(context.Background(), filepath.Join(t.TempDir(), "missing.db"), "", pub); err == nil {
		t.Error("missing file verified")
	}
}

func stripExportedAt(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return rest
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"JSONL": FormatJSONL, " csv": FormatCSV, "ocsf": FormatOCSF} {
		if f, err := ParseFormat(in); err != nil || f != want {
			t.Errorf("%q: %v %v", in, f, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("xml accepted")
	}
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	if _, err := j.Export(context.Background(), &bytes.Buffer{}, Query{}, "xml"); err == nil {
		t.Error("export to xml")
	}
}

func TestExportEmpty(t *testing.T) {
	db, _ := openDB(t)
	j := openJournal(t, db, Options{})
	out, n := export(t, j, Query{}, FormatJSONL)
	if n != 0 {
		t.Fatal(n)
	}
	rep, err := VerifyJSONL(context.Background(), bytes.NewReader(out), nil)
	wantOK(t, rep, err)
}

func TestFileWithSeveralJournals(t *testing.T) {
	db, path := openDB(t)
	a := openJournal(t, db, Options{Name: "a"})
	b := openJournal(t, db, Options{Name: "b"})
	appendN(t, a, 0, 3)
	appendN(t, b, 0, 5)
	a.Close()
	b.Close()
	db.Close()
	if _, err := VerifyFileJournal(context.Background(), path, "", nil); err == nil || !strings.Contains(err.Error(), "name one") {
		t.Fatalf("ambiguous file: %v", err)
	}
	rep, err := VerifyFileJournal(context.Background(), path, "b", nil)
	wantOK(t, rep, err)
	if rep.Records != 5 {
		t.Fatalf("report %+v", rep)
	}
	var buf bytes.Buffer
	if n, err := ExportFileJournal(context.Background(), path, "a", &buf, Query{}, FormatCSV); err != nil || n != 3 {
		t.Fatal(n, err)
	}
	if _, err := VerifyFileJournal(context.Background(), path, "c", nil); !errors.Is(err, ErrNoJournal) {
		t.Fatalf("missing journal: %v", err)
	}
}
