// Package testnet finds loopback addresses for the servers a test starts.
package testnet

import (
	"net"
	"testing"
)

// FreeAddr returns a free loopback address (127.0.0.1:port).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return FreeAddrs(t, 1)[0]
}

// FreeAddrs returns n distinct free loopback addresses. Their listeners are all open before
// any is closed, so the kernel cannot hand the same port out twice, as it may when one
// listener is closed before the next opens (seen in CI: two servers of one test given the
// same port). Take every address a test needs together in one call.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free loopback port: %v", err)
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs
}
