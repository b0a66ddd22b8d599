package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/journal"
)

// auditRecords exports the gateway's journal and returns its records in order.
func auditRecords(t *testing.T, g *Handler) []journal.Record {
	t.Helper()
	return journalRecords(t, g.store.journal)
}

// journalRecords reads every record of j through its JSONL export.
func journalRecords(t *testing.T, j *journal.Journal) []journal.Record {
	t.Helper()
	var buf bytes.Buffer
	if _, err := j.Export(context.Background(), &buf, journal.Query{}, journal.FormatJSONL); err != nil {
		t.Fatal(err)
	}
	var out []journal.Record
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var line struct {
			Record *journal.Record `json:"record"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		if line.Record != nil {
			out = append(out, *line.Record)
		}
	}
	return out
}

func auditVerify(t *testing.T, g *Handler) {
	t.Helper()
	rep, err := g.store.journal.Verify(context.Background(), nil)
	if err != nil || !rep.OK {
		t.Fatalf("journal does not verify: %+v %v", rep, err)
	}
}

func lastRecord(t *testing.T, g *Handler) journal.Record {
	t.Helper()
	recs := auditRecords(t, g)
	if len(recs) == 0 {
		t.Fatal("no journal record")
	}
	return recs[len(recs)-1]
}

func changePaths(r journal.Record) []string {
	var out []string
	for _, c := range r.Changes {
		out = append(out, c.Op+" "+c.Path)
	}
	return out
}

func TestJournalRecordsEveryWrite(t *testing.T) {
	g := newTestGateway(t, nil)
	w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{
		"userName": "ada@contoso.example", "active": true, "password": "hunter2-secret",
		"name": map[string]any{"givenName": "Ada"},
	})
	if w.Code != 201 {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	uid := decodeJSON(t, w)["id"].(string)
	r := lastRecord(t, g)
	if r.Action != "create" || r.Outcome != "applied" || r.Status != 201 || r.Client != "entra" ||
		r.ResourceType != "User" || r.SCIMID != uid || r.Subject != "ada@contoso.example" || strings.Join(change.Strings(r.Events), ",") != "create" {
		t.Fatalf("create record: %+v", r)
	}
	if r.RequestID == "" || r.Seq == 0 || r.PrevHash == "" {
		t.Fatalf("record lacks request id, seq or prev hash: %+v", r)
	}
	var sawPassword bool
	for _, c := range r.Changes {
		if c.Path == "password" {
			sawPassword = true
			if !c.Redacted || len(c.Value) != 0 {
				t.Fatalf("password not redacted: %+v", c)
			}
		}
	}
	if !sawPassword {
		t.Fatalf("password change missing: %v", changePaths(r))
	}
	var raw bytes.Buffer
	_, _ = g.store.journal.Export(context.Background(), &raw, journal.Query{}, journal.FormatJSONL)
	if strings.Contains(raw.String(), "hunter2-secret") {
		t.Fatal("the password is in the journal")
	}

	// Disable with Entra's string boolean: update + deactivate; enable: reactivate.
	patch := func(path string, value any) {
		t.Helper()
		w := serve(t, g, "PATCH", "/scim/v2/Users/"+uid, map[string]any{
			"schemas":    []any{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
			"Operations": []any{map[string]any{"op": "Replace", "path": path, "value": value}},
		})
		if w.Code != 200 {
			t.Fatalf("patch %s: %d %s", path, w.Code, w.Body)
		}
	}
	patch("active", "False")
	if r := lastRecord(t, g); r.Action != "patch" || strings.Join(change.Strings(r.Events), ",") != "update,deactivate" || strings.Join(changePaths(r), ",") != "replace active" {
		t.Fatalf("disable record: %+v", r)
	}
	patch("active", "True")
	enabled := lastRecord(t, g)
	if strings.Join(change.Strings(enabled.Events), ",") != "update,reactivate" {
		t.Fatalf("enable record: %+v", enabled)
	}
	// Entra's periodic no-op changes nothing: answered like a read, and like a read not
	// journaled (reads are off here).
	patch("active", true)
	if r := lastRecord(t, g); r.Seq != enabled.Seq {
		t.Fatalf("the no-op was journaled: %+v", r)
	}

	// Groups: create, add and remove members, rename.
	w = serve(t, g, "POST", "/scim/v2/Groups", map[string]any{"displayName": "Sales"})
	gid := decodeJSON(t, w)["id"].(string)
	members := func(op string, value any, path string) {
		t.Helper()
		w := serve(t, g, "PATCH", "/scim/v2/Groups/"+gid, map[string]any{
			"schemas":    []any{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
			"Operations": []any{map[string]any{"op": op, "path": path, "value": value}},
		})
		if w.Code != 204 {
			t.Fatalf("group patch: %d %s", w.Code, w.Body)
		}
	}
	members("Add", []any{map[string]any{"value": uid}}, "members")
	if r := lastRecord(t, g); strings.Join(change.Strings(r.Events), ",") != "add_members" || r.Subject != "Sales" || strings.Join(changePaths(r), ",") != "add members" {
		t.Fatalf("add member record: %+v", r)
	}
	members("Remove", []any{map[string]any{"value": uid}}, "members")
	if r := lastRecord(t, g); strings.Join(change.Strings(r.Events), ",") != "remove_members" {
		t.Fatalf("remove member record: %+v", r)
	}
	members("Replace", "Sales EMEA", "displayName")
	if r := lastRecord(t, g); strings.Join(change.Strings(r.Events), ",") != "update,rename" || r.Subject != "Sales EMEA" {
		t.Fatalf("rename record: %+v", r)
	}

	// Delete.
	if w := serve(t, g, "DELETE", "/scim/v2/Users/"+uid, nil); w.Code != 204 {
		t.Fatalf("delete: %d", w.Code)
	}
	if r := lastRecord(t, g); r.Action != "delete" || r.Status != 204 || r.Subject != "ada@contoso.example" || strings.Join(change.Strings(r.Events), ",") != "delete" {
		t.Fatalf("delete record: %+v", r)
	}
	auditVerify(t, g)
}

func TestJournalRecordsRejections(t *testing.T) {
	g := newTestGateway(t, nil)
	serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "taken"})
	n := len(auditRecords(t, g))

	w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "TAKEN"})
	if w.Code != 409 {
		t.Fatalf("duplicate: %d", w.Code)
	}
	r := lastRecord(t, g)
	if r.Outcome != "rejected" || r.Status != 409 || r.Action != "create" || !strings.Contains(r.Error, "already used") {
		t.Fatalf("409 record: %+v", r)
	}
	if w := serve(t, g, "PATCH", "/scim/v2/Users/no-such-id", `{"Operations":[{"op":"add","path":"title","value":"x"}]}`); w.Code != 404 {
		t.Fatalf("patch unknown: %d", w.Code)
	}
	if r := lastRecord(t, g); r.Outcome != "rejected" || r.Status != 404 || r.SCIMID != "no-such-id" {
		t.Fatalf("404 record: %+v", r)
	}
	if w := serve(t, g, "POST", "/scim/v2/Users", `{"userName": tre}`); w.Code != 400 {
		t.Fatalf("bad json: %d", w.Code)
	}
	if r := lastRecord(t, g); r.Outcome != "rejected" || r.Status != 400 {
		t.Fatalf("400 record: %+v", r)
	}
	// Unauthenticated requests are not journaled (they would let anyone fill the disk).
	serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "x"}, "Authorization", "Bearer nope")
	// Reads are not journaled by default.
	serve(t, g, "GET", "/scim/v2/Users?filter=userName+eq+%22taken%22", nil)
	if got := len(auditRecords(t, g)); got != n+3 {
		t.Fatalf("records = %d, want %d", got, n+3)
	}
	auditVerify(t, g)
}

func TestJournalReadsWithHashedFilters(t *testing.T) {
	g := newTestGateway(t, func(g *Handler) { g.Journal = &JournalConfig{Reads: true} })
	w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "grace@contoso.example"})
	uid := decodeJSON(t, w)["id"].(string)
	serve(t, g, "GET", "/scim/v2/Users?filter=userName+eq+%22grace@contoso.example%22", nil)
	r := lastRecord(t, g)
	if r.Action != "list" || r.FilterHash == "" || r.FilterHash != g.store.journal.HashFilter(`userName eq "grace@contoso.example"`) {
		t.Fatalf("list record: %+v", r)
	}
	serve(t, g, "GET", "/scim/v2/Users/"+uid, nil)
	if r := lastRecord(t, g); r.Action != "get" || r.SCIMID != uid || r.Subject != "grace@contoso.example" {
		t.Fatalf("get record: %+v", r)
	}
	var raw bytes.Buffer
	_, _ = g.store.journal.Export(context.Background(), &raw, journal.Query{Outcome: "applied"}, journal.FormatJSONL)
	if strings.Contains(raw.String(), "userName eq") || strings.Contains(strings.ToLower(raw.String()), "filter\":") {
		t.Fatalf("filter text in the journal:\n%s", raw.String())
	}
}

// TestJournalUnavailableFailsClosed: when the journal cannot be written, a write answers
// 503 and changes nothing: never a 2xx without its record.
func TestJournalUnavailableFailsClosed(t *testing.T) {
	g := newTestGateway(t, nil)
	if err := g.store.journal.Close(); err != nil {
		t.Fatal(err)
	}
	w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "nobody"})
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d (Retry-After %q), want 503", w.Code, w.Header().Get("Retry-After"))
	}
	w = serve(t, g, "GET", "/scim/v2/Users?filter=userName+eq+%22nobody%22", nil)
	if got := decodeJSON(t, w)["totalResults"]; got != float64(0) {
		t.Fatalf("the user was created without its record: totalResults=%v", got)
	}
}

func TestJournalSigningKeyConfig(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	t.Setenv("SCIMGATE_TEST_JKEY", base64.StdEncoding.EncodeToString(seed))
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(seed)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	for _, jc := range []*JournalConfig{{SigningKey: "{env.SCIMGATE_TEST_JKEY}"}, {SigningKeyFile: keyFile}} {
		g := newTestGateway(t, func(g *Handler) { g.Journal = jc })
		if len(g.store.journalKeys) != 1 || !want.Equal(g.store.journalKeys[0]) {
			t.Fatalf("public keys %x, want %x", g.store.journalKeys, want)
		}
		serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "signed"})
		cp, err := g.store.journal.Checkpoint()
		if err != nil || cp.Signature == "" || cp.KeyID != hex.EncodeToString(want[:8]) {
			t.Fatalf("checkpoint %+v %v", cp, err)
		}
		rep, err := g.store.journal.Verify(context.Background(), want)
		if err != nil || !rep.OK {
			t.Fatalf("verify with the public key: %+v %v", rep, err)
		}
	}
	t.Setenv("SCIMGATE_TEST_NOT_A_KEY", "not a key!")
	t.Setenv("SCIMGATE_TEST_SHORT_KEY", base64.StdEncoding.EncodeToString([]byte("short")))
	for _, tc := range []struct {
		jc  *JournalConfig
		err string
	}{
		{&JournalConfig{SigningKey: "{env.SCIMGATE_TEST_UNSET_KEY}"}, "{env.SCIMGATE_TEST_UNSET_KEY} resolves to nothing"},
		{&JournalConfig{SigningKey: "{env.SCIMGATE_TEST_NOT_A_KEY}"}, "neither base64 nor hex"},
		{&JournalConfig{SigningKey: "{env.SCIMGATE_TEST_SHORT_KEY}"}, "want a 32-byte Ed25519 seed"},
		// A key written in the JSON config was accepted: the admin API's GET /config/
		// answered it to every local process, which could then sign checkpoints.
		{&JournalConfig{SigningKey: base64.StdEncoding.EncodeToString(seed)}, "must be a placeholder"},
		{&JournalConfig{SigningKey: "{env.SCIMGATE_TEST_JKEY}", SigningKeyFile: keyFile}, "not both"},
		{&JournalConfig{SigningKeyFile: filepath.Join(t.TempDir(), "missing")}, "signing_key_file"},
		{&JournalConfig{SigningKey: "{env.SCIMGATE_TEST_JKEY}", VerifyKeys: []string{base64.StdEncoding.EncodeToString(want), "not a key"}}, "verify_key 2: not an Ed25519 public key"},
		{&JournalConfig{VerifyKeys: []string{base64.StdEncoding.EncodeToString(want)}}, "verify_key without signing_key"},
		// JSON configs: values the Caddyfile refuses were taken as "off".
		{&JournalConfig{CheckpointEvery: -5}, "checkpoint_every must be positive, or -1 (off), got -5"},
		{&JournalConfig{CheckpointInterval: caddy.Duration(-time.Minute)}, "checkpoint_interval must be positive"},
		{&JournalConfig{MaxAge: caddy.Duration(-time.Hour)}, "max_age must be positive"},
	} {
		g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: t.TempDir(), Journal: tc.jc}
		err := provisionHandler(t, g)
		_ = g.Cleanup()
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Fatalf("error = %v, want %q", err, tc.err)
		}
		if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(seed)) {
			t.Fatal("the error reveals the key")
		}
	}
}

// TestJournalKeyRotation: a gateway restarted with a new signing key and the old key's
// public key as verify_key verifies the whole journal (checkpoints of both keys) with its
// configured keys, as its verify route does; without verify_key the old checkpoints fail.
func TestJournalKeyRotation(t *testing.T) {
	oldSeed, newSeed := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
	t.Setenv("SCIMGATE_TEST_OLD_JKEY", base64.StdEncoding.EncodeToString(oldSeed))
	t.Setenv("SCIMGATE_TEST_NEW_JKEY", hex.EncodeToString(newSeed))
	oldPub := ed25519.NewKeyFromSeed(oldSeed).Public().(ed25519.PublicKey)
	dir := t.TempDir()
	run := func(jc *JournalConfig, user string) *journal.Report {
		t.Helper()
		g := newTestGateway(t, func(g *Handler) { g.DataDir, g.Journal = dir, jc })
		defer func() { _ = g.Cleanup() }()
		if w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": user}); w.Code != http.StatusCreated {
			t.Fatalf("create: %d %s", w.Code, w.Body)
		}
		if _, err := g.store.journal.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		rep, err := g.store.journal.Verify(context.Background(), g.store.journalKeys...)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := run(&JournalConfig{SigningKey: "{env.SCIMGATE_TEST_OLD_JKEY}"}, "before@contoso.example"); !rep.OK {
		t.Fatalf("before the rotation: %+v", rep.FirstBad)
	}
	if rep := run(&JournalConfig{SigningKey: "{env.SCIMGATE_TEST_NEW_JKEY}"}, "lost@contoso.example"); rep.OK || rep.FirstBad.Kind != journal.KindBadSignature {
		t.Fatalf("the new key alone verified the old key's checkpoint: %+v", rep)
	}
	pem := "-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString(append([]byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}, oldPub...)) + "\n-----END PUBLIC KEY-----\n"
	for i, old := range []string{base64.StdEncoding.EncodeToString(oldPub), hex.EncodeToString(oldPub), pem} {
		rep := run(&JournalConfig{SigningKey: "{env.SCIMGATE_TEST_NEW_JKEY}", VerifyKeys: []string{old}}, fmt.Sprintf("after-%d@contoso.example", i))
		if !rep.OK || rep.Checkpoints < 3 || !rep.Signed {
			t.Fatalf("with verify_key %q: %+v %+v", old[:12], rep, rep.FirstBad)
		}
	}
}

// TestPasswordNeverStoredOrReturned: password is write-only: accepted, journaled as a
// redacted change, never stored in the directory (nor its backups) and never returned.
func TestPasswordNeverStoredOrReturned(t *testing.T) {
	g := newTestGateway(t, nil)
	const secret = "correct-horse-battery-staple"
	w := serve(t, g, "POST", "/scim/v2/Users", map[string]any{"userName": "pw@contoso.example", "password": secret})
	if w.Code != 201 || strings.Contains(w.Body.String(), secret) || strings.Contains(w.Body.String(), `"password"`) {
		t.Fatalf("create answered %d %s", w.Code, w.Body)
	}
	uid := decodeJSON(t, w)["id"].(string)
	w = serve(t, g, "PATCH", "/scim/v2/Users/"+uid, `{"Operations":[{"op":"replace","path":"password","value":"`+secret+`2"}]}`)
	if w.Code != 200 || strings.Contains(w.Body.String(), secret) {
		t.Fatalf("patch answered %d %s", w.Code, w.Body)
	}
	if r := lastRecord(t, g); len(r.Changes) != 1 || r.Changes[0].Path != "password" || !r.Changes[0].Redacted {
		t.Fatalf("password change not journaled as redacted: %+v", r.Changes)
	}
	for _, target := range []string{"/scim/v2/Users/" + uid, "/scim/v2/Users?filter=userName+eq+%22pw@contoso.example%22"} {
		if w := serve(t, g, "GET", target, nil); strings.Contains(w.Body.String(), secret) || strings.Contains(w.Body.String(), `"password"`) {
			t.Fatalf("GET %s returns the password: %s", target, w.Body)
		}
	}
	var backup bytes.Buffer
	if _, err := g.store.journal.Backup(&backup); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(backup.Bytes(), []byte(secret)) {
		t.Fatal("the password is in the store file")
	}
}
