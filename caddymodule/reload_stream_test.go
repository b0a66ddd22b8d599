package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

// streamResult is what one request of the stream got, after its retries of transport
// errors (a connection the old config's server accepted and closed unanswered).
type streamResult struct {
	method, user, title string
	status              int
	retryAfter          string
	requestID           string
	scimID              string
	transportRetries    int
	body                string
}

// runStream sends, at concurrency 8, a create and patches of title for each of users
// users (patches per user), each user's requests in order, while reload is called after
// every stride of answered requests. Each request is retried (at most 5 times) on a
// transport error only, as Entra does.
func runStream(t *testing.T, r *reloadRig, users, patches int, stride int64, reload func(i int)) []streamResult {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	var (
		mu       sync.Mutex
		results  []streamResult
		answered atomic.Int64
		wg       sync.WaitGroup
	)
	send := func(method, path, body string) (streamResult, error) {
		var res streamResult
		for attempt := 0; ; attempt++ {
			req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
			if err != nil {
				return res, err
			}
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
			resp, err := client.Do(req)
			if err != nil {
				if attempt == 5 {
					return res, fmt.Errorf("%s %s: %w", method, path, err)
				}
				res.transportRetries++
				continue
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return res, err
			}
			res.status, res.retryAfter, res.requestID, res.body = resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Request-Id"), string(data)
			return res, nil
		}
	}
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for u := w; u < users; u += 8 {
				name := fmt.Sprintf("s%03d@contoso.example", u)
				res, err := send(http.MethodPost, "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"`+name+`","displayName":"Stream `+name+`"}`)
				if err != nil {
					errs <- err
					return
				}
				res.method, res.user = http.MethodPost, name
				var created struct{ ID string }
				_ = json.Unmarshal([]byte(res.body), &created)
				res.scimID = created.ID
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
				answered.Add(1)
				if res.status != http.StatusCreated {
					continue
				}
				for p := range patches {
					title := fmt.Sprintf("t-%03d-%d", u, p)
					res, err := send(http.MethodPatch, "/Users/"+created.ID, itPatchBody(`{"op":"replace","path":"title","value":"`+title+`"}`))
					if err != nil {
						errs <- err
						return
					}
					res.method, res.user, res.title, res.scimID = http.MethodPatch, name, title, created.ID
					mu.Lock()
					results = append(results, res)
					mu.Unlock()
					answered.Add(1)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	total := int64(users * (1 + patches))
	for i, next := 0, stride; next < total; i, next = i+1, next+stride {
		for answered.Load() < next {
			select {
			case <-done:
			case <-time.After(5 * time.Millisecond):
				continue
			}
			break
		}
		select {
		case <-done:
		default:
			reload(i)
		}
	}
	<-done
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return results
}

// rigJournal stops Caddy, verifies the journal of the rig's store and returns its
// records.
func rigJournal(t *testing.T, r *reloadRig) []journal.Record {
	t.Helper()
	r.stop(t)
	path := filepath.Join(r.dataDir, storeFileName)
	rep, err := journal.VerifyFileJournal(context.Background(), path, "", nil)
	if err != nil || !rep.OK {
		t.Fatalf("journal verify: %+v %v", rep, err)
	}
	var buf bytes.Buffer
	if _, err := journal.ExportFileJournal(context.Background(), path, "", &buf, journal.Query{}, journal.FormatJSONL); err != nil {
		t.Fatal(err)
	}
	var out []journal.Record
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ Record *journal.Record }
		if err := json.Unmarshal(sc.Bytes(), &line); err == nil && line.Record != nil {
			out = append(out, *line.Record)
		}
	}
	return out
}

// TestReloadDuringWriteStream: 500 writes at concurrency 8 while the config is reloaded 9
// times, switching the delivery mode between immediate and queued: no request gets a 5xx,
// every acknowledged write has its journal record, the app gets each create once and
// each title at most once (exactly once in immediate mode; queued updates may be coalesced),
// the last acknowledged title of each user reaches the app, and the chain verifies.
func TestReloadDuringWriteStream(t *testing.T) {
	app := startPeopleApp(t)
	o := rigOptions{tag: "c0", appURL: app.url}
	r := startReloadRig(t, o)
	modes := []string{"", "queued", "", "fallback", "queued", ""}
	reloads := 0
	results := runStream(t, r, 100, 4, 50, func(i int) {
		reloads++
		next := o
		next.tag, next.delivery = fmt.Sprintf("c%d", i+1), modes[(i+1)%len(modes)]
		if err := caddy.Load(r.config(t, next), true); err != nil {
			t.Errorf("reload %d: %v", i+1, err)
		}
	})
	if len(results) != 500 {
		t.Errorf("%d results, want 500", len(results))
	}
	lastTitle := map[string]string{} // user -> the last acknowledged title
	retries := 0
	for _, res := range results {
		retries += res.transportRetries
		switch {
		case res.status >= 500:
			t.Errorf("%s %s: %d (Retry-After %q) %s", res.method, res.user, res.status, res.retryAfter, res.body)
		case res.method == http.MethodPost && res.status == http.StatusConflict && res.transportRetries > 0:
			// A create whose first attempt was lost in transport and applied: Entra then
			// matches the user by userName.
		case res.method == http.MethodPost && res.status != http.StatusCreated,
			res.method == http.MethodPatch && res.status != http.StatusOK:
			t.Errorf("%s %s: %d %s", res.method, res.user, res.status, res.body)
		}
		if res.method == http.MethodPatch && res.status == http.StatusOK {
			lastTitle[res.user] = res.title
		}
	}
	t.Logf("transport retries: %d", retries)

	// Let the outbox drain (the last config is immediate: its worker delivers what is
	// queued), then check the app.
	for i := 0; ; i++ {
		pending := 0
		for user, title := range lastTitle {
			if len(app.callsMatching(func(c peopleCall) bool { return c.Handle == user && c.Title == title })) == 0 {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		if i == 3000 {
			t.Fatalf("%d users' last titles did not reach the app in 30 s", pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
	creates := map[string]int{}
	titles := map[string]int{}
	for _, c := range app.callsMatching(func(peopleCall) bool { return true }) {
		if c.Method == http.MethodPost {
			creates[c.Handle]++
		}
		if c.Title != "" {
			titles[c.Title]++
		}
	}
	for _, res := range results {
		switch {
		case res.method == http.MethodPost && creates[res.user] != 1:
			t.Errorf("%s was created %d times in the app", res.user, creates[res.user])
		case res.method == http.MethodPatch && titles[res.title] > 1:
			t.Errorf("%s's title %s reached the app %d times", res.user, res.title, titles[res.title])
		}
	}

	recs := rigJournal(t, r)
	byRequest := map[string][]journal.Record{}
	outcomes := map[string]int{}
	for _, rec := range recs {
		outcomes[string(rec.Outcome)]++
		byRequest[rec.RequestID] = append(byRequest[rec.RequestID], rec)
	}
	if reloads != 9 || outcomes["queued"] == 0 || outcomes["applied"] == 0 {
		t.Errorf("%d reloads (want 9), outcomes %v: the stream did not run through both modes", reloads, outcomes)
	}
	t.Logf("outcomes: %v", outcomes)
	for _, res := range results {
		if res.status != http.StatusCreated && res.status != http.StatusOK {
			continue
		}
		found := false
		for _, rec := range byRequest[res.requestID] {
			if rec.Action != "deliver" && (rec.Outcome == "applied" || rec.Outcome == "queued") && rec.SCIMID == res.scimID {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %s (request %s) was acknowledged without its journal record: %+v", res.method, res.user, res.requestID, byRequest[res.requestID])
		}
	}
}
