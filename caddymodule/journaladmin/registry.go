package journaladmin

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/scimgate/scimgate/caddymodule/journal"
)

// registry holds the open journals the routes serve: one per open store file, registered
// by whoever opened it (caddymodule's store pool, which a config reload shares).
var registry = struct {
	sync.Mutex
	open map[*journal.Journal]openJournal
}{open: map[*journal.Journal]openJournal{}}

// openJournal is an open journal as the routes see it.
type openJournal struct {
	j     *journal.Journal
	keys  []ed25519.PublicKey // trusted to sign its checkpoints; none when unsigned
	store string
}

// Register makes j available to the admin routes until unregister is called, which must
// happen before j is closed. keys verify its checkpoints (the signing key's and earlier
// ones; none when they are unsigned).
// The list route shows j's store file (the path its bbolt database was opened with).
// unregister may be called more than once.
func Register(j *journal.Journal, keys []ed25519.PublicKey) (unregister func()) {
	registry.Lock()
	defer registry.Unlock()
	registry.open[j] = openJournal{j: j, keys: keys, store: j.DB().String()}
	return func() {
		registry.Lock()
		defer registry.Unlock()
		delete(registry.open, j)
	}
}

// journals returns the registered journals, sorted by name (then store).
func journals() []openJournal {
	registry.Lock()
	out := make([]openJournal, 0, len(registry.open))
	for _, a := range registry.open {
		out = append(out, a)
	}
	registry.Unlock()
	slices.SortFunc(out, func(a, b openJournal) int {
		if c := strings.Compare(a.j.Name(), b.j.Name()); c != 0 {
			return c
		}
		return strings.Compare(a.store, b.store)
	})
	return out
}

// findJournal returns the journal called name: a 404 APIError when there is none, a 409
// when two stores' journals share the name (two gateways left at the default name), since
// exporting or verifying the wrong one must not happen silently.
func findJournal(name string) (openJournal, error) {
	var found []openJournal
	for _, a := range journals() {
		if a.j.Name() == name {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 0:
		return openJournal{}, apiError(http.StatusNotFound, fmt.Errorf("no journal named %q (GET %s lists them)", name, Prefix))
	case 1:
		return found[0], nil
	}
	paths := make([]string, len(found))
	for i, a := range found {
		paths[i] = a.store
	}
	return openJournal{}, apiError(http.StatusConflict, fmt.Errorf("several journals are named %q (stores %s); give each gateway's journal its own name", name, strings.Join(paths, ", ")))
}
