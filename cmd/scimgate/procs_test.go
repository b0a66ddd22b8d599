package main

import (
	"os"
	"runtime"
	"testing"
)

// TestAtLeastTwoProcs: a process given one P gets two, and the environment variable that
// keeps Caddy's automaxprocs from lowering it again; a GOMAXPROCS the operator set wins.
func TestAtLeastTwoProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })

	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(1)
	atLeastTwoProcs()
	if got := runtime.GOMAXPROCS(0); got != minProcs {
		t.Errorf("one P: GOMAXPROCS = %d after atLeastTwoProcs, want %d", got, minProcs)
	}
	if got := os.Getenv("GOMAXPROCS"); got != "2" {
		t.Errorf("one P: environment GOMAXPROCS = %q, want \"2\"", got)
	}

	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	atLeastTwoProcs()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS=1 set by the operator: GOMAXPROCS = %d, want 1", got)
	}

	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(3)
	atLeastTwoProcs()
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("three Ps: GOMAXPROCS = %d, want 3 (left alone)", got)
	}
	if got := os.Getenv("GOMAXPROCS"); got != "" {
		t.Errorf("three Ps: environment GOMAXPROCS = %q, want it unset", got)
	}
}
