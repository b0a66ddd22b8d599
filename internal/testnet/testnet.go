// Package testnet finds loopback addresses for the servers a test starts.
package testnet

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// maxSkipped bounds how many ports FreeAddrs passes over because another test process
// claimed them, so that a broken lock directory fails the test instead of looping.
const maxSkipped = 256

// FreeAddr returns a free loopback address (127.0.0.1:port).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return FreeAddrs(t, 1)[0]
}

// FreeAddrs returns n distinct free loopback addresses, claimed for this test until it
// ends. Their listeners are all open before any is closed, so the kernel cannot hand the
// same port out twice, as it may when one listener is closed before the next opens (seen
// in CI: two servers of one test given the same port).
//
// A claim is an advisory lock on a file named for the port (in the temporary directory),
// which other test processes that use FreeAddrs respect: `go test ./...` runs packages in
// parallel processes, and Caddy binds with SO_REUSEPORT, so two of them handed the same
// port would both bind it and the kernel would split the connections between them (seen in
// CI: an admin request answered 200 with an empty body by another package's Caddy).
// Take every address a test needs together in one call.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs, err := pick(n, func(f *os.File) {
		t.Cleanup(func() { _ = f.Close() }) // closing the file releases the lock
	})
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// FreeAddrsHeld is FreeAddrs for code without a test to end the claims (a command's rig,
// run by its package's tests): the claims are held until the process exits.
func FreeAddrsHeld(n int) ([]string, error) {
	return pick(n, func(f *os.File) {
		heldMu.Lock()
		held = append(held, f) // kept open: the lock lasts as long as the process
		heldMu.Unlock()
	})
}

// pick returns n distinct free loopback addresses, each claimed (keep takes its lock
// file), passing over ports other processes claimed. The listeners stay open until it
// returns, so the kernel does not hand a port out twice.
func pick(n int, keep func(*os.File)) ([]string, error) {
	addrs := make([]string, 0, n)
	skipped := 0
	for len(addrs) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free loopback port: %w", err)
		}
		defer l.Close()
		addr := l.Addr().String()
		f, err := claimFile(addr)
		if err != nil {
			return nil, fmt.Errorf("claiming %s: %w", addr, err)
		}
		if f == nil {
			if skipped++; skipped > maxSkipped {
				return nil, fmt.Errorf("finding a free loopback port: %d ports in a row are claimed by other test processes", skipped)
			}
			continue
		}
		keep(f)
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// held keeps FreeAddrsHeld's lock files open (their locks) for the life of the process.
var (
	heldMu sync.Mutex
	held   []*os.File
)

// claimFile locks the file named for addr's port: the open file while it holds the lock,
// nil when another open file holds it. Where locks are not supported, every claim
// succeeds.
func claimFile(addr string) (*os.File, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(os.TempDir(), "scimgate-test-ports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, port), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	ok, err := tryLock(f)
	if err != nil || !ok {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}
