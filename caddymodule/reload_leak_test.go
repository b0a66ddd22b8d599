package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"
)

// openFDs counts the process's open file descriptors (Linux; -1 elsewhere).
func openFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// heapInUse is the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestRepeatedReloadsLeakNothing: 50 reloads of a gateway with a policy, queued delivery
// and a write after each leave the goroutines, file descriptors and heap where 5 reloads
// left them, give or take a bounded amount (what one config holds, not fifty).
func TestRepeatedReloadsLeakNothing(t *testing.T) {
	app := startPeopleApp(t)
	o := rigOptions{tag: "w", appURL: app.url, delivery: "queued", policy: writePolicyDir(t, allowAllPolicy)}
	r := startReloadRig(t, o)
	reloads := func(from, n int) {
		for i := from; i < from+n; i++ {
			next := o
			next.tag = fmt.Sprintf("r%d", i)
			next.delivery = []string{"queued", ""}[i%2]
			if err := r.reload(t, next); err != nil {
				t.Fatalf("reload %d: %v", i, err)
			}
			r.create(t, "/Users", fmt.Sprintf(`{"userName":"leak%03d@contoso.example"}`, i))
		}
		r.client.CloseIdleConnections()
	}
	reloads(0, 5)
	waitCalls(t, app, 5, func(c peopleCall) bool { return c.Method == http.MethodPost })
	g0, fd0, heap0 := runtime.NumGoroutine(), openFDs(), heapInUse()
	reloads(5, 50)
	waitCalls(t, app, 55, func(c peopleCall) bool { return c.Method == http.MethodPost })
	// Old servers finish their shutdown in the background: wait (bounded) for them.
	var g1, fd1 int
	for i := 0; ; i++ {
		g1, fd1 = runtime.NumGoroutine(), openFDs()
		if (g1 <= g0+20 && fd1 <= fd0+10) || i == 500 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	heap1 := heapInUse()
	t.Logf("goroutines %d -> %d, fds %d -> %d, heap %d KiB -> %d KiB", g0, g1, fd0, fd1, heap0>>10, heap1>>10)
	if g1 > g0+20 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines %d after 50 reloads, %d before:\n%s", g1, g0, buf[:runtime.Stack(buf, true)])
	}
	if fd0 >= 0 && fd1 > fd0+10 {
		t.Errorf("file descriptors %d after 50 reloads, %d before", fd1, fd0)
	}
	if heap1 > heap0+32<<20 {
		t.Errorf("heap in use %d KiB after 50 reloads, %d KiB before", heap1>>10, heap0>>10)
	}
}
