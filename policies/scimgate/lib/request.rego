# Typed, defaulted views of the policy input (see the policy contract), so a guardrail
# never fails on a missing or null field: with strict builtin errors a type error would
# deny the request for a reason nobody can act on.
package scimgate.lib.request

# resource is the SCIM resource after the change; {} on delete.
default resource := {}

resource := input.resource if is_object(input.resource)

# previous is the SCIM resource before the change; {} on create.
default previous := {}

previous := input.previous if is_object(input.previous)

# events is the set of semantic events of the request (create, update, deactivate, ...).
events := {e | some e in input.events; is_string(e)}

default action := ""

action := input.action if is_string(input.action)

default resource_type := ""

resource_type := input.resource_type if is_string(input.resource_type)

# target is the legacy-app target's name, "" when none is configured.
default target := ""

target := input.target if is_string(input.target)

# native_id is the app's id for the resource, "" when the app has no account for it.
default native_id := ""

native_id := input.native_id if is_string(input.native_id)

# changed lists the attribute paths the request changes.
changed := [c | some c in input.changed; is_string(c)]

# members_added and members_removed are the membership changes, each {"id", "type",
# "display"}.
members_added := [m | some m in input.members.add; is_object(m)]

members_removed := [m | some m in input.members.remove; is_object(m)]

# last_hour returns how many changes with event the gateway let through to this target in
# the last hour, not counting this request; 0 when unknown.
last_hour(event) := n if {
	n := input.stats.last_hour[event]
	is_number(n)
} else := 0

# user_name returns the userName of a user resource, "" when it has none.
user_name(res) := s if {
	s := res.userName
	is_string(s)
} else := ""

# display_name returns the displayName of a resource, "" when it has none.
display_name(res) := s if {
	s := res.displayName
	is_string(s)
} else := ""
