package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/outboxadmin"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// queueCrashMapping maps users onto queueCrashApp: a create that must never be sent twice
// (with a lookup to adopt what an unfinished one left), and an update of the title.
const queueCrashMapping = `{
  "version": 1,
  "users": {
    "lookup": {"method": "GET", "path": "/accounts?login={userName}", "id": "items.0.id"},
    "events": {
      "create": {"method": "POST", "path": "/accounts", "id": "id", "body": {"login": {"from": "userName"}, "title": "title"}},
      "update": {"method": "PATCH", "path": "/accounts/{id}", "send": "all", "body": {"title": {"from": "title", "transforms": [{"default": ""}]}}}
    }
  }
}`

// queueCrashBatchMapping is queueCrashMapping with the app's bulk create, which queued
// delivery uses for the creates that are ready together.
var queueCrashBatchMapping = strings.Replace(queueCrashMapping, `"events": {`,
	`"create_batch": {"method": "POST", "path": "/accounts:import", "batch_size": 16, "body_items": "accounts", "items": "results", "id": "id",
	                     "match": {"login": "{userName}"}, "item_error": "error"},
    "events": {`, 1)

// queueCrashApp is a native app that counts the creates it receives per login (a second
// one is a call made twice) and answers each call after a short random delay, so that the
// gateway is killed while calls are in flight.
type queueCrashApp struct {
	mu      sync.Mutex
	byLogin map[string]*queueAccount
	byID    map[int]*queueAccount
	posts   map[string]int
	imports int // bulk create calls
}

type queueAccount struct {
	id           int
	login, title string
}

