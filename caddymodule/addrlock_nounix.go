//go:build !unix

package caddymodule

import "io"

// lockAddress takes no lock: Caddy binds without SO_REUSEPORT here, so a second process's
// bind of the same address fails already.
func lockAddress(string) (io.Closer, error) { return io.NopCloser(nil), nil }
