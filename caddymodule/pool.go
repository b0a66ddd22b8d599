package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/scimgate/scimgate/caddymodule/store"
)

// stores holds one open store per file for the whole process: a bbolt file can be opened
// only once, and Caddy provisions a new config (which needs the store) before it cleans up
// the old one (which still holds it).
var stores = caddy.NewUsagePool()

type storeHandle struct{ *store.Store }

// Destruct closes the store when its last user is gone.
func (h *storeHandle) Destruct() error { return h.Close() }

func acquireStore(path string) (*storeHandle, error) {
	v, _, err := stores.LoadOrNew(path, func() (caddy.Destructor, error) {
		s, err := store.Open(path, store.Options{})
		if err != nil {
			return nil, err
		}
		return &storeHandle{Store: s}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	return v.(*storeHandle), nil
}

func releaseStore(path string) error {
	if _, err := stores.Delete(path); err != nil {
		return fmt.Errorf("closing store %s: %w", path, err)
	}
	return nil
}
