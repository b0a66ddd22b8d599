# Scoping: which users the app gets. A user is in scope when the domain of its userName
# (of its emails when userName is no address) is one of domains or a subdomain of one, and
# its enterprise department is one of departments (case-insensitive). An absent or empty
# list is no constraint; with neither, the guardrail does nothing.
#
#   "scoping": {"domains": ["contoso.example"], "departments": ["Engineering", "Research"],
#               "on_exit": "deactivate"}
#
# - out of scope before and after the change (or on create): skip — the directory keeps the
#   user, the app gets nothing;
# - left scope (in before, out now): on_exit "deactivate" (the default) sends the app a
#   deactivation instead of the change; "ignore" skips it;
# - came into scope: the change passes (the gateway creates the account);
# - a deactivation or delete of an out-of-scope user whose account exists in the app
#   (native_id set) passes, so no account outlives its user; without an account it is skipped.
# - group membership changes naming a user (by userName) outside the domains are dropped
#   from what the app receives. Groups themselves are not scoped.
package scimgate.guardrails.scoping

import data.scimgate.lib.request
import data.scimgate.lib.settings

_enterprise := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

_section := settings.section("scoping")

_cfg := settings.guardrail_settings(_section)

# settings_schema: the settings this guardrail reads (see data.scimgate.lib.settings).
settings_schema := {"domains": "strings", "departments": "strings", "on_exit": ["deactivate", "ignore"]}

# Malformed settings ("domains": "contoso.example", a misspelt key) cannot tell who is in
# scope: user changes and group membership changes are refused rather than sent to the app
# as if scoping were off, with a reason naming the key to fix.
_malformed := settings.malformed("scoping", _section, settings_schema, "user changes and membership changes are")

deny contains _malformed if _scoped_request

_scoped_request if input.resource_type == "User"

_scoped_request if {
	input.resource_type == "Group"
	count(request.events & {"add_members", "remove_members"}) > 0
}

_domains := {lower(trim_space(d)) | some d in _cfg.domains; is_string(d)}

_departments := {lower(trim_space(d)) | some d in _cfg.departments; is_string(d)}

_on_exit := object.get(_cfg, "on_exit", "deactivate")

# _on: scoping is configured with at least one constraint.
_on if {
	_cfg
	count(_domains) + count(_departments) > 0
}

# _user: a user change with scoping on.
_user if {
	_on
	input.resource_type == "User"
}

# One exported rule body per kind, gated: a request this guardrail does not apply to costs
# one check.
skip contains msg if {
	_user
	some msg in _skip
}

notes contains msg if {
	_user
	some msg in _notes
}

deactivate if {
	_user
	_leaving_deactivates
}

# _deprovisioning: the request takes an existing app account away; never skipped.
_deprovisioning if {
	count(request.events & {"deactivate", "delete"}) > 0
	request.native_id != ""
}

_creating if "create" in request.events

_creating if {
	request.previous == {}
	request.resource != {}
}

_deleting if "delete" in request.events

_updating if {
	not _creating
	not _deleting
	request.previous != {}
	request.resource != {}
}

_out_now := _problems(request.resource)

_out_before := _problems(request.previous)

# Created out of scope.
_skip contains _out_of_scope(request.resource, _out_now) if {
	_creating
	count(_out_now) > 0
}

# Deleted out of scope, with no account in the app to delete.
_skip contains _out_of_scope(request.previous, _out_before) if {
	_deleting
	not _deprovisioning
	count(_out_before) > 0
}

# Out of scope before and after.
_skip contains _out_of_scope(request.resource, _out_now) if {
	_updating
	count(_out_now) > 0
	count(_out_before) > 0
	not _deprovisioning
}

# Left scope, on_exit "deactivate", with an account to deactivate.
_notes contains sprintf(
	"user %q left the scope of target %q (%s): the app account is deactivated instead (scoping on_exit \"deactivate\").",
	[request.user_name(request.resource), request.target, concat("; ", sort(_out_now))],
) if _leaving_deactivates

_leaving_deactivates if {
	_leaving
	_on_exit == "deactivate"
	request.native_id != ""
}

# Left scope, any other case: the app is left as it is.
_skip contains sprintf(
	"user %q left the scope of target %q (%s): %s",
	[request.user_name(request.resource), request.target, concat("; ", sort(_out_now)), _left_why],
) if {
	_leaving
	not _leaving_deactivates
	not _deprovisioning
}

