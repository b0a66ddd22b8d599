# Privileged groups: provisioning never creates, changes or adds members to a group whose
# name marks it as privileged in the app (its administrators), so an Entra group named
# "Domain Admins" cannot grant admin rights in the app. Removing members from one and
# deleting one pass: they take rights away.
#
#   "privileged_groups": {"names": ["Domain Admins", "Global Administrators"],
#                         "patterns": ["(?i)^(tier0|priv)-"],
#                         "effect": "deny"}
#
# names compare case-insensitively (surrounding spaces ignored); patterns are RE2 regular
# expressions matched against displayName. effect "deny" (the default) refuses the change
# with a 403 Entra shows; "skip" lets Entra believe it succeeded and keeps it from the app.
# The name is checked after the change (a rename INTO a privileged name is refused) and
# before it (renaming a privileged group away is changing it too).
package scimgate.guardrails.privileged_groups

import data.scimgate.lib.request
import data.scimgate.lib.settings

_cfg := settings.guardrail("privileged_groups")

_guarded_events := {"create", "update", "rename", "add_members"}

_effect := object.get(_cfg, "effect", "deny")

# _applies: a group change of a guarded kind (checked on the input first: most requests are
# not, and this keeps them cheap).
_applies if {
	input.resource_type == "Group"
	some e in input.events
	e in _guarded_events
	not "delete" in input.events
}

# One exported rule body per kind, gated: a request this guardrail does not apply to costs
# one check.
deny contains msg if {
	_applies
	some msg in _deny
}

skip contains msg if {
	_applies
	_effect == "skip"
	some name, why in _hits
	msg := sprintf(
		"group %q is privileged on target %q (%s): the change is kept from the app (privileged_groups effect \"skip\").",
		[name, request.target, why],
	)
}

_deny contains msg if {
	_effect != "skip"
	some name, why in _hits
	msg := sprintf(
		"group %q is privileged on target %q (%s): scimgate refuses to create it, change it or add members to it. Manage it in the app directly, or change scimgate.config privileged_groups.",
		[name, request.target, why],
	)
}

# An invalid pattern cannot tell a privileged group from another: refuse group changes
# rather than guess, with a reason that says what to fix.
_deny contains msg if {
	some p in _cfg.patterns
	not _valid(p)
	msg := sprintf("privileged_groups pattern %s is not a valid regular expression; group changes are refused until scimgate.config is fixed", [json.marshal(p)])
}

# _hits maps each privileged name the group has, before or after the change, to why it is
# privileged.
_hits[name] := why if {
	some name in _group_names
	why := _why(lower(trim_space(name)), name)
}

_why(lname, name) := "listed in privileged_groups.names" if lname in _listed

else := "matches privileged_groups.patterns" if {
	some p in _patterns
	regex.match(p, name)
}

# _group_names: the displayName after and before the change (one name unless renamed).
_group_names := {name |
	some res in [request.resource, request.previous]
	name := res.displayName
	is_string(name)
	trim_space(name) != ""
}

_listed := {lower(trim_space(x)) | some x in _cfg.names; is_string(x)}

_patterns := [p | some p in _cfg.patterns; _valid(p)]

_valid(p) if {
	is_string(p)
	regex.is_valid(p)
}

# verdict is what the aggregator (data.scimgate.decision) reads: undefined unless this
# guardrail has something to say about the request.
verdict := {"deny": deny, "skip": skip} if {
	_applies
	count(deny) + count(skip) > 0
}