func (a *queueCrashApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodPost && r.URL.Path == "/accounts:import" {
		a.importAccounts(w, r)
		return
	}
	var body struct{ Login, Title string }
	_ = json.NewDecoder(r.Body).Decode(&body)
	switch r.Method {
	case http.MethodGet:
		if acc := a.byLogin[strings.ToLower(r.URL.Query().Get("login"))]; acc != nil {
			fmt.Fprintf(w, `{"items":[{"id":%d}]}`, acc.id)
			return
		}
		fmt.Fprint(w, `{"items":[]}`)
	case http.MethodPost:
		login := strings.ToLower(body.Login)
		a.posts[login]++
		if a.byLogin[login] != nil {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"error":{"message":"duplicate login"}}`)
			return
		}
		acc := a.add(login, body.Title)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%d}`, acc.id)
	case http.MethodPatch:
		id, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/accounts/"))
		acc := a.byID[id]
		if acc == nil {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"message":"no such account"}}`)
			return
		}
		acc.title = body.Title
		w.WriteHeader(http.StatusNoContent)
	}
}

// add makes an account; a.mu is held.
func (a *queueCrashApp) add(login, title string) *queueAccount {
	acc := &queueAccount{id: len(a.byID) + 1, login: login, title: title}
	a.byLogin[login], a.byID[acc.id] = acc, acc
	return acc
}

// importAccounts is the bulk create: each item made or refused on its own (a login taken
// is an item's error), the results in the order of the items; a.mu is held.
func (a *queueCrashApp) importAccounts(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Accounts []struct{ Login, Title string }
	}
	_ = json.NewDecoder(r.Body).Decode(&in)
	a.imports++
	var results []string
	for _, it := range in.Accounts {
		login := strings.ToLower(it.Login)
		a.posts[login]++
		if a.byLogin[login] != nil {
			results = append(results, fmt.Sprintf(`{"login":%q,"error":{"message":"duplicate login"}}`, login))
			continue
		}
		acc := a.add(login, it.Title)
		results = append(results, fmt.Sprintf(`{"login":%q,"id":%d}`, login, acc.id))
	}
	fmt.Fprintf(w, `{"results":[%s]}`, strings.Join(results, ","))
}

// titles returns the app's accounts as login -> title.
func (a *queueCrashApp) titles() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]string{}
	for login, acc := range a.byLogin {
		out[login] = acc.title
	}
	return out
}

// queueCrashUser is what Entra (the test) knows of one user: its id once the create was
// acknowledged, and the titles it sent in order with the index of the last acknowledged.
type queueCrashUser struct {
	id, name  string
	titles    []string
	lastAcked int
}

// TestQueuedDeliverySurvivesSIGKILL kills a gateway whose target delivers through the
// outbox at random moments while its worker delivers and Entra writes. When a last gateway
// has drained the outbox: every acknowledged create and update is in the directory and the
// app, the app equals the directory, no create reached the app twice (an unfinished one is
// adopted through the lookup), nothing is left in the outbox, and the journal verifies as
// one chain. SCIMGATE_CRASH_ROUNDS sets the number of rounds (default 50).
func TestQueuedDeliverySurvivesSIGKILL(t *testing.T) {
	queueCrashRun(t, queueCrashMapping)
}

// TestQueuedBatchDeliverySurvivesSIGKILL is TestQueuedDeliverySurvivesSIGKILL with the
// app's bulk create in the mapping: the gateway is killed while batch calls are in flight
// too, and no create reaches the app twice (each item of a batch whose answer was lost is
// adopted through the lookup).
func TestQueuedBatchDeliverySurvivesSIGKILL(t *testing.T) {
	queueCrashRun(t, queueCrashBatchMapping)
}

func queueCrashRun(t *testing.T, mapping string) {
	if testing.Short() {
		t.Skip("-short")
	}
	rounds := 50
	if v, err := strconv.Atoi(os.Getenv("SCIMGATE_CRASH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	app := &queueCrashApp{byLogin: map[string]*queueAccount{}, byID: map[int]*queueAccount{}, posts: map[string]int{}}
	rig := newCrashRigServing(t, mapping, app, string(outbox.Queued))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	var users []*queueCrashUser
	var mu sync.Mutex
	for round := range rounds {
		cmd, addr := rig.start(t)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []*queueCrashUser
				for i := range 100 { // bounded: the kill normally comes first
					select {
					case <-stop:
						return
					default:
					}
					if len(mine) == 0 || rand.IntN(5) < 3 {
						u := &queueCrashUser{name: fmt.Sprintf("r%d-w%d-%d@contoso.example", round, w, i), titles: []string{"t0"}}
						if id, ok := queueCrashCreate(client, addr, u.name); ok {
							u.id = id
							mine = append(mine, u)
							mu.Lock()
							users = append(users, u)
							mu.Unlock()
						}
						continue
					}
					u := mine[rand.IntN(len(mine))]
					mu.Lock()
					u.titles = append(u.titles, fmt.Sprintf("t%d", len(u.titles)))
					title := u.titles[len(u.titles)-1]
					mu.Unlock()
					if queueCrashPatch(client, addr, u.id, title) {
						mu.Lock()
						u.lastAcked = len(u.titles) - 1
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		_ = cmd.Process.Kill() // SIGKILL
		_ = cmd.Wait()
		close(stop)
		wg.Wait()
		client.CloseIdleConnections()
	}
	if len(users) == 0 {
		t.Fatal("no create was acknowledged in any round")
	}

	// A last gateway drains the outbox; the directory (read through SCIM) and the app must
	// end equal.
	cmd, addr := rig.start(t)
	for i := 0; !queueCrashDrained(t, client, addr); i++ {
		if i == 3000 {
			t.Fatal("the outbox never drained")
		}
		time.Sleep(10 * time.Millisecond)
	}
	directory := queueCrashDirectory(t, client, addr)
	if !equalTitles(directory, app.titles()) {
		t.Fatalf("the app is not the directory: %d users in the directory, %d accounts", len(directory), len(app.titles()))
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	for _, u := range users {
		title, ok := directory[strings.ToLower(u.name)]
		if !ok {
			t.Fatalf("acknowledged create of %s is not in the directory", u.name)
		}
		if i := indexOf(u.titles, title); i < u.lastAcked {
			t.Fatalf("%s: title %q in the directory, but %q (sent later) was acknowledged", u.name, title, u.titles[u.lastAcked])
		}
	}
	app.mu.Lock()
	for login, n := range app.posts {
		if n != 1 {
			app.mu.Unlock()
			t.Fatalf("the create of %s reached the app %d times", login, n)
		}
	}
	app.mu.Unlock()

	var cfg struct{ Dir string }
	_ = json.Unmarshal(rig.spec, &cfg)
	st, err := store.Open(filepath.Join(cfg.Dir, storeFileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.View(func(tx *store.Tx) error {
		return tx.Tasks("app", 0, func(task store.Task) (bool, error) {
			return false, fmt.Errorf("task %d of %s left in the outbox: %s", task.Seq, task.Resource, task.Data)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(st.DB(), journal.Options{Name: DefaultJournalName})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if rep, err := j.Verify(context.Background(), nil); err != nil || !rep.OK {
		t.Fatalf("the journal does not verify: %+v %v", rep, err)
	}
	var buf strings.Builder
	if _, err := j.Export(context.Background(), &buf, journal.Query{}, journal.FormatJSONL); err != nil {
		t.Fatal(err)
	}
	unfinished, adopted := strings.Count(buf.String(), "stopped while it delivered"), strings.Count(buf.String(), "adopted account")
	t.Logf("%d rounds, %d acknowledged creates, all delivered once (%d bulk create calls); %d deliveries cut by a kill, %d creates adopted after one",
		rounds, len(users), app.imports, unfinished, adopted)
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func equalTitles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func queueCrashDo(client *http.Client, method, url, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

func queueCrashCreate(client *http.Client, addr, name string) (string, bool) {
	body := fmt.Sprintf(`{"schemas":[%q],"userName":%q,"title":"t0","active":true}`, scim.UserSchema, name)
	resp, data, err := queueCrashDo(client, http.MethodPost, "http://"+addr+"/scim/v2/Users", body)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return "", false
	}
	var u struct{ ID string }
	if json.Unmarshal(data, &u) != nil || u.ID == "" {
		return "", false
	}
	return u.ID, true
}

func queueCrashPatch(client *http.Client, addr, id, title string) bool {
	body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"title","value":%q}]}`, title)
	resp, _, err := queueCrashDo(client, http.MethodPatch, "http://"+addr+"/scim/v2/Users/"+id, body)
	return err == nil && resp.StatusCode == http.StatusOK
}

