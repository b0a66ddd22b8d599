package journalcmd

import (
	"net"
	"slices"
	"testing"
)

func TestCLIWatchHosts(t *testing.T) {
	tests := []struct {
		addr net.TCPAddr
		want []string
	}{
		{net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, []string{"127.0.0.1:8080", "localhost:8080"}},
		{net.TCPAddr{IP: net.IPv6loopback, Port: 8080}, []string{"[::1]:8080", "localhost:8080"}},
		{net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}, []string{"127.0.0.1:80", "localhost:80", "127.0.0.1", "localhost"}},
		{net.TCPAddr{IP: net.IPv6loopback, Port: 80}, []string{"[::1]:80", "localhost:80", "[::1]", "localhost"}},
	}
	for _, tt := range tests {
		if got := watchHosts(&tt.addr); !slices.Equal(got, tt.want) {
			t.Errorf("watchHosts(%v) = %q, want %q", &tt.addr, got, tt.want)
		}
	}
}

func TestCLIIsLoopbackHost(t *testing.T) {
	tests := map[string]bool{
		"127.0.0.1": true, "127.8.9.10": true, "::1": true, "localhost": true, "LocalHost": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "192.0.2.1": false,
		"localhost.example.com": false, "127.0.0.1.nip.io": false, "::ffff:10.0.0.1": false,
	}
	for host, want := range tests {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
