package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/kv"
)

// leakMapping sends the password and the work phone to the app, which the journal redacts.
const leakMapping = `{
  "version": 1,
  "users": {
    "events": {
      "create": {"method": "POST", "path": "/accounts", "id": "id", "body": {
        "login": {"from": "userName"}, "password": {"from": "password"},
        "phone": {"from": "phoneNumbers[type eq \"work\"].value"}}},
      "update": {"method": "PATCH", "path": "/accounts/{id}", "send": "all", "body": {"title": {"from": "title", "transforms": [{"default": ""}]}}},
      "delete": {"method": "DELETE", "path": "/accounts/{id}"}
    }
  }
}`

const leakCaddyfile = `{
	admin off
	persist_config off
	auto_https off
	storage file_system {$SCIMGATE_IT_STORAGE}
	log {
		output file {$SCIMGATE_IT_LOG}
		level DEBUG
		format json
	}
}

http://{$SCIMGATE_IT_ADDR} {
	bind 127.0.0.1
	log {
		output file {$SCIMGATE_IT_ACCESS}
	}
	scim_gateway {
		token entra {env.SCIMGATE_IT_TOKEN}
		data_dir {$SCIMGATE_IT_DATA}
		target app {
			url {$SCIMGATE_IT_APP}
			mapping {$SCIMGATE_IT_MAPPING}
			auth api_key {
				header X-Api-Key
				key {env.SCIMGATE_IT_APP_KEY}
			}
			max_retries 0
		}
		journal {
			redact phoneNumbers
		}
	}
}
`

// TestAppEchoLeaksNothing drives a real Caddy, at debug level with an access log, in front
// of an app whose error answers echo the request it got (the headers with the gateway's
// API key, the body with the user's password and phone number) in text, in a JSON
// message, and as a JSON error without a message: Entra's SCIM errors, the gateway's log,
// the access log and the journal hold neither the API key nor the password nor the
// redacted phone number (the excerpt still names the app's complaint), and the outage
// of a 5xx echo is logged without the app's body.
func TestAppEchoLeaksNothing(t *testing.T) {
	const (
		appKey = "apikey-Leak-0123456789"
		pw     = "pw-Leak-0042xyz"
	)
	var mode atomic.Value
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		hdrs := fmt.Sprintf("X-Api-Key %s", r.Header.Get("X-Api-Key"))
		switch mode.Load() {
		case "text":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "login rejected. headers: %s body: %s", hdrs, body)
		case "message":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"message":%q}`, "login rejected for "+string(body)+" "+hdrs)
		case "json":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, `{"status":"login rejected","received":%s,"key":%q}`, body, hdrs)
		case "5xx":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "crash: headers: %s body: %s", hdrs, body)
		}
	}))
	t.Cleanup(app.Close)
	dir := t.TempDir()
	mapFile, caddyfile := filepath.Join(dir, "app.json"), filepath.Join(dir, "Caddyfile")
	logFile, accessFile := filepath.Join(dir, "gateway.log"), filepath.Join(dir, "access.log")
	for path, data := range map[string]string{mapFile: leakMapping, caddyfile: leakCaddyfile} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SCIMGATE_IT_LOG", logFile)
	t.Setenv("SCIMGATE_IT_ACCESS", accessFile)
	t.Setenv("SCIMGATE_IT_APP", app.URL)
	t.Setenv("SCIMGATE_IT_MAPPING", mapFile)
	t.Setenv("SCIMGATE_IT_APP_KEY", appKey)
	s := itStartCaddyfile(t, caddyfile)

	var answers []string
	for i, c := range []struct {
		mode   string
		status int
	}{{"text", 400}, {"message", 400}, {"json", 409}, {"5xx", 503}} {
		mode.Store(c.mode)
		phone := fmt.Sprintf("+1555000%04d", i)
		res := s.do(t, http.MethodPost, "/Users", fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
			"userName":"ada%d@contoso.example","password":%q,"phoneNumbers":[{"type":"work","value":%q}]}`, i, pw+phone, phone))
		res.expect(t, c.status)
		detail, _ := res.object(t)["detail"].(string)
		if c.status < 500 && !strings.Contains(detail, "login rejected") {
			t.Errorf("%s: the detail lost the app's complaint: %s", c.mode, detail)
		}
		answers = append(answers, fmt.Sprintf("%s answer: %s", c.mode, res.body))
	}
	s.stop(t)

	db, err := kv.OpenBolt(filepath.Join(s.dataDir, "scimgate.db"), kv.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	j, err := journal.Open(db, journal.Options{Name: "scimgate"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	var texts []string
	for _, r := range journalRecords(t, j) {
		line, _ := json.Marshal(r)
		texts = append(texts, "journal: "+string(line))
	}
	for _, f := range []string{logFile, accessFile} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, filepath.Base(f)+": "+string(data))
	}
	texts = append(texts, answers...)
	for _, text := range texts {
		for _, secret := range []string{appKey, pw, "+1555000"} {
			if strings.Contains(text, secret) {
				t.Errorf("%q leaked in %.2000s", secret, text)
			}
		}
	}
	if logs := texts[len(texts)-len(answers)-2]; !strings.Contains(logs, "scim request answered with a server error") || !bytes.Contains([]byte(logs), []byte("HTTP 500")) {
		t.Errorf("the outage is not logged with the app's status: %.2000s", logs)
	}
}
