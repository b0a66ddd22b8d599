package caddymodule

// Tests of the journal's admin routes (admin.go) and live stream (live.go) through a real
// Caddy admin endpoint on a loopback port, with records written by real SCIM requests to
// the gateway. Caddy's running configuration is process-global: no t.Parallel here.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"go.etcd.io/bbolt"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
)

// admJournalName is the journal's name in testdata/journal/Caddyfile.
const admJournalName = "audit"

// admEnv is a running Caddy with the gateway and the admin endpoint.
type admEnv struct {
	admin   string // host:port of the admin endpoint
	scim    string // Tenant URL
	dataDir string
	pub     ed25519.PublicKey
	client  *http.Client
}

// admStart runs testdata/journal/Caddyfile with fresh ports, directories and signing key.
// Caddy and its admin endpoint are stopped when the test ends.
func admStart(t *testing.T) *admEnv {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	e := &admEnv{
		admin:   itFreeLoopbackAddr(t),
		dataDir: t.TempDir(),
		pub:     ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey),
		client:  &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}},
	}
	addr := itFreeLoopbackAddr(t)
	e.scim = "http://" + addr + "/scim/v2"
	t.Setenv("SCIMGATE_ADM_ADMIN", e.admin)
	t.Setenv("SCIMGATE_ADM_ADDR", addr)
	t.Setenv("SCIMGATE_ADM_DATA", e.dataDir)
	t.Setenv("SCIMGATE_ADM_STORAGE", t.TempDir())
	t.Setenv("SCIMGATE_ADM_TOKEN", testToken)
	t.Setenv("SCIMGATE_ADM_KEY", hex.EncodeToString(seed))

	src, err := os.ReadFile(filepath.Join("testdata", "journal", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		// caddy.Stop leaves the admin endpoint running; a config without one stops it.
		if err := caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}}}`), true); err != nil {
			t.Errorf("stopping the admin endpoint: %v", err)
		}
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
	return e
}

// get sends a request to the admin endpoint as a script would (no Origin header) and
// returns the response with its body read.
func (e *admEnv) do(t *testing.T, method, path string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, body
}

// scimDo sends a SCIM request to the gateway and returns the status and body.
func (e *admEnv) scimDo(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	r := sendSCIM(t, e.client, method, e.scim+path, body)
	return r.status, r.body
}

// createUser creates a user through the gateway and returns its SCIM id.
func (e *admEnv) createUser(t *testing.T, userName string) string {
	t.Helper()
	status, body := e.scimDo(t, http.MethodPost, "/Users", admUserBody(userName))
	if status != http.StatusCreated {
		t.Fatalf("creating %s: status %d: %s", userName, status, body)
	}
	var m struct{ ID string }
	if err := json.Unmarshal(body, &m); err != nil || m.ID == "" {
		t.Fatalf("creating %s: no id in %s", userName, body)
	}
	return m.ID
}

func admUserBody(userName string) string {
	return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":%q,"active":true,"externalId":%q}`, userName, "ext-"+userName)
}

// admHeadOf returns the head sequence number reported by the list route.
func (e *admEnv) head(t *testing.T) uint64 {
	t.Helper()
	for _, it := range e.list(t) {
		if it.Name == admJournalName {
			return it.HeadSeq
		}
	}
	t.Fatalf("journal %s is not listed", admJournalName)
	return 0
}

func (e *admEnv) list(t *testing.T) []admListItem {
	t.Helper()
	resp, body := e.do(t, http.MethodGet, admPrefix)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("list: status %d: %s", resp.StatusCode, body)
	}
	var items []admListItem
	if err := json.Unmarshal(body, &items); err != nil {
		t.Fatalf("list: %v: %s", err, body)
	}
	return items
}

// admJSONLRecords decodes a JSONL export's record lines.
func admJSONLRecords(t *testing.T, body []byte) []journal.Record {
	t.Helper()
	var out []journal.Record
	err := liveScanEntries(bytes.NewReader(body), func(e journal.Entry) error {
		out = append(out, e.Record)
		return nil
	})
	if err != nil {
		t.Fatalf("reading the JSONL export: %v", err)
	}
	return out
}

