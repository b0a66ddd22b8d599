package provision

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/scimgate/scimgate/caddymodule/change"
	"github.com/scimgate/scimgate/caddymodule/outbox"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// deliveryOutcomes lists the outcomes (failed, dead, delivered) of the delivery records of
// request requestID, in journal order.
func (r *rig) deliveryOutcomes(requestID string) []string {
	var out []string
	for _, rec := range r.records() {
		if rec.RequestID == requestID && rec.Action == change.ActionDeliver && rec.Outcome != change.Pending {
			out = append(out, string(rec.Outcome))
		}
	}
	return out
}

// waitOutcomes waits (bounded: 10 s) until request requestID has n delivery outcomes, or
// a dead one.
func (r *rig) waitOutcomes(requestID string, n int) []string {
	r.t.Helper()
	for range 2000 {
		if got := r.deliveryOutcomes(requestID); len(got) >= n || slices.Contains(got, "dead") {
			return got[:min(n, len(got))]
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.t.Fatalf("request %s: %d delivery outcomes, want %d", requestID, len(r.deliveryOutcomes(requestID)), n)
	return nil
}

// TestMaxAgeCountsFromTheFirstFailure: max_age is how long an unavailable app is retried. A
// change that waited days for its delivery window (here: queued four days before its first
// attempt) is not a dead letter at its first failure, as it was when max_age counted from
// when it was queued; and a dead letter an operator retries gets max_age again instead of
// dying at its next failure.
func TestMaxAgeCountsFromTheFirstFailure(t *testing.T) {
	t.Run("waited-for-its-window", func(t *testing.T) {
		app, srv := newNativeApp(t)
		s := withMode(outbox.Queued)
		s.MaxAge = time.Hour
		r := queuedRig(t, srv.URL, s)
		w := r.eng.Worker()
		if err := w.Pause("ops"); err != nil {
			t.Fatal(err)
		}
		app.set(func(a *nativeApp) { a.fail["POST /accounts"] = http.StatusServiceUnavailable })
		r.mustCreate(scim.UserType, user("ada@contoso.example"))
		task := r.tasks()[0]
		task.Queued = time.Now().Add(-96 * time.Hour) // as if it had waited for a weekly window
		data, err := task.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.store.Update(func(tx *store.Tx) error { return tx.UpdateTask("native", task.Seq, data) }); err != nil {
			t.Fatal(err)
		}
		if err := w.Resume("ops"); err != nil {
			t.Fatal(err)
		}
		if got := r.waitOutcomes(task.RequestID, 2); !slices.Equal(got, []string{"failed", "failed"}) {
			t.Fatalf("the attempts of a change that waited for its window while the app is down: %v, want failed and retried", got)
		}
		if err := w.Pause("ops"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("retried-dead-letter", func(t *testing.T) {
		app, srv := newNativeApp(t)
		s := withMode(outbox.Queued)
		s.MaxAge = time.Nanosecond // dead at the first failure after the first
		r := queuedRig(t, srv.URL, s)
		app.set(func(a *nativeApp) { a.fail["POST /accounts"] = http.StatusServiceUnavailable })
		r.mustCreate(scim.UserType, user("ada@contoso.example"))
		r.settle()
		task := r.tasks()[0]
		if got := r.deliveryOutcomes(task.RequestID); !slices.Equal(got, []string{"failed", "dead"}) {
			t.Fatalf("outcomes before the retry: %v", got)
		}
		if err := r.eng.Worker().Retry(task.Seq, "ops"); err != nil {
			t.Fatal(err)
		}
		r.settle()
		if got := r.deliveryOutcomes(task.RequestID); !slices.Equal(got, []string{"failed", "dead", "failed", "dead"}) {
			t.Fatalf("outcomes after the operator's retry: %v, want the change retried (failed) before it is dead again", got)
		}
	})
}
