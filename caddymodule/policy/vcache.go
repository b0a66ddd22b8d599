package policy

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// vcache is the cache of rule and function values one evaluation fills (OPA's
// topdown.VirtualCache), kept for the next evaluation instead of built anew: OPA's own is a
// trie with a hash map per ref element, allocated per evaluation, and those allocations were
// a sixth of a decision's (and of the garbage collector's work). It holds one flat table
// per frame (OPA pushes one per `with`), looked up by the whole ref, and recycles its
// tables and entries; reset empties it between evaluations. Get, Put, Push and Pop behave
// as OPA's: a value is found only in the frame it was put in, by a ref equal to the one it
// was put under.
type vcache struct {
	frames []vframe // frames[:depth+1] are in use; the rest are kept for reuse
	depth  int
	refs   []*ast.Term // backing store of the entries' refs (OPA reuses the ref it passes)
	kept   *vframe     // values kept from earlier evaluations (base frame only, read-only); nil: none
}

type vframe struct {
	table   map[int]int // ref hash → index in entries of the last entry with that hash
	entries []ventry
}

type ventry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool // the ref is known to be undefined (Get ignores value)
	next      int  // index of the previous entry with the same hash, -1 for none
	hash      int  // refHash(ref)
}

var _ topdown.VirtualCache = (*vcache)(nil)

var vcachePool = sync.Pool{New: func() any { return &vcache{frames: []vframe{{table: map[int]int{}}}} }}

// getVCache returns an empty cache; putVCache empties it and returns it for reuse.
func getVCache() *vcache { return vcachePool.Get().(*vcache) }

func putVCache(c *vcache) {
	c.reset()
	vcachePool.Put(c)
}

// reset empties the cache, keeping its tables and storage (dropping what they refer to).
func (c *vcache) reset() {
	for i := range c.frames[:c.depth+1] {
		c.frames[i].clear()
	}
	c.depth = 0
	c.kept = nil
	clear(c.refs)
	c.refs = c.refs[:0]
}

func (f *vframe) clear() {
	clear(f.table)
	clear(f.entries)
	f.entries = f.entries[:0]
}

// Push starts a new, empty frame.
func (c *vcache) Push() {
	c.depth++
	if c.depth == len(c.frames) {
		c.frames = append(c.frames, vframe{table: map[int]int{}})
	}
}

// Pop drops the top frame and everything in it.
func (c *vcache) Pop() {
	c.frames[c.depth].clear()
	c.depth--
}

// Get returns the value put under ref in the top frame: (value, false) when it was put
// with a value, (nil, true) when it was put as undefined, (nil, false) when it was not put.
func (c *vcache) Get(ref ast.Ref) (*ast.Term, bool) {
	h := refHash(ref)
	e := c.frames[c.depth].find(ref, h)
	if e == nil && c.depth == 0 && c.kept != nil {
		e = c.kept.find(ref, h)
	}
	if e != nil {
		if e.undefined {
			return nil, true
		}
		return e.value, false
	}
	return nil, false
}

// Put records value under ref in the top frame, or with nil marks ref undefined there. As
// in OPA's, a ref once marked undefined stays so in its frame.
func (c *vcache) Put(ref ast.Ref, value *ast.Term) {
	f := &c.frames[c.depth]
	h := refHash(ref)
	if e := f.find(ref, h); e != nil {
		if value != nil {
			e.value = value
		} else {
			e.undefined = true
		}
		return
	}
	start := len(c.refs)
	c.refs = append(c.refs, ref...)
	f.add(ventry{ref: c.refs[start:len(c.refs):len(c.refs)], value: value, undefined: value == nil, hash: h})
}

// add appends e (whose ref the frame may keep) and makes it the first found for its hash.
func (f *vframe) add(e ventry) {
	next, ok := f.table[e.hash]
	if !ok {
		next = -1
	}
	e.next = next
	f.entries = append(f.entries, e)
	f.table[e.hash] = len(f.entries) - 1
}

// Keys lists the refs that have a value in the top frame.
func (c *vcache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.frames[c.depth].entries {
		if e.value != nil { // as OPA's: an undefined ref given a value later is listed
			keys = append(keys, e.ref)
		}
	}
	return keys
}

func (f *vframe) find(ref ast.Ref, h int) *ventry {
	i, ok := f.table[h]
	for ok && i >= 0 {
		e := &f.entries[i]
		if e.ref.Equal(ref) {
			return e
		}
		i = e.next
	}
	return nil
}

// refHash hashes the ref's terms in order (OPA's Ref.Hash adds them up, so a function's
// arguments in another order collide).
func refHash(ref ast.Ref) int {
	h := len(ref)
	for _, t := range ref {
		h = h*31 + t.Value.Hash()
	}
	return h
}