// queueCrashDirectory reads every user of the gateway at addr as userName -> title.
func queueCrashDirectory(t *testing.T, client *http.Client, addr string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for start := 1; ; start += 200 {
		resp, data, err := queueCrashDo(client, http.MethodGet, fmt.Sprintf("http://%s/scim/v2/Users?startIndex=%d&count=200", addr, start), "")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("listing users: %v %s", err, data)
		}
		var page struct {
			TotalResults int
			Resources    []struct{ UserName, Title string }
		}
		if err := json.Unmarshal(data, &page); err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Resources {
			out[strings.ToLower(u.UserName)] = u.Title
		}
		if len(page.Resources) == 0 || start+len(page.Resources) > page.TotalResults {
			return out
		}
	}
}

// queueCrashDrained reports whether the gateway at addr has nothing left to deliver; a
// dead letter fails the test (nothing the app did here is a rejection).
func queueCrashDrained(t *testing.T, client *http.Client, addr string) bool {
	t.Helper()
	resp, data, err := queueCrashDo(client, http.MethodGet, "http://"+addr+outboxadmin.Prefix, "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("outbox counts: %v %s", err, data)
	}
	var targets []outboxadmin.TargetItem
	if err := json.Unmarshal(data, &targets); err != nil || len(targets) != 1 {
		t.Fatalf("outbox counts: %v %s", err, data)
	}
	if targets[0].Dead > 0 {
		t.Fatalf("dead letters: %s", data)
	}
	return targets[0].Pending == 0
}
