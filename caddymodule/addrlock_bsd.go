//go:build unix && !linux

package caddymodule

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// lockAddress takes an exclusive lock on a file named name in the temporary directory,
// released with the process however it ends (BSD and macOS have no abstract sockets).
func lockAddress(name string) (io.Closer, error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.New("its lock file is held")
		}
		return nil, err
	}
	return f, nil
}
