package etcdkv_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/internal/etcdtest"
	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/kv/kvtest"
)

var prefixes atomic.Int64

// freshPrefix returns a prefix no other DB of this test binary uses.
func freshPrefix() string { return fmt.Sprintf("/test%d/", prefixes.Add(1)) }

func open(t testing.TB, endpoints []string, prefix string, mod ...func(*etcdkv.Config)) *etcdkv.DB {
	t.Helper()
	cfg := etcdkv.Config{Endpoints: endpoints, Prefix: prefix}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := etcdkv.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("opening etcd store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 1)
	kvtest.Run(t, func(t *testing.T) kv.DB {
		return open(t, c.Endpoints(), freshPrefix())
	}, kvtest.Options{MaxTxnOps: 128, CursorFollowsBucketWrites: true})
}
