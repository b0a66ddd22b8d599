package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

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
		key := portKey(na)
		_, _, err = addrLocks.LoadOrNew(key, func() (caddy.Destructor, error) {
			l, err := lockAddress(lockName(key))
			if err != nil {
				return nil, fmt.Errorf("another scimgate process already serves %s (port %s, on this or another of the machine's addresses): stop it, or give this one another port (%w)", a, portRange(na), err)
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

// portKey is what an address's lock is taken on: its network and port, not its host. A
// process bound to the wildcard address (:8080, 0.0.0.0:8080) and another bound to one
// of the machine's addresses (127.0.0.1:8080) on the same port both bind with
// SO_REUSEPORT, and the kernel gives the connections to 127.0.0.1 to one or the other:
// keyed by the whole address, the two locks differed and both gateways ran, answering
// from two directories. Two gateways on one port of two different addresses of a machine
// are refused too (in one network namespace): the lock cannot tell them apart from the
// overlap.
func portKey(na caddy.NetworkAddress) string {
	network := strings.TrimRight(na.Network, "46") // tcp4 and tcp6 share the port space of tcp
	return network + "/:" + portRange(na)
}

// portRange is the address's port, or its range of ports (8080-8089).
func portRange(na caddy.NetworkAddress) string {
	if na.EndPort > na.StartPort {
		return fmt.Sprintf("%d-%d", na.StartPort, na.EndPort)
	}
	return fmt.Sprint(na.StartPort)
}

// lockName names an address's lock: the same in every process on the machine.
func lockName(addr string) string {
	sum := sha256.Sum256([]byte(addr))
	return "scimgate-listen-" + hex.EncodeToString(sum[:12])
}
