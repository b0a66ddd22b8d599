package journalcmd

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// output is where a download goes: stdout, or a temporary file renamed into place only
// when complete, so an interrupted export never leaves a file that looks whole.
type output struct {
	io.Writer
	name string
	f    *os.File
	dest string
	done bool
}

func createOutput(dest string, stdout io.Writer) (*output, error) {
	if dest == "" || dest == "-" {
		return &output{Writer: stdout, name: "stdout"}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.part")
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", dest, err)
	}
	return &output{Writer: f, name: dest, f: f, dest: dest}, nil
}

func (o *output) commit() error {
	if o.f == nil {
		return nil
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", o.dest, err)
	}
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", o.dest, err)
	}
	if err := os.Rename(o.f.Name(), o.dest); err != nil {
		return fmt.Errorf("writing %s: %w", o.dest, err)
	}
	o.done = true
	return nil
}

// discard removes the temporary file unless commit succeeded.
func (o *output) discard() {
	if o.f == nil || o.done {
		return
	}
	_ = o.f.Close()
	_ = os.Remove(o.f.Name())
}
