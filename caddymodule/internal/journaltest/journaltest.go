// Package journaltest is what the tests of the journal's admin routes (journaladmin) and
// its command (journalcmd) share: a real Caddy with the gateway and its admin endpoint on
// loopback ports (Start), SCIM requests that write journal records, the journal command
// run in-process, live streams read as server-sent events, and headless Chromium.
//
// Caddy's running configuration is process-global: a test that calls Start must not run
// in parallel with another.
package journaltest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage" // the Caddyfile's storage
	"github.com/scimgate/scimgate/caddymodule/kv"

	_ "github.com/scimgate/scimgate/caddymodule" // the gateway, the admin routes and the journal command
	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/internal/testnet"
)

const (
	// JournalName is the journal's name in the Caddyfile.
	JournalName = "audit"

	// StoreFile is the name of the gateway's store file in its data directory.
	StoreFile = "scimgate.db"

	// Token is the gateway's bearer token (32 bytes, the least it accepts).
	Token = "test-token-0123456789abcdef01234567"
)

// caddyfile is the configuration Start runs: a gateway with a signed journal;
// caddyfileTarget the one StartTarget runs, with a target.
var (
	//go:embed Caddyfile
	caddyfile []byte
	//go:embed Caddyfile.target
	caddyfileTarget []byte
)

// AppMapping is the mapping StartTarget's gateway uses: users are accounts of the app.
const AppMapping = `{
  "version": 1,
  "users": {
    "events": {
      "create": {"method": "POST", "path": "/accounts", "id": "id", "body": {"login": {"from": "userName"}}},
      "update": {"method": "PATCH", "path": "/accounts/{id}", "send": "all", "body": {"login": {"from": "userName"}}},
      "delete": {"method": "DELETE", "path": "/accounts/{id}"}
    }
  }
}`

// Env is a running Caddy with the gateway and the admin endpoint.
type Env struct {
	Admin   string // host:port of the admin endpoint
	SCIM    string // Tenant URL
	DataDir string
	Pub     ed25519.PublicKey // verifies the journal's checkpoints
	Client  *http.Client
}

// Start runs the Caddyfile with fresh ports, directories and signing key. Caddy and its
// admin endpoint are stopped when the test ends.
func Start(t *testing.T) *Env {
	t.Helper()
	return start(t, caddyfile)
}

// StartStore is Start with the gateway's store block in place of its data_dir, e.g.
// "store etcd {\n endpoints http://127.0.0.1:2379\n prefix /gw/\n}" for a gateway of a
// fleet. Env.DataDir is then unused.
func StartStore(t *testing.T, storeBlock string) *Env {
	t.Helper()
	const dataDir = "data_dir {$SCIMGATE_ADM_DATA}"
	if !bytes.Contains(caddyfile, []byte(dataDir)) {
		t.Fatalf("the Caddyfile has no %q line to replace", dataDir)
	}
	return start(t, bytes.Replace(caddyfile, []byte(dataDir), []byte(storeBlock), 1))
}

// StartJournal is Start with more settings in the journal block, e.g. "max_records 1000".
func StartJournal(t *testing.T, settings string) *Env {
	t.Helper()
	const last = "checkpoint_interval -1"
	if !bytes.Contains(caddyfile, []byte(last)) {
		t.Fatalf("the Caddyfile has no %q line to follow", last)
	}
	return start(t, bytes.Replace(caddyfile, []byte(last), []byte(last+"\n"+settings), 1))
}

// StartTarget is Start with a target: a legacy app on loopback that makes an account per
// user (its native calls are journaled), and answers 500 to a user whose userName starts
// with "fail-" (the change fails: pending, then failed) and 422 to one that starts with
// "reject-" (it refuses the data).
func StartTarget(t *testing.T) *Env {
	t.Helper()
	return startTarget(t, "")
}

// StartQueuedTarget is StartTarget with queued delivery (retried within milliseconds):
// a change is journaled as queued, then its delivery's intent and outcome (delivered, or
// dead for a "reject-" user). Outbox pauses and resumes the deliveries.
func StartQueuedTarget(t *testing.T) *Env {
	t.Helper()
	return startTarget(t, "delivery queued\nqueue {\nretry_backoff 20ms 50ms\n}")
}

// Outbox is the outbox worker of the gateway's store.
func (e *Env) Outbox(t *testing.T) *outbox.Worker {
	t.Helper()
	for _, w := range outbox.Running() {
		if strings.HasPrefix(w.StorePath(), e.DataDir) {
			return w
		}
	}
	t.Fatal("no outbox worker runs on the gateway's store")
	return nil
}

func startTarget(t *testing.T, delivery string) *Env {
	t.Helper()
	var next atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if bytes.Contains(body, []byte(`"login":"fail-`)) {
			http.Error(w, `{"error":"database is down"}`, http.StatusInternalServerError)
			return
		}
		if bytes.Contains(body, []byte(`"login":"reject-`)) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"error":"login refused"}`)
			return
		}
		if r.Method == http.MethodPost {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id": "a%d"}`, next.Add(1))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(app.Close)
	mapping := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(mapping, []byte(AppMapping), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SCIMGATE_ADM_APP", app.URL)
	t.Setenv("SCIMGATE_ADM_MAPPING", mapping)
	t.Setenv("SCIMGATE_ADM_DELIVERY", delivery)
	return start(t, caddyfileTarget)
}

