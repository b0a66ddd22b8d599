package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// load is Load for tests: it fails the test on error and closes the Engine at cleanup. An
// unset timeout becomes a minute, so a busy machine running -race cannot turn a test's
// decision into a timeout (the timeout tests set theirs).
func load(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	e, err := Load(opts)
	if err != nil {
		t.Fatalf("Load(%+v): %v", opts, err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestLoadErrors(t *testing.T) {
	dir := func(name string) string { return filepath.Join("testdata", "load", name) }
	empty := t.TempDir()
	tests := []struct {
		name string
		opts Options
		want []string // substrings of the error: file, row and what to fix
	}{
		{"missing dir", Options{Dir: dir("does-not-exist")},
			[]string{"testdata/load/does-not-exist does not exist", "fix the path"}},
		{"dir is a file", Options{Dir: dir("a_file.rego")},
			[]string{"is a file, not a directory"}},
		{"no dir", Options{},
			[]string{"policy directory not set"}},
		{"empty dir", Options{Dir: empty},
			[]string{"no policies in " + empty, "add at least one .rego file"}},
		{"only tests and data", Options{Dir: dir("no_policies")},
			[]string{"no policies in testdata/load/no_policies", "add at least one .rego file", "_test.rego"}},
		{"rego v0 syntax", Options{Dir: dir("parse_v0")},
			[]string{"parse_v0/scimgate/decision.rego:3:", "rego_parse_error", "fix: policies are Rego v1"}},
		{"syntax error", Options{Dir: dir("parse_garbage")},
			[]string{"parse_garbage/scimgate/decision.rego:5:", "rego_parse_error", "non-terminated object"}},
		{"unsafe variable", Options{Dir: dir("unsafe")},
			[]string{"unsafe/scimgate/decision.rego:4:", "var allowed is unsafe", "fix: bind every variable"}},
		{"type error", Options{Dir: dir("type")},
			[]string{"type/scimgate/decision.rego:3:", "rego_type_error", "count"}},
		{"http.send", Options{Dir: dir("http_send")},
			[]string{"http_send/scimgate/decision.rego:4:", "undefined function http.send", "http.send is disabled", "network"}},
		{"net.lookup_ip_addr", Options{Dir: dir("lookup_ip")},
			[]string{"lookup_ip/scimgate/decision.rego:3:", "undefined function net.lookup_ip_addr", "is disabled"}},
		{"opa.runtime", Options{Dir: dir("opa_runtime")},
			[]string{"opa_runtime/scimgate/decision.rego:3:", "undefined function opa.runtime", "environment"}},
		{"query without rule", Options{Dir: dir("no_rule")},
			[]string{"no rule defines data.scimgate.decision", "add a decision rule to package scimgate", "packages loaded: data.other"}},
		{"custom query without rule", Options{Dir: dir("no_rule"), Query: "data.other.verdict"},
			[]string{"no rule defines data.other.verdict", "package other"}},
		{"query not a ref", Options{Dir: dir("no_rule"), Query: "input.x"},
			[]string{`policy query "input.x" must be a reference to a rule`}},
		{"query with variable", Options{Dir: dir("no_rule"), Query: "data.other[x]"},
			[]string{`policy query "data.other[x]"`}},
		{"negative timeout", Options{Dir: dir("no_rule"), Timeout: -time.Second},
			[]string{"timeout -1s is negative"}},
		{"data not an object", Options{Dir: dir("data_not_object")},
			[]string{"data_not_object/scimgate/config/data.json: a data file must hold an object", "data.scimgate.config.<key>", "got an array"}},
		{"data syntax", Options{Dir: dir("data_bad_json")},
			[]string{"data_bad_json/scimgate/data.json:3:", "invalid JSON", "fix the syntax"}},
		{"data conflict between mounted files", Options{Dir: dir("data_conflict")},
			[]string{"data conflict", "data.scimgate.config.max_deletes_per_hour", "data_conflict/data.json", "data_conflict/scimgate/data.json", "keep each key in one data file"}},
		{"rule conflicts with data", Options{Dir: dir("rule_data_conflict")},
			[]string{"rule_data_conflict/scimgate/decision.rego:3:", "conflicting rule for data path scimgate/decision", "rename the rule or the data key"}},
		{"extra data conflicts with mounted data", Options{Dir: "testdata/ok", DataFiles: []string{"testdata/extra/conflict.json"}},
			[]string{"testdata/extra/conflict.json sets data.scimgate.config.greeting", "testdata/ok/scimgate/data.json already sets"}},
		{"extra data conflicts with extra data", Options{Dir: "testdata/ok", DataFiles: []string{"testdata/extra/extra.json", "testdata/extra/extra.yaml"}},
			[]string{"testdata/extra/extra.yaml sets data.extra.flag", "testdata/extra/extra.json already sets"}},
		{"extra data not an object", Options{Dir: "testdata/ok", DataFiles: []string{"testdata/extra/array.json"}},
			[]string{"testdata/extra/array.json: a data file must hold an object", "data.<key>"}},
		{"extra data missing", Options{Dir: "testdata/ok", DataFiles: []string{"testdata/extra/nope.json"}},
			[]string{"reading policy data file", "nope.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Load(tt.opts)
			if err == nil {
				_ = e.Close()
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	if n := cacheLen(); n != 0 {
		t.Errorf("failed loads left %d cache entries", n)
	}
}

func TestLoadMountsData(t *testing.T) {
	tests := []struct {
		name      string
		dataFiles []string
		want      []string
	}{
		{"mounted only", nil,
			[]string{"hello from data.scimgate", "root yaml data", "no extra data"}},
		{"extra JSON at the root", []string{"testdata/extra/extra.json"},
			[]string{"hello from data.scimgate", "root yaml data", "extra data merged at the root"}},
		{"extra YAML at the root", []string{"testdata/extra/extra.yaml"},
			[]string{"hello from data.scimgate", "root yaml data", "from yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// testdata/ok also holds a broken decision_test.rego and a broken .hidden/broken.rego:
			// loading it at all shows both are skipped.
			e := load(t, Options{Dir: "testdata/ok", DataFiles: tt.dataFiles})
			d, err := e.Decide(context.Background(), &Input{Action: "create", Client: "entra"})
			if err != nil {
				t.Fatal(err)
			}
			if !d.Allow || !slices.Equal(d.Reasons, tt.want) || !slices.Equal(d.DropAttributes, []string{"phoneNumbers"}) {
				t.Errorf("got %+v, want allow with reasons %q and drop_attributes [phoneNumbers]", d, tt.want)
			}
		})
	}
}

// TestLoadFollowsConfigMapLayout mounts policies the way a Kubernetes ConfigMap volume does:
// the files are symlinks into a hidden, timestamped directory that must not be loaded twice.
func TestLoadFollowsConfigMapLayout(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "..2025_01_01_00_00_00.000000001")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "testdata/trivial/decision.rego", filepath.Join(real, "decision.rego"))
	mustSymlink(t, filepath.Base(real), filepath.Join(dir, "..data"))
	mustSymlink(t, filepath.Join("..data", "decision.rego"), filepath.Join(dir, "decision.rego"))
	mustSymlink(t, "/nonexistent", filepath.Join(dir, "dangling.rego"))

	e := load(t, Options{Dir: dir})
	if d, err := e.Decide(context.Background(), &Input{}); err != nil || !d.Allow {
		t.Fatalf("Decide = %+v, %v; want allow", d, err)
	}
}

func TestDecideDecodesEveryField(t *testing.T) {
	e := load(t, Options{Dir: "testdata/decide"})
	tests := []struct {
		client string
		want   Decision
	}{
		{"full", Decision{
			Allow:          true,
			Skip:           true,
			Reasons:        []string{"in scope", "looks fine"},
			DropAttributes: []string{"phoneNumbers", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"},
			DropMembers:    []string{"m1", "m2"},
			Deactivate:     true,
		}},
		// Sets (from `reasons contains ...`) are accepted and come out sorted.
		{"set_reasons", Decision{Reasons: []string{"first", "second"}}},
		// Optional fields default to false / empty.
		{"deny_bare", Decision{}},
	}
	for _, tt := range tests {
		t.Run(tt.client, func(t *testing.T) {
			d, err := e.Decide(context.Background(), &Input{Client: tt.client})
			if err != nil {
				t.Fatal(err)
			}
			if !equalDecision(d, tt.want) {
				t.Errorf("got  %+v\nwant %+v", d, tt.want)
			}
		})
	}
}

func TestDecideFailsClosed(t *testing.T) {
	// Both Engines share one compiled policy; only the slow case gets the short timeout,
	// so a loaded machine cannot turn the other cases into timeouts.
	e := load(t, Options{Dir: "testdata/decide", Timeout: time.Minute})
	short := load(t, Options{Dir: "testdata/decide", Timeout: 20 * time.Millisecond})
	tests := []struct {
		client string
		target string
		want   error
		reason string // substring of the single deny reason
	}{
		{"nobody", "", ErrUndefined, "data.scimgate.decision is undefined for this input; every request must get a decision"},
		{"not_object", "", ErrBadDecision, "data.scimgate.decision must be an object"},
		{"allow_missing", "", ErrBadDecision, `has no "allow" key`},
		{"allow_string", "", ErrBadDecision, "data.scimgate.decision.allow must be a boolean, got string"},
		{"skip_number", "", ErrBadDecision, "data.scimgate.decision.skip must be a boolean, got number"},
		{"reasons_string", "", ErrBadDecision, "data.scimgate.decision.reasons must be an array of strings, got string"},
		{"members_mixed", "", ErrBadDecision, "data.scimgate.decision.drop_members must be an array of strings, but entry 1 is number"},
		{"unknown_key", "", ErrBadDecision, `unknown key "drop_attribute"`},
		{"number_key", "", ErrBadDecision, "non-string key 1"},
		{"bad_regex", "[", ErrEval, "decision.rego:40: eval_builtin_error: regex.match: error parsing regexp"},
		{"conflict", "", ErrEval, "eval_conflict_error"},
		{"slow", "", ErrTimeout, "was not decided within 20ms"},
	}
	for _, tt := range tests {
		t.Run(tt.client, func(t *testing.T) {
			engine := e
			if tt.want == ErrTimeout {
				engine = short
			}
			start := time.Now()
			d, err := engine.Decide(context.Background(), &Input{Client: tt.client, Target: tt.target})
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			assertDenied(t, d, tt.reason)
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("took %v: the timeout did not stop evaluation", elapsed)
			}
		})
	}
}

func TestDecideHonoursCallerContext(t *testing.T) {
	e := load(t, Options{Dir: "testdata/decide", Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	d, err := e.Decide(ctx, &Input{Client: "slow"})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want ErrTimeout wrapping context.Canceled", err)
	}
	assertDenied(t, d, "evaluation of data.scimgate.decision was cancelled")
}

// TestTimeoutCountsEvaluationOnly: a decision waiting for a core (every evaluation slot
// held by others) does not spend its timeout waiting; the timeout starts when it gets one.
func TestTimeoutCountsEvaluationOnly(t *testing.T) {
	const timeout = 100 * time.Millisecond
	e := load(t, Options{Dir: "testdata/trivial", Timeout: timeout})
	in := userPatchInput(t)
	release := holdEvalSlots()
	done := make(chan error, 1)
	go func() {
		_, err := e.Decide(context.Background(), in)
		done <- err
	}()
	time.Sleep(3 * timeout) // the decision waits for a core all along
	select {
	case err := <-done:
		t.Fatalf("decided (%v) while every evaluation slot was held", err)
	default:
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("a decision that waited %v for a core, longer than its %v timeout, failed: %v", 3*timeout, timeout, err)
	}
}

// TestDecideGivesUpWaitingWithItsCaller: the caller's context ending while the decision
// waits for a core is a timeout (undecided, never a plain deny) that says so.
func TestDecideGivesUpWaitingWithItsCaller(t *testing.T) {
	e := load(t, Options{Dir: "testdata/trivial"})
	release := holdEvalSlots()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	d, err := e.Decide(ctx, userPatchInput(t))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want ErrTimeout wrapping context.Canceled", err)
	}
	assertDenied(t, d, "was not evaluated: the request ended while it waited for a core")
}

// TestTimeoutCountsCPUTime: an evaluation off the CPU (here a print hook that sleeps, as
// a thread the operating system has not scheduled would wait) does not spend its timeout;
// one that stays off it for wallFactor times the timeout is stopped all the same.
func TestTimeoutCountsCPUTime(t *testing.T) {
	if _, ok := threadCPUClock(); !ok {
		t.Skip("no per-thread CPU clock here: the timeout counts wall-clock time")
	}
	const timeout = 100 * time.Millisecond
	sleep := func(d time.Duration) func(string, string) { return func(string, string) { time.Sleep(d) } }
	e := load(t, Options{Dir: "testdata/decide", Timeout: timeout, Print: sleep(3 * timeout)})
	if _, err := e.Decide(context.Background(), &Input{Client: "print"}); err != nil {
		t.Fatalf("an evaluation %v off the CPU, with a %v timeout, failed: %v", 3*timeout, timeout, err)
	}

	short := 20 * time.Millisecond
	e = load(t, Options{Dir: "testdata/decide", Timeout: short, Print: sleep(wallFactor*short + 100*time.Millisecond)})
	d, err := e.Decide(context.Background(), &Input{Client: "print"})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want ErrTimeout wrapping context.DeadlineExceeded", err)
	}
	assertDenied(t, d, "was not decided within 20ms")
}

// TestThreadCPUClock: the clock reads this thread's CPU time, which grows as it works
// and not while it sleeps.
func TestThreadCPUClock(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c, ok := threadCPUClock()
	if !ok {
		t.Skip("no per-thread CPU clock here")
	}
	t0, _ := c.read()
	time.Sleep(200 * time.Millisecond)
	t1, _ := c.read()
	if t1-t0 > 100*time.Millisecond {
		t.Errorf("the clock counted %v of CPU time while the thread slept 200ms", t1-t0)
	}
	// Spin until the clock shows 10ms of work (a busy machine may give this thread a
	// fraction of a core): it must get there.
	var t2 time.Duration
	for deadline := time.Now().Add(10 * time.Second); t2-t1 < 10*time.Millisecond && time.Now().Before(deadline); {
		if t2, ok = c.read(); !ok {
			t.Fatal("the clock stopped working")
		}
	}
	if t2-t1 < 10*time.Millisecond {
		t.Errorf("the clock counted %v of CPU time in 10s of spinning", t2-t1)
	}
}

// holdEvalSlots takes every evaluation slot, as decisions running on every core would;
// the returned function gives them back.
func holdEvalSlots() func() {
	slots := evalSlots()
	for range cap(slots) {
		slots <- struct{}{}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for range cap(slots) {
				<-slots
			}
		})
	}
}

func TestDecideRejectsBadInput(t *testing.T) {
	e := load(t, Options{Dir: "testdata/decide"})
	tests := []struct {
		name string
		in   *Input
	}{
		{"nil", nil},
		{"unconvertible resource", &Input{Client: "full", Resource: map[string]any{"x": make(chan int)}}},
		{"unconvertible previous", &Input{Client: "full", Previous: map[string]any{"x": []any{func() {}}}}},
		// Valid JSON, but no number OPA can represent: must be an error, not a panic.
		{"huge exponent", &Input{Client: "full", Resource: decodeJSON(t, `{"name": {"x": [1e999999999]}}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Decide(context.Background(), tt.in)
			if !errors.Is(err, ErrInput) {
				t.Fatalf("error = %v, want ErrInput", err)
			}
			assertDenied(t, d, "policy input invalid") // the reason does not blame the policy
			if tt.in == nil {
				d, err = e.DecidePrepared(context.Background(), nil)
				assertDenied(t, d, "policy input invalid")
			} else if _, err = tt.in.Prepare(); err == nil {
				t.Fatal("Prepare accepted the input Decide rejects")
			}
			if !errors.Is(err, ErrInput) {
				t.Fatalf("Prepare or DecidePrepared error = %v, want ErrInput", err)
			}
		})
	}
}

func TestPrintReachesHook(t *testing.T) {
	var mu sync.Mutex
	var got []string
	e := load(t, Options{Dir: "testdata/decide", Print: func(location, msg string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, location+" "+msg)
	}})
	if _, err := e.Decide(context.Background(), &Input{Client: "print", Target: "demo"}); err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join("testdata", "decide", "decision.rego") + ":55 target is demo"}
	if !slices.Equal(got, want) {
		t.Errorf("print output = %q, want %q", got, want)
	}

	// The compiled policy is shared; an Engine without a Print hook discards the output.
	quiet := load(t, Options{Dir: "testdata/decide"})
	if _, err := quiet.Decide(context.Background(), &Input{Client: "print", Target: "other"}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("an Engine without Print reached another Engine's hook: %q", got)
	}
}

func TestJSONNumbersReachPolicyExactly(t *testing.T) {
	e := load(t, Options{Dir: "testdata/decide"})
	res := decodeJSON(t, `{"big": 12345678901234567890, "small": 0.1, "nested": [{"n": 42}]}`)
	d, err := e.Decide(context.Background(), &Input{Client: "numbers", Resource: res})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allow || !slices.Equal(d.Reasons, []string{"12345678901234567890"}) {
		t.Errorf("got %+v, want allow with the big number unrounded", d)
	}
}

func TestCacheSharesCompiledPolicy(t *testing.T) {
	opts := Options{Dir: "testdata/trivial"}
	a, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(Options{Dir: "testdata/trivial", Timeout: time.Second, Print: func(string, string) {}})
	if err != nil {
		t.Fatal(err)
	}
	if a.timeout != DefaultTimeout || a.query != DefaultQuery {
		t.Errorf("defaults not applied: timeout %v, query %q", a.timeout, a.query)
	}
	if a.Hash() != b.Hash() || a.policy != b.policy {
		t.Fatalf("identical content compiled twice: hashes %s / %s", a.Hash(), b.Hash())
	}
	if n := cacheRefs(a.Hash()); n != 2 {
		t.Fatalf("refs = %d, want 2", n)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	_ = a.Close() // idempotent: must not drop b's reference
	if n := cacheRefs(a.Hash()); n != 1 {
		t.Fatalf("refs after closing one Engine twice = %d, want 1", n)
	}
	// A closed Engine still answers (requests in flight during a reload finish).
	if d, err := a.Decide(context.Background(), &Input{}); err != nil || !d.Allow {
		t.Errorf("Decide after Close = %+v, %v", d, err)
	}
	_ = b.Close()
	if n := cacheRefs(a.Hash()); n != 0 {
		t.Fatalf("refs after closing both = %d, want 0 (entry freed)", n)
	}
	c := load(t, opts)
	if c.policy == b.policy {
		t.Error("a freed policy was reused instead of recompiled")
	}
}

func TestHashFollowsContent(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "decision.rego")
	writeFile(t, file, "package scimgate\n\ndecision := {\"allow\": true}\n\nverdict := decision\n")
	base := load(t, Options{Dir: dir})

	same := load(t, Options{Dir: dir, Timeout: time.Second})
	if same.Hash() != base.Hash() {
		t.Error("timeout changed the hash; it does not change compilation")
	}
	otherQuery := load(t, Options{Dir: dir, Query: "data.scimgate.verdict"})
	if otherQuery.Hash() == base.Hash() {
		t.Error("query did not change the hash")
	}
	withData := load(t, Options{Dir: dir, DataFiles: []string{"testdata/extra/extra.json"}})
	if withData.Hash() == base.Hash() {
		t.Error("extra data file did not change the hash")
	}

	// Editing a file while the old Engine is still open (a reload) gives new content.
	writeFile(t, file, "package scimgate\n\ndecision := {\"allow\": false}\n")
	edited := load(t, Options{Dir: dir})
	if edited.Hash() == base.Hash() || edited.policy == base.policy {
		t.Fatal("edited policy shares the old compiled policy")
	}
	if d, _ := edited.Decide(context.Background(), &Input{}); d.Allow {
		t.Error("edited policy still allows")
	}
	if d, _ := base.Decide(context.Background(), &Input{}); !d.Allow {
		t.Error("old Engine lost its policy")
	}
}

func TestConcurrentDecideAndReload(t *testing.T) {
	// A generous timeout: under -race on a small machine 32 workers share two CPUs.
	e := load(t, Options{Dir: "testdata/decide", Timeout: time.Minute})
	clients := []string{"full", "set_reasons", "nobody", "allow_string", "bad_regex"}
	const workers, rounds = 32, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers+8)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				client := clients[(w+i)%len(clients)]
				d, err := e.Decide(context.Background(), &Input{Client: client, Target: "[", Resource: map[string]any{"i": i}})
				if (client == "full") != (d.Allow && err == nil) {
					errs <- fmt.Errorf("%s: got %+v, %v", client, d, err)
					return
				}
			}
		})
	}
	// Reloads of the same content race with the Decides and with each other.
	for range 4 {
		wg.Go(func() {
			for range 20 {
				other, err := Load(Options{Dir: "testdata/decide"})
				if err != nil {
					errs <- err
					return
				}
				if other.policy != e.policy {
					errs <- errors.New("reload of unchanged policy recompiled it")
				}
				_ = other.Close()
			}
		})
	}
	// Different content compiles concurrently (the capabilities are shared between compilers).
	for _, dir := range []string{"testdata/ok", "testdata/trivial", "testdata/ok"} {
		wg.Go(func() {
			other, err := Load(Options{Dir: dir})
			if err != nil {
				errs <- err
				return
			}
			_ = other.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := cacheRefs(e.Hash()); n != 1 {
		t.Errorf("refs = %d after concurrent reloads, want 1", n)
	}
}

func assertDenied(t *testing.T, d Decision, reason string) {
	t.Helper()
	if d.Allow || d.Skip || d.Deactivate || len(d.DropAttributes)+len(d.DropMembers) != 0 {
		t.Errorf("fail-closed decision %+v is not a plain deny", d)
	}
	if len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0], "policy error: ") || !strings.Contains(d.Reasons[0], reason) {
		t.Errorf("reasons = %q, want one \"policy error: ...%s...\"", d.Reasons, reason)
	}
}

func equalDecision(a, b Decision) bool {
	return a.Allow == b.Allow && a.Skip == b.Skip && a.Deactivate == b.Deactivate &&
		slices.Equal(a.Reasons, b.Reasons) && slices.Equal(a.DropAttributes, b.DropAttributes) &&
		slices.Equal(a.DropMembers, b.DropMembers)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	bs, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, bs, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
}
