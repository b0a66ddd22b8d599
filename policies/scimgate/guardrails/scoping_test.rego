package scimgate.guardrails.scoping_test

import data.scimgate

_ent := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

_config := {
	"defaults": {"scoping": {"domains": ["Contoso.example"], "departments": ["Engineering", "research"]}},
	"targets": {
		"keep": {"scoping": {"on_exit": "ignore"}},
		"domains_only": {"scoping": {"departments": []}},
	},
}

_user(name, dept) := {"userName": name, "active": true, _ent: {"department": dept}}

_in := _user("ada@contoso.example", "Engineering")

_out_domain := _user("bob@fabrikam.example", "Engineering")

_out_dept := _user("cy@contoso.example", "Sales")

_create(res) := {"action": "create", "resource_type": "User", "events": ["create"], "target": "demo", "native_id": "", "previous": null, "resource": res}

_update(before, after, native_id) := {
	"action": "replace", "resource_type": "User", "events": ["update"], "target": "demo",
	"native_id": native_id, "previous": before, "resource": after,
}

_delete(before, native_id) := {
	"action": "delete", "resource_type": "User", "events": ["delete"], "target": "demo",
	"native_id": native_id, "previous": before, "resource": null,
}

_d(i) := d if {
	d := scimgate.decision with input as i with data.scimgate.config as _config
}

_passes(d) if {
	d.allow
	not d.skip
	not d.deactivate
}

test_create_in_scope_passes if {
	d := _d(_create(_in))
	_passes(d)
	d.reasons == []
}

test_subdomain_and_case_in_scope if {
	_passes(_d(_create(_user("x@EU.Contoso.Example", "RESEARCH"))))
}

test_lookalike_domain_out_of_scope if {
	_d(_create(_user("x@notcontoso.example", "Engineering"))).skip
	_d(_create(_user("x@contoso.example.evil", "Engineering"))).skip
}

test_create_out_of_domain_skipped_with_reason if {
	d := _d(_create(_out_domain))
	d.allow
	d.skip
	d.reasons == [`user "bob@fabrikam.example" is out of scope for target "demo" (domain "fabrikam.example" is not in scoping.domains): the change is kept from the app.`]
}

test_create_out_of_department_skipped_with_reason if {
	d := _d(_create(_out_dept))
	d.skip
	d.reasons == [`user "cy@contoso.example" is out of scope for target "demo" (department "Sales" is not in scoping.departments): the change is kept from the app.`]
}

test_create_without_department_or_domain if {
	d := _d(_create({"userName": "nobody"}))
	d.skip
	d.reasons == [`user "nobody" is out of scope for target "demo" (it has no department to match scoping.departments; it has no email domain to match scoping.domains): the change is kept from the app.`]
}

test_domain_from_emails_when_user_name_is_no_address if {
	u := {"userName": "ada", "emails": [{"value": "ada@contoso.example"}], _ent: {"department": "Engineering"}}
	_passes(_d(_create(u)))
	v := {"userName": "ada", "emails": [{"value": "a@x.example"}, {"value": "a@y.example"}], _ent: {"department": "Engineering"}}
	d := _d(_create(v))
	d.skip
	contains(d.reasons[0], `domains "x.example", "y.example" are not in scoping.domains`)
}

test_empty_department_list_is_no_constraint if {
	i := object.union(_create(_out_dept), {"target": "domains_only"})
	_passes(_d(i))
}

test_out_before_and_after_skipped if {
	d := _d(_update(_out_dept, object.union(_out_dept, {"displayName": "Cy"}), ""))
	d.skip
	count(d.reasons) == 1
}

test_in_before_and_after_passes if {
	_passes(_d(_update(_in, object.union(_in, {"displayName": "Ada"}), "1")))
}

test_left_scope_deactivates if {
	after := _user("ada@contoso.example", "Sales")
	d := _d(_update(_in, after, "42"))
	d.allow
	not d.skip
	d.deactivate
	d.reasons == [`user "ada@contoso.example" left the scope of target "demo" (department "Sales" is not in scoping.departments): the app account is deactivated instead (scoping on_exit "deactivate").`]
}

test_left_scope_without_account_skipped if {
	d := _d(_update(_in, _out_dept, ""))
	d.skip
	not d.deactivate
	contains(d.reasons[0], "it has no account there, nothing to send.")
}

test_left_scope_ignored if {
	i := object.union(_update(_in, _out_dept, "42"), {"target": "keep"})
	d := _d(i)
	d.skip
	not d.deactivate
	d.reasons == [`user "cy@contoso.example" left the scope of target "keep" (department "Sales" is not in scoping.departments): the app account is left as it is (scoping on_exit "ignore").`]
}