// admSeed writes a known set of records through the gateway: three users created, one
// rejected duplicate (409), and one update. It returns the users' ids by userName.
func admSeed(t *testing.T, e *admEnv) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, u := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
		ids[u] = e.createUser(t, u)
	}
	if status, body := e.scimDo(t, http.MethodPost, "/Users", admUserBody("bob@example.com")); status != http.StatusConflict {
		t.Fatalf("duplicate: status %d, want 409: %s", status, body)
	}
	patch := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":false}]}`
	if status, body := e.scimDo(t, http.MethodPatch, "/Users/"+ids["alice@example.com"], patch); status/100 != 2 {
		t.Fatalf("patch: status %d: %s", status, body)
	}
	return ids
}

func TestAdminJournalRoutes(t *testing.T) {
	e := admStart(t)
	ids := admSeed(t, e)
	head := e.head(t)
	if head < 5 {
		t.Fatalf("head %d after 5 journaled requests", head)
	}

	t.Run("list", func(t *testing.T) {
		items := e.list(t)
		if len(items) != 1 {
			t.Fatalf("list = %+v, want one journal", items)
		}
		it := items[0]
		if it.Name != admJournalName || !it.Signed || filepath.Base(it.Store) != storeFileName || !strings.HasPrefix(it.Store, e.dataDir) {
			t.Errorf("list item = %+v", it)
		}
	})

	t.Run("export jsonl verifies", func(t *testing.T) {
		resp, body := e.do(t, http.MethodGet, admPrefix+"/audit/export?format=jsonl")
		admWantStatus(t, resp, body, http.StatusOK)
		admWantHeader(t, resp, "Content-Type", "application/x-ndjson")
		admWantDisposition(t, resp, `scimgate-audit-\d{8}T\d{6}Z\.jsonl`)
		if got := resp.Trailer.Get(admExportTrailer); got != strconv.FormatUint(head, 10) {
			t.Errorf("trailer %s = %q, want %d", admExportTrailer, got, head)
		}
		recs := admJSONLRecords(t, body)
		if uint64(len(recs)) != head || recs[0].Seq != 1 || recs[len(recs)-1].Seq != head {
			t.Fatalf("export has %d records, want 1..%d", len(recs), head)
		}
		rep, err := journal.VerifyJSONL(context.Background(), bytes.NewReader(body), e.pub)
		if err != nil || !rep.OK || rep.Records != head {
			t.Fatalf("VerifyJSONL = %+v, %v", rep, err)
		}
	})

	t.Run("export csv", func(t *testing.T) {
		resp, body := e.do(t, http.MethodGet, admPrefix+"/audit/export?format=csv")
		admWantStatus(t, resp, body, http.StatusOK)
		admWantHeader(t, resp, "Content-Type", "text/csv; charset=utf-8")
		admWantDisposition(t, resp, `scimgate-audit-\d{8}T\d{6}Z\.csv`)
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
		resp, body := e.do(t, http.MethodGet, admPrefix+"/audit/export?format=ocsf")
		admWantStatus(t, resp, body, http.StatusOK)
		admWantHeader(t, resp, "Content-Type", "application/x-ndjson")
		admWantDisposition(t, resp, `scimgate-audit-\d{8}T\d{6}Z\.ocsf\.jsonl`)
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
		_, all := e.do(t, http.MethodGet, admPrefix+"/audit/export")
		records := admJSONLRecords(t, all)
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				resp, body := e.do(t, http.MethodGet, admPrefix+"/audit/export?"+tt.query)
				admWantStatus(t, resp, body, http.StatusOK)
				var want []uint64
				for _, r := range records {
					if tt.want(r) {
						want = append(want, r.Seq)
					}
				}
				var got []uint64
				for _, r := range admJSONLRecords(t, body) {
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
		resp, body := e.do(t, http.MethodPost, admPrefix+"/audit/checkpoint")
		admWantStatus(t, resp, body, http.StatusOK)
		var cp journal.Checkpoint
		if err := json.Unmarshal(body, &cp); err != nil {
			t.Fatal(err)
		}
		if cp.Seq != head || cp.Signature == "" {
			t.Errorf("checkpoint = %+v, want a signed one at seq %d", cp, head)
		}
		resp, body = e.do(t, http.MethodGet, admPrefix+"/audit/verify")
		admWantStatus(t, resp, body, http.StatusOK)
		admWantHeader(t, resp, "Content-Type", "application/json")
		var rep journal.Report
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.OK || rep.LastSeq != head || rep.Checkpoints < 1 || rep.FirstBad != nil {
			t.Errorf("report = %s", body)
		}
	})

	t.Run("backup", func(t *testing.T) {
		resp, body := e.do(t, http.MethodGet, admPrefix+"/audit/backup")
		admWantStatus(t, resp, body, http.StatusOK)
		admWantHeader(t, resp, "Content-Type", "application/octet-stream")
		admWantDisposition(t, resp, `scimgate-audit-\d{8}T\d{6}Z\.db`)
		path := filepath.Join(t.TempDir(), "backup.db")
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := journal.VerifyFile(context.Background(), path, e.pub)
		if err != nil || !rep.OK || rep.LastSeq != head {
			t.Fatalf("VerifyFile(backup) = %+v, %v", rep, err)
		}
	})
}

// TestAdminJournalErrors checks that bad requests are refused with the status and a JSON
// error that says what to fix.
func TestAdminJournalErrors(t *testing.T) {
	e := admStart(t)
	e.createUser(t, "dora@example.com")
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
		{"GET", "/scimgate/journals/audit/export?scim_id=" + strings.Repeat("x", admMaxParamBytes+1), nil, 400, "parameter scim_id"},
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
			resp, body := e.do(t, tt.method, tt.path, tt.headers...)
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
	e := admStart(t)
	admSeed(t, e)
	admTamper(t, admLiveDB(t), 3)

	resp, body := e.do(t, http.MethodGet, admPrefix+"/audit/verify")
	admWantStatus(t, resp, body, http.StatusConflict)
	var rep journal.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.FirstBad == nil || rep.FirstBad.Seq != 3 {
		t.Fatalf("report = %s, want the first bad record at seq 3", body)
	}

	code, out, _ := cliTestRun(t, "verify", "--admin", e.admin)
	if code != cliExitNotVerified || !strings.Contains(out, "first bad sequence number 3") {
		t.Errorf("journal verify: exit %d, output %q", code, out)
	}
}

// admLiveDB is the bbolt database of the running gateway's journal.
func admLiveDB(t *testing.T) *bbolt.DB {
	t.Helper()
	var db *bbolt.DB
	stores.Range(func(_, v any) bool {
		if h, ok := v.(*storeHandle); ok && h.journal != nil && h.journal.Name() == admJournalName {
			db = h.journal.DB()
		}
		return db == nil
	})
	if db == nil {
		t.Fatal("no open journal named " + admJournalName)
	}
	return db
}

// admTamper flips one byte inside the stored bytes of record seq (the storage layout in
// journal/doc.go: journal/<name>/records/<seq> = hash || record).
func admTamper(t *testing.T, db *bbolt.DB, seq uint64) {
	t.Helper()
	err := db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("journal")).Bucket([]byte(admJournalName)).Bucket([]byte("records"))
		key := make([]byte, 8)
		for i := range 8 {
			key[7-i] = byte(seq >> (8 * i))
		}
		v := bytes.Clone(b.Get(key))
		i := bytes.Index(v, []byte(`"action":"`))
		if i < 0 {
			return fmt.Errorf("record %d has no action: %q", seq, v)
		}
		v[i+len(`"action":"`)] ^= 0x01
		return b.Put(key, v)
	})
	if err != nil {
		t.Fatalf("tampering with record %d: %v", seq, err)
	}
}

