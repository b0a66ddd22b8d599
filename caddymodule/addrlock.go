package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/caddyserver/caddy/v2"
)

// addrLocks holds, for the whole process, one lock per address a gateway is served on.
// Caddy binds its listeners with SO_REUSEPORT on Unix so that a reload can bind the new
// config's listeners before it closes the old ones; the kernel then lets a second process
// of the same user bind the same address too, and splits the connections between the two
// (answers alternate between two directories). A gateway takes its addresses' locks when
// its config starts: a second process fails to start and says so, while the configs of
// one process share the locks across reloads.
var addrLocks = caddy.NewUsagePool()

type addrLock struct{ io.Closer }

func (l addrLock) Destruct() error { return l.Close() }

// lockAddresses takes the locks of the listen addresses (as the server's config writes
// them). On failure it releases what it took.
func lockAddresses(listen []string) ([]string, error) {
	var keys []string
	for _, a := range listen {
		na, err := caddy.ParseNetworkAddress(a)
		if err != nil {
			releaseAddresses(keys)
			return nil, fmt.Errorf("parsing listen address %q: %w", a, err)
		}
		if na.IsUnixNetwork() || na.IsFdNetwork() {
			continue // a socket file or a descriptor is not shared by SO_REUSEPORT
		}
		key := na.String()
		_, _, err = addrLocks.LoadOrNew(key, func() (caddy.Destructor, error) {
			l, err := lockAddress(lockName(key))
			if err != nil {
				return nil, fmt.Errorf("another scimgate process already serves %s: stop it, or give this one another address (%w)", key, err)
			}
			return addrLock{l}, nil
		})
		if err != nil {
			releaseAddresses(keys)
			return nil, err
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func releaseAddresses(keys []string) {
	for _, k := range keys {
		_, _ = addrLocks.Delete(k)
	}
}

// lockName names an address's lock: the same in every process on the machine.
func lockName(addr string) string {
	sum := sha256.Sum256([]byte(addr))
	return "scimgate-listen-" + hex.EncodeToString(sum[:12])
}
