# Break-glass accounts: the emergency accounts of the app are never deactivated or deleted
# by provisioning, whatever Entra sends (a scoping mistake in Entra must not lock everyone
# out). Other changes to them pass.
#
#   "break_glass": {"user_names": ["emergency-admin@contoso.example"],
#                   "patterns": ["(?i)^break-?glass"],
#                   "external_ids": ["0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"]}
#
# user_names compare case-insensitively; patterns are RE2 regular expressions matched
# against userName; external_ids compare exactly. The account is recognised by its state
# before or after the change, so renaming it in the same request does not get it through.
package scimgate.guardrails.break_glass

import data.scimgate.lib.request
import data.scimgate.lib.settings

_section := settings.section("break_glass")

_cfg := settings.guardrail_settings(_section)

# settings_schema: the settings this guardrail reads (see data.scimgate.lib.settings).
settings_schema := {"user_names": "strings", "patterns": "patterns", "external_ids": "strings"}

# _applies: a user deactivation or delete (checked on the input first: most requests are
# neither, and this keeps them cheap).
_applies if {
	input.resource_type == "User"
	some e in input.events
	e in {"deactivate", "delete"}
}

# One exported rule body, gated: a request this guardrail does not apply to costs one check.
deny contains msg if {
	_applies
	some msg in _deny
}

_deny contains msg if {
	some res in [request.previous, request.resource]
	_break_glass(res)
	msg := sprintf(
		"user %q is a break-glass account: scimgate never deactivates or deletes it on target %q (%s refused). Unassign it in Entra's provisioning scope, or remove it from scimgate.config break_glass.",
		[_name, request.target, concat(" and ", sort(request.events & {"deactivate", "delete"}))],
	)
}

# Malformed settings (a string where a list belongs, an invalid pattern, a misspelt key)
# cannot tell a break-glass account from another: refuse deprovisioning rather than guess,
# with a reason that names the key to fix.
_deny contains settings.malformed("break_glass", _section, settings_schema, "deactivations and deletions are")

_break_glass(res) if {
	name := lower(request.user_name(res))
	name != ""
	some n in _cfg.user_names
	is_string(n)
	lower(n) == name
}

_break_glass(res) if {
	name := request.user_name(res)
	name != ""
	some p in _cfg.patterns
	_valid(p)
	regex.match(p, name)
}

_break_glass(res) if {
	id := res.externalId
	is_string(id)
	id != ""
	some x in _cfg.external_ids
	x == id
}

_valid(p) if {
	is_string(p)
	regex.is_valid(p)
}

_name := request.user_name(request.previous) if request.user_name(request.previous) != ""

else := request.user_name(request.resource) if request.user_name(request.resource) != ""

else := object.get(request.previous, "id", object.get(request.resource, "id", "(unknown)"))

# verdict is what the aggregator (data.scimgate.decision) reads: undefined unless this
# guardrail has something to say about the request, so a request it does not concern
# costs one cheap rule.
verdict := {"deny": deny} if {
	_applies
	count(deny) > 0
}
