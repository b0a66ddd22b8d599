package scimgate.guardrails.attribute_allowlist_test

import data.scimgate
import data.scimgate.guardrails.attribute_allowlist as al

_ent := "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

_config := {
	"defaults": {"attribute_allowlist": {
		"User": ["userName", "active", "name.givenName", "emails.value", concat(":", [_ent, "department"])],
		"Group": ["displayName", "members"],
	}},
	"targets": {"rich": {"attribute_allowlist": {"User": ["userName", "name", "emails", _ent]}}},
}

_user := {
	"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", _ent],
	"id": "1",
	"meta": {"resourceType": "User", "version": "W/\"1\""},
	"userName": "ada@contoso.example",
	"active": true,
	"externalId": "e",
	"name": {"givenName": "Ada", "familyName": "Lovelace"},
	"emails": [{"value": "ada@contoso.example", "type": "work", "primary": true}],
	_ent: {"department": "R", "manager": {"value": "2"}},
}

_create(res) := {"action": "create", "resource_type": "User", "events": ["create"], "target": "demo", "resource": res, "previous": null, "changed": []}

test_drops_everything_not_allowed if {
	d := scimgate.decision with input as _create(_user) with data.scimgate.config as _config
	d.allow
	not d.skip
	d.drop_attributes == [
		"emails.primary", "emails.type", "externalId", "name.familyName",
		concat(":", [_ent, "manager"]),
	]
}

test_target_list_replaces_the_default if {
	drops := al.drop_attributes with input as object.union(_create(_user), {"target": "rich"}) with data.scimgate.config as _config
	drops == {"active", "externalId"}
}

test_removed_attributes_dropped_from_changes if {
	i := {
		"action": "patch", "resource_type": "User", "events": ["update"], "target": "demo",
		"previous": _user, "resource": object.remove(_user, ["externalId"]),
		"changed": ["externalId", "name.givenName", "phoneNumbers", concat(":", [_ent, "department"])],
	}
	drops := al.drop_attributes with input as i with data.scimgate.config as _config
	"externalId" in drops
	"phoneNumbers" in drops
	not "name.givenName" in drops
	not concat(":", [_ent, "department"]) in drops
}

test_groups_have_their_own_list if {
	i := {"action": "create", "resource_type": "Group", "events": ["create"], "target": "demo", "resource": {"schemas": [], "displayName": "G", "externalId": "x", "members": [{"value": "1"}]}}
	drops := al.drop_attributes with input as i with data.scimgate.config as _config
	drops == {"externalId"}
}

test_type_without_list_not_filtered if {
	cfg := {"defaults": {"attribute_allowlist": {"Group": ["displayName"]}}}
	count(al.drop_attributes) == 0 with input as _create(_user) with data.scimgate.config as cfg
}

test_empty_list_drops_all_but_reserved if {
	cfg := {"defaults": {"attribute_allowlist": {"User": []}}}
	drops := al.drop_attributes with input as _create(_user) with data.scimgate.config as cfg
	drops == {"userName", "active", "externalId", "name", "emails", concat(":", [_ent, "department"]), concat(":", [_ent, "manager"])}
}

test_delete_has_nothing_to_drop if {
	i := {"action": "delete", "resource_type": "User", "events": ["delete"], "target": "demo", "previous": _user, "resource": null, "changed": []}
	count(al.drop_attributes) == 0 with input as i with data.scimgate.config as _config
}

test_unconfigured_or_disabled_does_nothing if {
	count(al.drop_attributes) == 0 with input as _create(_user) with data.scimgate.config as {}
	cfg := {"defaults": {"attribute_allowlist": {"enabled": false, "User": []}}}
	count(al.drop_attributes) == 0 with input as _create(_user) with data.scimgate.config as cfg
}

# A custom extension's attributes arrive nested under its URN (the gateway nests Entra's
# flat "urn:...:MyApp:2.0:User:hireDate" keys): each is allowed or dropped by its full path,
# and the URN alone allows all of them.
test_custom_extension_attributes if {
	app := "urn:ietf:params:scim:schemas:extension:MyApp:2.0:User"
	user := object.union(_user, {app: {"hireDate": "2024-03-01", "badge": "7"}})
	cfg := {"defaults": {"attribute_allowlist": {"User": ["userName", concat(":", [app, "hireDate"])]}}}
	drops := al.drop_attributes with input as _create(user) with data.scimgate.config as cfg
	not concat(":", [app, "hireDate"]) in drops
	concat(":", [app, "badge"]) in drops
	whole := {"defaults": {"attribute_allowlist": {"User": ["userName", app]}}}
	drops_whole := al.drop_attributes with input as _create(user) with data.scimgate.config as whole
	not concat(":", [app, "badge"]) in drops_whole
	not concat(":", [app, "hireDate"]) in drops_whole
}

test_malformed_list_refuses_instead_of_sending_everything if {
	cfg := {"defaults": {"attribute_allowlist": {"User": "userName"}}}
	d := scimgate.decision with input as _create(_user) with data.scimgate.config as cfg
	not d.allow
	d.reasons == [`attribute_allowlist settings for target "demo" are malformed (scimgate.config.defaults.attribute_allowlist.User must be a list of strings, got string "userName"): changes that send attributes are refused until scimgate.config is fixed.`]
}