func start(t *testing.T, caddyfile []byte) *Env {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	addrs := testnet.FreeAddrs(t, 2)
	e := &Env{
		Admin:   addrs[0],
		DataDir: t.TempDir(),
		Pub:     ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey),
		Client:  &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}},
	}
	addr := addrs[1]
	e.SCIM = "http://" + addr + "/scim/v2"
	t.Setenv("SCIMGATE_ADM_ADMIN", e.Admin)
	t.Setenv("SCIMGATE_ADM_ADDR", addr)
	t.Setenv("SCIMGATE_ADM_DATA", e.DataDir)
	t.Setenv("SCIMGATE_ADM_STORAGE", t.TempDir())
	t.Setenv("SCIMGATE_ADM_TOKEN", Token)
	t.Setenv("SCIMGATE_ADM_KEY", hex.EncodeToString(seed))

	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(caddyfile, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() {
		e.Client.CloseIdleConnections()
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

// Do sends a request to the admin endpoint as a script would (no Origin header) and
// returns the response with its body read. headers are name/value pairs.
func (e *Env) Do(t *testing.T, method, path string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.Admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.Client.Do(req)
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

// SCIMDo sends a SCIM request to the gateway as Entra does (the bearer token, and the SCIM
// content type when there is a body) and returns the status and body.
func (e *Env) SCIMDo(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.SCIM+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+Token)
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, e.SCIM+path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", method, e.SCIM+path, err)
	}
	return resp.StatusCode, data
}

// CreateUser creates a user through the gateway and returns its SCIM id.
func (e *Env) CreateUser(t *testing.T, userName string) string {
	t.Helper()
	status, body := e.SCIMDo(t, http.MethodPost, "/Users", UserBody(userName))
	if status != http.StatusCreated {
		t.Fatalf("creating %s: status %d: %s", userName, status, body)
	}
	var m struct{ ID string }
	if err := json.Unmarshal(body, &m); err != nil || m.ID == "" {
		t.Fatalf("creating %s: no id in %s", userName, body)
	}
	return m.ID
}

// UserBody is the SCIM body that creates an active user.
func UserBody(userName string) string {
	return fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":%q,"active":true,"externalId":%q}`, userName, "ext-"+userName)
}

// Checkpoint writes a signed checkpoint of the journal's head through the admin route, so
// that a verification with the public key has one to vouch for the records.
func (e *Env) Checkpoint(t *testing.T) {
	t.Helper()
	resp, body := e.Do(t, http.MethodPost, journaladmin.JournalPath(JournalName, "checkpoint"))
	if resp.StatusCode/100 != 2 {
		t.Fatalf("checkpoint: %d %s", resp.StatusCode, body)
	}
}

// Head returns the head sequence number reported by the list route.
func (e *Env) Head(t *testing.T) uint64 {
	t.Helper()
	for _, it := range e.List(t) {
		if it.Name == JournalName {
			return it.HeadSeq
		}
	}
	t.Fatalf("journal %s is not listed", JournalName)
	return 0
}

// List returns the list route's journals.
func (e *Env) List(t *testing.T) []journaladmin.ListItem {
	t.Helper()
	resp, body := e.Do(t, http.MethodGet, journaladmin.Prefix)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("list: status %d: %s", resp.StatusCode, body)
	}
	var items []journaladmin.ListItem
	if err := json.Unmarshal(body, &items); err != nil {
		t.Fatalf("list: %v: %s", err, body)
	}
	return items
}

// Seed writes a known set of records through the gateway: three users created, one
// rejected duplicate (409), and one update. It returns the users' ids by userName.
func Seed(t *testing.T, e *Env) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, u := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
		ids[u] = e.CreateUser(t, u)
	}
	if status, body := e.SCIMDo(t, http.MethodPost, "/Users", UserBody("bob@example.com")); status != http.StatusConflict {
		t.Fatalf("duplicate: status %d, want 409: %s", status, body)
	}
	patch := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":false}]}`
	if status, body := e.SCIMDo(t, http.MethodPatch, "/Users/"+ids["alice@example.com"], patch); status/100 != 2 {
		t.Fatalf("patch: status %d: %s", status, body)
	}
	return ids
}

// JSONLRecords decodes a JSONL export's record lines.
func JSONLRecords(t *testing.T, body []byte) []journal.Record {
	t.Helper()
	var out []journal.Record
	err := journaladmin.ScanEntries(bytes.NewReader(body), func(e journal.Entry) error {
		out = append(out, e.Record)
		return nil
	})
	if err != nil {
		t.Fatalf("reading the JSONL export: %v", err)
	}
	return out
}

// Tamper flips one byte inside the stored bytes of record seq (the storage layout in
// journal/doc.go: journal/<name>/records/<seq> = hash || record).
func Tamper(t *testing.T, db kv.DB, seq uint64) {
	t.Helper()
	err := db.Update(func(tx kv.Tx) error {
		b := tx.Bucket([]byte("journal")).Bucket([]byte(JournalName)).Bucket([]byte("records"))
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

// WantStatus fails the test unless resp has status.
func WantStatus(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
}

// WantHeader reports an error unless resp's header name is want.
func WantHeader(t *testing.T, resp *http.Response, name, want string) {
	t.Helper()
	if got := resp.Header.Get(name); got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

// WantDisposition reports an error unless resp is an attachment named like the regular
// expression filename.
func WantDisposition(t *testing.T, resp *http.Response, filename string) {
	t.Helper()
	re := regexp.MustCompile(`^attachment; filename="` + filename + `"$`)
	if got := resp.Header.Get("Content-Disposition"); !re.MatchString(got) {
		t.Errorf("Content-Disposition = %q, want a match of %s", got, re)
	}
}
