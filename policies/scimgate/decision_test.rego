package scimgate_test

import data.scimgate

_create := {
	"action": "create", "resource_type": "User", "events": ["create"], "client": "entra",
	"target": "demo", "native_id": "", "previous": null, "changed": [],
	"members": {"add": [], "remove": []},
	"resource": {"userName": "ada@contoso.example"},
}

# --- composition, with the guardrails replaced by fixed documents ---

test_no_guardrail_allows_with_no_obligations if {
	d := scimgate.decision with input as _create with data.scimgate.guardrails as {}
	d == {
		"allow": true, "skip": false, "reasons": [], "drop_attributes": [],
		"drop_members": [], "deactivate": false,
	}
}

test_guardrail_without_rules_is_ignored if {
	d := scimgate.decision with input as _create with data.scimgate.guardrails as {"empty": {"verdict": {}}}
	d.allow
	not d.skip
	d.reasons == []
}

test_deny_reasons_sorted_from_every_guardrail if {
	d := scimgate.decision with input as _create
		with data.scimgate.guardrails as {"a": {"verdict": {"deny": ["z reason", "a reason"]}}, "b": {"verdict": {"deny": ["m reason", "a reason"], "skip": ["skipped"], "notes": ["note"]}}}
	d.allow == false
	d.skip == false
	d.reasons == ["a reason", "m reason", "z reason"]
}

test_deny_clears_obligations if {
	d := scimgate.decision with input as _create
		with data.scimgate.guardrails as {"a": {"verdict": {"deny": ["no"]}}, "b": {"verdict": {"drop_attributes": ["phoneNumbers"], "drop_members": ["1"], "deactivate": true}}}
	d.allow == false
	d.drop_attributes == []
	d.drop_members == []
	d.deactivate == false
}

test_skip_when_a_skip_reason_and_no_deny if {
	d := scimgate.decision with input as _create
		with data.scimgate.guardrails as {"a": {"verdict": {"skip": ["out of scope"]}}, "b": {"verdict": {"notes": ["a note"]}}}
	d.allow
	d.skip
	d.reasons == ["a note", "out of scope"]
}

test_deny_wins_over_skip if {
	d := scimgate.decision with input as _create
		with data.scimgate.guardrails as {"a": {"verdict": {"skip": ["out"]}}, "b": {"verdict": {"deny": ["no"]}}}
	not d.allow
	not d.skip
	d.reasons == ["no"]
}

test_deactivate_wins_over_skip if {
	d := scimgate.decision with input as _create
		with data.scimgate.guardrails as {"a": {"verdict": {"skip": ["out"]}}, "b": {"verdict": {"deactivate": true, "notes": ["left scope"]}}}
	d.allow
	d.deactivate
	not d.skip
}

test_deactivate_false_is_not_deactivate if {
	d := scimgate.decision with input as _create with data.scimgate.guardrails as {"a": {"verdict": {"deactivate": false}}}
	d.deactivate == false
}

test_drops_merged_sorted_deduplicated if {
	d := scimgate.decision with input as _create
		with data.scimgate.guardrails as {"a": {"verdict": {"drop_attributes": ["phoneNumbers", "name.middleName"], "drop_members": ["2", "1"]}}, "b": {"verdict": {"drop_attributes": ["phoneNumbers", "addresses"], "drop_members": ["1"]}}}
	d.allow
	d.drop_attributes == ["addresses", "name.middleName", "phoneNumbers"]
	d.drop_members == ["1", "2"]
}

test_non_string_drop_is_refused if {
	d := scimgate.decision with input as _create
		with data.scimgate.guardrails as {"a": {"verdict": {"drop_attributes": [{"path": "x"}]}}}
	not d.allow
	count(d.reasons) == 1
	contains(d.reasons[0], "policy bug")
}

test_non_string_reason_is_kept_as_text if {
	d := scimgate.decision with input as _create with data.scimgate.guardrails as {"a": {"verdict": {"deny": [42]}}}
	not d.allow
	d.reasons == ["42"]
}

# --- the real guardrails, with the shipped configuration (policies/scimgate/config) ---

_entra_user := {
	"action": "create", "resource_type": "User", "events": ["create"], "client": "entra",
	"target": "demo", "native_id": "", "previous": null,
	"changed": ["userName", "active", "externalId", "displayName", "name.givenName", "name.familyName", "emails", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"],
	"members": {"add": [], "remove": []},
	"stats": {"window": "1h", "last_hour": {"create": 3, "update": 0, "deactivate": 0, "reactivate": 0, "delete": 0, "rename": 0, "add_members": 0, "remove_members": 0}},
	"resource": {
		"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		"id": "5b0f3a4e-7f33-4d0e-9a52-1c8f04b0c6a1",
		"userName": "ada.lovelace.0@contoso.example",
		"active": true,
		"externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
		"displayName": "Ada Lovelace",
		"name": {"givenName": "Ada", "familyName": "Lovelace"},
		"emails": [{"type": "work", "primary": true, "value": "ada.lovelace.0@mail.contoso.example"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Research", "employeeNumber": "E000000"},
		"meta": {"resourceType": "User"},
	},
}

test_shipped_config_lets_an_entra_user_create_through if {
	d := scimgate.decision with input as _entra_user
	d == {
		"allow": true, "skip": false, "reasons": [], "drop_attributes": [],
		"drop_members": [], "deactivate": false,
	}
}

test_shipped_config_lets_an_entra_group_create_through if {
	d := scimgate.decision with input as {
		"action": "create", "resource_type": "Group", "events": ["create", "add_members"],
		"target": "demo", "native_id": "", "previous": null,
		"members": {"add": [{"id": "u1", "type": "User", "display": "ada.lovelace.0@contoso.example"}], "remove": []},
		"resource": {"displayName": "Engineering Guild 3", "externalId": "x", "members": [{"value": "u1"}]},
	}
	d.allow
	not d.skip
	d.drop_members == []
}

test_shipped_config_lets_an_entra_deactivation_through if {
	d := scimgate.decision with input as object.union(_entra_user, {
		"action": "patch", "events": ["deactivate"], "native_id": "42",
		"previous": _entra_user.resource,
		"resource": object.union(_entra_user.resource, {"active": false}),
		"changed": ["active"],
	})
	d.allow
	not d.skip
	not d.deactivate
}

test_shipped_config_refuses_a_privileged_group if {
	d := scimgate.decision with input as {
		"action": "create", "resource_type": "Group", "events": ["create"], "target": "demo",
		"resource": {"displayName": "Domain Admins"},
	}
	not d.allow
	count(d.reasons) == 1
}

test_shipped_config_refuses_a_create_without_user_name if {
	d := scimgate.decision with input as {"action": "create", "resource_type": "User", "events": ["create"], "target": "demo", "resource": {"displayName": "x"}}
	not d.allow
}

test_shipped_config_brakes_at_500 if {
	i := object.union(_entra_user, {
		"action": "delete", "events": ["delete"], "native_id": "42", "resource": null,
		"previous": _entra_user.resource,
		"stats": {"last_hour": {"deactivate": 300, "delete": 200}},
	})
	d := scimgate.decision with input as i
	not d.allow
	d.reasons == [`mass-deprovision brake: 500 deactivations and deletions reached target "demo" in the last hour (limit 500); this one is refused. If intended, raise scimgate.config.defaults.mass_deprovision.max_per_hour or wait.`]
	d2 := scimgate.decision with input as object.union(i, {"stats": {"last_hour": {"delete": 199}}})
	d2.allow
}
