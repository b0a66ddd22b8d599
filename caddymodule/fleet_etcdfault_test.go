package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// TestFleetQuorumLostBetweenCallAndCommit loses etcd's quorum while a create's call is at
// the app: the intent is committed and the app made the account, but the outcome cannot
// be stored. The create answers 503 with Retry-After within a bounded time (never 201:
// nothing stored says so). Once the quorum is back, Entra's retries (through the first
// gateway, then another), each a lookup by userName and then a create as Entra makes them,
// end within a bounded wait, without a restart, in one of the two outcomes etcd allows:
// the outcome's commit was lost, and the retry's create adopts the first attempt's
// account (201); or the commit, which timed out at the client, was still in the leader's
// log and committed when the quorum returned (which node wins the election decides), and
// the lookup finds the user. Either way the app holds one account, the directory the
// user once, no intent is left open, and the journal is one chain.
func TestFleetQuorumLostBetweenCallAndCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and three gateway processes")
	}
	f := startFleet(t, 2, "")
	if r := f.do(0, http.MethodPost, "/Users", fleetUser("warm@contoso.example", "t")); r.status != http.StatusCreated {
		t.Fatalf("create: %d %v %s", r.status, r.err, r.body)
	}
	const name = "midwrite@contoso.example"
	var stopped []int
	f.app.setOnCreated(func(login string) bool {
		if login != name {
			return false
		}
		// The two followers stopped before the app answers (a leader's stop hands
		// leadership over first, slow): the gateway's commit of the outcome finds no quorum.
		lead := max(f.etcd.Leader(), 0)
		for i := range 3 {
			if i != lead {
				stopped = append(stopped, i)
				f.etcd.Stop(i)
			}
		}
		return true
	})
	outage := &http.Client{Timeout: 10 * fleetRequestTimeout, Transport: &http.Transport{}}
	began := time.Now()
	r := fleetDo(outage, f.base(0), http.MethodPost, "/Users", fleetUser(name, "t"))
	took := time.Since(began)
	if r.status != http.StatusServiceUnavailable || r.retryAfter == "" {
		t.Fatalf("quorum lost after the app's create: %d (Retry-After %q) after %s %v %s", r.status, r.retryAfter, took, r.err, r.body)
	}
	t.Logf("quorum lost after the call: 503 after %s: %s", took, r.body)
	for _, i := range stopped {
		f.etcd.Restart(i)
	}

	restarted := time.Now()
	var last fleetResp
	var statuses []string
	matched := false
	for attempt := range 120 { // bounded: about 60s
		gw := attempt % 2
		if l := f.do(gw, http.MethodGet, "/Users?filter="+url.QueryEscape(`userName eq "`+name+`"`), ""); l.status == http.StatusOK && strings.Contains(string(l.body), `"totalResults":1`) {
			statuses = append(statuses, fmt.Sprintf("%d:found", gw))
			matched = true // the first attempt's outcome committed after all: Entra matches it
			break
		} else if l.status != http.StatusOK && (l.status != http.StatusServiceUnavailable || l.retryAfter == "") {
			t.Fatalf("Entra's lookup through gateway %d: %d (Retry-After %q) %v %s", gw, l.status, l.retryAfter, l.err, l.body)
		} else if l.status != http.StatusOK {
			statuses = append(statuses, fmt.Sprintf("%d:lookup %d", gw, l.status))
			time.Sleep(500 * time.Millisecond)
			continue
		}
		last = f.do(gw, http.MethodPost, "/Users", fleetUser(name, "t"))
		statuses = append(statuses, fmt.Sprintf("%d:%d", gw, last.status))
		if last.status == http.StatusCreated {
			break
		}
		if last.status != http.StatusServiceUnavailable || last.retryAfter == "" {
			t.Fatalf("Entra's retry through gateway %d: %d (Retry-After %q) %v %s", gw, last.status, last.retryAfter, last.err, last.body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if last.status != http.StatusCreated && !matched {
		t.Fatalf("the retries never created the user: %s; last %d %s", strings.Join(statuses, " "), last.status, last.body)
	}
	t.Logf("retried: %s, done %s after the quorum came back (matched by the lookup: %v)", strings.Join(statuses, " "), time.Since(restarted), matched)
	if n := f.app.createCount(name); n != 1 {
		t.Errorf("the app received %d creates for %s, want 1", n, name)
	}
	dir, err := f.listUsers(1)
	if err != nil {
		t.Fatal(err)
	}
	var found int
	for _, u := range dir {
		if u.UserName == name {
			found++
		}
	}
	if found != 1 {
		t.Errorf("the directory holds %s %d times, want 1", name, found)
	}
	fj := verifyJournal(t, f.backup())
	open := map[string]uint64{} // target and request id -> an intent's seq, until a later record of them
	for _, rec := range fj.records {
		if rec.Target == "" || rec.RequestID == "" {
			continue
		}
		k := rec.Target + " " + rec.RequestID
		if rec.Outcome == change.Pending {
			open[k] = rec.Seq
		} else {
			delete(open, k)
		}
	}
	if len(open) != 0 {
		t.Errorf("intents left open: %v", open)
	}
}
