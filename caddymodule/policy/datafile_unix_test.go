//go:build unix

package policy

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadRefusesDataFilesThatAreNotFiles: a data file that is a FIFO, a device or a
// directory, or a file larger than a policy file may be, fails the load at once with its
// name, instead of hanging the load (a FIFO: a reload that never returns) or reading
// until memory runs out (/dev/zero, a log file named by mistake).
func TestLoadRefusesDataFilesThatAreNotFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, maxSourceBytes+1); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, file, want string }{
		{"FIFO", fifo, "is not a regular file"},
		{"device", "/dev/zero", "is not a regular file"},
		{"directory", dir, "is not a regular file"},
		{"too large", big, "more than the 64 MiB a policy file may hold"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				e, err := Load(Options{Dir: "testdata/ok", DataFiles: []string{tt.file}})
				if err == nil {
					_ = e.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.file) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Load: %v\nwant an error naming %s with %q", err, tt.file, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Load hangs on the data file")
			}
		})
	}
}
