package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
)

// TestFleetReadsWithinRequestTimeout: etcd answers each request after 2.5 s (a proxy adds
// 1.25 s each way: a WAN link or a loaded cluster), under the store's request_timeout of
// 4 s. Reads and writes through the gateways work, slowly. Before, request_timeout bounded
// only commits: a read's linearizable barrier had a fixed 2 s, so every read and every
// write (each begins with reads) answered 503 however request_timeout was set.
func TestFleetReadsWithinRequestTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and gateway processes")
	}
	f := startFleetOf(t, 2, &gwFleet{proxied: true, leaseTTL: 20 * time.Second, requestTimeout: 4 * time.Second}, false)
	for _, p := range f.proxies {
		p.SetLatency(1250 * time.Millisecond)
	}
	slow := &http.Client{Timeout: 120 * time.Second, Transport: &http.Transport{}}
	r := fleetDo(slow, f.base(0), http.MethodPost, "/Users", fleetUser("wan@contoso.example", "t"))
	if r.status != http.StatusCreated {
		t.Fatalf("a create with etcd 2.5 s away and request_timeout 4s: %d %v %s", r.status, r.err, r.body)
	}
	g := fleetDo(slow, f.base(1), http.MethodGet, "/Users/"+r.id(), "")
	if g.status != http.StatusOK {
		t.Fatalf("a read with etcd 2.5 s away and request_timeout 4s: %d %v %s", g.status, g.err, g.body)
	}
}

// TestFleetStalledEtcd: etcd stops answering without closing its connections (a proxy
// holds everything: a black-holing network), before a request and while a create's call is
// at the app. Every request answers (within a generous bound) 503 with Retry-After, never
// a 2xx; the create whose call reached the app says its outcome is not stored (not that
// nothing was changed); the gateway does not wait again on the store for writes that
// cannot succeed (journaling the failure, listing the create for adoption: each cost
// another request_timeout, so that a 503 took 3 x request_timeout). When the proxy heals,
// Entra's retries (match, then create) succeed, the app holds one account, the directory
// holds the user once, and every acknowledged create is in the directory.
func TestFleetStalledEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an etcd cluster and gateway processes")
	}
	f := startFleetOf(t, 2, &gwFleet{proxied: true, leaseTTL: 20 * time.Second, logs: true}, false)
	if r := f.do(0, http.MethodPost, "/Users", fleetUser("warm@contoso.example", "t")); r.status != http.StatusCreated {
		t.Fatalf("create: %d %v %s", r.status, r.err, r.body)
	}
	stall := func(on bool) {
		for _, p := range f.proxies {
			if on {
				p.Stall()
			} else {
				p.Heal()
			}
		}
	}
	// Generous: an answer at all, well within Entra's patience, never a hang.
	bounded := &http.Client{Timeout: 10 * fleetRequestTimeout, Transport: &http.Transport{}}
	acked := []string{"warm@contoso.example"}

	stall(true)
	for gw := range 2 {
		name := fmt.Sprintf("stalled%d@contoso.example", gw)
		r := fleetDo(bounded, f.base(gw), http.MethodPost, "/Users", fleetUser(name, "t"))
		if r.status != http.StatusServiceUnavailable || r.retryAfter == "" {
			t.Fatalf("a create through gateway %d with etcd stalled: %d (Retry-After %q) %v %s", gw, r.status, r.retryAfter, r.err, r.body)
		}
		g := fleetDo(bounded, f.base(gw), http.MethodGet, "/Users?filter="+fleetQuery(`userName eq "warm@contoso.example"`), "")
		if g.status != http.StatusServiceUnavailable || g.retryAfter == "" {
			t.Fatalf("a read through gateway %d with etcd stalled: %d (Retry-After %q) %v %s", gw, g.status, g.retryAfter, g.err, g.body)
		}
	}
	stall(false)

	const name = "midcall@contoso.example"
	f.app.setOnCreated(func(login string) bool {
		if login == name {
			stall(true)
		}
		return login == name
	})
	r := fleetDo(bounded, f.base(0), http.MethodPost, "/Users", fleetUser(name, "t"))
	if r.status != http.StatusServiceUnavailable || r.retryAfter == "" {
		t.Fatalf("a create whose outcome cannot be stored: %d (Retry-After %q) %v %s", r.status, r.retryAfter, r.err, r.body)
	}
	if strings.Contains(string(r.body), "nothing was changed") || !strings.Contains(string(r.body), "reached") {
		t.Errorf("a create that reached the app, answered: %s; want it to say the change reached the app and its outcome is not stored", r.body)
	}
	stall(false)
	// Entra's retry matches first (a filter on userName), and creates only what it does not
	// find: the first attempt's commit, held by the stalled network, may have reached etcd
	// after its 503 (a timed-out request's outcome is unknown, never reported done).
	var last fleetResp
	for attempt := range 60 { // bounded: about 30 s
		gw := attempt % 2
		q := f.do(gw, http.MethodGet, "/Users?filter="+fleetQuery(`userName eq "`+name+`"`), "")
		if q.status == http.StatusOK && strings.Contains(string(q.body), `"totalResults":1`) {
			last = fleetResp{status: http.StatusCreated}
			acked = append(acked, name)
			break
		}
		last = f.do(gw, http.MethodPost, "/Users", fleetUser(name, "t"))
		if last.status == http.StatusCreated {
			acked = append(acked, name)
			break
		}
		if last.status != http.StatusServiceUnavailable || last.retryAfter == "" {
			t.Fatalf("Entra's retry: %d (Retry-After %q) %v %s", last.status, last.retryAfter, last.err, last.body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if last.status != http.StatusCreated {
		t.Fatalf("the retries never created %s: %d %s", name, last.status, last.body)
	}
	if n := f.app.createCount(name); n != 1 {
		t.Errorf("the app received %d creates for %s, want 1", n, name)
	}
	for gw := range 2 {
		if n := f.app.createCount(fmt.Sprintf("stalled%d@contoso.example", gw)); n != 0 {
			t.Errorf("a create answered 503 before any call reached the app %d times", n)
		}
	}
	dir, err := f.listUsers(1)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]int{}
	for _, u := range dir {
		have[u.UserName]++
	}
	for _, n := range acked {
		if have[n] != 1 {
			t.Errorf("acknowledged %s is %d times in the directory, want 1", n, have[n])
		}
	}
	for gw := range 2 {
		if n := fmt.Sprintf("stalled%d@contoso.example", gw); have[n] != 0 {
			t.Errorf("%s, answered 503, is in the directory", n)
		}
	}
	fj := verifyJournal(t, f.backup())
	for _, rec := range fj.records {
		if rec.Outcome == change.Applied && strings.HasPrefix(rec.Subject, "stalled") {
			t.Errorf("a create answered 503 is journaled applied: %+v", rec)
		}
	}
	for i, g := range f.gws {
		log, err := os.ReadFile(g.logFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, doomed := range []string{"journaling a rejected request failed", "listing a create for adoption failed"} {
			if strings.Contains(string(log), doomed) {
				t.Errorf("gateway %d waited on the unavailable store again after a request failed on it (%q)", i, doomed)
			}
		}
	}
}
