# Attribute allowlist: the app receives only the attributes listed for its resource type;
# everything else in the resource (and every other attribute the request changes) is
# dropped from what the app receives — the directory keeps it all. Per target, as each app
# needs different data.
#
#   "attribute_allowlist": {"User": ["userName", "active", "externalId", "displayName",
#                                    "name.givenName", "name.familyName", "emails.value",
#                                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
#                                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"],
#                           "Group": ["displayName", "externalId", "members"]}
#
# `attr` allows the attribute whole; `attr.sub` allows only that sub-attribute of a complex
# attribute (the others are dropped as `attr.sub`); an extension's URN alone allows all of
# it. schemas, id and meta are always allowed. A resource type without a list is not
# filtered. Names compare case-insensitively.
package scimgate.guardrails.attribute_allowlist

import data.scimgate.lib.paths
import data.scimgate.lib.request
import data.scimgate.lib.settings

_section := settings.section("attribute_allowlist")

_allowed := settings.guardrail_settings(_section)[request.resource_type]

# settings_schema: the settings this guardrail reads (see data.scimgate.lib.settings).
settings_schema := {"User": "strings", "Group": "strings"}

# _sends: the request has a resource to send (checked on the input: comparing the
# resource with {} would convert all of it).
_sends if is_object(input.resource)

# A list that is not a list of paths cannot filter anything: a change that would send the
# app attributes is refused rather than sent whole, with a reason naming the key to fix.
_malformed := settings.malformed("attribute_allowlist", _section, settings_schema, "changes that send attributes are")

deny contains _malformed if _sends

drop_attributes contains p if {
	is_array(_allowed)
	some p in (paths.not_allowed(request.resource, _allowed) | _changes)
}

_changes := paths.not_allowed_changes(request.changed, _allowed) if count(request.changed) > 0

else := set()

# verdict is what the aggregator (data.scimgate.decision) reads: undefined unless this
# guardrail has something to say about the request.
verdict := {"deny": deny} if {
	_malformed
	_sends
}

verdict := {"drop_attributes": drop_attributes} if {
	not _malformed
	is_array(_allowed)
	count(drop_attributes) > 0
}
