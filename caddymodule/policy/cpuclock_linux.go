package policy

import (
	"syscall"
	"time"
	"unsafe"
)

// threadCPUClock is the CPU-time clock of the calling OS thread (Linux's per-thread CPU
// clock, as pthread_getcpuclockid builds it). Any thread of the process may read it.
// The caller must be locked to its thread (runtime.LockOSThread) for it to measure one
// goroutine.
func threadCPUClock() (threadClock, bool) {
	const perThreadSched = 4 | 2 // CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED
	id := threadClock(int32(^uint32(syscall.Gettid())<<3) | perThreadSched)
	_, ok := id.read()
	return id, ok
}

type threadClock int32

// read returns the CPU time the thread has used.
func (c threadClock) read() (time.Duration, bool) {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(c), uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
