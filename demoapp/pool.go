package demoapp

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
)

// states holds one state per configured name for the whole process. Caddy provisions a new
// config before it cleans up the old one, so during a reload the count never drops to zero
// and the data survives; it is dropped when no config uses the name any more.
var states = caddy.NewUsagePool()

// sharedState is a pooled state; dropping it frees the memory, nothing else.
type sharedState struct{ *state }

// Destruct implements caddy.Destructor.
func (sharedState) Destruct() error { return nil }

func acquireState(name string) (*state, error) {
	v, _, err := states.LoadOrNew(name, func() (caddy.Destructor, error) {
		return sharedState{newState(now)}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("acquiring demo app state %q: %w", name, err)
	}
	return v.(sharedState).state, nil
}

func releaseState(name string) error {
	if _, err := states.Delete(name); err != nil {
		return fmt.Errorf("releasing demo app state %q: %w", name, err)
	}
	return nil
}
