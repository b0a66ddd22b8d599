package testnet

import (
	"net"
	"testing"
)

// TestFreeAddrsAreDistinctAndFree: the addresses are loopback, distinct, and can be listened
// on once returned.
func TestFreeAddrsAreDistinctAndFree(t *testing.T) {
	addrs := FreeAddrs(t, 20)
	seen := map[string]bool{}
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("%q is not a loopback address: %v", a, err)
		}
		if seen[a] {
			t.Fatalf("%s returned twice", a)
		}
		seen[a] = true
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s is not free: %v", a, err)
		}
		defer l.Close()
	}
}

// TestClaimedPortsAreSkipped: a port FreeAddr handed out cannot be claimed again (here
// through a second open file description of its lock, as another test process would try)
// while the test that took it runs, and is free to claim once that test ends. (That pick
// passes over such a port is its loop's first branch; the kernel cannot be made to offer
// a given port, so it is not driven here.)
func TestClaimedPortsAreSkipped(t *testing.T) {
	var addr string
	t.Run("holder", func(t *testing.T) {
		addr = FreeAddr(t)
		if claim(t, addr) {
			t.Fatalf("%s claimed twice while its first claim is held", addr)
		}
	})
	t.Run("after", func(t *testing.T) {
		if !claim(t, addr) {
			t.Fatalf("%s still claimed after the test that claimed it ended", addr)
		}
	})
}

// TestHeldClaims: FreeAddrsHeld's ports are distinct and stay claimed after it returns.
func TestHeldClaims(t *testing.T) {
	addrs, err := FreeAddrsHeld(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s returned twice", a)
		}
		seen[a] = true
		if claim(t, a) {
			t.Errorf("%s is not held", a)
		}
	}
}

// claim takes addr's lock for the rest of the test, as another test process would; false
// when another holder has it.
func claim(t testing.TB, addr string) bool {
	t.Helper()
	f, err := claimFile(addr)
	if err != nil {
		t.Fatalf("claiming %s: %v", addr, err)
	}
	if f == nil {
		return false
	}
	t.Cleanup(func() { _ = f.Close() })
	return true
}
