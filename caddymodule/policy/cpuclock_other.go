//go:build !linux

package policy

import "time"

// threadCPUClock is not available here: the timeout counts wall-clock time.
func threadCPUClock() (threadClock, bool) { return 0, false }

type threadClock int32

func (threadClock) read() (time.Duration, bool) { return 0, false }
