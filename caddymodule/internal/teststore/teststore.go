// Package teststore opens the store a test runs on: a bbolt file by default, or, with
// SCIMGATE_TEST_STORE=etcd, a fresh key prefix of an embedded single-member etcd shared by
// the test process, so that the engine's and the reconciler's suites can be run unchanged
// against the fleet's backend:
//
//	SCIMGATE_TEST_STORE=etcd go test ./caddymodule/provision/ ./caddymodule/reconcile/
package teststore

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/store"
	"github.com/scimgate/scimgate/internal/testnet"
)

// Etcd reports whether tests run on etcd (SCIMGATE_TEST_STORE=etcd).
func Etcd() bool { return os.Getenv("SCIMGATE_TEST_STORE") == "etcd" }

// Open opens a store for t: the bbolt file dir/scimgate.db, or a new prefix in etcd. It is
// closed when t ends.
func Open(t testing.TB, dir string) *store.Store {
	t.Helper()
	var (
		s   *store.Store
		err error
	)
	if Etcd() {
		s, err = openEtcd()
	} else {
		s, err = store.Open(filepath.Join(dir, "scimgate.db"), store.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	once      sync.Once
	endpoint  string
	startErr  error
	prefixSeq atomic.Uint64
)

func openEtcd() (*store.Store, error) {
	once.Do(func() { endpoint, startErr = start() })
	if startErr != nil {
		return nil, startErr
	}
	db, err := etcdkv.Open(context.Background(), etcdkv.Config{
		Endpoints: []string{endpoint},
		Prefix:    fmt.Sprintf("/test/%d/", prefixSeq.Add(1)),
	})
	if err != nil {
		return nil, err
	}
	s, err := store.New(db)
	if err != nil {
		_ = db.Close()
	}
	return s, err
}

// start runs one etcd member for the test process (it ends with the process).
func start() (string, error) {
	dir, err := os.MkdirTemp("", "teststore-etcd-")
	if err != nil {
		return "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = dir
	// Claimed for the process (the member's life), both in one call: two ports picked one
	// after the other may be the same, and another test process's Caddy may be handed one.
	addrs, err := testnet.FreeAddrsHeld(2)
	if err != nil {
		return "", err
	}
	cli, peer := url.URL{Scheme: "http", Host: addrs[0]}, url.URL{Scheme: "http", Host: addrs[1]}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cli}, []url.URL{cli}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		return "", fmt.Errorf("etcd not ready within a minute")
	}
	return cli.String(), nil
}
