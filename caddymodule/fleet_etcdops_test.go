package caddymodule

import (
	"net/http"
	"testing"
	"time"
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
