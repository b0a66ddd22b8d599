// Package fleettest starts an etcd member in-process for the tests of the fleet jobs, with
// go.etcd.io/etcd/server/v3/embed. Only _test.go files may import it: the production
// binary must not link the etcd server. It is the one-member subset of
// caddymodule/internal/etcdtest (a cluster, being written on another branch); the two are
// to be unified once that package is on main.
package fleettest

import (
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Etcd is one in-process etcd member on 127.0.0.1 with its data in the test's temporary
// directory, stopped when the test ends.
type Etcd struct {
	t        testing.TB
	endpoint string
	mu       sync.Mutex
	etcd     *embed.Etcd
	stopped  bool
}

// Start starts a member and waits until it is ready.
func Start(t testing.TB) *Etcd {
	t.Helper()
	peer := url.URL{Scheme: "http", Host: freeAddr(t)}
	cli := url.URL{Scheme: "http", Host: freeAddr(t)}
	cfg := embed.NewConfig()
	cfg.Name = "m0"
	cfg.Dir = filepath.Join(t.TempDir(), "m0")
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.ListenClientUrls = []url.URL{cli}
	cfg.AdvertiseClientUrls = []url.URL{cli}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	cfg.InitialClusterToken = "fleettest"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Quicker elections than etcd's defaults, with room for a loaded machine; the minimum
	// lease TTL follows (1.5 election timeouts).
	cfg.TickMs = 50
	cfg.ElectionMs = 500
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	te := &Etcd{t: t, endpoint: cli.String(), etcd: e}
	t.Cleanup(te.Stop)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd failed: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatalf("etcd not ready within 60s")
	}
	return te
}

// Client returns a new client of the member, closed when the test ends.
func (te *Etcd) Client() *clientv3.Client {
	te.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{te.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		te.t.Fatalf("etcd client: %v", err)
	}
	te.t.Cleanup(func() { cli.Close() })
	return cli
}

// Stop stops the member: the fleet loses etcd.
func (te *Etcd) Stop() {
	te.mu.Lock()
	defer te.mu.Unlock()
	if !te.stopped {
		te.etcd.Close()
		te.stopped = true
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
