// Package regfile reads configuration files (policies, their data, mappings), which must be
// regular files of bounded size: a FIFO or a device named by mistake (`/dev/stdin`, a named
// pipe) would hang the load, which holds Caddy's config load with it, or be read until
// memory runs out (/dev/zero).
package regfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// NotRegularError is a path that names something other than a regular file.
type NotRegularError struct {
	Path string
	Kind string // "a directory", "a named pipe", ...
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is not a regular file (%s)", e.Path, e.Kind)
}

// TooLargeError is a file larger than the reader's limit.
type TooLargeError struct {
	Path      string
	Size, Max int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is %d bytes, more than the %d bytes allowed", e.Path, e.Size, e.Max)
}

// Read reads the regular file at path, of at most max bytes. It stats before opening
// (opening a FIFO blocks until something writes to it), checks again what it opened (the
// path may have been replaced since), and stops reading past max (the file may grow).
func Read(path string, max int64) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, &NotRegularError{Path: path, Kind: kind(info.Mode())}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err = f.Stat(); err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, &NotRegularError{Path: path, Kind: kind(info.Mode())}
	}
	if info.Size() > max {
		return nil, &TooLargeError{Path: path, Size: info.Size(), Max: max}
	}
	bs, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(bs)) > max {
		return nil, &TooLargeError{Path: path, Size: int64(len(bs)), Max: max}
	}
	return bs, nil
}

// kind names a file mode that is not a regular file.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}