func admWantStatus(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
}

func admWantHeader(t *testing.T, resp *http.Response, name, want string) {
	t.Helper()
	if got := resp.Header.Get(name); got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

func admWantDisposition(t *testing.T, resp *http.Response, filename string) {
	t.Helper()
	re := regexp.MustCompile(`^attachment; filename="` + filename + `"$`)
	if got := resp.Header.Get("Content-Disposition"); !re.MatchString(got) {
		t.Errorf("Content-Disposition = %q, want a match of %s", got, re)
	}
}

// admSSE is an open live stream read by a test.
type admSSE struct {
	events chan admSSEEvent
	cancel context.CancelFunc
	done   chan error
}

type admSSEEvent struct {
	event string
	data  []byte
}

// live opens .../live?query with extra headers and reads its events in the background.
func (e *admEnv) live(t *testing.T, query string, headers ...string) *admSSE {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.admin+admPrefix+"/audit/live?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		cancel()
		t.Fatalf("live: status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &admSSE{events: make(chan admSSEEvent, 1000), cancel: cancel, done: make(chan error, 1)}
	go func() {
		defer resp.Body.Close()
		s.done <- cliReadSSE(resp.Body, func(event string, data []byte) error {
			s.events <- admSSEEvent{event, bytes.Clone(data)}
			return nil
		})
		close(s.events)
	}()
	t.Cleanup(cancel)
	return s
}

// next returns the next event named event, skipping others, or fails after timeout.
func (s *admSSE) next(t *testing.T, event string, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("the stream ended while waiting for a %s event", event)
			}
			if ev.event == event {
				return ev.data
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", event, timeout)
		}
	}
}

