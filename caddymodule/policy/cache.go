package policy

import (
	"fmt"
	"sync"
)

// compiled is one prepared policy shared by every Engine loaded from the same content.
type compiled struct {
	hash  string
	built               // pq is safe for concurrent Eval: no lock around it
	err   error         // compilation error, for Loads that waited on it
	ready chan struct{} // closed once pq or err is set
	refs  int           // guarded by cacheMu

	invariantOnce sync.Once
	invariant     *invariance // which rules a preview's users cannot change (see Memo)

	liveOnce sync.Once
	liveMemo *liveMemo // rule values kept for live decisions (see liveMemo)
}

// The cache of compiled policies, keyed by content hash. Caddy provisions a new
// configuration before it cleans up the old one, so during a reload both hold a reference
// and an unchanged policy is never compiled twice.
var (
	cacheMu sync.Mutex
	cache   = map[string]*compiled{}
)

// acquire returns the compiled policy for hash, building it if no Engine holds it. Loads of
// the same content that arrive while it compiles wait for that one compilation instead of
// starting their own; the lock is not held while compiling, so other content is not blocked.
func acquire(hash string, build func() (built, error)) (*compiled, error) {
	cacheMu.Lock()
	c, ok := cache[hash]
	if ok {
		c.refs++
		cacheMu.Unlock()
		<-c.ready
	} else {
		c = &compiled{hash: hash, ready: make(chan struct{}), refs: 1}
		cache[hash] = c
		cacheMu.Unlock()
		c.built, c.err = buildSafely(build)
		close(c.ready)
	}
	if c.err != nil {
		release(c)
		return nil, c.err
	}
	return c, nil
}

// buildSafely turns a panic inside OPA's compiler into a load error: a reload must fail
// cleanly (Caddy keeps the old configuration), and Loads waiting on this entry must not hang.
func buildSafely(build func() (built, error)) (b built, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("compiling policies failed unexpectedly (an OPA bug; please report it): %v", r)
		}
	}()
	return build()
}

// release drops one reference; the last one removes the policy from the cache so the
// garbage collector can free it (Engines still evaluating keep their own pointer).
func release(c *compiled) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	c.refs--
	if c.refs == 0 && cache[c.hash] == c {
		delete(cache, c.hash)
	}
}
