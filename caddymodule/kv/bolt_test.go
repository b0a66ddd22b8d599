package kv_test

import (
	"path/filepath"
	"testing"

	"github.com/scimgate/scimgate/caddymodule/kv"
	"github.com/scimgate/scimgate/caddymodule/kv/kvtest"
)

func TestBoltConformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.DB {
		db, err := kv.OpenBolt(filepath.Join(t.TempDir(), "kv.db"), kv.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}, kvtest.Options{})
}
