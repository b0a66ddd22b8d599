//go:build unix

package mapping

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadRefusesWhatIsNotAFile: a mapping path naming a FIFO, a device or a directory
// fails at once with what it is, instead of hanging the load (opening a FIFO waits for a
// writer: a reload, or a preview through the admin endpoint, that never returns).
func TestLoadRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "mapping.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, tt := range []struct{ path, want string }{
		{fifo, "mapping.json: reading the mapping: " + fifo + " is not a regular file (a named pipe)"},
		{"/dev/zero", "zero: reading the mapping: /dev/zero is not a regular file (a device)"},
		{dir, "is not a regular file (a directory)"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := Load(tt.path, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%s): %v\nwant %q", tt.path, err, tt.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) hangs", tt.path)
		}
	}
}
