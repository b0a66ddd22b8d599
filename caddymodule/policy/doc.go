// Package policy embeds OPA to decide, for every write the gateway is about to pass on to
// a legacy app, whether and how it may go through. It knows nothing about Caddy: the
// gateway loads an Engine at provision time, calls Decide per request and target, and
// closes the Engine at cleanup.
//
// # Contract
//
// The policy is Rego v1 and is queried at data.scimgate.decision (Options.Query). Its input
// is built from Input:
//
//	action         "create" | "replace" | "patch" | "delete"
//	resource_type  "User" | "Group"
//	events         ["create" | "update" | "deactivate" | "reactivate" | "delete" | "rename" |
//	                "add_members" | "remove_members", ...]
//	client         name of the bearer token that made the request
//	target         legacy-app target name ("" when none)
//	native_id      the app's id for the resource ("" when it has none)
//	resource       the SCIM resource after the change (null on delete)
//	previous       the SCIM resource before the change (null on create)
//	changed        changed attribute paths
//	members        {"add": [{"id", "type", "display"}], "remove": [...]} (empty arrays if none)
//	stats          {"window": "1h", "last_hour": {<every event above>: count}} — changes let
//	               through to this target in the last hour, not counting this one
//
// The decision must be an object:
//
//	allow            boolean, required; false answers 403 with the reasons
//	skip             with allow: out of scope, Entra gets success, the app nothing
//	reasons          strings a person can act on (array or set)
//	drop_attributes  SCIM attribute paths the app must not receive
//	drop_members     member ids whose add/remove must not reach the app
//	deactivate       with allow: send the app a deactivation instead of this change
//
// Missing optional keys default to false or empty. Unknown keys are an error, so a
// misspelt obligation cannot silently let data through.
// A decision the type checker knows is malformed (never an object, an unknown key, a key
// of the wrong type, no allow) fails the load with the rule's file and row; what only
// shows per request is checked per decision.
//
// # Fail closed
//
// Decide never allows by accident. An undefined decision, an evaluation error (builtin
// errors are strict: a bad regular expression is an error, not an undefined value), a
// timeout (Options.Timeout, or the caller's context ending) or a malformed decision all
// yield a deny Decision with one "policy error: ..." reason and an error wrapping
// ErrUndefined, ErrTimeout, ErrEval or ErrBadDecision (ErrInput when the gateway's input
// could not be converted).
//
// Policies cannot reach the network, the disk or the process: http.send,
// net.lookup_ip_addr, opa.runtime (which exposes environment variables, i.e. the gateway's
// secrets), json.match_schema and json.verify_schema (a schema's $ref reads files and
// fetches URLs) and strings.render_template (a Go template the timeout cannot stop) are
// not in the capabilities (disabledBuiltins), so a policy calling them fails to load with
// the file, the row and what to do instead. The capabilities allow no host to remote
// references (allow_net), and a schema annotation may only refer within its schema. print()
// output goes to Options.Print; trace() output is discarded.
//
// # Loading and caching
//
// Load reads every *.rego file below Options.Dir except *_test.rego (tests are run by
// `go test ./policies`, and a broken test must not stop the gateway), plus data.json /
// data.yaml files mounted at their directory's path as in an OPA bundle, plus
// Options.DataFiles merged at the data root. Errors name the file and row and say what to
// fix; Caddy then keeps its previous configuration.
//
// A policy may check its own data once per load: when a rule named SettingsErrorsRule
// ("settings_errors") sits next to the decision (data.scimgate.settings_errors), Load
// evaluates it with input {"packages": [every loaded package]} and fails when it holds any
// {"path": [...], "message": "..."}, naming for each the data file that set the path. The
// shipped policies check their guardrails' settings this way; a policy without the rule
// is not checked. Engine.CheckTargets runs it again, per gateway and outside the shared
// compiled policy, with input.targets the target names the gateway knows, so that
// settings for a target it does not have are reported (the gateway logs a warning). When the check ran
// and found nothing, the data holds data.scimgate_gateway.settings_checked = true
// (GatewayData; reserved: no data file or package may define it), so the guardrails need
// not re-check their settings per decision.
//
// Compiled policies are cached by a hash of everything that determines them (Engine.Hash)
// and reference-counted. Caddy provisions a new configuration before it cleans up the old
// one, so a reload that leaves the policies unchanged shares the compiled policy instead of
// recompiling it. Each compiled policy has one prepared query, evaluated concurrently
// without locks.
//
// # Performance
//
// Evaluations run at most one per core at a time (GOMAXPROCS), first come, first served:
// a decision is CPU work that never waits for anything else, so running more at once than
// there are cores only makes each wait behind the others' scheduler slices (tens of
// milliseconds, then timeouts) while the policy is fine. Queued instead, a decision waits
// for the few ahead of it, bounded by its caller's context. Options.Timeout then counts
// the CPU time the evaluation's thread uses (Linux; wall-clock time elsewhere), so a
// machine busy with other processes does not turn decisions into timeouts; ten times the
// timeout in wall-clock time stops an evaluation all the same.
//
// The input goes to OPA as a lazily converted AST object (no JSON round trip; a resource
// attribute is converted only if the policy reads it) and the decision is decoded from the
// AST directly; Input.Prepare converts an input once, eagerly, for several policies to
// decide in turn (Engine.DecidePrepared, used by previews), and Input.PrepareLike shares
// with the previous input what they have in common (a preview's users differ only in their
// resources). The cache of rule and function values an evaluation fills is pooled and
// reused by the next evaluation (OPA's own is built anew each time: a sixth of a
// decision's allocations, and of the garbage collector's work). A Memo (Engine.NewMemo)
// carries from one decision to the next the values of the rules that read neither the
// input's resource, previous nor native_id (the guardrails' settings for the target, their
// gates, compiled lists: found by analysing the compiled modules), for runs of inputs that
// differ only in those, as a preview's users do: each decision then evaluates only what
// depends on the user. See the benchmarks in
// bench_test.go for the cost against a trivial policy and under 32 concurrent decisions.
package policy
