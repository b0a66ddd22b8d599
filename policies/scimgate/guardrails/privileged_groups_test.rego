package scimgate.guardrails.privileged_groups_test

import data.scimgate
import data.scimgate.guardrails.privileged_groups as pg

_config := {
	"defaults": {"privileged_groups": {"names": ["Domain Admins", " Global Administrators "], "patterns": ["(?i)^(tier0|priv)-"]}},
	"targets": {"lenient": {"privileged_groups": {"effect": "skip"}}},
}

_group(name) := {"displayName": name, "members": []}

_create(name) := {"action": "create", "resource_type": "Group", "events": ["create"], "target": "demo", "resource": _group(name), "previous": null}

_change(events, before, after) := {
	"action": "patch", "resource_type": "Group", "events": events, "target": "demo",
	"previous": _group(before), "resource": _group(after), "native_id": "9",
}

test_create_listed_name_denied_case_insensitively if {
	reasons := pg.deny with input as _create("domain admins") with data.scimgate.config as _config
	reasons == {`group "domain admins" is privileged on target "demo" (listed in privileged_groups.names): scimgate refuses to create it, change it or add members to it. Manage it in the app directly, or change scimgate.config privileged_groups.`}
}

test_listed_name_with_spaces if {
	count(pg.deny) == 1 with input as _create("Global Administrators") with data.scimgate.config as _config
}

test_pattern_denied if {
	reasons := pg.deny with input as _create("PRIV-Finance") with data.scimgate.config as _config
	some r in reasons
	contains(r, "(matches privileged_groups.patterns)")
}

test_add_members_denied if {
	d := scimgate.decision with input as _change(["add_members"], "Tier0-Ops", "Tier0-Ops") with data.scimgate.config as _config
	not d.allow
}

test_update_denied if {
	count(pg.deny) == 1 with input as _change(["update"], "Domain Admins", "Domain Admins") with data.scimgate.config as _config
}

test_rename_into_privileged_denied if {
	reasons := pg.deny with input as _change(["rename"], "Helpdesk", "Domain Admins") with data.scimgate.config as _config
	reasons == {`group "Domain Admins" is privileged on target "demo" (listed in privileged_groups.names): scimgate refuses to create it, change it or add members to it. Manage it in the app directly, or change scimgate.config privileged_groups.`}
}

test_rename_away_from_privileged_denied if {
	count(pg.deny) == 1 with input as _change(["rename"], "Domain Admins", "Helpdesk") with data.scimgate.config as _config
}

test_delete_and_member_removal_pass if {
	del := {"action": "delete", "resource_type": "Group", "events": ["delete"], "target": "demo", "previous": _group("Domain Admins"), "resource": null}
	d := scimgate.decision with input as del with data.scimgate.config as _config
	d.allow
	not d.skip
	count(pg.deny) == 0 with input as _change(["remove_members"], "Domain Admins", "Domain Admins") with data.scimgate.config as _config
}

test_ordinary_groups_pass if {
	count(pg.deny) == 0 with input as _create("Engineering Team 0") with data.scimgate.config as _config
	count(pg.deny) == 0 with input as _create("Domain Admins Readers") with data.scimgate.config as _config
	count(pg.deny) == 0 with input as _create("privileged-ish") with data.scimgate.config as _config
	count(pg.deny) == 0 with input as _change(["add_members"], "Sales Guild 1", "Sales Guild 1") with data.scimgate.config as _config
}

test_users_are_not_groups if {
	i := {"action": "create", "resource_type": "User", "events": ["create"], "resource": {"userName": "x", "displayName": "Domain Admins"}}
	count(pg.deny) == 0 with input as i with data.scimgate.config as _config
}

test_effect_skip_per_target if {
	i := object.union(_create("Domain Admins"), {"target": "lenient"})
	d := scimgate.decision with input as i with data.scimgate.config as _config
	d.allow
	d.skip
	d.reasons == [`group "Domain Admins" is privileged on target "lenient" (listed in privileged_groups.names): the change is kept from the app (privileged_groups effect "skip").`]
}

test_invalid_pattern_refuses_group_changes if {
	cfg := {"defaults": {"privileged_groups": {"patterns": ["[a-"]}}}
	reasons := pg.deny with input as _create("Sales") with data.scimgate.config as cfg
	reasons == {`privileged_groups settings for target "demo" are malformed (scimgate.config.defaults.privileged_groups.patterns holds "[a-", which is not a valid RE2 regular expression): group creates, changes and member adds are refused until scimgate.config is fixed.`}
}

test_unconfigured_does_nothing if {
	count(pg.deny) == 0 with input as _create("Domain Admins") with data.scimgate.config as {}
}

test_create_without_previous_field if {
	i := {"action": "create", "resource_type": "Group", "events": ["create"], "target": "demo", "resource": {"displayName": "Tier0-Admins"}}
	count(pg.deny) == 1 with input as i with data.scimgate.config as _config
}

test_group_without_display_name_passes if {
	i := {"action": "patch", "resource_type": "Group", "events": ["update"], "target": "demo", "resource": {"externalId": "x"}, "previous": {"displayName": null}}
	count(pg.deny) == 0 with input as i with data.scimgate.config as _config
}

test_malformed_names_refuse_group_changes if {
	cfg := {"targets": {"demo": {"privileged_groups": {"names": "Domain Admins"}}}}
	reasons := pg.deny with input as _create("Domain Admins") with data.scimgate.config as cfg
	reasons == {`privileged_groups settings for target "demo" are malformed (scimgate.config.targets.demo.privileged_groups.names must be a list of strings, got string "Domain Admins"): group creates, changes and member adds are refused until scimgate.config is fixed.`}
}
