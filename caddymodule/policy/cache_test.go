package policy

// cacheRefs reports how many Engines hold the policy with this hash (0: not cached).
func cacheRefs(hash string) int {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c, ok := cache[hash]; ok {
		return c.refs
	}
	return 0
}

// cacheLen is how many compiled policies the cache holds.
func cacheLen() int {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	return len(cache)
}
