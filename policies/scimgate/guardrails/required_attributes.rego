# Required attributes: a create whose resource lacks any attribute the configuration
# requires for its resource type — or holds it empty (null, "", [], {}) — is refused, with
# every missing attribute listed, so the fix (an Entra attribute mapping) is done once.
#
#   "required_attributes": {"User": ["userName", "name.givenName",
#                                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"],
#                           "Group": ["displayName"]}
#
# A sub-attribute of a multi-valued attribute (`emails.value`) is present when any element
# holds it. Only creates are checked: an update that clears an attribute is the source's
# decision to make.
package scimgate.guardrails.required_attributes

import data.scimgate.lib.paths
import data.scimgate.lib.request
import data.scimgate.lib.settings

# settings_schema: the settings this guardrail reads (see data.scimgate.lib.settings).
settings_schema := {"User": "strings", "Group": "strings"}

# A list that is not a list of paths cannot be checked: creates are refused rather than let
# through unchecked, with a reason naming the key to fix.
_section := settings.section("required_attributes")

deny contains msg if {
	"create" in input.events
	msg := settings.malformed("required_attributes", _section, settings_schema, "creates are")
}

deny contains msg if {
	"create" in input.events
	required := settings.guardrail_settings(_section)[request.resource_type]
	missing := [p | some p in required; is_string(p); not paths.present(request.resource, p)]
	count(missing) > 0
	msg := sprintf(
		"%s create refused for target %q: required attribute(s) missing or empty: %s. Map them in Entra's attribute mappings, or remove them from %s.",
		[request.resource_type, request.target, concat(", ", missing), settings.source("required_attributes", request.resource_type)],
	)
}

# verdict is what the aggregator (data.scimgate.decision) reads: undefined unless this
# guardrail has something to say about the request.
verdict := {"deny": deny} if {
	"create" in input.events
	count(deny) > 0
}
