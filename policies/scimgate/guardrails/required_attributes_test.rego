package scimgate.guardrails.required_attributes_test

import data.scimgate
import data.scimgate.guardrails.required_attributes as ra

_ent := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

_config := {
	"defaults": {"required_attributes": {
		"User": ["userName", "name.givenName", "emails.value", concat(":", [_ent, "employeeNumber"])],
		"Group": ["displayName"],
	}},
	"targets": {"strict": {"required_attributes": {"Group": ["displayName", "externalId"]}}},
}

_user := {
	"userName": "ada@contoso.example",
	"name": {"givenName": "Ada"},
	"emails": [{"value": "ada@contoso.example"}],
	_ent: {"employeeNumber": "E1"},
}

_create(type, res) := {"action": "create", "resource_type": type, "events": ["create"], "target": "demo", "resource": res}

test_complete_user_passes if {
	count(ra.deny) == 0 with input as _create("User", _user) with data.scimgate.config as _config
}

test_missing_and_empty_are_all_listed if {
	res := {"userName": "", "name": {"givenName": null}, "emails": [], _ent: {}}
	reasons := ra.deny with input as _create("User", res) with data.scimgate.config as _config
	reasons == {concat("", [
		`User create refused for target "demo": required attribute(s) missing or empty: userName, name.givenName, emails.value, `,
		_ent, ":employeeNumber. Map them in Entra's attribute mappings, or remove them from scimgate.config.defaults.required_attributes.User.",
	])}
}

test_one_missing_denies_through_decision if {
	d := scimgate.decision with input as _create("User", object.remove(_user, ["name"])) with data.scimgate.config as _config
	not d.allow
	contains(d.reasons[0], "missing or empty: name.givenName.")
}

test_group_required_per_target if {
	count(ra.deny) == 0 with input as _create("Group", {"displayName": "G"}) with data.scimgate.config as _config
	strict := object.union(_create("Group", {"displayName": "G"}), {"target": "strict"})
	reasons := ra.deny with input as strict with data.scimgate.config as _config
	some r in reasons
	contains(r, "missing or empty: externalId.")
	contains(r, "scimgate.config.targets.strict.required_attributes.Group")
}

test_empty_group_name_denied if {
	count(ra.deny) == 1 with input as _create("Group", {"displayName": " "}) with data.scimgate.config as _config
}

test_only_creates_are_checked if {
	i := {"action": "patch", "resource_type": "User", "events": ["update"], "target": "demo", "resource": {"userName": "a"}, "previous": _user}
	count(ra.deny) == 0 with input as i with data.scimgate.config as _config
}

test_type_without_list_passes if {
	count(ra.deny) == 0 with input as _create("User", {}) with data.scimgate.config as {"defaults": {"required_attributes": {"Group": ["displayName"]}}}
}

test_unconfigured_does_nothing if {
	count(ra.deny) == 0 with input as _create("User", {}) with data.scimgate.config as {}
}

test_malformed_list_refuses_creates if {
	cfg := {"defaults": {"required_attributes": {"User": "userName"}}}
	reasons := ra.deny with input as _create("User", _user) with data.scimgate.config as cfg
	reasons == {`required_attributes settings for target "demo" are malformed (scimgate.config.defaults.required_attributes.User must be a list of strings, got string "userName"): creates are refused until scimgate.config is fixed.`}
}
