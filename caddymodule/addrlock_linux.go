package caddymodule

import (
	"io"
	"net"
)

// lockAddress binds an abstract unix socket named name: abstract sockets live in the
// network namespace, like the ports they stand for, can be bound once, and go with the
// process that holds them, however it ends.
func lockAddress(name string) (io.Closer, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + name, Net: "unix"})
	if err != nil {
		return nil, err
	}
	return l, nil
}
