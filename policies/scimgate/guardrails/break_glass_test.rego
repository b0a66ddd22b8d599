package scimgate.guardrails.break_glass_test

import data.scimgate
import data.scimgate.guardrails.break_glass as bg

_config := {"defaults": {"break_glass": {
	"user_names": ["Emergency@Contoso.example"],
	"patterns": ["(?i)^break-?glass"],
	"external_ids": ["ext-1"],
}}}

_user(name) := {"userName": name, "active": true, "externalId": "e"}

_change(events, before, after) := {
	"action": "patch", "resource_type": "User", "events": events, "target": "demo",
	"native_id": "7", "previous": before, "resource": after,
}

_deactivate(res) := _change(["deactivate"], res, object.union(res, {"active": false}))

_delete(res) := object.union(_change(["delete"], res, null), {"action": "delete"})

test_pattern_account_not_deactivated if {
	reasons := bg.deny with input as _deactivate(_user("BreakGlass-1@contoso.example")) with data.scimgate.config as _config
	reasons == {`user "BreakGlass-1@contoso.example" is a break-glass account: scimgate never deactivates or deletes it on target "demo" (deactivate refused). Unassign it in Entra's provisioning scope, or remove it from scimgate.config break_glass.`}
}

test_listed_account_not_deleted_case_insensitively if {
	d := scimgate.decision with input as _delete(_user("emergency@contoso.EXAMPLE")) with data.scimgate.config as _config
	not d.allow
	contains(d.reasons[0], "(delete refused)")
}

test_external_id_account_not_deleted if {
	count(bg.deny) == 1 with input as _delete({"userName": "ops@contoso.example", "externalId": "ext-1"}) with data.scimgate.config as _config
}

test_rename_away_in_the_same_change_still_caught if {
	before := _user("break-glass@contoso.example")
	after := {"userName": "someone@contoso.example", "active": false}
	count(bg.deny) == 1 with input as _change(["deactivate", "rename"], before, after) with data.scimgate.config as _config
}

test_other_changes_pass if {
	u := _user("breakglass@contoso.example")
	count(bg.deny) == 0 with input as _change(["update"], u, object.union(u, {"displayName": "BG"})) with data.scimgate.config as _config
	count(bg.deny) == 0 with input as _change(["reactivate"], u, u) with data.scimgate.config as _config
	count(bg.deny) == 0 with input as {"action": "create", "resource_type": "User", "events": ["create"], "resource": u} with data.scimgate.config as _config
}

test_ordinary_accounts_pass if {
	count(bg.deny) == 0 with input as _deactivate(_user("ada@contoso.example")) with data.scimgate.config as _config
	count(bg.deny) == 0 with input as _delete(_user("glass.breaker@contoso.example")) with data.scimgate.config as _config
}

test_groups_are_not_accounts if {
	i := {"action": "delete", "resource_type": "Group", "events": ["delete"], "previous": {"displayName": "breakglass"}, "resource": null}
	count(bg.deny) == 0 with input as i with data.scimgate.config as _config
}

test_invalid_pattern_refuses_deprovisioning if {
	cfg := {"defaults": {"break_glass": {"patterns": ["(unclosed"]}}}
	reasons := bg.deny with input as _deactivate(_user("ada@contoso.example")) with data.scimgate.config as cfg
	reasons == {`break_glass settings for target "demo" are malformed (scimgate.config.defaults.break_glass.patterns holds "(unclosed", which is not a valid RE2 regular expression): deactivations and deletions are refused until scimgate.config is fixed.`}
	count(bg.deny) == 0 with input as _change(["update"], _user("a"), _user("b")) with data.scimgate.config as cfg
}

test_unconfigured_does_nothing if {
	count(bg.deny) == 0 with input as _deactivate(_user("breakglass@contoso.example")) with data.scimgate.config as {}
}

# A list given as a string would match no account; the guardrail refuses instead.
test_malformed_user_names_refuse_deprovisioning if {
	cfg := {"defaults": {"break_glass": {"user_names": "emergency@contoso.example"}}}
	d := scimgate.decision with input as _deactivate(_user("ada@contoso.example")) with data.scimgate.config as cfg
	not d.allow
	d.reasons == [`break_glass settings for target "demo" are malformed (scimgate.config.defaults.break_glass.user_names must be a list of strings, got string "emergency@contoso.example"): deactivations and deletions are refused until scimgate.config is fixed.`]
	count(bg.deny) == 0 with input as _change(["update"], _user("a"), _user("b")) with data.scimgate.config as cfg
}
