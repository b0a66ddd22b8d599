package journaladmin

import (
	"time"

	"github.com/scimgate/scimgate/caddymodule/journal"

	"github.com/scimgate/scimgate/caddymodule/kv"
)

// What the external tests (package journaladmin_test) need of the package's insides.

// MaxParamBytes is the bound on a query parameter's value.
const MaxParamBytes = maxParamBytes

// SetLiveHeartbeat sets how often an idle live stream sends a heartbeat, so tests need not
// wait 15 s for one, and returns the function that restores it.
func SetLiveHeartbeat(d time.Duration) (restore func()) {
	old := liveHeartbeat
	liveHeartbeat = d
	return func() { liveHeartbeat = old }
}

// SetStreamStall sets how long a streamed response waits for a client that reads nothing
// before cutting it off, and returns the function that restores it.
func SetStreamStall(d time.Duration) (restore func()) {
	old := streamStall
	streamStall = d
	return func() { streamStall = old }
}

// RegisteredJournal is the registered journal called name (nil when none), so a test can
// append records in bulk and run retention on the running instance's journal.
func RegisteredJournal(name string) *journal.Journal {
	for _, a := range journals() {
		if a.j.Name() == name {
			return a.j
		}
	}
	return nil
}

// RegisteredDB is the database of the registered journal called name (nil when none), so
// a test can change what the running instance stored.
func RegisteredDB(name string) kv.DB {
	for _, a := range journals() {
		if a.j.Name() == name {
			return a.j.DB()
		}
	}
	return nil
}
