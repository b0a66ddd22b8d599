# Mass-deprovision brake: when the deactivations and deletions let through to a target in
# the last hour reach the limit, further ones are refused, so a scoping mistake in Entra
# (or a wrong group assignment) cannot empty the app in one sync cycle. Entra retries
# refused changes in later cycles, so raising the limit (or waiting) lets intended ones pass.
#
#   "mass_deprovision": {"max_per_hour": 500,
#                        "max_deactivate_per_hour": 400, "max_delete_per_hour": 100}
#
# max_per_hour limits deactivations + deletions together; the two optional per-event
# limits apply on their own. A limit of 0 freezes deprovisioning. A deactivation scoping
# asks for (a user leaving scope) counts as a deactivation.
package scimgate.guardrails.mass_deprovision

import data.scimgate.lib.request
import data.scimgate.lib.settings

_section := settings.section("mass_deprovision")

_cfg := settings.guardrail_settings(_section)

# settings_schema: the settings this guardrail reads (see data.scimgate.lib.settings).
settings_schema := {"max_per_hour": "count", "max_deactivate_per_hour": "count", "max_delete_per_hour": "count"}

# A limit that is not a number ("500") cannot be compared: the brake holds every
# deprovisioning rather than let them all through, with a reason naming the key to fix.
_deny contains settings.malformed("mass_deprovision", _section, settings_schema, "deactivations and deletions are")

_deactivating if "deactivate" in input.events

# A guardrail turning this change into a deactivation (scoping's on_exit) deprovisions too.
# Scoping's on_exit deactivation, named directly rather than through every guardrail
# (data.scimgate.guardrails[_].deactivate): enumerating the guardrails here cost every user
# update a pass over all of them. A guardrail of your own that asks for deactivations
# should be added here the same way.
_deactivating if {
	input.resource_type == "User"
	not "create" in input.events
	data.scimgate.guardrails.scoping.deactivate == true
}

_deleting if "delete" in input.events

_deprovisioning if _deactivating

_deprovisioning if _deleting

# One exported rule body, gated: a request this guardrail does not apply to costs one check.
deny contains msg if {
	_deprovisioning
	some msg in _deny
}

_deny contains msg if {
	limit := _cfg.max_per_hour
	is_number(limit)
	n := request.last_hour("deactivate") + request.last_hour("delete")
	n >= limit
	msg := sprintf(
		"mass-deprovision brake: %d deactivations and deletions reached target %q in the last hour (limit %v); this one is refused. If intended, raise %s or wait.",
		[n, request.target, limit, settings.source("mass_deprovision", "max_per_hour")],
	)
}

_deny contains msg if {
	_deactivating
	limit := _cfg.max_deactivate_per_hour
	is_number(limit)
	n := request.last_hour("deactivate")
	n >= limit
	msg := sprintf(
		"mass-deprovision brake: %d deactivations reached target %q in the last hour (limit %v); this one is refused. If intended, raise %s or wait.",
		[n, request.target, limit, settings.source("mass_deprovision", "max_deactivate_per_hour")],
	)
}

_deny contains msg if {
	_deleting
	limit := _cfg.max_delete_per_hour
	is_number(limit)
	n := request.last_hour("delete")
	n >= limit
	msg := sprintf(
		"mass-deprovision brake: %d deletions reached target %q in the last hour (limit %v); this one is refused. If intended, raise %s or wait.",
		[n, request.target, limit, settings.source("mass_deprovision", "max_delete_per_hour")],
	)
}

# verdict is what the aggregator (data.scimgate.decision) reads: undefined unless this
# guardrail has something to say about the request.
verdict := {"deny": deny} if {
	_deprovisioning
	count(deny) > 0
}