_left_why := "it has no account there, nothing to send." if request.native_id == ""

else := sprintf("the app account is left as it is (scoping on_exit %q).", [_on_exit])

# Scope first: most users are in scope now, and mass_deprovision asks (through deactivate)
# on every user update.
_leaving if {
	count(_out_now) > 0
	_updating
	count(_out_before) == 0
}

_notes contains sprintf(
	"user %q came into the scope of target %q: the change is sent to the app.",
	[request.user_name(request.resource), request.target],
) if {
	_updating
	count(_out_now) == 0
	count(_out_before) > 0
}

_out_of_scope(res, problems) := sprintf(
	"user %q is out of scope for target %q (%s): the change is kept from the app.",
	[request.user_name(res), request.target, concat("; ", sort(problems))],
)

# _problems returns why res is out of scope: empty when in scope.
_problems(res) := set() if res == {}

else := _domain_problems(res) | _department_problems(res)

_domain_problems(res) := set() if count(_domains) == 0

else := set() if {
	some d in _user_domains(res)
	_domain_in_scope(d)
}

else := {_domain_text(_user_domains(res))} if count(_user_domains(res)) > 0

else := {"it has no email domain to match scoping.domains"}

_domain_text(ds) := sprintf("domain %q is not in scoping.domains", [d]) if {
	count(ds) == 1
	some d in ds
} else := sprintf("domains %s are not in scoping.domains", [concat(", ", [sprintf("%q", [d]) | some d in sort(ds)])])

_department_problems(res) := set() if count(_departments) == 0

else := set() if lower(trim_space(_department(res))) in _departments

else := {"it has no department to match scoping.departments"} if trim_space(_department(res)) == ""

else := {sprintf("department %q is not in scoping.departments", [_department(res)])}

_department(res) := d if {
	d := res[_enterprise].department
	is_string(d)
} else := ""

# _user_domains: the domain of userName when it is an address, else those of its emails.
_user_domains(res) := {d} if {
	d := _domain_of(request.user_name(res))
} else := {d |
	some e in res.emails
	d := _domain_of(e.value)
}

_domain_of(s) := lower(trim_space(d)) if {
	is_string(s)
	at := indexof_n(s, "@")
	count(at) > 0
	d := substring(s, at[count(at) - 1] + 1, -1)
	trim_space(d) != ""
}

_domain_in_scope(d) if d in _domains

_domain_in_scope(d) if {
	some s in _domains
	endswith(d, concat("", [".", s]))
}

# Membership changes naming a user outside the domains do not reach the app.
_foreign_members contains m if {
	count(_domains) > 0
	input.resource_type == "Group"
	some m in array.concat(request.members_added, request.members_removed)
	m.type == "User"
	is_string(m.id)
	d := _domain_of(m.display)
	not _domain_in_scope(d)
}

drop_members contains m.id if {
	_on
	some m in _foreign_members
}

notes contains sprintf(
	"%d member(s) outside scoping.domains not sent to target %q: %s",
	[count(names), request.target, _list(names)],
) if {
	_on
	names := sort({m.display | some m in _foreign_members})
	count(names) > 0
}

_list(names) := concat(", ", names) if count(names) <= 10

else := sprintf("%s and %d more", [concat(", ", array.slice(names, 0, 10)), count(names) - 10])

# verdict is what the aggregator (data.scimgate.decision) reads: undefined unless this
# guardrail has something to say about the request (scoping configured, and a user, or a
# group whose member changes name users outside the domains).
verdict := {"deny": deny} if {
	_malformed
	_scoped_request
}

verdict := {"skip": skip, "notes": notes, "drop_members": drop_members, "deactivate": _deactivate} if {
	not _malformed
	_on
	not _in_scope_throughout
	(count(skip) + count(notes)) + count(drop_members) > 0
}

# _in_scope_throughout: a user in scope before and after the change (or created or deleted
# in scope), the common case, about which this guardrail has nothing to say: every skip,
# note and deactivation needs the user out of scope before or after, and members are only
# dropped from groups. Checked first, it spares the common case the rules that find so.
_in_scope_throughout if {
	input.resource_type == "User"
	count(_out_now) == 0
	count(_out_before) == 0
}

default _deactivate := false

_deactivate if deactivate
