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

# Every group change Entra sends (membership syncs above all) goes through this guardrail,
# so it is written to cost little when the group is not privileged: verdict looks at the
# group's names once (_hits) and builds reasons only when one is privileged.

# The events that give or keep rights: a delete (always alone in events) and member
# removals take them away. An object, so the check below is a lookup, not a builtin.
_guarded_events := {"create": true, "update": true, "rename": true, "add_members": true}

# _applies: a group change of a guarded kind (checked on the input first: most requests are
# not, and this keeps them cheap).
_applies if {
	input.resource_type == "Group"
	some e in input.events
	_guarded_events[e]
}

_section := settings.section("privileged_groups")

_cfg := settings.guardrail_settings(_section)

# settings_schema: the settings this guardrail reads (see data.scimgate.lib.settings).
settings_schema := {"names": "strings", "patterns": "patterns", "effect": ["deny", "skip"]}

# Malformed settings (a string where a list belongs, an invalid pattern, a misspelt key)
# cannot tell a privileged group from another: group changes are refused rather than
# guessed, with a reason that names the key to fix.
_malformed := settings.malformed("privileged_groups", _section, settings_schema, "group creates, changes and member adds are")

_skip_effect if _cfg.effect == "skip"

# _hits maps each name the group has, after or before the change, that is privileged to
# why it is.
_hits[name] := why if {
	some name in _names
	why := _why(name)
}

# _names: the displayName after and before the change (one name unless renamed).
_names := {name |
	some k in ["resource", "previous"]
	name := input[k].displayName
	is_string(name)
	trim_space(name) != ""
}

_why(name) := "listed in privileged_groups.names" if {
	lower(trim_space(name)) in _listed
} else := "matches privileged_groups.patterns" if {
	some p in _patterns
	regex.match(p, name)
}

_listed := {lower(trim_space(x)) | some x in _cfg.names; is_string(x)}

_patterns := [p | some p in _cfg.patterns; _valid(p)]

_valid(p) if {
	is_string(p)
	regex.is_valid(p)
}

deny contains msg if {
	_applies
	not _skip_effect
	some name, why in _hits
	msg := sprintf(
		"group %q is privileged on target %q (%s): scimgate refuses to create it, change it or add members to it. Manage it in the app directly, or change scimgate.config privileged_groups.",
		[name, request.target, why],
	)
}

deny contains _malformed if _applies

skip contains msg if {
	_applies
	_skip_effect
	some name, why in _hits
	msg := sprintf(
		"group %q is privileged on target %q (%s): the change is kept from the app (privileged_groups effect \"skip\").",
		[name, request.target, why],
	)
}

# verdict is what the aggregator (data.scimgate.decision) reads: undefined unless this
# guardrail has something to say about the request.
verdict := {"deny": deny, "skip": skip} if {
	_applies
	count(deny) + count(skip) > 0
}