test_came_into_scope_passes if {
	d := _d(_update(_out_dept, _in, ""))
	_passes(d)
	d.reasons == [`user "ada@contoso.example" came into the scope of target "demo": the change is sent to the app.`]
}

test_delete_out_of_scope_with_account_passes if {
	_passes(_d(_delete(_out_domain, "42")))
}

test_delete_out_of_scope_without_account_skipped if {
	d := _d(_delete(_out_domain, ""))
	d.skip
	contains(d.reasons[0], `user "bob@fabrikam.example" is out of scope`)
}

test_delete_in_scope_passes if {
	_passes(_d(_delete(_in, "")))
}

test_deactivation_of_an_out_of_scope_account_passes if {
	i := object.union(_update(_out_dept, object.union(_out_dept, {"active": false}), "42"), {"events": ["deactivate"]})
	_passes(_d(i))
	j := object.union(i, {"target": "keep", "previous": _in})
	_passes(_d(j))
	k := object.union(i, {"native_id": ""})
	_d(k).skip
}

test_groups_are_not_scoped if {
	i := {"action": "create", "resource_type": "Group", "events": ["create"], "target": "demo", "resource": {"displayName": "Sales"}, "members": {"add": [], "remove": []}}
	_passes(_d(i))
}

test_foreign_members_dropped if {
	i := {
		"action": "patch", "resource_type": "Group", "events": ["add_members", "remove_members"], "target": "demo",
		"previous": {"displayName": "G"}, "resource": {"displayName": "G"},
		"members": {
			"add": [
				{"id": "u1", "type": "User", "display": "ada@contoso.example"},
				{"id": "u2", "type": "User", "display": "bob@fabrikam.example"},
				{"id": "g1", "type": "Group", "display": "x@fabrikam.example"},
				{"id": "u3", "type": "User", "display": "no-address"},
				{"id": "u4", "type": "", "display": "dee@fabrikam.example"},
			],
			"remove": [{"id": "u5", "type": "User", "display": "eve@Other.example"}, {"id": "u2", "type": "User", "display": "bob@fabrikam.example"}],
		},
	}
	d := _d(i)
	_passes(d)
	d.drop_members == ["u2", "u5"]
	d.reasons == [`2 member(s) outside scoping.domains not sent to target "demo": bob@fabrikam.example, eve@Other.example`]
}

test_many_foreign_members_listed_briefly if {
	add := [{"id": sprintf("u%d", [n]), "type": "User", "display": sprintf("u%02d@fabrikam.example", [n])} | some n in numbers.range(1, 12)]
	i := {"action": "create", "resource_type": "Group", "events": ["create", "add_members"], "target": "demo", "resource": {"displayName": "G"}, "members": {"add": add, "remove": []}}
	d := _d(i)
	count(d.drop_members) == 12
	endswith(d.reasons[0], "u10@fabrikam.example and 2 more")
}

test_members_kept_without_domains if {
	cfg := {"defaults": {"scoping": {"departments": ["Engineering"]}}}
	i := {"action": "patch", "resource_type": "Group", "events": ["add_members"], "target": "demo", "resource": {"displayName": "G"}, "members": {"add": [{"id": "u2", "type": "User", "display": "bob@fabrikam.example"}], "remove": []}}
	d := scimgate.decision with input as i with data.scimgate.config as cfg
	d.drop_members == []
}

test_unconfigured_or_disabled_does_nothing if {
	d := scimgate.decision with input as _create(_out_domain) with data.scimgate.config as {}
	_passes(d)
	e := scimgate.decision with input as _create(_out_domain) with data.scimgate.config as {"defaults": {"scoping": {"enabled": false, "domains": ["contoso.example"]}}}
	_passes(e)
	f := scimgate.decision with input as _create(_out_domain) with data.scimgate.config as {"defaults": {"scoping": {"on_exit": "ignore"}}}
	_passes(f)
}

# A domain list given as a string would put everyone in scope; user and membership
# changes are refused instead.
test_malformed_domains_refuse_user_and_member_changes if {
	cfg := {"defaults": {"scoping": {"domains": "contoso.example"}}}
	d := scimgate.decision with input as _create(_out_domain) with data.scimgate.config as cfg
	not d.allow
	d.reasons == [`scoping settings for target "demo" are malformed (scimgate.config.defaults.scoping.domains must be a list of strings, got string "contoso.example"): user changes and membership changes are refused until scimgate.config is fixed.`]
	g := {"action": "patch", "resource_type": "Group", "events": ["add_members"], "target": "demo", "resource": {"displayName": "G"}, "members": {"add": [{"id": "u2", "type": "User", "display": "bob@fabrikam.example"}], "remove": []}}
	not scimgate.decision.allow with input as g with data.scimgate.config as cfg
	r := object.union(g, {"events": ["rename"]})
	scimgate.decision.allow with input as r with data.scimgate.config as cfg
}
