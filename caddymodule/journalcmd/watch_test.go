package journalcmd_test

// Tests of `journal watch` against a real admin endpoint.

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/internal/journaltest"
	"github.com/scimgate/scimgate/caddymodule/journaladmin"
	"github.com/scimgate/scimgate/internal/testnet"
)

// TestCLIWatchProxy runs `journal watch` against a real admin endpoint: a URL typed into a
// browser gets the page, the page's stream delivers records written through the gateway,
// and nothing else of the admin API is reachable.
func TestCLIWatchProxy(t *testing.T) {
	e := journaltest.Start(t)
	first := e.CreateUser(t, "before@example.com")
	base := journaltest.WatchStart(t, e.Admin)
	u, err := url.Parse(base)
	if err != nil || u.Path != "/" || !strings.HasPrefix(u.Host, "127.0.0.1:") {
		t.Fatalf("printed URL %q: %v", base, err)
	}
	origin := strings.TrimSuffix(base, "/")
	page := journaladmin.JournalPath(journaltest.JournalName, "watch")
	live := journaladmin.JournalPath(journaltest.JournalName, "live")
	typed := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "none", "Sec-Fetch-Dest", "document"}

	t.Run("a typed URL gets the page", func(t *testing.T) {
		// The admin endpoint itself refuses this request: the reason watch exists.
		if resp, body := e.Do(t, http.MethodGet, page, typed...); resp.StatusCode != http.StatusForbidden {
			t.Errorf("the admin endpoint answered a typed URL with %d, want 403: %s", resp.StatusCode, body)
		}
		resp, _ := journaltest.WatchDo(t, http.MethodGet, base, "", typed...)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != page {
			t.Fatalf("GET /: status %d, Location %q, want 302 to %s", resp.StatusCode, resp.Header.Get("Location"), page)
		}
		// The page as the admin endpoint serves it to a script (no browser headers).
		adminResp, adminPage := e.Do(t, http.MethodGet, page)
		journaltest.WantStatus(t, adminResp, adminPage, http.StatusOK)
		csp := adminResp.Header.Get("Content-Security-Policy")
		if csp == "" {
			t.Fatal("the admin endpoint serves the page without a Content-Security-Policy")
		}
		resp, body := journaltest.WatchDo(t, http.MethodGet, origin+page, "", typed...)
		journaltest.WantStatus(t, resp, body, http.StatusOK)
		journaltest.WantHeader(t, resp, "Content-Type", "text/html; charset=utf-8")
		journaltest.WantHeader(t, resp, "Content-Security-Policy", csp)
		if !bytes.Equal(body, adminPage) {
			t.Errorf("the page through watch differs from the admin endpoint's (%d bytes, want %d)", len(body), len(adminPage))
		}
		resp, _ = journaltest.WatchDo(t, http.MethodGet, base+"?outcome=rejected", "", typed...)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != page+"?outcome=rejected" {
			t.Errorf("GET /?outcome=rejected: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, body = journaltest.WatchDo(t, http.MethodHead, origin+page, "", typed...)
		if resp.StatusCode != http.StatusOK || len(body) != 0 {
			t.Errorf("HEAD of the page: status %d, %d body bytes", resp.StatusCode, len(body))
		}
	})

	// The page's own stream request: same-origin, CORS mode, with the page as Referer.
	fromPage := []string{"Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Dest", "empty", "Referer", origin + page, "Accept", "text/event-stream"}

	t.Run("the stream delivers new records", func(t *testing.T) {
		s := journaltest.WatchStream(t, origin+live+"?backlog=1", fromPage...)
		if ev := s.NextRecord(t); ev.Subject != "before@example.com" || ev.SCIMID != first {
			t.Fatalf("backlog record %+v", ev.Record)
		}
		e.CreateUser(t, "carol@example.com")
		if ev := s.NextRecord(t); ev.Subject != "carol@example.com" || ev.Outcome != "applied" {
			t.Fatalf("new record %+v", ev.Record)
		}
	})

	t.Run("the stream resumes after the last record seen", func(t *testing.T) {
		head := e.Head(t)
		for _, resume := range []struct{ query, header string }{
			{"?last_event_id=" + strconv.FormatUint(head-1, 10), ""},
			{"", strconv.FormatUint(head-1, 10)},
		} {
			headers := fromPage
			if resume.header != "" {
				headers = append(slices.Clone(fromPage), "Last-Event-ID", resume.header)
			}
			s := journaltest.WatchStream(t, origin+live+resume.query, headers...)
			if ev := s.NextRecord(t); ev.Seq != head || ev.Subject != "carol@example.com" {
				t.Errorf("resuming with %+v: first record %+v, want seq %d", resume, ev.Record, head)
			}
			s.Cancel()
		}
	})

	t.Run("refused", func(t *testing.T) {
		port := u.Port()
		tests := []struct {
			name, method, path, host string
			headers                  []string
			status                   int
		}{
			{"admin config", http.MethodGet, "/config/", "", nil, http.StatusNotFound},
			{"journal list", http.MethodGet, journaladmin.Prefix, "", nil, http.StatusNotFound},
			{"backup", http.MethodGet, journaladmin.JournalPath(journaltest.JournalName, "backup"), "", nil, http.StatusNotFound},
			{"export", http.MethodGet, journaladmin.JournalPath(journaltest.JournalName, "export"), "", nil, http.StatusNotFound},
			{"another journal's page", http.MethodGet, journaladmin.JournalPath("other", "watch"), "", nil, http.StatusNotFound},
			{"dot segments", http.MethodGet, page + "/../backup", "", nil, http.StatusNotFound},
			{"escaped slash", http.MethodGet, journaladmin.Prefix + "/audit%2Fwatch/live", "", nil, http.StatusNotFound},
			{"trailing slash", http.MethodGet, page + "/", "", nil, http.StatusNotFound},
			{"unknown page parameter", http.MethodGet, page + "?format=csv", "", nil, http.StatusBadRequest},
			{"unknown stream parameter", http.MethodGet, live + "?to_seq=1", "", nil, http.StatusBadRequest},
			{"POST", http.MethodPost, page, "", nil, http.StatusMethodNotAllowed},
			{"POST checkpoint", http.MethodPost, journaladmin.JournalPath(journaltest.JournalName, "checkpoint"), "", nil, http.StatusMethodNotAllowed},
			{"DELETE", http.MethodDelete, "/config/", "", nil, http.StatusMethodNotAllowed},
			{"HEAD of the stream", http.MethodHead, live, "", nil, http.StatusMethodNotAllowed},
			{"rebound host", http.MethodGet, page, "attacker.example:" + port, typed, http.StatusForbidden},
			{"host without port", http.MethodGet, "/", "127.0.0.1", typed, http.StatusForbidden},
			{"host of the admin endpoint", http.MethodGet, page, e.Admin, typed, http.StatusForbidden},
			{"another origin", http.MethodGet, live, "", []string{"Origin", "http://attacker.example"}, http.StatusForbidden},
			{"null origin", http.MethodGet, live, "", []string{"Origin", "null"}, http.StatusForbidden},
			{"no-cors", http.MethodGet, live, "", []string{"Sec-Fetch-Mode", "no-cors"}, http.StatusForbidden},
			{"cross-site fetch", http.MethodGet, live, "", []string{"Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := journaltest.WatchDo(t, tt.method, origin+tt.path, tt.host, tt.headers...)
				journaltest.WantStatus(t, resp, body, tt.status)
				if tt.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
					t.Error("405 without an Allow header")
				}
			})
		}
	})

	t.Run("allowed browser contexts", func(t *testing.T) {
		for _, headers := range [][]string{
			{"Origin", origin}, // a same-origin request that names itself
			{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "cross-site"}, // a link from elsewhere
			nil, // curl
		} {
			resp, body := journaltest.WatchDo(t, http.MethodGet, origin+page, "", headers...)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("headers %q: status %d: %s", headers, resp.StatusCode, body)
			}
		}
		resp, body := journaltest.WatchDo(t, http.MethodGet, origin+page, "localhost:"+u.Port())
		journaltest.WantStatus(t, resp, body, http.StatusOK)
	})
}

