package outbox

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkGroup measures what the dispatcher spends finding what goes with a ready task
// when the outbox holds a burst of creates of distinct resources (an initial cycle queued,
// the drain of issue 14): the cost of one started delivery, by queue depth.
func BenchmarkGroup(b *testing.B) {
	for _, depth := range []int{500, 5000, 50000} {
		b.Run(fmt.Sprintf("tasks=%d", depth), func(b *testing.B) {
			w := &Worker{coalesce: maxCoalesce}
			for i := range depth {
				w.add(&entry{seq: uint64(i + 1), resource: fmt.Sprintf("res-%06d", i), made: true})
			}
			now := time.Now()
			always := func(*entry) bool { return true }
			live, stuck := map[string]bool{}, map[string]bool{}
			b.ReportAllocs()
			for b.Loop() {
				if g, wait := w.group(0, live, stuck, always, now); len(g) != 1 || wait {
					b.Fatalf("group of %d, wait %v", len(g), wait)
				}
			}
		})
	}
}
