package policy

import (
	"encoding/binary"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// liveMemo keeps, for live decisions, the values of the rules that read none of what
// differs from one request to the next: the guardrails' settings for the target, their
// gates on the request's kind, the lists they compile from the data. OPA computes those
// again on every evaluation (they were about half of a create's decision with the shipped
// policies); a liveMemo computes each once per run of decisions that share the fields it
// may read (liveFields: the action, the resource type, the events, the client and the
// target).
//
// What is kept is exact, as a Memo's is (see Memo): a rule, or a function for one list of
// arguments, whose value depends only on the data (fixed for a compiled policy) and on
// liveFields, never on a nondeterministic builtin or print, and only values OPA computed
// in decisions that succeeded, found in two of them. Every other rule is evaluated as
// without it.
//
// It is safe for concurrent use: a run's kept values are an immutable frame, replaced
// whole when a decision teaches it something new (copy on write), so evaluations read it
// without a lock. A run learns from its first liveLearnFirst decisions and from one in
// liveLearnEvery after that, which is enough to find the rules every decision of the run
// reads while keeping the learning's cost off most decisions.
type liveMemo struct {
	inv  *invariance
	runs sync.Map // run key (liveKey) → *liveRun
	n    atomic.Int64
}

// liveFields are the input fields a run of live decisions shares; the others (the
// resource, previous, native_id, changed, members, stats, and any added later) vary.
var liveFields = map[string]bool{"action": true, "resource_type": true, "events": true, "client": true, "target": true}

// Bounds: at most liveMaxRuns runs (all are forgotten when one more would start: a
// deployment has a few targets, clients and kinds of request) of at most liveMaxKept
// values each; the refs found once or found not invariant are forgotten when memoMaxSeen
// of them accumulate.
const (
	liveMaxRuns    = 128
	liveMaxKept    = 512
	liveLearnFirst = 32
	liveLearnEvery = 64
)

// live returns the live memo of the compiled policy, nil when the policy was not compiled
// here (nothing is then kept).
func (c *compiled) live() *liveMemo {
	c.liveOnce.Do(func() {
		if c.comp == nil || c.comp.RuleTree == nil {
			return
		}
		c.liveMemo = &liveMemo{inv: newInvariance(c.comp, func(field string) bool { return !liveFields[field] })}
	})
	return c.liveMemo
}

// liveKey identifies in's run: the values of its liveFields, each length-prefixed so that
// no two inputs that differ in them share a key.
func liveKey(in *Input) string {
	b := make([]byte, 0, len(in.Action)+len(in.ResourceType)+len(in.Client)+len(in.Target)+16*len(in.Events)+16)
	for _, s := range []string{in.Action, in.ResourceType, in.Client, in.Target} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, ev := range in.Events {
		b = binary.AppendUvarint(b, uint64(len(ev)))
		b = append(b, ev...)
	}
	return string(b)
}

// run returns in's run, starting it when new.
func (lm *liveMemo) run(in *Input) *liveRun {
	key := liveKey(in)
	if r, ok := lm.runs.Load(key); ok {
		return r.(*liveRun)
	}
	if lm.n.Add(1) > liveMaxRuns {
		lm.runs.Clear()
		lm.n.Store(1)
	}
	r, _ := lm.runs.LoadOrStore(key, &liveRun{inv: lm.inv, sightings: newSightings()})
	return r.(*liveRun)
}

// liveRun is what a liveMemo keeps for one run of decisions.
type liveRun struct {
	inv       *invariance
	kept      atomic.Pointer[vframe] // immutable once stored
	decisions atomic.Int64

	mu sync.Mutex // guards sightings, and serialises the stores to kept
	sightings
}

func (r *liveRun) keptFrame() *vframe { return r.kept.Load() }

// learn keeps the invariant values of a successful evaluation's base frame that an earlier
// decision of the run found too.
func (r *liveRun) learn(c *vcache) {
	if n := r.decisions.Add(1); n > liveLearnFirst && n%liveLearnEvery != 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.kept.Load()
	kept := 0
	if cur != nil {
		kept = len(cur.entries)
	}
	var add []*ventry
	f := &c.frames[0]
	for i := range f.entries {
		if kept+len(add) >= liveMaxKept {
			break
		}
		e := &f.entries[i]
		if (cur != nil && cur.find(e.ref, e.hash) != nil) || !r.keep(r.inv, e) {
			continue
		}
		add = append(add, e)
	}
	if len(add) == 0 {
		return
	}
	next := &vframe{table: map[int]int{}}
	if cur != nil {
		next = &vframe{table: maps.Clone(cur.table), entries: slices.Grow(slices.Clone(cur.entries), len(add))}
	}
	for _, e := range add {
		// The ref's storage belongs to the evaluation's cache, which is reused: copy it.
		next.add(ventry{ref: slices.Clone(e.ref), value: e.value, undefined: e.undefined, hash: e.hash})
	}
	r.kept.Store(next)
}
