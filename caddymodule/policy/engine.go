package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/print"
)

// Defaults for Options.
const (
	DefaultQuery   = "data.scimgate.decision"
	DefaultTimeout = 100 * time.Millisecond
)

// Options says what to load and how to evaluate it.
type Options struct {
	// Dir holds the policies: every *.rego below it except *_test.rego, plus data files
	// named data.json, data.yaml or data.yml, each mounted at its directory's path
	// relative to Dir (OPA bundle convention: Dir/scimgate/data.json is data.scimgate).
	Dir string
	// DataFiles are extra JSON or YAML files (by extension), each an object merged at the
	// data root. A key set by two data files is an error.
	DataFiles []string
	// Query is the decision document. Default DefaultQuery.
	Query string
	// Timeout bounds the CPU time each decision's evaluation uses (on Linux; wall-clock time
	// elsewhere), and its wall-clock time at ten times that (see Engine.Decide). Default
	// DefaultTimeout; must be positive.
	Timeout time.Duration
	// Print receives the output of Rego print() calls with their "file:row" location. nil
	// discards it.
	Print func(location, msg string)
}

// Engine evaluates decisions against one loaded policy. It is safe for concurrent use.
type Engine struct {
	policy  *compiled
	query   string
	timeout time.Duration
	hook    print.Hook // nil when Options.Print is nil
	closed  atomic.Bool
}

// Load reads, compiles and prepares the policies Options name. Identical content (same
// files, bytes, data and query) shares one compiled policy with every other open Engine, so
// a configuration reload that leaves the policies unchanged does not recompile them.
// Every Engine must be closed.
func Load(opts Options) (*Engine, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	query, err := parseQuery(opts.Query)
	if err != nil {
		return nil, err
	}
	srcs, err := collectSources(&opts)
	if err != nil {
		return nil, err
	}
	hash := hashSources(opts.Query, srcs)
	policy, err := acquire(hash, func() (built, error) {
		return compile(query, srcs, opts.Dir)
	})
	if err != nil {
		return nil, fmt.Errorf("loading policies from %s: %w", opts.Dir, err)
	}
	e := &Engine{policy: policy, query: opts.Query, timeout: opts.Timeout}
	if opts.Print != nil {
		e.hook = printHook(opts.Print)
	}
	return e, nil
}

func (o *Options) setDefaults() error {
	if o.Dir == "" {
		return errors.New("policy directory not set: name the directory that holds the .rego files")
	}
	if o.Query == "" {
		o.Query = DefaultQuery
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Timeout < 0 {
		return fmt.Errorf("policy timeout %v is negative: use a positive duration such as 100ms", o.Timeout)
	}
	return nil
}

// parseQuery accepts only a plain reference into data: the decision is one document, and a
// free-form query could bind variables or yield several results.
func parseQuery(q string) (ast.Ref, error) {
	ref, err := ast.ParseRef(q)
	if err != nil || !ref.HasPrefix(ast.DefaultRootRef) || len(ref) < 3 || !ref.IsGround() {
		return nil, fmt.Errorf("policy query %q must be a reference to a rule such as %s", q, DefaultQuery)
	}
	for _, t := range ref[1:] {
		if _, ok := t.Value.(ast.String); !ok {
			return nil, fmt.Errorf("policy query %q must be a dotted path of names such as %s", q, DefaultQuery)
		}
	}
	return ref, nil
}

// Hash is the hex SHA-256 of everything that determines the compiled policy: every loaded
// file's path and bytes, where data files are mounted, and the query. Equal hashes share a
// compiled policy; the gateway can log it to tell which policy version decided.
func (e *Engine) Hash() string { return e.policy.hash }

// WithTimeout returns a view of e that bounds each decision by timeout instead: for work
// that is not a request (a preview of the whole directory), where waiting for a busy core
// beats failing. The view shares e's compiled policy and reference: close e, never the
// view (closing a view is a no-op).
func (e *Engine) WithTimeout(timeout time.Duration) *Engine {
	v := &Engine{policy: e.policy, query: e.query, timeout: timeout, hook: e.hook}
	v.closed.Store(true)
	return v
}

// Close releases this Engine's reference on the shared compiled policy; the policy is freed
// when no Engine uses it. Decide keeps working after Close (requests still in flight during
// a reload finish with the policy they started with). Close is idempotent.
func (e *Engine) Close() error {
	if e.closed.CompareAndSwap(false, true) {
		release(e.policy)
	}
	return nil
}

// noMetrics spares every evaluation the allocation of a metrics registry nobody reads.
var noMetrics = metrics.NoOp()

// evalSlots admits decisions to evaluation, as many at once as the process has cores. An
// evaluation never waits for anything but a core, so more of them at once only share the
// cores: with more decisions ready than cores, Go's scheduler runs each for a 10ms slice
// and parks it behind all the others, so a decision of a few hundred microseconds could
// take 100ms or more, run out its timeout, and fail while the policy was fine. Queued
// here instead (first come, first served: a channel's waiting senders are served in
// order), a decision waits only for the few ahead of it, and its timeout starts when it
// gets a core: the timeout measures the policy, not the load. GOMAXPROCS is read once,
// at the first decision (after Caddy has set it from the CPU quota).
func evalSlots() chan struct{} {
	evalSlotsOnce.Do(func() { evalSlotsCh = make(chan struct{}, runtime.GOMAXPROCS(0)) })
	return evalSlotsCh
}

var (
	evalSlotsOnce sync.Once
	evalSlotsCh   chan struct{}
)

// Decide evaluates the policy for one request. It fails closed: whenever the policy does not
// produce a well-formed decision (undefined, evaluation error, timeout, wrong types) it
// returns a deny Decision whose reason says what went wrong, together with an error wrapping
// ErrUndefined, ErrTimeout, ErrEval, ErrBadDecision or ErrInput.
//
// The decision first waits for a free evaluation slot (one per core), bounded only by ctx.
// The Engine's timeout then counts the CPU time the evaluation uses (on Linux; wall-clock
// time elsewhere), so neither the wait for a slot nor the time its thread waits for a core
// counts; an evaluation off the CPU for ten times the timeout is stopped too (budget). A
// ctx that ends while the decision waits is an ErrTimeout too (the policy never ran).
//
// The input's Resource and Previous maps are read, not copied, while Decide runs: callers
// must not modify them until it returns (concurrent Decides sharing them are fine).
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	if in == nil {
		return e.deny(fmt.Errorf("%w: no input", ErrInput))
	}
	input, err := in.astValue()
	if err != nil {
		return e.deny(err)
	}
	if lm := e.policy.live(); lm != nil {
		return e.decide(ctx, input, lm.run(in))
	}
	return e.decide(ctx, input, nil)
}

