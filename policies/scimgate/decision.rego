# The decision the gateway asks for on every write (data.scimgate.decision; the policy
# contract). It composes the guardrails: every package under scimgate.guardrails.<name>
# may define `verdict`, an object with any of
#
#   deny             reasons to refuse the request (403, nothing reaches the app)
#   skip             reasons the change is out of scope (Entra gets success, the app nothing)
#   notes            reasons journaled with an allowed change (e.g. why something was dropped)
#   drop_attributes  SCIM attribute paths the app must not receive
#   drop_members     member ids whose add/remove must not reach the app
#   deactivate       true: send the app a deactivation instead of the change
#
# and leaves it undefined when the request does not concern it. Adding a guardrail is
# dropping a file in policies/scimgate/guardrails; removing one is deleting it. With no
# verdict at all, every change passes unchanged.
#
# Why one verdict per guardrail rather than a partial set per kind: OPA's cost is mostly
# per rule evaluated, and most requests concern no guardrail. Reading one rule per
# guardrail, and answering at once when none has a verdict, keeps a decision to a handful
# of cheap rules; the guardrails keep their deny/skip/... rules (their tests use them) and
# their verdict gathers them behind a cheap applicability check. `some x in` accepts sets
# and arrays alike, so a verdict written either way composes the same.
package scimgate

_verdicts := [v | some name; v := data.scimgate.guardrails[name].verdict; is_object(v)]

# The common case: no guardrail has anything to say.
default decision := {
	"allow": true, "skip": false, "reasons": [],
	"drop_attributes": [], "drop_members": [], "deactivate": false,
}

decision := {
	"allow": false, "skip": false, "reasons": sort(deny_reasons),
	"drop_attributes": [], "drop_members": [], "deactivate": false,
} if {
	count(_verdicts) > 0
	count(deny_reasons) > 0
}

decision := {
	"allow": true, "skip": _skip, "reasons": sort({_text(r) | some r in (_skip_reasons | _notes)}),
	"drop_attributes": sort(_drop_attributes), "drop_members": sort(_drop_members), "deactivate": _deactivate,
} if {
	count(_verdicts) > 0
	count(deny_reasons) == 0
}

# Each is a set rule over the verdicts' lists (a verdict without the key adds nothing),
# not one function called per key: OPA evaluates a rule body once per decision, and a
# function call with a comprehension cost a leaving-scope decision a fifth of its time.
_skip_reasons contains x if {
	some v in _verdicts
	some x in v.skip
}

_notes contains x if {
	some v in _verdicts
	some x in v.notes
}

_drop_attributes contains x if {
	some v in _verdicts
	some x in v.drop_attributes
}

_drop_members contains x if {
	some v in _verdicts
	some x in v.drop_members
}

_denials contains x if {
	some v in _verdicts
	some x in v.deny
}

# A drop obligation that is not a string cannot be honoured; refusing the request is the
# only way not to leak what the guardrail meant to hold back.
_bad_drops := {x | some x in (_drop_attributes | _drop_members); not is_string(x)}

# deny_reasons: why the request is refused; empty when it is allowed.
deny_reasons := {_text(r) | some r in _denials} | {
sprintf("a guardrail produced the drop obligation %v, which is not a path or member id; refused (policy bug)", [x]) |
	some x in _bad_drops
}

# deactivate wins over skip: a user leaving scope must lose the app account even when
# another guardrail skips the change.
default _deactivate := false

_deactivate if {
	some v in _verdicts
	v.deactivate == true
}

default _skip := false

_skip if {
	count(_skip_reasons) > 0
	not _deactivate
}

_text(r) := r if is_string(r)

else := sprintf("%v", [r])
