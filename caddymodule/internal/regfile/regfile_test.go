//go:build unix

package regfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRead: a regular file within the limit is read; a directory, a named pipe (without
// blocking on it) and a file over the limit are refused with errors saying which.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.json")
	big := filepath.Join(dir, "big.json")
	fifo := filepath.Join(dir, "fifo")
	if err := os.WriteFile(ok, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, make([]byte, 11), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	if bs, err := Read(ok, 10); err != nil || string(bs) != "{}" {
		t.Errorf("Read(ok) = %q, %v", bs, err)
	}
	var tooLarge *TooLargeError
	if _, err := Read(big, 10); !errors.As(err, &tooLarge) || tooLarge.Size != 11 || tooLarge.Max != 10 {
		t.Errorf("Read(big) = %v, want a TooLargeError of 11 > 10 bytes", err)
	}
	for path, kind := range map[string]string{dir: "a directory", fifo: "a named pipe"} {
		done := make(chan error, 1)
		go func() { _, err := Read(path, 10); done <- err }()
		select {
		case err := <-done:
			var nr *NotRegularError
			if !errors.As(err, &nr) || nr.Kind != kind {
				t.Errorf("Read(%s) = %v, want it named %s", path, err, kind)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Read(%s) blocked", path)
		}
	}
	if _, err := Read(filepath.Join(dir, "none"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read(missing) = %v", err)
	}
}