// DecidePrepared is Decide for an input converted once with Input.Prepare, so that
// several policies deciding the same input in turn convert it once.
func (e *Engine) DecidePrepared(ctx context.Context, p *Prepared) (Decision, error) {
	if p == nil || p.value == nil {
		return e.deny(fmt.Errorf("%w: no input", ErrInput))
	}
	return e.decide(ctx, p.value, nil)
}

// keeper lends an evaluation the rule values kept from earlier ones, and learns from a
// successful one: a preview's Memo, or a run of live decisions (liveRun).
type keeper interface {
	keptFrame() *vframe // nil: nothing kept yet
	learn(*vcache)
}

// decide evaluates input; k (nil: none) lends the values it kept, and learns from a
// successful evaluation.
func (e *Engine) decide(ctx context.Context, input ast.Value, k keeper) (Decision, error) {
	slots := evalSlots()
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return e.deny(fmt.Errorf("%w: %s was not evaluated: the request ended while it waited for a core (every one was evaluating other decisions): %w", ErrTimeout, e.query, ctx.Err()))
	}
	defer func() { <-slots }()
	// The timeout counts the CPU time of this thread (see budget), so the evaluation
	// stays on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b := startBudget(e.timeout, func() { cancel(errOverBudget) })
	defer b.stop()
	// OPA would start a goroutine per evaluation to watch ctx; AfterFunc starts one only
	// when ctx ends.
	stopEval := topdown.NewCancel()
	defer context.AfterFunc(ctx, stopEval.Cancel)()
	vc := getVCache()
	defer putVCache(vc)
	if k != nil {
		vc.kept = k.keptFrame()
	}
	opts := []rego.EvalOption{rego.EvalParsedInput(input), rego.EvalMetrics(noMetrics), rego.EvalExternalCancel(stopEval), rego.EvalVirtualCache(vc)}
	if e.hook != nil {
		opts = append(opts, rego.EvalPrintHook(e.hook))
	}
	rs, err := e.policy.pq.Eval(ctx, opts...)
	if err != nil {
		return e.deny(e.evalError(ctx, err))
	}
	d, err := e.result(rs)
	if err == nil && k != nil {
		k.learn(vc)
	}
	return d, err
}

// result reads the one decision the query must produce.
func (e *Engine) result(rs rego.ResultSet) (Decision, error) {
	switch {
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		return e.deny(fmt.Errorf("%w: %s is undefined for this input; every request must get a decision (add a default rule, e.g. `default decision := {\"allow\": false, \"reasons\": [\"...\"]}`)", ErrUndefined, e.query))
	case len(rs) > 1:
		return e.deny(badDecision("%s produced %d results; it must produce exactly one decision", e.query, len(rs)))
	}
	term, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return e.deny(badDecision("%s produced an unexpected result type %T", e.query, rs[0].Expressions[0].Value))
	}
	d, err := decodeDecision(e.query, term.Value)
	if err != nil {
		return e.deny(err)
	}
	return d, nil
}

// evalError classifies an evaluation failure. A cancellation counts as a timeout whether
// our deadline or the caller's context ended it; the context error is wrapped so callers
// can still tell context.Canceled from context.DeadlineExceeded.
func (e *Engine) evalError(ctx context.Context, err error) error {
	if !topdown.IsCancel(err) && ctx.Err() == nil {
		return fmt.Errorf("%w: %w", ErrEval, err)
	}
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(cause, context.Canceled) {
		return fmt.Errorf("%w: evaluation of %s was cancelled before it finished: %w", ErrTimeout, e.query, context.Canceled)
	}
	return fmt.Errorf("%w: %s was not decided within %v: %w; make the policy cheaper or raise the timeout", ErrTimeout, e.query, e.timeout, cause)
}

// deny is the fail-closed answer: Allow false with one reason a person can act on.
func (e *Engine) deny(err error) (Decision, error) {
	return Decision{Reasons: []string{"policy error: " + reasonText(err)}}, err
}

// reasonText drops the sentinel prefix (the caller has the error for that) so the reason
// reads as a sentence about the policy. ErrInput keeps it: the policy is not at fault.
func reasonText(err error) string {
	msg := err.Error()
	for _, s := range []error{ErrUndefined, ErrTimeout, ErrEval, ErrBadDecision} {
		if errors.Is(err, s) {
			if rest, ok := strings.CutPrefix(msg, s.Error()+": "); ok {
				return rest
			}
		}
	}
	return msg
}

// printHook adapts Options.Print to OPA's print.Hook.
type printHook func(location, msg string)

func (h printHook) Print(pctx print.Context, msg string) error {
	h(pctx.Location.String(), msg)
	return nil
}
