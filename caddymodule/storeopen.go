package caddymodule

import (
	"context"
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/kv/etcdkv"
	"github.com/scimgate/scimgate/caddymodule/store"
	"github.com/scimgate/scimgate/caddymodule/storeconfig"
)

// openStore opens the store a config names: its bbolt file, or its etcd cluster.
func openStore(sc *storeconfig.Resolved) (*store.Store, error) {
	if sc.Backend != storeconfig.Etcd {
		return store.Open(sc.Path, store.Options{})
	}
	// Open bounds its own dialling and loading (DialTimeout, LoadTimeout); the context
	// only lets it be abandoned, which a Caddy start does not do.
	db, err := etcdkv.Open(context.Background(), etcdkv.Config{
		Endpoints:     sc.Endpoints,
		Prefix:        sc.Prefix,
		Username:      sc.Username,
		Password:      sc.Password,
		TLS:           sc.TLS,
		DialTimeout:   sc.DialTimeout,
		CommitTimeout: sc.RequestTimeout,
		// request_timeout bounds reads too: a linearizable read that etcd answers within it
		// must not fail on a shorter bound of its own.
		BarrierTimeout: sc.RequestTimeout,
		MaxStaleness:   sc.ReadStaleness,
		Logger:         caddy.Log().Named("scimgate.store"),
	})
	if err != nil {
		return nil, err
	}
	s, err := store.New(db)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening store %s: %w", db, err)
	}
	return s, nil
}