// nextRecord returns the next record event, decoded.
func (s *admSSE) nextRecord(t *testing.T) liveEvent {
	t.Helper()
	var ev liveEvent
	if err := json.Unmarshal(s.next(t, "record", 10*time.Second), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestLiveStream(t *testing.T) {
	defer func(d time.Duration) { liveHeartbeat = d }(liveHeartbeat)
	liveHeartbeat = 200 * time.Millisecond
	e := admStart(t)

	t.Run("records as they commit, with hash and id", func(t *testing.T) {
		all := e.live(t, "")
		bobOnly := e.live(t, "user_name=BOB@example.com&outcome=applied")
		id := e.createUser(t, "alice@example.com")
		e.createUser(t, "bob@example.com")

		ev := all.nextRecord(t)
		if ev.Subject != "alice@example.com" || ev.SCIMID != id || ev.Outcome != change.Applied || ev.ResourceType != "User" {
			t.Errorf("first record = %+v", ev.Record)
		}
		if len(ev.Hash) != 64 {
			t.Errorf("hash %q, want 64 hex digits", ev.Hash)
		}
		if ev := all.nextRecord(t); ev.Subject != "bob@example.com" {
			t.Errorf("second record = %+v", ev.Record)
		}
		if ev := bobOnly.nextRecord(t); ev.Subject != "bob@example.com" {
			t.Errorf("filtered stream sent %+v", ev.Record)
		}
		all.next(t, "heartbeat", 5*time.Second)
	})

	t.Run("Last-Event-ID resumes after the last record seen", func(t *testing.T) {
		head := e.head(t)
		s := e.live(t, "", "Last-Event-ID", "1")
		for want := uint64(2); want <= head; want++ {
			if ev := s.nextRecord(t); ev.Seq != want {
				t.Fatalf("replayed seq %d, want %d", ev.Seq, want)
			}
		}
		e.createUser(t, "carol@example.com")
		if ev := s.nextRecord(t); ev.Seq != head+1 || ev.Subject != "carol@example.com" {
			t.Errorf("after the replay: %+v", ev.Record)
		}
	})

	t.Run("backlog sends the last records first", func(t *testing.T) {
		head := e.head(t)
		s := e.live(t, "backlog=2")
		for _, want := range []uint64{head - 1, head} {
			if ev := s.nextRecord(t); ev.Seq != want {
				t.Fatalf("backlog seq %d, want %d", ev.Seq, want)
			}
		}
	})

	t.Run("the stream ends when the client leaves", func(t *testing.T) {
		s := e.live(t, "")
		s.next(t, "heartbeat", 5*time.Second)
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the stream did not end after the client cancelled")
		}
		// The instance still streams to others.
		other := e.live(t, "")
		e.createUser(t, "dave@example.com")
		if ev := other.nextRecord(t); ev.Subject != "dave@example.com" {
			t.Errorf("got %+v", ev.Record)
		}
	})
}

// TestLiveDropped checks that a stream whose subscription the journal dropped tells the
// client to reconnect and ends.
func TestLiveDropped(t *testing.T) {
	c := make(chan journal.Entry, 1)
	c <- journal.Entry{Record: journal.Record{Seq: 7, Action: "create", Outcome: "applied"}}
	close(c)
	rec := httptest.NewRecorder()
	s := &liveStream{w: rec, rc: http.NewResponseController(rec)}
	done := make(chan error, 1)
	go func() { done <- s.follow(context.Background(), &journal.Subscription{C: c}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end when the subscription closed")
	}
	want := "id: 7\nevent: record\ndata: "
	if got := rec.Body.String(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "event: dropped\ndata: {\"reconnect\":true}\n\n") {
		t.Errorf("stream = %q", got)
	}
}

func TestLivePage(t *testing.T) {
	e := admStart(t)
	resp, body := e.do(t, http.MethodGet, liveWatchURL(admJournalName))
	admWantStatus(t, resp, body, http.StatusOK)
	admWantHeader(t, resp, "Content-Type", "text/html; charset=utf-8")
	admWantHeader(t, resp, "Referrer-Policy", "same-origin")
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

// TestLiveParseLine checks the reading of JSONL export lines back into entries.
func TestLiveParseLine(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	rec := `{"v":1,"seq":1,"time":"2025-01-01T00:00:00Z","action":"create","outcome":"applied","prev_hash":"` + strings.Repeat("00", 32) + `"}`
	tests := []struct {
		name   string
		line   string
		ok     bool
		hasErr bool
	}{
		{"record", `{"seq":1,"hash":"` + hash + `","record":` + rec + `}`, true, false},
		{"blank", "  ", false, false},
		{"header", `{"format":"scimgate-journal","version":1,"journal":"audit"}`, false, false},
		{"checkpoint", `{"checkpoint":{"seq":1}}`, false, false},
		{"not JSON", `{"seq":`, false, true},
		{"bad hash", `{"seq":1,"hash":"zz","record":` + rec + `}`, false, true},
		{"record not an object", `{"seq":1,"hash":"` + hash + `","record":[1]}`, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok, err := liveParseLine([]byte(tt.line))
			if ok != tt.ok || (err != nil) != tt.hasErr {
				t.Fatalf("ok %v, err %v", ok, err)
			}
			if ok && (e.Record.Seq != 1 || hex.EncodeToString(e.Hash[:]) != hash || string(e.Raw) != rec) {
				t.Errorf("entry = %+v", e)
			}
		})
	}
}

// TestAdminFinishStream checks how a streamed response ends: an error before any output is
// a JSON error, after output an aborted connection, and a departed client neither.
func TestAdminFinishStream(t *testing.T) {
	boom := fmt.Errorf("disk on fire")
	newLW := func(started bool) (*httptest.ResponseRecorder, *admLazyWriter) {
		rec := httptest.NewRecorder()
		lw := &admLazyWriter{w: rec, header: func(h http.Header) { h.Set("Content-Type", "text/csv") }}
		if started {
			_, _ = lw.Write([]byte("a,b\n"))
		}
		return rec, lw
	}
	req := httptest.NewRequest(http.MethodGet, "/scimgate/journals/audit/export", nil)

	rec, lw := newLW(false)
	if err := admFinishStream(req, lw, nil, nil); err != nil || rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/csv" {
		t.Errorf("empty success: %v, %d %v", err, rec.Code, rec.Header())
	}

	_, lw = newLW(false)
	var apiErr caddy.APIError
	if err := admFinishStream(req, lw, boom, nil); !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusInternalServerError {
		t.Errorf("error before output = %v, want a 500 APIError", err)
	}

	_, lw = newLW(true)
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("error after output: recovered %v, want http.ErrAbortHandler", p)
			}
		}()
		_ = admFinishStream(req, lw, boom, nil)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, lw = newLW(true)
	if err := admFinishStream(req.WithContext(ctx), lw, context.Canceled, nil); err != nil {
		t.Errorf("client gone: %v", err)
	}
}