// TestCLIWatchStopsWithStreamOpen checks that cancelling watch ends it promptly even while a
// page's stream is open (the cleanup of journaltest.WatchStart fails the test otherwise).
func TestCLIWatchStopsWithStreamOpen(t *testing.T) {
	e := journaltest.Start(t)
	base := journaltest.WatchStart(t, e.Admin)
	s := journaltest.WatchStream(t, strings.TrimSuffix(base, "/")+journaladmin.JournalPath(journaltest.JournalName, "live"))
	e.CreateUser(t, "open@example.com")
	if ev := s.NextRecord(t); ev.Subject != "open@example.com" {
		t.Fatalf("record %+v", ev.Record)
	}
}

func TestCLIWatchBadInput(t *testing.T) {
	e := journaltest.Start(t)
	tests := []struct {
		args    []string
		mention string
	}{
		{[]string{"--listen", "0.0.0.0:0"}, "not a loopback address"},
		{[]string{"--listen", ":0"}, "not a loopback address"},
		{[]string{"--listen", "[::]:0"}, "not a loopback address"},
		{[]string{"--listen", "192.0.2.1:8080"}, "not a loopback address"},
		{[]string{"--listen", "scimgate.example.com:8080"}, "not a loopback address"},
		{[]string{"--listen", "127.0.0.1"}, "want host:port"},
		{[]string{"--journal", "nosuch"}, "no journal named"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			err := journaltest.Err(t, append([]string{"watch", "--admin", e.Admin}, tt.args...)...)
			if err == nil || journaltest.ExitCode(err) != 1 || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("err = %v (exit %d); want exit 1 mentioning %q", err, journaltest.ExitCode(err), tt.mention)
			}
		})
	}
	for _, args := range [][]string{
		{"watch", "--file", "backup.db"},
		{"watch", "--admin", testnet.FreeAddr(t)},
	} {
		if err := journaltest.Err(t, args...); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
