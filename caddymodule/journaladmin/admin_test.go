package journaladmin_test

// Tests of the journal's admin routes (admin.go, routes.go) and live stream (live.go)
// through a real Caddy admin endpoint on a loopback port, with records written by real
// SCIM requests to the gateway. Caddy's running configuration is process-global: no
// t.Parallel here.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/kv"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/caddymodule/journalcmd"
)

func TestAdminJournalRoutes(t *testing.T) {
	e := journaltest.Start(t)
	ids := journaltest.Seed(t, e)
	head := e.Head(t)
	if head < 5 {
		t.Fatalf("head %d after 5 journaled requests", head)
	}

	t.Run("list", func(t *testing.T) {
		items := e.List(t)
		if len(items) != 1 {
			t.Fatalf("list = %+v, want one journal", items)
		}
		it := items[0]
		if it.Name != journaltest.JournalName || !it.Signed || filepath.Base(it.Store) != journaltest.StoreFile || !strings.HasPrefix(it.Store, e.DataDir) {
			t.Errorf("list item = %+v", it)
		}
	})

	t.Run("export jsonl verifies", func(t *testing.T) {
		resp, body := e.Do(t, http.MethodGet, journaladmin.Prefix+"/audit/export?format=jsonl")
		journaltest.WantStatus(t, resp, body, http.StatusOK)
		journaltest.WantHeader(t, resp, "Content-Type", "application/x-ndjson")
		journaltest.WantDisposition(t, resp, `scimgate-audit-\d{8}T\d{6}Z\.jsonl`)
		if got := resp.Trailer.Get(journaladmin.ExportTrailer); got != strconv.FormatUint(head, 10) {
			t.Errorf("trailer %s = %q, want %d", journaladmin.ExportTrailer, got, head)
		}
		recs := journaltest.JSONLRecords(t, body)
		if uint64(len(recs)) != head || recs[0].Seq != 1 || recs[len(recs)-1].Seq != head {
			t.Fatalf("export has %d records, want 1..%d", len(recs), head)
		}
		rep, err := journal.VerifyJSONL(context.Background(), bytes.NewReader(body))
		if err != nil || !rep.OK || rep.Records != head {
			t.Fatalf("VerifyJSONL = %+v, %v", rep, err)
		}
		// No checkpoint yet: with the key, nothing signed vouches for the records.
		rep, err = journal.VerifyJSONL(context.Background(), bytes.NewReader(body), e.Pub)
		if err != nil || rep.OK || rep.FirstBad.Kind != journal.KindUnvouched || rep.FirstBad.Seq != 1 {
			t.Fatalf("VerifyJSONL with the key, before any checkpoint = %+v, %v", rep, err)
		}
	})

	t.Run("export csv", func(t *testing.T) {
		resp, body := e.Do(t, http.MethodGet, journaladmin.Prefix+"/audit/export?format=csv")
		journaltest.WantStatus(t, resp, body, http.StatusOK)
		journaltest.WantHeader(t, resp, "Content-Type", "text/csv; charset=utf-8")
		journaltest.WantDisposition(t, resp, `scimgate-audit-\d{8}T\d{6}Z\.csv`)
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("the CSV export does not parse: %v", err)
		}
		if uint64(len(rows)) != head+1 {
			t.Fatalf("CSV has %d rows, want a header and %d records", len(rows), head)
		}
		if !bytes.Contains(body, []byte("carol@example.com")) {
			t.Errorf("CSV lacks carol's record:\n%s", body)
		}
	})

	t.Run("export ocsf", func(t *testing.T) {
		resp, body := e.Do(t, http.MethodGet, journaladmin.Prefix+"/audit/export?format=ocsf")
		journaltest.WantStatus(t, resp, body, http.StatusOK)
		journaltest.WantHeader(t, resp, "Content-Type", "application/x-ndjson")
		journaltest.WantDisposition(t, resp, `scimgate-audit-\d{8}T\d{6}Z\.ocsf\.jsonl`)
		var n uint64
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			var ev struct {
				ClassUID int `json:"class_uid"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("OCSF line %d: %v: %s", n+1, err, sc.Bytes())
			}
			if ev.ClassUID != 3001 && ev.ClassUID != 3006 {
				t.Errorf("OCSF line %d: class_uid %d", n+1, ev.ClassUID)
			}
			n++
		}
		if n != head {
			t.Errorf("OCSF export has %d events, want %d", n, head)
		}
	})

	t.Run("export filters", func(t *testing.T) {
		now := time.Now().UTC()
		tests := []struct {
			query string
			want  func(journal.Record) bool
		}{
			{"user_name=bob@example.com", func(r journal.Record) bool { return strings.EqualFold(r.Subject, "bob@example.com") }},
			{"scim_id=" + ids["alice@example.com"], func(r journal.Record) bool { return r.SCIMID == ids["alice@example.com"] }},
			{"outcome=rejected", func(r journal.Record) bool { return r.Outcome == change.Rejected }},
			{"from_seq=2&to_seq=3", func(r journal.Record) bool { return r.Seq >= 2 && r.Seq <= 3 }},
			{"from=" + url.QueryEscape(now.Add(-time.Hour).Format(time.RFC3339)) + "&to=" + url.QueryEscape(now.Add(time.Hour).Format(time.RFC3339)), func(journal.Record) bool { return true }},
			{"from=" + url.QueryEscape(now.Add(time.Hour).Format(time.RFC3339)), func(journal.Record) bool { return false }},
		}
		_, all := e.Do(t, http.MethodGet, journaladmin.Prefix+"/audit/export")
		records := journaltest.JSONLRecords(t, all)
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				resp, body := e.Do(t, http.MethodGet, journaladmin.Prefix+"/audit/export?"+tt.query)
				journaltest.WantStatus(t, resp, body, http.StatusOK)
				var want []uint64
				for _, r := range records {
					if tt.want(r) {
						want = append(want, r.Seq)
					}
				}
				var got []uint64
				for _, r := range journaltest.JSONLRecords(t, body) {
					got = append(got, r.Seq)
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("records %v, want %v", got, want)
				}
			})
		}
		if !slices.ContainsFunc(records, func(r journal.Record) bool { return r.Outcome == change.Rejected }) {
			t.Error("the duplicate create was not journaled as rejected")
		}
	})

	t.Run("verify and checkpoint", func(t *testing.T) {
		resp, body := e.Do(t, http.MethodPost, journaladmin.Prefix+"/audit/checkpoint")
		journaltest.WantStatus(t, resp, body, http.StatusOK)
		var cp journal.Checkpoint
		if err := json.Unmarshal(body, &cp); err != nil {
			t.Fatal(err)
		}
		if cp.Seq != head || cp.Signature == "" {
			t.Errorf("checkpoint = %+v, want a signed one at seq %d", cp, head)
		}
		resp, body = e.Do(t, http.MethodGet, journaladmin.Prefix+"/audit/verify")
		journaltest.WantStatus(t, resp, body, http.StatusOK)
		journaltest.WantHeader(t, resp, "Content-Type", "application/json")
		var rep journal.Report
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.OK || rep.LastSeq != head || rep.Checkpoints < 1 || rep.FirstBad != nil {
			t.Errorf("report = %s", body)
		}
	})

	t.Run("backup", func(t *testing.T) {
		resp, body := e.Do(t, http.MethodGet, journaladmin.Prefix+"/audit/backup")
		journaltest.WantStatus(t, resp, body, http.StatusOK)
		journaltest.WantHeader(t, resp, "Content-Type", "application/octet-stream")
		journaltest.WantDisposition(t, resp, `scimgate-audit-\d{8}T\d{6}Z\.db`)
		path := filepath.Join(t.TempDir(), "backup.db")
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := journal.VerifyFileJournal(context.Background(), path, "", e.Pub)
		if err != nil || !rep.OK || rep.LastSeq != head {
			t.Fatalf("VerifyFileJournal(backup) = %+v, %v", rep, err)
		}
	})
}

// TestAdminJournalErrors checks that bad requests are refused with the status and a JSON
// error that says what to fix.
func TestAdminJournalErrors(t *testing.T) {
	e := journaltest.Start(t)
	e.CreateUser(t, "dora@example.com")
	tests := []struct {
		method, path string
		headers      []string
		status       int
		mention      string // the error message must contain this
	}{
		{"GET", "/scimgate/journals/audit/export?format=xml", nil, 400, "parameter format"},
		{"GET", "/scimgate/journals/audit/export?from=yesterday", nil, 400, "parameter from"},
		{"GET", "/scimgate/journals/audit/export?to=2025-13-01T00:00:00Z", nil, 400, "parameter to"},
		{"GET", "/scimgate/journals/audit/export?from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z", nil, 400, "parameter to"},
		{"GET", "/scimgate/journals/audit/export?from_seq=abc", nil, 400, "parameter from_seq"},
		{"GET", "/scimgate/journals/audit/export?from_seq=0", nil, 400, "parameter from_seq"},
		{"GET", "/scimgate/journals/audit/export?to_seq=-1", nil, 400, "parameter to_seq"},
		{"GET", "/scimgate/journals/audit/export?from_seq=5&to_seq=2", nil, 400, "parameter to_seq"},
		{"GET", "/scimgate/journals/audit/export?outcome=Applied%3B", nil, 400, "parameter outcome"},
		{"GET", "/scimgate/journals/audit/export?userName=dora", nil, 400, "parameter userName"},
		{"GET", "/scimgate/journals/audit/export?outcome=applied&outcome=failed", nil, 400, "parameter outcome"},
		{"GET", "/scimgate/journals/audit/export?scim_id=" + strings.Repeat("x", journaladmin.MaxParamBytes+1), nil, 400, "parameter scim_id"},
		{"GET", "/scimgate/journals/audit/verify?deep=1", nil, 400, "parameter deep"},
		{"GET", "/scimgate/journals/audit/live?backlog=100000", nil, 400, "parameter backlog"},
		{"GET", "/scimgate/journals/audit/live", []string{"Last-Event-ID", "x"}, 400, "parameter Last-Event-ID"},
		{"GET", "/scimgate/journals/audit/live?last_event_id=-3", nil, 400, "parameter last_event_id"},
		{"GET", "/scimgate/journals?x=1", nil, 400, "parameter x"},
		{"GET", "/scimgate/journals/nosuch/export", nil, 404, `no journal named "nosuch"`},
		{"GET", "/scimgate/journals/audit/nosuch", nil, 404, "no such route"},
		{"GET", "/scimgate/journals/audit", nil, 404, "no such route"},
		{"GET", "/scimgate/journals/audit/export/more", nil, 404, "no such route"},
		{"GET", "/scimgate/journalsx", nil, 404, ""},
		{"POST", "/scimgate/journals/audit/export", nil, 405, "use GET"},
		{"GET", "/scimgate/journals/audit/checkpoint", nil, 405, "use POST"},
		{"DELETE", "/scimgate/journals", nil, 405, "use GET"},
		{"HEAD", "/scimgate/journals/audit/backup", nil, 405, ""},
		// Caddy's own protection of the admin endpoint applies to the journal routes.
		{"GET", "/scimgate/journals/audit/export", []string{"Origin", "http://evil.example"}, 403, "origin"},
		{"GET", "/scimgate/journals/audit/watch", []string{"Sec-Fetch-Mode", "no-cors", "Referer", "http://evil.example/"}, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := e.Do(t, tt.method, tt.path, tt.headers...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.method == http.MethodHead || tt.mention == "" {
				return
			}
			var m struct{ Error string }
			if err := json.Unmarshal(body, &m); err != nil || !strings.Contains(m.Error, tt.mention) {
				t.Errorf("error body %s does not mention %q", body, tt.mention)
			}
			if tt.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
}

// TestAdminJournalTampered changes a stored record under the running instance: verify
// answers 409 naming it, and the CLI exits non-zero naming it.
func TestAdminJournalTampered(t *testing.T) {
	e := journaltest.Start(t)
	journaltest.Seed(t, e)
	journaltest.Tamper(t, liveDB(t), 3)

	resp, body := e.Do(t, http.MethodGet, journaladmin.Prefix+"/audit/verify")
	journaltest.WantStatus(t, resp, body, http.StatusConflict)
	var rep journal.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.FirstBad == nil || rep.FirstBad.Seq != 3 {
		t.Fatalf("report = %s, want the first bad record at seq 3", body)
	}

	code, out, _ := journaltest.Run(t, "verify", "--admin", e.Admin)
	if code != journalcmd.ExitNotVerified || !strings.Contains(out, "first bad sequence number 3") {
		t.Errorf("journal verify: exit %d, output %q", code, out)
	}

	// No checkpoint signs the tampered records (they follow the newest checkpoint).
	resp, body = e.Do(t, http.MethodPost, journaladmin.Prefix+"/audit/checkpoint")
	journaltest.WantStatus(t, resp, body, http.StatusConflict)
	if !strings.Contains(string(body), "seq 3: modified") {
		t.Errorf("checkpoint refusal %s does not name record 3", body)
	}
}

// liveDB is the bbolt database of the running gateway's journal.
func liveDB(t *testing.T) kv.DB {
	t.Helper()
	db := journaladmin.RegisteredDB(journaltest.JournalName)
	if db == nil {
		t.Fatal("no open journal named " + journaltest.JournalName)
	}
	return db
}

func TestLiveStream(t *testing.T) {
	t.Cleanup(journaladmin.SetLiveHeartbeat(200 * time.Millisecond))
	e := journaltest.Start(t)

	t.Run("records as they commit, with hash and id", func(t *testing.T) {
		all := e.Live(t, "")
		bobOnly := e.Live(t, "user_name=BOB@example.com&outcome=applied")
		id := e.CreateUser(t, "alice@example.com")
		e.CreateUser(t, "bob@example.com")

		ev := all.NextRecord(t)
		if ev.Subject != "alice@example.com" || ev.SCIMID != id || ev.Outcome != change.Applied || ev.ResourceType != "User" {
			t.Errorf("first record = %+v", ev.Record)
		}
		if len(ev.Hash) != 64 {
			t.Errorf("hash %q, want 64 hex digits", ev.Hash)
		}
		if ev := all.NextRecord(t); ev.Subject != "bob@example.com" {
			t.Errorf("second record = %+v", ev.Record)
		}
		if ev := bobOnly.NextRecord(t); ev.Subject != "bob@example.com" {
			t.Errorf("filtered stream sent %+v", ev.Record)
		}
		all.Next(t, "heartbeat", 5*time.Second)
	})

	t.Run("Last-Event-ID resumes after the last record seen", func(t *testing.T) {
		head := e.Head(t)
		s := e.Live(t, "", "Last-Event-ID", "1")
		for want := uint64(2); want <= head; want++ {
			if ev := s.NextRecord(t); ev.Seq != want {
				t.Fatalf("replayed seq %d, want %d", ev.Seq, want)
			}
		}
		e.CreateUser(t, "carol@example.com")
		if ev := s.NextRecord(t); ev.Seq != head+1 || ev.Subject != "carol@example.com" {
			t.Errorf("after the replay: %+v", ev.Record)
		}
	})

	t.Run("backlog sends the last records first", func(t *testing.T) {
		head := e.Head(t)
		s := e.Live(t, "backlog=2")
		for _, want := range []uint64{head - 1, head} {
			if ev := s.NextRecord(t); ev.Seq != want {
				t.Fatalf("backlog seq %d, want %d", ev.Seq, want)
			}
		}
	})

	t.Run("the stream ends when the client leaves", func(t *testing.T) {
		s := e.Live(t, "")
		s.Next(t, "heartbeat", 5*time.Second)
		s.Cancel()
		select {
		case <-s.Done:
		case <-time.After(5 * time.Second):
			t.Fatal("the stream did not end after the client cancelled")
		}
		// The instance still streams to others.
		other := e.Live(t, "")
		e.CreateUser(t, "dave@example.com")
		if ev := other.NextRecord(t); ev.Subject != "dave@example.com" {
			t.Errorf("got %+v", ev.Record)
		}
	})
}
func TestLivePage(t *testing.T) {
	e := journaltest.Start(t)
	resp, body := e.Do(t, http.MethodGet, journaladmin.JournalPath(journaltest.JournalName, "watch"))
	journaltest.WantStatus(t, resp, body, http.StatusOK)
	journaltest.WantHeader(t, resp, "Content-Type", "text/html; charset=utf-8")
	journaltest.WantHeader(t, resp, "Referrer-Policy", "same-origin")
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP = %q", csp)
	}
	// The page loads nothing but its stream: no external or sub-resource URLs.
	for _, bad := range []string{"http://", "https://", "<script src", "<link rel=\"stylesheet\"", "innerHTML", "/*STYLE*/", "/*SCRIPT*/"} {
		if bytes.Contains(body, []byte(bad)) {
			t.Errorf("the page contains %q", bad)
		}
	}
}

// TestLiveResumeFromAnotherHistory: a client whose Last-Event-ID is beyond the journal's
// head saw another history (the store was restored from an older backup while its page
// stayed open; EventSource resends its last id by itself on reconnecting). Its stream must
// carry the records committed from now on, not skip every one up to the old id.
func TestLiveResumeFromAnotherHistory(t *testing.T) {
	e := journaltest.Start(t)
	e.CreateUser(t, "alice@example.com")
	head := e.Head(t)
	for _, h := range [][]string{{"Last-Event-ID", strconv.FormatUint(head+1000, 10)}, nil} {
		q := ""
		if h == nil {
			q = "last_event_id=" + strconv.FormatUint(head+1000, 10)
		}
		s := e.Live(t, q, h...)
		name := fmt.Sprintf("bob-%d@example.com", e.Head(t))
		e.CreateUser(t, name)
		if ev := s.NextRecord(t); ev.Subject != name {
			t.Errorf("after resuming from a later id: %+v", ev.Record)
		}
	}
}
