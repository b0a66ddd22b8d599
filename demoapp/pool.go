package demoapp

import (
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// states holds one state per configured name for the whole process. Caddy provisions a new
// config before it cleans up the old one, so during a reload the count never drops to zero
// and the data survives; it is dropped when no config uses the name any more.
var states = caddy.NewUsagePool()

// sharedState is a pooled state; dropping it writes it to its state file, if it has one,
// and frees the memory.
type sharedState struct{ *state }

// Destruct implements caddy.Destructor.
func (s sharedState) Destruct() error {
	if s.persist == nil {
		return nil
	}
	if err := s.persist.stop(s.state); err != nil {
		return fmt.Errorf("saving the demo app's state to %s: %w", s.persist.path, err)
	}
	return nil
}

// acquireState returns the state called name: the one a handler of that name already
// holds, or a new one, read from file when file is set. A state is kept in one file for its
// whole life: a handler naming another file than the state's is an error.
func acquireState(name, file string, logger *zap.Logger) (*state, error) {
	if file != "" {
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, fmt.Errorf("state_file %q: %w", file, err)
		}
		file = abs
	}
	v, _, err := states.LoadOrNew(name, func() (caddy.Destructor, error) {
		if file == "" {
			return sharedState{newState(now)}, nil
		}
		s, err := loadState(name, file, now, logger)
		if err != nil {
			return nil, err
		}
		return sharedState{s}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("acquiring demo app state %q: %w", name, err)
	}
	s := v.(sharedState).state
	kept := ""
	if s.persist != nil {
		kept = s.persist.path
	}
	if kept != file {
		_ = releaseState(name)
		if kept == "" {
			kept = "memory only"
		}
		return nil, fmt.Errorf("demo app state %q is already kept in %s (by a handler of the config in force); a reload cannot move it: give this handler another name, or restart", name, kept)
	}
	return s, nil
}

func releaseState(name string) error {
	if _, err := states.Delete(name); err != nil {
		return fmt.Errorf("releasing demo app state %q: %w", name, err)
	}
	return nil
}
