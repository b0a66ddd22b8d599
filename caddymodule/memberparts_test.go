package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/provision"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// memberApp is a native app of teams whose members are added one call at a time (PUT
// /teams/{id}/members/{member}); its failAt-th member call answers 500, once.
type memberApp struct {
	mu      sync.Mutex
	failAt  int
	calls   int
	members map[string]int // team/member -> how many times it was added
}

func (a *memberApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.Method == http.MethodPost && r.URL.Path == "/teams" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id":"team-1"}`)
		return
	}
	if r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, "/teams/") {
		http.Error(w, `{"message":"no route"}`, http.StatusNotFound)
		return
	}
	if a.calls++; a.calls == a.failAt {
		http.Error(w, `{"message":"database write timed out"}`, http.StatusInternalServerError)
		return
	}
	a.members[strings.TrimPrefix(r.URL.Path, "/teams/")]++
	w.WriteHeader(http.StatusNoContent)
}

// TestLargeMemberPatchEndToEnd: a PATCH adding 10,000 members, through the gateway, to a
// group whose app adds members one call at a time, is written in parts of at most
// provision.MemberChunk edges, each with its intent and outcome under the request's id. Its
// 5,003rd member call fails: Entra gets a 5xx, the directory holds the parts before the
// failed one, and Entra's retry completes the change without calling the app again for
// them. The journal verifies.
func TestLargeMemberPatchEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 members")
	}
	const n = 10_000
	app := &memberApp{failAt: n/2 + 3, members: map[string]int{}}
	srv := httptest.NewServer(app)
	defer srv.Close()
	mapFile := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(mapFile, []byte(`{"version":1,
	  "users":{"events":{"create":{"method":"POST","path":"/accounts","id":"id","body":{"login":{"from":"userName"}}}}},
	  "groups":{"events":{"create":{"method":"POST","path":"/teams","id":"id","body":{"name":{"from":"displayName"}}},
	    "add_members":{"method":"PUT","path":"/teams/{id}/members/{member_id}","members":"each"}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, func(g *Handler) {
		g.MaxBodyBytes = 16 << 20
		g.Target = &TargetConfig{Name: "app", URL: srv.URL, Mapping: mapFile}
	})
	gid := decodeJSON(t, serve(t, g, http.MethodPost, "/scim/v2/Groups", map[string]any{"displayName": "Everyone"}))["id"].(string)

	// The users and their accounts, as 10,000 earlier creates would have left them.
	body := membersPatch(n)
	var patch struct {
		Operations []struct {
			Value []struct {
				Value string `json:"value"`
			} `json:"value"`
		} `json:"Operations"`
	}
	if err := json.Unmarshal([]byte(body), &patch); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, n)
	for _, m := range patch.Operations[0].Value {
		ids = append(ids, m.Value)
	}
	err := g.store.Update(func(tx *store.Tx) error {
		for i, id := range ids {
			doc := scim.Resource{"userName": fmt.Sprintf("u%05d@contoso.example", i)}
			data, err := json.Marshal(doc)
			if err != nil {
				return err
			}
			if err := tx.Put(&store.Record{Type: scim.UserType, ID: id, Doc: data, Index: provision.IndexEntries(scim.UserType, doc)}); err != nil {
				return err
			}
			if err := tx.SetNativeID("app/"+scim.UserType, id, fmt.Sprintf("acct-%05d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	members := func() int {
		count := 0
		if err := g.store.View(func(tx *store.Tx) error {
			return tx.Members(gid, func(store.Member) error { count++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return count
	}
	requestRecords := func() []journal.Record {
		recs := auditRecords(t, g)
		last := recs[len(recs)-1].RequestID
		var out []journal.Record
		for _, r := range recs {
			if r.RequestID == last {
				out = append(out, r)
			}
		}
		return out
	}
	chunk := provision.FilePartSize(n) // the gateway runs on a bbolt file
	parts := (n + chunk - 1) / chunk

	w := serve(t, g, http.MethodPatch, "/scim/v2/Groups/"+gid, body)
	if w.Code < 500 {
		t.Fatalf("a PATCH whose member call failed: %d %s", w.Code, w.Body)
	}
	failedPart := (n/2+3-1)/chunk + 1
	if got, want := members(), (failedPart-1)*chunk; got != want {
		t.Errorf("stored %d members after the failure, want the %d of the parts before it", got, want)
	}
	recs := requestRecords()
	if len(recs) != 2*failedPart {
		t.Fatalf("%d records, want an intent and an outcome for each of %d parts", len(recs), failedPart)
	}
	for i, r := range recs {
		wantOutcome := "pending"
		if i%2 == 1 {
			wantOutcome = "applied"
			if i == len(recs)-1 {
				wantOutcome = "failed"
			}
		}
		if r.Part == nil || *r.Part != (journal.Part{Index: i/2 + 1, Count: parts}) || string(r.Outcome) != wantOutcome {
			t.Fatalf("record %d: part %+v, outcome %s; want part %d of %d, %s", i, r.Part, r.Outcome, i/2+1, parts, wantOutcome)
		}
	}

	w = serve(t, g, http.MethodPatch, "/scim/v2/Groups/"+gid, body)
	if w.Code != http.StatusNoContent {
		t.Fatalf("the retry: %d %s", w.Code, w.Body)
	}
	if got := members(); got != n {
		t.Errorf("stored %d members, want %d", got, n)
	}
	app.mu.Lock()
	added, twice := len(app.members), 0
	for key, times := range app.members {
		if times > 1 {
			twice++
			if !strings.HasPrefix(key, "team-1/") {
				t.Errorf("unexpected call %s", key)
			}
		}
	}
	app.mu.Unlock()
	// The failed part's calls that succeeded are made again (PUT: idempotent); no other.
	if added != n || twice != (n/2+3-1)%chunk {
		t.Errorf("the app has %d members (want %d), %d added twice (want the failed part's %d)", added, n, twice, (n/2+3-1)%chunk)
	}
	recs = requestRecords()
	if len(recs) != 2*(parts-failedPart+1) {
		t.Errorf("the retry journaled %d records, want an intent and an outcome for each part from the failed one (%d)", len(recs), parts-failedPart+1)
	}
	rep, err := g.store.journal.Verify(context.Background(), nil)
	if err != nil || !rep.OK {
		t.Fatalf("journal verify: %+v, %v", rep, err)
	}
	open, err := g.store.journal.OpenIntents("app")
	if err != nil || len(open) != 0 {
		t.Errorf("intents without an outcome: %d, %v", len(open), err)
	}
}
